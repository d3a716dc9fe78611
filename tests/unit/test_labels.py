"""Round labels come from structure the node derives (level, kind, op index), never from names
a circuit author chose (issue 12): an op named like a group label cannot collide with it, and
every exchange refuses a label used twice in one job."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mpcnode.computation.builder import CircuitBuilder
from mpcnode.computation.cost import estimate
from mpcnode.computation.spec import Computation
from mpcnode.exchange import LabelReused, MemoryNetwork
from parley.v1 import circuit_pb2 as cpb
from tests.conftest import ENGINES_UNDER_TEST

PARTIES = ("p0", "p1", "p2")


def _rename(circuit: cpb.Circuit, old: str, new: str) -> None:
    """Give op `old` the name `new` (as a hand-written circuit may), updating every use."""
    for op in circuit.ops:
        if op.out == old:
            op.out = new
        op.args[:] = [new if a == old else a for a in op.args]
    for out in circuit.outputs:
        if out.value == old:
            out.value = new


@pytest.mark.parametrize("protocol", ENGINES_UNDER_TEST)
@pytest.mark.parametrize("name", ["prod", "lt12", "eq"])
def test_an_op_named_like_a_group_label_runs(protocol: str, name: str) -> None:
    """An argmax named "prod", "lt12" or "eq" runs in the same level as a product, a comparison of
    12 bits and an equality: its rounds must not take (or derive seeds from) their labels."""
    b = CircuitBuilder("labels")
    x = b.input("x", "p0", 4, 0, 1000)
    y = b.input("y", "p1", 4, 0, 1000)
    top = b.argmax(x, 12)
    b.output("top", top, ["p2"])
    b.output("prod", b.mul(x, y), ["p2"])
    b.output("lt", b.lt(x, y, 12), ["p2"])
    b.output("eq", b.eq(x, y), ["p2"])
    circuit = b.build()
    argmax = next(op.out for op in circuit.ops if op.kind == cpb.OP_ARGMAX)
    _rename(circuit, argmax, name)
    cost = estimate(Computation(circuit=circuit, parties=PARTIES, threshold=1, protocol=protocol))
    assert all(p.rounds > 0 for p in cost.parties)


def test_the_memory_exchange_refuses_a_reused_label() -> None:
    async def body() -> None:
        net = MemoryNetwork(2, timeout_s=5)
        a, b = net.exchange(0), net.exchange(1)
        one = np.ones(1, dtype=np.uint64)
        await asyncio.gather(a.round("r1", {1: one}, [1]), b.round("r1", {0: one}, [0]))
        with pytest.raises(LabelReused, match="round label 'r1' reused"):
            await a.round("r1", {1: one}, [1])

    asyncio.run(body())
