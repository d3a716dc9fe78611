"""Running all n parties of a protocol in one process, with a test-side dealer and reveal, for the
protocol tests (test_compare.py, test_selection.py, test_ballots.py)."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import numpy as np

from mpcnode import field, shamir
from mpcnode.engines import ShamirEngine
from mpcnode.engines.base import Engine
from mpcnode.exchange import MemoryNetwork
from tests.unit.pair_engine import PairEngine, shamir_share

ENGINES = {"shamir": ShamirEngine, "pair": PairEngine}


def deal(values, n: int) -> np.ndarray:
    """Test-side dealer: Shamir shares (n, *shape) of signed integers, threshold default_threshold(n)."""
    return shamir.share(field.asfield(np.asarray(values, dtype=np.int64)), n, shamir.default_threshold(n))


def reveal(shares: list[np.ndarray], n: int) -> np.ndarray:
    """Reconstruct from all n parties' Shamir shares (checking consistency) and decode signed."""
    return field.to_signed(shamir.reconstruct_checked(dict(enumerate(shares)), shamir.default_threshold(n)))


def mine(e: Engine, dealt: np.ndarray) -> np.ndarray:
    """This party's share of a test-side dealing, in the engine's layout."""
    return e.split(dealt[e.party]) if isinstance(e, PairEngine) else dealt[e.party]


def mpc(n: int, body: Callable[[Engine], Awaitable], *, timeout_s: float = 60.0, engine: str = "shamir"):
    """Run body(engine) on all n parties concurrently; open every returned array (or each
    element of a returned tuple). Returns (opened, engines)."""
    net = MemoryNetwork(n, timeout_s=timeout_s)
    engines = [ENGINES[engine](net.exchange(i), shamir.default_threshold(n)) for i in range(n)]

    async def main():
        return await asyncio.gather(*(body(e) for e in engines))

    results = asyncio.run(main())
    assert all(not box for box in net._mail), "undelivered messages left behind"
    if isinstance(results[0], tuple):
        return tuple(reveal([shamir_share(e, r[k]) for e, r in zip(engines, results)], n)
                     for k in range(len(results[0]))), engines
    return reveal([shamir_share(e, r) for e, r in zip(engines, results)], n), engines
