"""The replicated3 engine (mpcnode/engines/replicated3.py) and its boolean layer
(mpcnode/protocols/binary.py) against plaintext over Z_2^64, three parties in one process."""
from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path

import numpy as np
import pytest

from mpcnode import replicated
from mpcnode.computation.spec import Computation, protocol_parameters
from mpcnode.engines import Replicated3Engine
from mpcnode.exchange import MemoryNetwork, ProtocolViolation
from mpcnode.protocols import binary
from tests.unit.local_mpc import deal, mine, mpc

RNG = np.random.default_rng(20260612)
U = np.uint64
MOD = 1 << 64
EDGE = [0, 1, -1, 2, -2, (1 << 62) - 1, -(1 << 62), (1 << 63) - 1, -(1 << 63), 1 << 32, -(1 << 32), 12345]


def run3(body, *, timeout_s: float = 60.0):
    """body(engine) on the three parties; returns (results per party, engines)."""
    net = MemoryNetwork(3, timeout_s=timeout_s)
    engines = [Replicated3Engine(net.exchange(i), 1) for i in range(3)]

    async def main():
        return await asyncio.gather(*(body(e) for e in engines), return_exceptions=True)

    results = asyncio.run(main())
    return results, engines


def arith(shares) -> np.ndarray:
    return replicated.to_signed(replicated.reconstruct_checked(dict(enumerate(shares))))


def words(shares) -> np.ndarray:
    return replicated.reconstruct_xor_checked(dict(enumerate(shares)))


def signed(values) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def ring_mul(a, b) -> np.ndarray:
    return (replicated.encode(a) * replicated.encode(b)).view(np.int64)


# ---- sharing and opening ----------------------------------------------------------------

def test_share_inputs_from_every_owner_and_open_to_all() -> None:
    vals = {0: signed(EDGE), 1: RNG.integers(-(1 << 63), (1 << 63) - 1, 50), 2: signed([7, -7])}

    async def body(e: Replicated3Engine):
        await e.establish()
        sh = await e.share_inputs("in", {e.party: replicated.encode(vals[e.party])}, {o: v.shape for o, v in vals.items()})
        assert all(s.shape == vals[o].shape + (2,) for o, s in sh.items())
        return [await e.open(f"o{o}", sh[o]) for o in range(3)], sh

    results, engines = run3(body)
    for opened, _ in results:
        for o in range(3):
            assert replicated.to_signed(opened[o]).tolist() == vals[o].tolist()
    for o in range(3):
        assert arith([r[1][o] for r in results]).tolist() == vals[o].tolist()
    # one round, one element per value from each owner to one party (plus the key round)
    for e in engines:
        assert e.exchange.stats.rounds == 1 + 1 + 3
    sent_in = [8 * vals[e.party].size for e in engines]
    # open to all: every party sends 2 elements per value of each opened array
    total = sum(v.size for v in vals.values())
    assert [e.exchange.stats.bytes_sent for e in engines] == [8 * 4 + 8 * 4 + s + 16 * total
                                                              if e.party == 0 else
                                                              (8 * 4 + s + 16 * total if e.party == 1 else s + 16 * total)
                                                              for e, s in zip(engines, sent_in)]


def test_open_to_a_subset_sends_only_the_missing_component() -> None:
    x = RNG.integers(-1000, 1000, 30)
    X = deal(x, 3)

    async def body(e: Replicated3Engine):
        await e.establish()
        before = e.exchange.stats.bytes_sent
        got = await e.open("o", mine(e, X), to=[1])
        return got, e.exchange.stats.bytes_sent - before

    results, _ = run3(body)
    assert results[0][0] is None and results[2][0] is None
    assert replicated.to_signed(results[1][0]).tolist() == x.tolist()
    assert [r[1] for r in results] == [8 * 30, 0, 8 * 30]      # parties 2 and 0 hold x_0, which party 1 lacks


@pytest.mark.parametrize("liar,slot", [(0, 0), (1, 1), (2, 0)])
def test_an_inconsistent_share_is_detected_at_open(liar: int, slot: int) -> None:
    x = np.arange(8)
    X = deal(x, 3)

    async def body(e: Replicated3Engine):
        await e.establish()
        s = mine(e, X).copy()
        if e.party == liar:
            s[3, slot] += U(1)
        return await e.open("o", s)

    results, _ = run3(body)
    # the liar's tampered component is missed by exactly one other party, which names both holders
    victim = (liar + 1) % 3 if slot == 0 else (liar - 1) % 3
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(results[victim], ProtocolViolation)
    holders = sorted({liar, 3 - liar - victim})
    assert f"parties {holders[0]} and {holders[1]}" in str(results[victim])


def test_a_binding_mismatch_fails_the_key_round_before_anything_is_dealt() -> None:
    good = np.arange(4, dtype=U)

    async def body(e: Replicated3Engine):
        await e.establish(good + U(1) if e.party == 2 else good)
        return await e.share_inputs("in", {e.party: np.zeros(3, dtype=U)}, {0: (3,), 1: (3,), 2: (3,)})

    results, engines = run3(body)
    assert all(isinstance(r, ProtocolViolation) for r in results)
    assert "parties [2]" in str(results[0]) and "parties [2]" in str(results[1])
    assert "parties [0, 1]" in str(results[2])
    for e in engines:
        assert e.exchange.stats.labels == {"keys"}


def test_the_keys_hold_the_binding_and_agree_pairwise() -> None:
    async def body(e: Replicated3Engine):
        await e.establish(np.arange(4, dtype=U))
        return await e.random("r", (16,))

    results, _ = run3(body)
    words([r for r in results])          # checked: the holders of each component agree
    assert len({r.tobytes() for r in results}) == 3


# ---- multiplication ---------------------------------------------------------------------

def test_mul_mul_many_and_a_reduced_dot() -> None:
    a = np.concatenate([signed(EDGE), RNG.integers(-(1 << 63), (1 << 63) - 1, 100)])
    b = np.concatenate([signed(EDGE[::-1]), RNG.integers(-(1 << 63), (1 << 63) - 1, 100)])
    m = RNG.integers(-(1 << 20), 1 << 20, (4, 5))
    A, B, M = deal(a, 3), deal(b, 3), deal(m, 3)

    async def body(e: Replicated3Engine):
        await e.establish()
        x, y, mm = mine(e, A), mine(e, B), mine(e, M)
        r0 = e.exchange.stats.rounds
        prod = await e.mul("m", x, y)
        assert e.exchange.stats.rounds == r0 + 1
        many = await e.mul_many("mm", [(x, y), (mm, mm), (mm[:1], mm)])     # broadcasting over rows
        assert e.exchange.stats.rounds == r0 + 2
        assert await e.mul_many("none", []) == [] and e.exchange.stats.rounds == r0 + 2
        dot = await e.reduce("dot", e.sum(e.mul_local(x, y), keepdims=True))
        sent = e.exchange.stats.bytes_sent
        await e.reduce("one", e.mul_local(x, y))
        assert e.exchange.stats.bytes_sent - sent == 8 * len(a)             # one element per product
        return prod, *many, dot

    (prod, p1, p2, p3, dot), _ = mpc(3, body, engine="replicated3")
    assert prod.tolist() == ring_mul(a, b).tolist() and p1.tolist() == prod.tolist()
    assert p2.tolist() == (m * m).tolist() and p3.tolist() == (m[:1] * m).tolist()
    assert dot.tolist() == [int(ring_mul(a, b).astype(np.uint64).sum(dtype=np.uint64).view(np.int64))]


def test_linear_operations_and_constants() -> None:
    a = RNG.integers(-(1 << 40), 1 << 40, (3, 4))
    A = deal(a, 3)
    c = RNG.integers(-100, 100, 4)

    async def body(e: Replicated3Engine):
        x = mine(e, A)
        k = e.encode(c)
        return (e.add_const(x, k), e.mul_const(x, k), e.neg(x), e.sum(x, axis=1), e.constant(k),
                e.one_minus(e.constant(e.encode([0, 1]))), e.add_const(x[:1, :1], e.encode(c)))

    got, _ = mpc(3, body, engine="replicated3")
    assert got[0].tolist() == (a + c).tolist() and got[1].tolist() == (a * c).tolist()
    assert got[2].tolist() == (-a).tolist() and got[3].tolist() == a.sum(axis=1).tolist()
    assert got[4].tolist() == c.tolist() and got[5].tolist() == [1, 0]
    assert got[6].tolist() == (a[:1, :1] + c).tolist()


# ---- randomness ---------------------------------------------------------------------------

def test_random_is_uniform_looking_fresh_per_label_and_refuses_a_reused_label() -> None:
    async def body(e: Replicated3Engine):
        await e.establish()
        r1, r2 = await e.random("r1", (4000,)), await e.random("r2", (4000,))
        with pytest.raises(ValueError, match="used twice"):
            await e.random("r1", (4000,))
        return r1, r2

    (r1, r2), engines = mpc(3, body, engine="replicated3")
    assert all(e.exchange.stats.rounds == 1 for e in engines)       # the key round only
    u1 = r1.astype(np.int64).view(np.uint64)
    bits = ((u1[:, None] >> np.arange(64, dtype=U)) & U(1)).mean(axis=0)
    assert np.all((bits > 0.45) & (bits < 0.55))
    assert len(np.unique(u1)) == 4000 and not np.any(r1 == r2)


def test_random_bits_are_bits_and_cost_one_round() -> None:
    async def body(e: Replicated3Engine):
        await e.establish()
        r0 = e.exchange.stats.rounds
        bits = await e.random_bits("rb", 4000)
        assert e.exchange.stats.rounds == r0 + 1
        return bits

    bits, engines = mpc(3, body, engine="replicated3")
    assert set(bits.tolist()) == {0, 1} and 0.45 < bits.mean() < 0.55
    assert sum(e.exchange.stats.bytes_sent for e in engines) == 3 * 8 * 4 + 4 * 8 * 4000     # keys + 4 el per bit


# ---- the boolean layer ------------------------------------------------------------------

def test_a2b_round_trip_and_bit_injection() -> None:
    x = np.concatenate([signed(EDGE), RNG.integers(-(1 << 63), (1 << 63) - 1, 300)])
    X = deal(x, 3)
    bits = RNG.integers(0, 2, 200).astype(U)
    XB = replicated.share_xor(bits)

    async def body(e: Replicated3Engine):
        await e.establish()
        r0, s0 = e.exchange.stats.rounds, e.exchange.stats.bytes_sent
        b = await binary.a2b(e, "a2b", mine(e, X))
        assert e.exchange.stats.rounds == r0 + 7
        a2b_bytes = e.exchange.stats.bytes_sent - s0
        injected = await binary.inject_bit(e, "b2a", binary.extract_bit(binary.planar(XB[e.party]), 0))
        low = await binary.inject_bit(e, "low", binary.extract_bit(b, 0))
        top = await binary.inject_bit(e, "top", binary.extract_bit(b, 63))
        return b, injected, low, top, a2b_bytes

    results, _ = run3(body)
    assert not any(isinstance(r, Exception) for r in results), results
    assert sum(r[4] for r in results) == 8 * len(x) * (4 + 5 * 6 + 3)
    assert words([binary.layout(r[0]) for r in results]).tolist() == replicated.encode(x).tolist()
    assert arith([r[1] for r in results]).tolist() == bits.astype(np.int64).tolist()
    assert arith([r[2] for r in results]).tolist() == (x & 1).tolist()
    assert arith([r[3] for r in results]).tolist() == (x < 0).astype(int).tolist()


def lt_cases(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Operands with |v| < 2^k, the edges +-(2^k - 1), the sentinel -(2^k), ties and random."""
    top, low = (1 << k) - 1, -(1 << k)
    edge = [top, -top, low, 0, 1, -1]
    a = [p for p in edge for _ in edge] + edge
    b = [q for _ in edge for q in edge] + edge                  # every pair, then ties again
    ra = RNG.integers(-top, top, 200, endpoint=True)
    rb = RNG.integers(-top, top, 200, endpoint=True)
    rb[:20] = ra[:20]
    return np.concatenate([signed(a), ra]), np.concatenate([signed(b), rb])


@pytest.mark.parametrize("k", [1, 2, 3, 7, 31, 32, 33, 61, 62])
def test_less_than_at_every_edge_and_its_round_count(k: int) -> None:
    a, b = lt_cases(k)
    A, B = deal(a, 3), deal(b, 3)

    async def body(e: Replicated3Engine):
        await e.establish()
        r0, s0 = e.exchange.stats.rounds, e.exchange.stats.bytes_sent
        lt = await e.less_than("lt", mine(e, A), mine(e, B), k)
        return lt, e.exchange.stats.rounds - r0, e.exchange.stats.bytes_sent - s0

    results, _ = run3(body)
    assert not any(isinstance(r, Exception) for r in results), results
    assert arith([r[0] for r in results]).tolist() == (a < b).astype(int).tolist()
    levels = math.ceil(math.log2(k + 1))
    assert {r[1] for r in results} == {2 + levels}
    # cross round 4, (levels - 1) double levels of 6, the last level 3, injection 4 (words per value)
    assert sum(r[2] for r in results) == 8 * len(a) * (4 + 6 * (levels - 1) + 3 + 4)


@pytest.mark.parametrize("k", [1, 2, 3, 7, 31, 32, 33, 61, 62])
def test_less_than_lanes_at_every_edge_costs_the_same_rounds_and_fewer_elements(k: int) -> None:
    a, b = lt_cases(k)
    A, B = deal(a, 3), deal(b, 3)

    async def body(e: Replicated3Engine):
        await e.establish()
        r0, s0 = e.exchange.stats.rounds, e.exchange.stats.bytes_sent
        lt = await e.less_than_lanes("lt", mine(e, A), mine(e, B), k)
        return lt, e.exchange.stats.rounds - r0, e.exchange.stats.bytes_sent - s0, e.opened

    results, _ = run3(body)
    assert not any(isinstance(r, Exception) for r in results), results
    assert arith([r[0] for r in results]).tolist() == (a < b).astype(int).tolist()
    assert {r[1] for r in results} == {2 + math.ceil(math.log2(k + 1))}
    # 242 values: 256 lanes of w bits in 4 w words and 4 words of bit l + 1 in the cross round,
    # n + n/2 + ... words per party in the tree, 4 per value for the injection
    width = binary.lane_width(k)
    n = 4 * width
    tree = sum(n >> j for j in range(width.bit_length() - 2)) + (n >> (width.bit_length() - 2)) // 2
    assert sum(r[2] for r in results) == 8 * binary.lanes_cost(len(a), k) == 8 * (4 * (n + 4) + 3 * tree + 4 * len(a))
    assert binary.lanes_cost(len(a), k) < len(a) * (4 + 6 * (math.ceil(math.log2(k + 1)) - 1) + 3 + 4) and not any(
        list(r[3]) for r in results)


def test_less_than_lanes_pads_any_count_and_keeps_the_shape() -> None:
    for shape in [(1,), (63,), (64,), (65,), (3, 45)]:
        a = RNG.integers(-2**31 + 1, 2**31, shape)
        b = RNG.integers(-2**31 + 1, 2**31, shape)
        b.reshape(-1)[0] = a.reshape(-1)[0]
        A, B = deal(a, 3), deal(b, 3)

        async def body(e: Replicated3Engine):
            return await e.less_than_lanes("lt", mine(e, A), mine(e, B), 31)

        lt, _ = mpc(3, body, engine="replicated3")
        assert lt.tolist() == (a < b).astype(int).tolist()


@pytest.mark.parametrize("a_shape,b_shape", [((5, 3, 45), (5, 1, 1)), ((2, 64), (2, 64)), ((1, 1), (1, 1))])
def test_less_than_bits_packs_each_row_in_value_order(a_shape, b_shape) -> None:
    """XOR-shared bits, 64 to a word along all axes but the first, every row padded to 64."""
    a = RNG.integers(-2**31 + 1, 2**31, a_shape)
    b = RNG.integers(-2**31 + 1, 2**31, b_shape)
    a.reshape(-1)[0] = b.reshape(-1)[0]
    A, B = deal(a, 3), deal(b, 3)

    async def body(e: Replicated3Engine):
        await e.establish()
        r0 = e.exchange.stats.rounds
        bits = await binary.less_than_bits(e, "lt", mine(e, A), mine(e, B), 31)
        return binary.layout(bits.reshape(2, -1)), e.exchange.stats.rounds - r0

    results, _ = run3(body)
    assert {r[1] for r in results} == {6}
    rows = a_shape[0]
    got = binary.unpack_bits(words([r[0] for r in results])).reshape(rows, -1)
    want = (a < b).reshape(rows, -1)
    assert got.shape[1] == -(-want.shape[1] // 64) * 64
    assert got[:, :want.shape[1]].tolist() == want.astype(int).tolist()


def test_reduce_to_split_gives_s_at_party_0_and_y_at_parties_1_and_2() -> None:
    a = RNG.integers(-2**40, 2**40, (4, 5))
    b = RNG.integers(-2**40, 2**40, (4, 5))
    A, B = deal(a, 3), deal(b, 3)

    async def body(e: Replicated3Engine):
        await e.establish()
        s0 = e.exchange.stats.bytes_sent
        part = await e.reduce_to_split("split", e.mul_local(mine(e, A), mine(e, B)))
        return part, e.exchange.stats.bytes_sent - s0

    results, _ = run3(body)
    parts = [r[0] for r in results]
    assert parts[1].shape == (4, 5) and np.array_equal(parts[1], parts[2])
    assert replicated.to_signed(parts[0] + parts[1]).tolist() == (a * b).tolist()
    assert [r[1] for r in results] == [0, 8 * 20, 8 * 20]


def test_less_than_keeps_the_value_shape_and_the_derived_comparisons() -> None:
    a = RNG.integers(-50, 50, (3, 4))
    b = RNG.integers(-50, 50, (3, 4))
    b[0] = a[0]
    A, B = deal(a, 3), deal(b, 3)

    async def body(e: Replicated3Engine):
        x, y = mine(e, A), mine(e, B)
        return (await e.less_than("lt", x, y, 7), await e.greater_equal("ge", x, y, 7), await e.equal("eq", x, y),
                await e.less_than("b", x, y[:1], 7))

    (lt, ge, eq, bc), _ = mpc(3, body, engine="replicated3")
    assert lt.tolist() == (a < b).astype(int).tolist() and ge.tolist() == (a >= b).astype(int).tolist()
    assert eq.tolist() == (a == b).astype(int).tolist() and bc.tolist() == (a < b[:1]).astype(int).tolist()


def test_equal_zero_is_exact_on_the_whole_ring_and_costs_seven_rounds() -> None:
    x = np.concatenate([signed(EDGE + [0, 0]), RNG.integers(-(1 << 63), (1 << 63) - 1, 200),
                        signed([1 << k for k in range(63)])])
    x[200:230] = 0
    X = deal(x, 3)

    async def body(e: Replicated3Engine):
        await e.establish()
        r0, s0 = e.exchange.stats.rounds, e.exchange.stats.bytes_sent
        z = await e.equal_zero("z", mine(e, X))
        return z, e.exchange.stats.rounds - r0, e.exchange.stats.bytes_sent - s0

    results, _ = run3(body)
    assert not any(isinstance(r, Exception) for r in results), results
    assert arith([r[0] for r in results]).tolist() == (x == 0).astype(int).tolist()
    assert {r[1] for r in results} == {7}
    assert sum(r[2] for r in results) == 8 * len(x) * (6 + 5 * 3 + 4)


def test_comparison_masks_are_not_needed() -> None:
    e = Replicated3Engine(MemoryNetwork(3).exchange(0))
    assert asyncio.run(e.comparison_masks("m", 5)) is None and e.take_masks(None, 0, 5) is None


# ---- the job's side ---------------------------------------------------------------------

def test_protocol_parameters_enter_the_fingerprint() -> None:
    from mpcnode.computation.builder import CircuitBuilder

    b = CircuitBuilder("one")
    b.output("x", b.input("x", "a", 1, 0, 9), ["a"])
    shamir = Computation(circuit=b.build(), parties=("a", "b", "c"), threshold=1)
    rep = Computation(circuit=b.build(), parties=("a", "b", "c"), threshold=1, protocol="replicated3",
                      dropouts="none")
    assert protocol_parameters("replicated3")["ring"] == "Z_2^64"
    assert rep.document()["protocol"]["engine"] == "replicated3" and rep.fingerprint() != shamir.fingerprint()


def test_no_other_randomness_in_the_engine() -> None:
    root = Path(__file__).resolve().parents[2] / "mpcnode"
    for path in (root / "engines" / "replicated3.py", root / "protocols" / "binary.py"):
        text = path.read_text()
        assert not re.search(r"np\.random|import random|from random", text), path


def test_a_circuit_runs_through_the_job_runner_on_replicated3() -> None:
    """The executor and run_job with protocol replicated3: products of one level in one round,
    comparisons, equality, select, argmax, top-two and a range-checked ballot check."""
    from mpcnode.circuit import validate
    from mpcnode.computation.builder import CircuitBuilder
    from mpcnode.jobrun import run_job

    x = np.array([5, -3, 900, 7, 7, -1000])
    y = np.array([4, -3, 901, -7, 8, 1000])
    votes = np.array([0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0])           # 4 rows of 3, one invalid
    b = CircuitBuilder("rep3")
    X, Y = b.input("x", "a", 6, -1000, 1000), b.input("y", "b", 6, -1000, 1000)
    V = b.input("v", "c", 12, 0, 1)
    lt = b.lt(X, Y, 11)
    outs = {"prod": b.mul(X, Y), "dot": b.dot(X, Y), "lt": lt, "ge": b.ge(X, Y, 11), "eq": b.eq(X, Y),
            "sel": b.select(b.slice(lt, 0, 1), b.slice(X, 0, 1), b.slice(Y, 0, 1)),
            "am": b.argmax(X, 11), "tt": b.top_two(Y, 11), "valid": b.rows_valid(V, 3, True)}
    for name, arr in outs.items():
        b.output(name, arr, ["a"])
    comp = Computation(circuit=b.build(), parties=("a", "b", "c"), threshold=1, protocol="replicated3",
                       dropouts="none")
    spec = comp.job_spec("j-rep3", timeout_s=30)
    plan = validate(spec.circuit, list(spec.parties))
    net = MemoryNetwork(3, timeout_s=30)
    mine_in = [{"x": replicated.encode(x)}, {"y": replicated.encode(y)}, {"v": replicated.encode(votes)}]

    async def main():
        return await asyncio.gather(*(run_job(net.exchange(i), spec, plan, list(spec.parties), mine_in[i],
                                              lambda d: ({}, [])) for i in range(3)))

    results = asyncio.run(main())
    got = {name: arith([r.outputs[name] for r in results]).tolist() for name in outs}
    assert got["prod"] == (x * y).tolist() and got["dot"] == [int(x @ y)]
    assert got["lt"] == (x < y).astype(int).tolist() and got["ge"] == (x >= y).astype(int).tolist()
    assert got["eq"] == (x == y).astype(int).tolist() and got["sel"] == [int(y[0])]
    assert got["am"] == [2, 900] and got["tt"] == [5, 1000, 901]
    assert got["valid"] == [1, 1, 1, 0]


def test_empty_batches_cost_rounds_but_no_elements() -> None:
    async def body(e: Replicated3Engine):
        await e.establish()
        z = e.constant(e.encode(np.zeros(0, dtype=np.int64)))
        lt = await e.less_than("lt", z, z, 5)
        eq = await e.equal_zero("eq", z)
        rb = await e.random_bits("rb", 0)
        m = await e.mul("m", z, z)
        return lt, eq, rb, m

    results, _ = run3(body)
    assert not any(isinstance(r, Exception) for r in results), results
    assert all(a.shape == (0, 2) for r in results for a in r)


@pytest.mark.parametrize("kw,error", [
    (dict(parties=["a", "b", "c", "d"]), "exactly 3 compute parties"),
    (dict(parties=["a", "b", "c"], dropouts="within-threshold"), "dropouts: none"),
    (dict(parties=["a", "b", "c"], dropouts="none"), None),
    (dict(parties=["a", "b", "c"]), None),                       # dropouts default to none for replicated3
])
def test_a_scenario_naming_replicated3_needs_three_live_parties(kw, error) -> None:
    from pydantic import ValidationError

    from mpcnode.computation.common import Common

    if error is None:
        assert Common(name="x", recipients=["a"], protocol="replicated3", **kw).t == 1
    else:
        with pytest.raises(ValidationError, match=error):
            Common(name="x", recipients=["a"], protocol="replicated3", **kw)


@pytest.mark.parametrize("component", [0, 1, 2])
def test_a_client_whose_two_copies_of_a_component_differ_is_dropped_by_every_node(component: int) -> None:
    """A client shares x = x0 + x1 + x2 and gives each component to its two holders. One that gives
    them different copies is caught by Engine.consistent_rows (each node compares the components
    it shares with its neighbours, then all exchange verdicts) and its row fails at all three
    nodes; the honest clients' rows pass. Two rounds for the batch."""
    import asyncio

    from mpcnode import replicated
    from mpcnode.engines.replicated3 import Replicated3Engine
    from mpcnode.exchange import MemoryNetwork

    clients = ["c1", "liar", "c3"]
    shares = {c: replicated.share(replicated.encode([1, 0, 1])) for c in clients}
    # the liar's component `component` differs between its holders (party component: slot 0,
    # party component - 1: slot 1)
    shares["liar"][component][:, 0] += np.uint64(1)
    net = MemoryNetwork(3)
    engines = [Replicated3Engine(net.exchange(i), 1) for i in range(3)]

    async def body(e):
        ok = await e.consistent_rows("c", np.stack([shares[c][e.party] for c in clients]))
        return ok.tolist(), e.exchange.stats.rounds

    async def main():
        return await asyncio.gather(*(body(e) for e in engines))

    results = asyncio.run(main())
    assert [r for r, _ in results] == [[True, False, True]] * 3
    assert [n for _, n in results] == [2, 2, 2]           # the components round and the verdicts round
