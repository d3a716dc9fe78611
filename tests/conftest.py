"""Shared test setup: the repository on sys.path, and in-memory MPC runs for unit tests.

Unit tests run all n parties of a protocol in one event loop over `MemoryNetwork`
(`run_parties`); integration tests build real deployments with tests/integration/cluster.py.
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mpcnode.engines import Engine, engine_for  # noqa: E402
from mpcnode.exchange import MemoryExchange, MemoryNetwork  # noqa: E402

T = TypeVar("T")


async def run_parties(n: int, t: int, body: Callable[[Any], Awaitable[T]], *, timeout_s: float = 30.0,
                      make: Callable[[MemoryExchange, int], Engine] | None = None
                      ) -> tuple[list[T], MemoryNetwork, list[Any]]:
    """Run `body(engine)` for every party 0..n-1 concurrently; returns (results, network, engines).

    The engines are Shamir engines made the way a node makes them (engine_for), unless `make`
    (exchange, t) -> engine says otherwise. The Shamir engine is also a protocols.core.Session, so
    Session-level tests use it too. A protocol bug that leaves a party waiting fails the test
    after `timeout_s` instead of hanging.
    """
    net = MemoryNetwork(n, timeout_s=timeout_s)
    make = make or (lambda exchange, t: engine_for("shamir", exchange, t))
    engines = [make(net.exchange(i), t) for i in range(n)]
    results = await asyncio.wait_for(asyncio.gather(*(body(e) for e in engines)), timeout_s + 5)
    return list(results), net, engines


# The engines the core integration suites (tests/integration/test_totals.py, test_auctions.py,
# test_votes.py) run under: their module-scoped cluster is built once per entry, with every
# scenario's `protocol:` set to it (Cluster.create(..., protocol=)). THE line to change when an
# engine joins.
ENGINES_UNDER_TEST = ["shamir", "replicated3"]


@pytest.fixture(scope="module", params=ENGINES_UNDER_TEST)
def protocol(request: pytest.FixtureRequest) -> str:
    """The engine a core integration suite's cluster runs under (one cluster per engine)."""
    return request.param


@pytest.fixture
def parties() -> Callable[..., Awaitable[tuple[list, MemoryNetwork, list[Any]]]]:
    """The `run_parties` helper as a fixture (for tests that prefer not to import conftest)."""
    return run_parties
