"""Circuit IR: validation and the executor on the in-memory network (fingerprints: test_spec.py)."""
from __future__ import annotations

import numpy as np
import pytest

from mpcnode.computation.builder import CircuitBuilder
from mpcnode import field, shamir
from mpcnode.circuit import CircuitError, validate
from mpcnode.executor import Executor
from mpcnode.engines import Engine
from tests.unit.pair_engine import PairEngine, shamir_share
from parley.v1 import circuit_pb2 as cpb

PARTIES = ["alpha", "bravo", "charlie", "delta"]


def base() -> cpb.Circuit:
    """A small valid circuit: two node inputs, a product, a sum, one output."""
    b = CircuitBuilder("base")
    x = b.input("x", "alpha", 3, -100, 100)
    y = b.input("y", "bravo", 3, -100, 100)
    b.output("total", b.sum(b.mul(x, y)), ["alpha"])
    return b.build()


def test_the_base_circuit_is_valid() -> None:
    plan = validate(base(), PARTIES)
    assert plan.depth == 1
    assert [[op.kind for op in level] for level in plan.levels] == [[], [cpb.OP_MUL, cpb.OP_SUM]]


def _mutated(change) -> cpb.Circuit:
    c = base()
    change(c)
    return c


BAD = {
    "undefined argument": (lambda c: c.ops.add(out="z", kind=cpb.OP_ADD, args=["x", "nope"]), r"'nope' is not defined"),
    "use before definition": (lambda c: c.ops.insert(0, cpb.Op(out="early", kind=cpb.OP_NEG, args=["sum_2"])),
                              r"not defined before use"),
    "duplicate op name": (lambda c: c.ops.add(out="x", kind=cpb.OP_NEG, args=["y"]), r"'x' defined twice"),
    "duplicate input name": (lambda c: c.inputs.add(name="y", owner="charlie", length=1, lo=0, hi=1,
                                                    source=cpb.INPUT_SOURCE_NODE), r"'y' defined twice"),
    "bad array name": (lambda c: c.ops.add(out="has space", kind=cpb.OP_NEG, args=["x"]), r"bad array name"),
    "empty array name": (lambda c: c.ops.add(out="", kind=cpb.OP_NEG, args=["x"]), r"bad array name"),
    "too few args": (lambda c: c.ops.add(out="z", kind=cpb.OP_MUL, args=["x"]), r"takes 2 arguments, got 1"),
    "too many args": (lambda c: c.ops.add(out="z", kind=cpb.OP_NEG, args=["x", "y"]), r"takes 1 arguments, got 2"),
    "select arity": (lambda c: c.ops.add(out="z", kind=cpb.OP_SELECT, args=["x", "y"]), r"takes 3 arguments"),
    "empty concat": (lambda c: c.ops.add(out="z", kind=cpb.OP_CONCAT), r"concat needs arguments"),
    "unknown kind": (lambda c: c.ops.add(out="z", kind=cpb.OP_UNSPECIFIED, args=["x"]), r"unknown op kind"),
    "bit_length zero": (lambda c: c.ops.add(out="z", kind=cpb.OP_LT, args=["x", "y"], bit_length=0),
                        r"bit_length must be 1\.\.62"),
    "bit_length too big": (lambda c: c.ops.add(out="z", kind=cpb.OP_GE, args=["x", "y"], bit_length=63),
                           r"bit_length must be 1\.\.62"),
    # within what some engine takes, beyond Shamir's (validate's default protocol): ranges.py
    "bit_length too big for shamir": (lambda c: c.ops.add(out="z", kind=cpb.OP_GE, args=["x", "y"], bit_length=60),
                                      r"op \d+ \(z, ge\): bit_length 60 exceeds the shamir engine's maximum 59"),
    "argmax bit_length": (lambda c: c.ops.add(out="z", kind=cpb.OP_ARGMAX, args=["x"]), r"bit_length"),
    "constants missing": (lambda c: c.ops.add(out="z", kind=cpb.OP_ADD_CONST, args=["x"]), r"needs constants"),
    "slice ints": (lambda c: c.ops.add(out="z", kind=cpb.OP_SLICE, args=["x"], ints=[0, 1]), r"start, stop, step"),
    "slice step": (lambda c: c.ops.add(out="z", kind=cpb.OP_SLICE, args=["x"], ints=[0, 1, 0]),
                   r"step must be positive"),
    "width": (lambda c: c.ops.add(out="z", kind=cpb.OP_RESHAPE_SUM, args=["x"], ints=[0]), r"positive width"),
    "rows_valid": (lambda c: c.ops.add(out="z", kind=cpb.OP_ROWS_VALID, args=["x"], ints=[3, 2]), r"rows_valid takes"),
    "no outputs": (lambda c: c.ClearField("outputs"), r"circuit has no outputs"),
    "output undefined": (lambda c: c.outputs.add(name="o2", value="ghost", recipients=["alpha"]),
                         r"output o2: value 'ghost' is not defined"),
    "output without recipients": (lambda c: c.outputs.add(name="o2", value="x"), r"output o2: no recipients"),
    "output twice": (lambda c: c.outputs.add(name="total", value="x", recipients=["alpha"]), r"defined twice"),
    "no name": (lambda c: setattr(c, "name", ""), r"circuit has no name"),
    "owner not a party": (lambda c: setattr(c.inputs[0], "owner", "mallory"), r"'mallory' is not a compute party"),
    "unknown source": (lambda c: setattr(c.inputs[0], "source", cpb.INPUT_SOURCE_UNSPECIFIED), r"unknown source"),
    "clients missing": (lambda c: setattr(c.inputs[0], "source", cpb.INPUT_SOURCE_CLIENTS), r"no input clients"),
    "zero length": (lambda c: setattr(c.inputs[0], "length", 0), r"length must be at least 1"),
    "lo above hi": (lambda c: (setattr(c.inputs[0], "lo", 5), setattr(c.inputs[0], "hi", 4)), r"lo=5 > hi=4"),
    "hi out of range": (lambda c: setattr(c.inputs[0], "hi", 1 << 59), r"exceeds the field's signed range"),
    "lo out of range": (lambda c: setattr(c.inputs[0], "lo", -(1 << 59)), r"exceeds the field's signed range"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_validate_rejects(case: str) -> None:
    change, message = BAD[case]
    with pytest.raises(CircuitError, match=message):
        validate(_mutated(change), PARTIES)


def test_validate_accepts_the_largest_signed_bounds() -> None:
    """Inputs may be declared up to +-(2^59 - 1); what the ops make of them is the range check's
    (computation/ranges.py): here the product of two such inputs could wrap."""
    b = CircuitBuilder("big")
    x = b.input("x", "alpha", 3, -(1 << 59) + 1, (1 << 59) - 1)
    b.output("x", b.sum(b.input("w", "bravo", 1, 0, 1)), ["alpha"])
    b.output("neg", -x, ["alpha"])
    validate(b.build(), PARTIES)
    c = _mutated(lambda c: (setattr(c.inputs[0], "lo", -(1 << 59) + 1), setattr(c.inputs[0], "hi", (1 << 59) - 1)))
    with pytest.raises(CircuitError, match=r"op 0 \(mul_1, mul\): its value could reach -about 2\^65"):
        validate(c, PARTIES)


def test_validate_rejects_too_many_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    import mpcnode.circuit as circuit_mod

    monkeypatch.setattr(circuit_mod, "MAX_OPS", 1)
    with pytest.raises(CircuitError, match="more than 1"):
        validate(base(), PARTIES)


# ---- executor ---------------------------------------------------------------------------------

def _executor_circuit() -> tuple[cpb.Circuit, dict[str, str]]:
    """Every linear op and every product kind at level 1, plus one level-2 product."""
    b = CircuitBuilder("exec")
    x = b.input("x", "alpha", 6, -1000, 1000)
    y = b.input("y", "bravo", 6, -1000, 1000)
    z = b.input("z", "charlie", 2, -1000, 1000)
    bit = b.input("bit", "delta", 1, 0, 1)
    w = b.input("w", "delta", 2, -50, 50)
    outs = {
        "add": b.add(x, y), "sub": b.sub(x, y), "add_const": b.add(x, 7), "sub_const": b.sub(x, 7),
        "neg": -x, "scale": b.scale(x, -3), "scale_vec": b.scale(x, [1, 2, 3, 4, 5, 6]), "sum": b.sum(y),
        "concat": b.concat([x, z, y]), "slice": b.slice(b.concat([x, z]), 1, 7, 2), "index": x[2],
        "tail": x[4:], "column_sums": b.column_sums(x, 3), "repeat": b.repeat(b.sum(z), 3),
        "count_rows": b.count_rows(x, 2), "add_scalar": b.add(x, b.sum(z)),
        "mul": b.mul(x, y), "mul_scalar": b.mul(b.sum(z), y), "dot": b.dot(x, y),
        "select": b.select(bit, x, y), "select_scalar": b.select(bit, z[0], z[1]),
        "mul_rows": b.mul_rows(x, 3, w),
    }
    outs["level2"] = b.mul(outs["mul"], outs["sub"])
    names = {}
    for name, arr in outs.items():
        b.output(name, arr, ["alpha"])
        names[name] = arr.name
    return b.build(), names


def _plaintext(x, y, z, bit, w) -> dict[str, np.ndarray]:
    xz = np.concatenate([x, z])
    return {
        "add": x + y, "sub": x - y, "add_const": x + 7, "sub_const": x - 7, "neg": -x, "scale": -3 * x,
        "scale_vec": x * np.arange(1, 7), "sum": np.array([y.sum()]), "concat": np.concatenate([x, z, y]),
        "slice": xz[1:7:2], "index": x[2:3], "tail": x[4:], "column_sums": x.reshape(-1, 3).sum(axis=0),
        "repeat": np.repeat(z.sum(), 3), "count_rows": np.array([3]), "add_scalar": x + z.sum(),
        "mul": x * y, "mul_scalar": z.sum() * y, "dot": np.array([x @ y]),
        "select": x if bit[0] else y, "select_scalar": z[0:1] if bit[0] else z[1:2],
        "mul_rows": (x.reshape(-1, 3) * w[:, None]).reshape(-1), "level2": x * y * (x - y),
    }


async def _execute(parties, circuit: cpb.Circuit, values: dict[str, np.ndarray], n: int, t: int,
                   party_names: list[str], engine: str = "shamir"):
    """Run the circuit on every party (on the Shamir engine, or on the two-component test engine
    for engine="pair") and reconstruct every output outside the protocol."""
    plan = validate(circuit, party_names)
    owners = {d.name: d.owner for d in circuit.inputs}

    async def body(e: Engine) -> dict[str, np.ndarray]:
        me = party_names[e.party]
        mine = {k: field.asfield(v) for k, v in values.items() if owners[k] == me}
        ex = Executor(e, circuit, plan)
        shares = await ex.share_node_inputs(party_names, mine)
        return await ex.run(shares)

    results, net, engines = await parties(n, t, body, make=PairEngine if engine == "pair" else None)
    opened = {name: field.to_signed(shamir.reconstruct_checked(
        {i: shamir_share(e, r[name]) for i, (e, r) in enumerate(zip(engines, results))}, t)) for name in results[0]}
    return opened, plan, engines


@pytest.mark.parametrize("engine", ["shamir", "pair"])
@pytest.mark.parametrize("bit", [0, 1])
@pytest.mark.parametrize("n,t", [(4, 1), (5, 2), (7, 3)])
async def test_executor_matches_numpy(parties, n: int, t: int, bit: int, engine: str) -> None:
    names = PARTIES + [f"extra{i}" for i in range(n - len(PARTIES))]
    circuit, _ = _executor_circuit()
    rng = np.random.default_rng(n * 2 + bit)
    values = {"x": rng.integers(-1000, 1001, 6), "y": rng.integers(-1000, 1001, 6), "z": rng.integers(-1000, 1001, 2),
              "bit": np.array([bit]), "w": rng.integers(-50, 51, 2)}
    values["x"][0], values["y"][0] = -1000, -1000
    opened, plan, engines = await _execute(parties, circuit, values, n, t, names, engine)
    want = _plaintext(**values)
    assert set(opened) == set(want)
    for name, expected in want.items():
        assert opened[name].tolist() == np.asarray(expected).reshape(-1).tolist(), name
    # key round, input sharing one round; all products of level 1 share ONE round, level 2 one more
    assert plan.depth == 2
    assert [e.exchange.stats.rounds for e in engines] == [2 + plan.depth] * n


@pytest.mark.parametrize("engine", ["shamir", "pair"])
async def test_executor_comparisons_tournaments_and_ballots_match_numpy(parties, engine: str) -> None:
    """LT, GE, EQ, ARGMAX, TOP_TWO and ROWS_VALID through the executor, against numpy. On the pair
    engine this shows the executor's batching and slicing of these ops never cut into a share."""
    b = CircuitBuilder("interactive")
    x = b.input("x", "alpha", 6, -100, 100)
    y = b.input("y", "bravo", 6, -100, 100)
    votes = b.input("votes", "charlie", 8, -1, 2)           # four ballots of two options
    outs = {"lt": b.lt(x, y, 8), "ge": b.ge(x, y, 8), "lt_scalar": b.lt(x[0], y, 8), "eq": b.eq(x, y),
            "argmax": b.argmax(x, 8), "top_two": b.top_two(y, 8), "valid": b.rows_valid(votes, 2, True)}
    outs["picked"] = b.select(outs["lt"][0], x, y)           # a level-2 product of a comparison
    for name, arr in outs.items():
        b.output(name, arr, ["alpha"])
    xv, yv = np.array([5, -7, 9, 9, 0, 100]), np.array([5, 3, -9, 40, 0, 100])
    vv = np.array([0, 1, 1, 1, 2, -1, 1, 0])
    opened, plan, _ = await _execute(parties, b.build(), {"x": xv, "y": yv, "votes": vv}, 4, 1, PARTIES, engine)
    rows = vv.reshape(-1, 2)
    top = sorted(yv)
    want = {"lt": xv < yv, "ge": xv >= yv, "lt_scalar": xv[0] < yv, "eq": xv == yv,
            "argmax": [np.argmax(xv), xv.max()], "top_two": [np.argmax(yv), top[-1], top[-2]],
            "valid": np.all((rows == 0) | (rows == 1), axis=1) & (rows.sum(axis=1) == 1),
            "picked": xv if xv[0] < yv[0] else yv}
    for name, expected in want.items():
        assert opened[name].tolist() == np.asarray(expected).astype(np.int64).reshape(-1).tolist(), name


async def test_products_of_one_level_use_exactly_one_round(parties) -> None:
    b = CircuitBuilder("one-level")
    x = b.input("x", "alpha", 4, -10, 10)
    y = b.input("y", "bravo", 4, -10, 10)
    c = b.input("c", "charlie", 1, 0, 1)
    prods = [b.mul(x, y), b.mul(x, x), b.dot(x, y), b.dot(y, y), b.select(c, x, y), b.mul_rows(x, 2, y[0:2]),
             b.mul(b.add(x, y), b.sub(x, y))]
    b.output("all", b.concat(prods), ["alpha"])
    circuit = b.build()
    xv, yv, cv = np.array([1, -2, 3, -4]), np.array([-5, 6, 7, -8]), np.array([1])
    opened, plan, engines = await _execute(parties, circuit, {"x": xv, "y": yv, "c": cv}, 4, 1, PARTIES)
    assert plan.depth == 1
    want = np.concatenate([xv * yv, xv * xv, [xv @ yv], [yv @ yv], xv, (xv.reshape(2, 2) * yv[:2, None]).reshape(-1),
                           (xv + yv) * (xv - yv)])
    assert opened["all"].tolist() == want.tolist()
    for e in engines:
        assert e.exchange.stats.rounds == 3  # keys + inputs + one round for all seven products
        assert e.exchange.stats.labels == {"keys", "inputs/node", "L1/prod"}


async def test_linear_only_circuit_needs_no_round_after_inputs(parties) -> None:
    b = CircuitBuilder("linear")
    x = b.input("x", "alpha", 3, -10, 10)
    y = b.input("y", "delta", 3, -10, 10)
    b.output("out", b.sum(b.scale(b.add(x, y), 2)), ["bravo"])
    opened, plan, engines = await _execute(parties, b.build(), {"x": np.array([1, 2, 3]), "y": np.array([-4, 5, 6])},
                                            4, 1, PARTIES)
    assert opened["out"].tolist() == [26]
    assert plan.depth == 0 and all(e.exchange.stats.rounds == 2 for e in engines)  # keys + inputs


async def test_executor_rejects_mismatched_lengths(parties) -> None:
    b = CircuitBuilder("bad")
    x = b.input("x", "alpha", 3, -10, 10)
    y = b.input("y", "bravo", 2, -10, 10)
    b.output("out", b.add(x, y), ["alpha"])
    with pytest.raises(ValueError, match="lengths 3 and 2 do not match"):
        await _execute(parties, b.build(), {"x": np.array([1, 2, 3]), "y": np.array([1, 2])}, 4, 1, PARTIES)


@pytest.mark.parametrize("engine", ["shamir", "pair"])
async def test_column_sums_of_row_products_reduce_only_the_sums(parties, engine: str) -> None:
    """A tally (MUL_ROWS used only by its column sums) sums the local products before the one
    reduction round: the same result, with K elements reduced instead of N K. When the row
    products are used elsewhere too, every product is reduced."""
    rng = np.random.default_rng(5)
    x, w = rng.integers(-9, 10, 12 * 4), rng.integers(0, 2, 12)

    def circuit(also_rows: bool) -> cpb.Circuit:
        b = CircuitBuilder("tally")
        rows = b.mul_rows(b.input("x", "alpha", 48, -9, 9), 4, b.input("w", "bravo", 12, 0, 1))
        b.output("tally", b.column_sums(rows, 4), ["alpha"])
        if also_rows:
            b.output("rows", rows, ["alpha"])
        return b.build()

    want = (x.reshape(12, 4) * w[:, None]).sum(axis=0)
    sent = {}
    for also in (False, True):
        opened, _, engines = await _execute(parties, circuit(also), {"x": x, "w": w}, 3, 1,
                                            ["alpha", "bravo", "charlie"], engine)
        assert opened["tally"].tolist() == want.tolist()
        sent[also] = sum(e.exchange.stats.bytes_sent for e in engines)
    # the inputs (60 values) cost the same both times; the products 4 vs 48 elements per reducer
    assert sent[True] - sent[False] >= 3 * (48 - 4) * 8


def test_row_tags_only_on_a_tournament_over_the_client_input_itself() -> None:
    def auction(change=None) -> cpb.Circuit:
        b = CircuitBuilder("tags")
        bids = b.client_input("bids", ["c1", "c2", "c3"], 1, 0, 100)
        top = b.argmax(bids, 8, tagged=True)
        b.output("o", top, ["alpha"])
        c = b.build()
        if change:
            change(c)
        return c

    validate(auction(), PARTIES)
    bad = {
        "not a client input": (lambda c: setattr(c.ops[0], "tags", "nope"), "tags must name a client input"),
        "rows of two values": (lambda c: setattr(c.inputs[0], "length", 2), "one value per row"),
        "not a tournament": (lambda c: c.ops.add(out="s", kind=cpb.OP_SUM, args=["bids"], tags="bids"),
                             "only argmax and top_two carry row tags"),
        "another argument": (lambda c: (c.ops.add(out="d", kind=cpb.OP_NEG, args=["bids"]),
                                        c.ops.add(out="m", kind=cpb.OP_ARGMAX, args=["d"], bit_length=8,
                                                  tags="bids")),
                             "must take 'bids' itself"),
    }
    for name, (change, message) in bad.items():
        with pytest.raises(CircuitError, match=message):
            validate(auction(change), PARTIES)
