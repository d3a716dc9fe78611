"""The engine seam (mpcnode/engines/): the factory, the Shamir engine's local operations against the
field, and the share-layout helpers every engine-independent protocol relies on."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mpcnode import field
from mpcnode.circuit import validate
from mpcnode.computation.builder import CircuitBuilder
from mpcnode.computation.spec import PROTOCOLS, Computation
from mpcnode.engines import ENGINES, Engine, Replicated3Engine, ShamirEngine, engine_for
from mpcnode.exchange import MemoryNetwork
from mpcnode.jobrun import run_job
from mpcnode.protocols.core import Session
from tests.unit.pair_engine import PairEngine

RNG = np.random.default_rng(9)


def test_engine_for_picks_the_shamir_engine_and_names_what_it_does_not_run() -> None:
    e = engine_for("shamir", MemoryNetwork(3).exchange(1), 1, [0, 1, 2])
    assert isinstance(e, ShamirEngine) and isinstance(e, Engine) and isinstance(e, Session)
    assert (e.name, e.party, e.n, e.t, e.parties, e.share_shape) == ("shamir", 1, 3, 1, (0, 1, 2), ())
    assert e.exchange is e.ex and e.field_modulus == field.P and e.max_bit_length == 59
    with pytest.raises(ValueError, match="'spdz2k' is not supported"):
        engine_for("spdz2k", MemoryNetwork(3).exchange(0), 1)


def test_engine_for_picks_the_replicated3_engine_for_three_live_parties_only() -> None:
    e = engine_for("replicated3", MemoryNetwork(3).exchange(2), 1, [0, 1, 2])
    assert isinstance(e, Replicated3Engine) and isinstance(e, Engine)
    assert (e.name, e.party, e.n, e.t, e.parties, e.share_shape) == ("replicated3", 2, 3, 1, (0, 1, 2), (2,))
    assert e.field_modulus is None and e.max_bit_length == 62
    with pytest.raises(ValueError, match="all three parties live"):
        engine_for("replicated3", MemoryNetwork(3).exchange(0), 1, [0, 1])
    with pytest.raises(ValueError, match="exactly 3 parties"):
        engine_for("replicated3", MemoryNetwork(4).exchange(0), 1)


def test_every_protocol_a_computation_may_name_has_an_engine() -> None:
    assert set(PROTOCOLS) == set(ENGINES)


def test_run_job_takes_the_engine_from_the_job_spec() -> None:
    b = CircuitBuilder("one")
    b.output("x", b.input("x", "a", 1, 0, 9), ["a"])
    comp = Computation(circuit=b.build(), parties=("a", "b", "c"), threshold=1)
    spec = comp.job_spec("j1", timeout_s=5)
    spec.protocol = "no-such-engine"
    plan = validate(spec.circuit, list(spec.parties))
    ex = MemoryNetwork(3, timeout_s=1).exchange(0)
    with pytest.raises(ValueError, match="'no-such-engine' is not supported"):
        asyncio.run(run_job(ex, spec, plan, list(spec.parties), {"x": field.asfield([1])}, lambda d: ({}, [])))
    assert ex.stats.rounds == 0        # refused before the first round


def test_shamir_linear_operations_are_the_fields() -> None:
    e = ShamirEngine(MemoryNetwork(3).exchange(0), 1)
    a = RNG.integers(0, field.P, (4, 3), dtype=np.uint64)
    b = RNG.integers(0, field.P, (4, 3), dtype=np.uint64)
    c = e.encode(np.array([-1, 2, -(1 << 40)]))
    assert np.array_equal(e.add(a, b), field.add(a, b)) and np.array_equal(e.sub(a, b), field.sub(a, b))
    assert np.array_equal(e.neg(a), field.neg(a))
    assert np.array_equal(e.add_const(a, c), field.add(a, np.broadcast_to(c, a.shape)))
    assert np.array_equal(e.mul_const(a, c), field.mul(a, np.broadcast_to(c, a.shape)))
    assert np.array_equal(e.sum(a, axis=1), field.sum_all(a, axis=1))
    assert e.sum(a, axis=0, keepdims=True).shape == (1, 3)
    assert np.array_equal(e.mul_local(a, b[:1]), field.mul(a, np.broadcast_to(b[:1], a.shape)))
    assert np.array_equal(e.constant(c), c)                  # a public constant is its own Shamir share
    assert np.array_equal(e.one_minus(e.constant(e.encode([0, 1]))), [1, 0])


@pytest.mark.parametrize("make", [ShamirEngine, PairEngine, Replicated3Engine])
def test_layout_helpers_keep_the_component_axes(make) -> None:
    e = make(MemoryNetwork(3).exchange(0), 1)
    x = e.constant(e.encode(np.arange(6).reshape(2, 3)))
    assert x.shape == (2, 3) + e.share_shape
    assert e.value_shape(x) == (2, 3)
    assert e.flatten(x).shape == (6,) + e.share_shape


@pytest.mark.parametrize("bad", [0, 60, -1, True, 2.5, "8"])
def test_check_bit_length(bad) -> None:
    e = ShamirEngine(MemoryNetwork(3).exchange(0), 1)
    assert e.check_bit_length(np.int64(59)) == 59
    with pytest.raises(ValueError, match=r"bit_length must be an integer in 1\.\.59"):
        e.check_bit_length(bad)
