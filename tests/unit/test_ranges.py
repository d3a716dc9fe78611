"""Wrap checks (computation/ranges.py): the refusals, the shipped scenarios, the engine table, and
soundness: on random circuits and inputs, every value a circuit computes in plain integers lies in
the interval the analysis gave its position."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mpcnode import field
from mpcnode.circuit import CircuitError, validate
from mpcnode.computation import ranges
from mpcnode.computation.builder import CircuitBuilder
from mpcnode.computation.scenario import load_scenario
from mpcnode.engines import ENGINES
from parley.v1 import circuit_pb2 as cpb

REPO = Path(__file__).resolve().parents[2]
PARTIES = ["a", "b", "c"]
BIG = (1 << 59) - 1


def test_a_sum_of_many_large_inputs_wraps_on_shamir_not_on_replicated3() -> None:
    b = CircuitBuilder("sum")
    b.output("total", b.sum(b.input("x", "a", 8, -BIG, BIG)), ["a"])
    c = b.build()
    with pytest.raises(CircuitError) as err:
        validate(c, PARTIES, "shamir")
    assert str(err.value) == ("op 0 (sum_1, sum): its value could reach -4611686018427387896, outside the shamir "
                              "engine's signed range |v| < (p - 1)/2 = 2^60 - 1")
    validate(c, PARTIES, "replicated3")      # 8 (2^59 - 1) < 2^63
    b = CircuitBuilder("sum")
    b.output("total", b.sum(b.input("x", "a", 17, -BIG, BIG)), ["a"])
    with pytest.raises(CircuitError, match=r"op 0 \(sum_1, sum\): .* the replicated3 engine's signed range \|v\| < 2\^63"):
        validate(b.build(), PARTIES, "replicated3")


def test_a_product_that_overflows_is_refused_on_every_engine() -> None:
    b = CircuitBuilder("prod")
    x, y = b.input("x", "a", 1, 0, 1 << 32), b.input("y", "b", 1, -5, 1 << 31)
    b.output("p", b.mul(x, y), ["a"])
    for protocol in ("shamir", "replicated3"):   # 2^63: at the replicated bound, far past Shamir's
        with pytest.raises(CircuitError, match=r"op 0 \(mul_1, mul\): its value could reach 9223372036854775808, "
                                               rf"outside the {protocol} engine's signed range"):
            validate(b.build(), PARTIES, protocol)
    b = CircuitBuilder("prod")
    x, y = b.input("x", "a", 1, 0, 1 << 32), b.input("y", "b", 1, -5, (1 << 27) - 1)
    b.output("p", b.mul(x, y), ["a"])
    validate(b.build(), PARTIES, "shamir")


def test_a_comparison_operand_beyond_its_bit_length_is_refused() -> None:
    def circuit(hi: int, bits: int, lo: int = 0) -> cpb.Circuit:
        b = CircuitBuilder("cmp")
        x, y = b.input("x", "a", 2, lo, hi), b.input("y", "b", 2, 0, 3)
        b.output("lt", b.lt(x, y, bits), ["a"])
        return b.build()

    validate(circuit(1023, 10), PARTIES)
    validate(circuit(1023, 10, lo=-1024), PARTIES)      # top_two's sentinel -(2^bit_length) is allowed
    with pytest.raises(CircuitError) as err:
        validate(circuit(1024, 10), PARTIES)
    assert str(err.value) == "op 0 (lt_1, lt): an operand could reach 1024, outside |v| < 2^10 of its bit_length 10"
    with pytest.raises(CircuitError, match=r"an operand could reach -1025"):
        validate(circuit(0, 10, lo=-1025), PARTIES)
    # a derived operand: the sum of the inputs, compared at too few bits
    b = CircuitBuilder("cmp")
    s = b.sum(b.input("x", "a", 4, 0, 255))
    b.output("big", b.argmax(b.concat([s, s]), 9), ["a"])
    with pytest.raises(CircuitError, match=r"op 2 \(argmax_3, argmax\): an operand could reach 1020"):
        validate(b.build(), PARTIES)


def test_bit_length_beyond_the_engines_maximum() -> None:
    b = CircuitBuilder("cmp")
    x = b.input("x", "a", 1, 0, 5)
    b.output("ge", b.ge(x, x, 61), ["a"])
    with pytest.raises(CircuitError, match=r"op 0 \(ge_1, ge\): bit_length 61 exceeds the shamir engine's maximum 59"):
        validate(b.build(), PARTIES, "shamir")
    validate(b.build(), PARTIES, "replicated3")


def test_client_inputs_use_their_declared_range_and_any_number_of_rows() -> None:
    b = CircuitBuilder("clients")
    rows = b.client_input("bids", ["c1", "c2", "c3", "c4"], 2, -5, 10)
    b.output("s", b.sum(rows), ["a"])
    b.output("n", b.count_rows(rows, 2), ["a"])
    b.output("cols", b.column_sums(rows, 2), ["a"])
    b.output("top", b.top_two(rows, 4), ["a"])
    env = ranges.analyse(b.build(), "shamir")
    assert env["sum_1"].runs == ((1, -40, 80),)
    assert env["count_rows_2"].runs == ((1, 0, 4),)
    assert env["reshape_sum_3"].runs == ((2, -20, 40),)
    # [index, max, second]; with one submitted row the second is -(2^bit_length), and with none
    # (nobody bid) the max is too (executor._empty_tournament)
    assert env["top_two_4"].runs == ((1, 0, 7), (2, -16, 10))


def test_per_position_intervals_survive_concat_and_slice() -> None:
    b = CircuitBuilder("pos")
    x, y = b.input("x", "a", 3, 0, 1), b.input("y", "b", 2, -1000, 1000)
    cat = b.concat([x, y, x])
    b.output("mid", b.scale(cat[3:6], 1 << 40), ["a"])
    b.output("odd", cat[1::2], ["a"])
    env = ranges.analyse(b.build(), "shamir")
    # cat = x x x y y x x x: [3:6] is y y x, [1::2] is x y x x
    assert env["mul_const_3"].runs == ((2, -1000 << 40, 1000 << 40), (1, 0, 1 << 40))
    assert env["slice_4"].runs == ((1, 0, 1), (1, -1000, 1000), (2, 0, 1))


@pytest.mark.parametrize("protocol", sorted(ranges.DOMAINS))
def test_every_shipped_scenario_passes(protocol: str) -> None:
    for path in sorted((REPO / "scenarios").glob("*.yaml")):
        sc = load_scenario(path)
        if sc.kind in ("model", "predict") and protocol != "replicated3":
            with pytest.raises(CircuitError, match="tree models run on the replicated3 engine"):
                validate(sc.computation().circuit, sc.parties, protocol)
            continue
        validate(sc.computation().circuit, sc.parties, protocol)


def test_the_table_matches_every_registered_engine() -> None:
    assert ranges.DOMAINS["shamir"].bound == (field.P - 1) // 2
    for name, engine in ENGINES.items():
        d = ranges.DOMAINS[name]
        assert d.max_bit_length == engine.max_bit_length, name
        assert d.bound == ((engine.field_modulus - 1) // 2 if engine.field_modulus else 1 << 63), name


# ---- soundness on random circuits -------------------------------------------------------------

def _plain(op: cpb.Op, args: list[list[int]]) -> list[int]:
    """What the executor computes, in Python integers (no modulus)."""
    k, a = op.kind, args[0] if args else []

    def bc(x: list[int], y: list[int]) -> tuple[list[int], list[int]]:
        if len(x) == len(y):
            return x, y
        return (x * len(y), y) if len(x) == 1 else (x, y * len(x))

    if k in (cpb.OP_ADD, cpb.OP_SUB, cpb.OP_MUL, cpb.OP_LT, cpb.OP_GE, cpb.OP_EQ):
        f = {cpb.OP_ADD: lambda u, v: u + v, cpb.OP_SUB: lambda u, v: u - v, cpb.OP_MUL: lambda u, v: u * v,
             cpb.OP_LT: lambda u, v: int(u < v), cpb.OP_GE: lambda u, v: int(u >= v),
             cpb.OP_EQ: lambda u, v: int(u == v)}[k]
        return [f(u, v) for u, v in zip(*bc(a, args[1]))]
    if k == cpb.OP_NEG:
        return [-u for u in a]
    if k in (cpb.OP_ADD_CONST, cpb.OP_MUL_CONST):
        cs = list(op.consts) * (len(a) if len(op.consts) == 1 else 1)
        return [u + c if k == cpb.OP_ADD_CONST else u * c for u, c in zip(a, cs)]
    if k == cpb.OP_SUM:
        return [sum(a)]
    if k == cpb.OP_DOT:
        return [sum(u * v for u, v in zip(a, args[1]))]
    if k == cpb.OP_CONCAT:
        return [u for x in args for u in x]
    if k == cpb.OP_SLICE:
        return a[op.ints[0]:op.ints[1]:op.ints[2]]
    if k == cpb.OP_SELECT:
        x, y = bc(args[1], args[2])
        return [v + a[0] * (u - v) for u, v in zip(x, y)]
    if k in (cpb.OP_ARGMAX, cpb.OP_TOP_TWO):
        i = a.index(max(a))
        if k == cpb.OP_ARGMAX:
            return [i, a[i]]
        others = a[:i] + a[i + 1:]
        return [i, a[i], max(others) if others else -(1 << op.bit_length)]
    w = op.ints[0]
    rows = [a[r:r + w] for r in range(0, len(a), w)]
    if k == cpb.OP_RESHAPE_SUM:
        return [sum(r[j] for r in rows) for j in range(w)]
    if k == cpb.OP_ROWS_VALID:
        return [int(all(u in (0, 1) for u in r) and (not op.ints[1] or sum(r) == 1)) for r in rows]
    if k == cpb.OP_MUL_ROWS:
        return [u * s for r, s in zip(rows, args[1]) for u in r]
    if k == cpb.OP_COUNT_ROWS:
        return [len(rows)]
    if k == cpb.OP_REPEAT:
        return a * op.ints[0]
    raise AssertionError(k)


def _random_circuit(rng: np.random.Generator) -> cpb.Circuit:
    """Up to 6 random ops over node inputs of lengths 1-4 and a client input of 0-3 rows of 2
    (only fixed-length results of the client rows are used further: sums, counts, column sums)."""
    b = CircuitBuilder("random")
    arrays: dict[str, tuple[object, int]] = {}     # name -> (Arr, length)
    for i in range(int(rng.integers(1, 4))):
        n = int(rng.integers(1, 5))
        lo = int(rng.integers(-60, 30))
        arr = b.input(f"x{i}", PARTIES[i % 3], n, lo, lo + int(rng.integers(0, 60)))
        arrays[arr.name] = (arr, n)
    rows_lo = int(rng.integers(-2, 2))
    rows = b.client_input("rows", ["c1", "c2", "c3"], 2, rows_lo, rows_lo + int(rng.integers(0, 3)))
    last = None
    for _ in range(int(rng.integers(1, 7))):
        names = sorted(arrays)
        a, n = arrays[names[int(rng.integers(len(names)))]]
        fits = sorted(x for x, (_, m) in arrays.items() if m in (n, 1))
        other, m = arrays[fits[int(rng.integers(len(fits)))]]
        choice = int(rng.integers(0, 19))
        if choice == 0:
            out = b.add(a, other)
        elif choice == 1:
            out = b.sub(a, other)
        elif choice == 2:
            out = b.mul(a, other)
        elif choice == 3:
            out = -a
        elif choice == 4:
            out = b.add(a, int(rng.integers(-9, 9)))
        elif choice == 5:
            out = b.scale(a, [int(v) for v in rng.integers(-4, 5, size=n)] if rng.integers(2) else int(rng.integers(-4, 5)))
        elif choice == 6:
            out = b.sum(a)
        elif choice == 7:
            out = b.concat([a, other, a])
        elif choice == 8:
            start, stop = sorted(int(v) for v in rng.integers(-n - 1, n + 2, size=2))
            step = int(rng.integers(1, 3))
            if not range(*slice(start, stop, step).indices(n)):
                continue
            out = b.slice(a, start, stop, step)
        elif choice == 9:
            out = b.lt(a, other, 62)
        elif choice == 10:
            out = b.eq(a, other)
        elif choice == 11 and m == n:
            out = b.dot(a, other)
        elif choice == 12:
            bit = b.lt(a, other, 62)[0:1] if rng.integers(2) else b.sum(a)   # a bit, or not one
            out = b.select(bit, a, other)
        elif choice == 13:
            out = b.argmax(a, 62)
        elif choice == 14:
            out = b.top_two(a, 62)
        elif choice == 15:
            out = b.column_sums(rows, 2) if rng.integers(2) else b.sum(b.mul_rows(rows, 2, b.rows_valid(rows, 2, True)))
        elif choice == 16:
            out = b.count_rows(rows, 2)
        elif choice == 17 and n == 1:
            out = b.repeat(a, 3)
        else:
            out = b.sub(b.count_rows(rows, 2), b.sum(b.rows_valid(rows, 2, False)))
        zeros = {d.name: [0] * d.length for d in b.c.inputs}
        arrays[out.name] = (out, len(_plain_lengths(b.c, zeros)[out.name]))
        last = out
    b.output("out", last if last is not None else rows, ["a"])
    return b.build()


def _plain_lengths(c: cpb.Circuit, env: dict[str, list[int]]) -> dict[str, list[int]]:
    env = dict(env)
    for op in c.ops:
        env[op.out] = _plain(op, [env[x] for x in op.args])
    return env


def test_the_intervals_hold_every_value_a_random_circuit_computes() -> None:
    rng = np.random.default_rng(20260502)
    checked = 0
    for _ in range(300):
        c = _random_circuit(rng)
        try:
            env = ranges.analyse(c, "replicated3")
        except ranges.RangeError:
            continue
        checked += 1
        for trial in range(4):
            values: dict[str, list[int]] = {}
            for d in c.inputs:
                count = d.length if d.source == cpb.INPUT_SOURCE_NODE else d.length * int(rng.integers(0, 4))
                pick = [d.lo, d.hi] if trial == 0 else list(range(d.lo, d.hi + 1))
                values[d.name] = [int(v) for v in rng.choice(pick, size=count)]
            try:
                plain = _plain_lengths(c, values)
            except (ValueError, IndexError):   # an empty tournament: the executor refuses it too
                continue
            for name, got in plain.items():
                v = env[name]
                if v.fixed:
                    assert len(got) == v.length, name
                    bounds = [(lo, hi) for n, lo, hi in v.runs for _ in range(n)]
                else:
                    assert len(got) <= v.length, name
                    bounds = [v.hull()] * len(got)
                for u, (lo, hi) in zip(got, bounds):
                    assert lo <= u <= hi, (name, u, lo, hi, list(c.ops))
    assert checked > 150
