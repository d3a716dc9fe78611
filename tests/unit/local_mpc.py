"""Running all n parties of a protocol in one process, with a test-side dealer and reveal, for the
protocol tests (test_compare.py, test_selection.py, test_ballots.py)."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import numpy as np

from mpcnode import field, replicated, shamir
from mpcnode.engines import Replicated3Engine, ShamirEngine
from mpcnode.engines.base import Engine
from mpcnode.exchange import MemoryNetwork
from tests.unit.pair_engine import PairEngine, shamir_share

ENGINES = {"shamir": ShamirEngine, "pair": PairEngine, "replicated3": Replicated3Engine}


class Dealt:
    """A test-side dealing of the same values under every scheme: Shamir shares (n, *shape) for
    the Shamir-based engines and, for n = 3, replicated shares for replicated3. Indexing gives
    party i's Shamir share, as the plain array did before."""

    def __init__(self, values, n: int):
        signed = np.asarray(values, dtype=np.int64)
        self.shamir = shamir.share(field.asfield(signed), n, shamir.default_threshold(n))
        self.replicated = replicated.share(replicated.encode(signed)) if n == 3 else None

    def __getitem__(self, i):
        return self.shamir[i]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.shamir.shape


def deal(values, n: int) -> Dealt:
    """Test-side dealer of signed integers: Shamir shares (threshold default_threshold(n)) and,
    for three parties, replicated shares over Z_2^64."""
    return Dealt(values, n)


def reveal(shares: list[np.ndarray], n: int, engine: str = "shamir") -> np.ndarray:
    """Reconstruct from all n parties' shares (checking consistency) and decode signed."""
    if engine == "replicated3":
        return replicated.to_signed(replicated.reconstruct_checked(dict(enumerate(shares))))
    return field.to_signed(shamir.reconstruct_checked(dict(enumerate(shares)), shamir.default_threshold(n)))


def mine(e: Engine, dealt: Dealt) -> np.ndarray:
    """This party's share of a test-side dealing, in the engine's layout."""
    if isinstance(e, Replicated3Engine):
        if dealt.replicated is None:
            raise ValueError("replicated3 runs with three parties only")
        return dealt.replicated[e.party]
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
        return tuple(reveal([shamir_share(e, r[k]) for e, r in zip(engines, results)], n, engine)
                     for k in range(len(results[0]))), engines
    return reveal([shamir_share(e, r) for e, r in zip(engines, results)], n, engine), engines
