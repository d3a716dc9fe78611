"""The wide replicated3 engine (mpcnode/engines/replicated3_wide.py) against exact integer math,
three parties in one process over the in-memory exchange."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mpcnode import replicated, ring128 as R
from mpcnode.engines import Replicated3Engine, Replicated3WideEngine, engine_for
from mpcnode.engines.replicated3_wide import trunc_leak_bits
from mpcnode.exchange import MemoryNetwork

RNG = np.random.default_rng(20261127)
LIFT_EDGE = [-(1 << 62), (1 << 62) - 1, 0, -1, 1, -(1 << 62) + 1, (1 << 62) - 2, 1 << 61, -(1 << 61)]


def run_all(body, timeout_s: float = 120.0):
    """body(engine) on three wide engines after establish: (every party's result, the engines)."""
    net = MemoryNetwork(3, timeout_s=timeout_s)
    engines = [Replicated3WideEngine(net.exchange(i)) for i in range(3)]

    async def one(e):
        await e.establish()
        return await body(e)

    async def main():
        return await asyncio.gather(*(one(e) for e in engines))

    return asyncio.run(main()), engines


def run3(body, timeout_s: float = 120.0):
    """body(engine) on three wide engines after establish; returns party 0's result (the opened
    values every party gets are checked equal by `open` itself)."""
    results, engines = run_all(body, timeout_s)
    return results[0], engines


async def share(e: Replicated3WideEngine, label: str, ints: list[int]):
    """Party 0 shares Python ints (any size below 2^127 in magnitude)."""
    v = R.from_ints(ints)
    return (await e.share_inputs(label, {0: v if e.party == 0 else None}, {0: v.shape}))[0]


async def reveal(e: Replicated3WideEngine, label: str, x) -> list[int]:
    return R.to_signed_ints(await e.open(label, x, purpose="output")).reshape(-1).tolist()


def bounded(bits: int, n: int) -> list[int]:
    """Random signed values with |v| < 2^bits, plus the boundaries."""
    hi = (1 << bits) - 1
    vals = [int.from_bytes(RNG.bytes(16), "little") % (1 << bits) * (1 if RNG.random() < .5 else -1) for _ in range(n)]
    return vals + [hi, -hi, 0, -1, 1, hi - 1, -(hi - 1)]


def test_engine_for_builds_the_wide_engine_and_refuses_other_widths() -> None:
    net = MemoryNetwork(3)
    assert isinstance(engine_for("replicated3", net.exchange(0), 1, ring_bits=128), Replicated3WideEngine)
    assert type(engine_for("replicated3", net.exchange(1), 1)) is Replicated3Engine
    assert type(engine_for("replicated3", net.exchange(2), 1, ring_bits=0)) is Replicated3Engine
    with pytest.raises(ValueError, match="128"):
        engine_for("shamir", net.exchange(0), 1, ring_bits=128)
    e = Replicated3WideEngine(MemoryNetwork(3).exchange(0))
    assert (e.name, e.ring_bits, e.share_shape, e.max_bit_length) == ("replicated3", 128, (2,), 62)


def test_share_open_linear_and_mul_are_exact_mod_2_128() -> None:
    a = bounded(126, 200)
    b = bounded(126, 207)[::-1][:len(a)]
    MOD = 1 << 128

    def s(v):
        v %= MOD
        return v - MOD if v >> 127 else v

    async def body(e):
        x, y = await share(e, "x", a), await share(e, "y", b)
        c = e.encode([5])
        out = {
            "open": await reveal(e, "o", x),
            "add": await reveal(e, "oa", e.add(x, y)),
            "sub": await reveal(e, "os", e.sub(x, y)),
            "neg": await reveal(e, "on", e.neg(x)),
            "addc": await reveal(e, "oac", e.add_const(x, c)),
            "mulc": await reveal(e, "omc", e.mul_const(x, e.encode([-3]))),
            "mul": await reveal(e, "om", await e.mul("m", x, y)),
            "sum": await reveal(e, "osum", e.sum(x)),
            "dot": await reveal(e, "odot", await e.reduce("dot", e.sum(e.mul_local(x, y)))),
            "const": await reveal(e, "oconst", e.constant(e.encode([7, -(1 << 100)]))),
        }
        return out

    out, _ = run3(body)
    assert out["open"] == a
    assert out["add"] == [s(p + q) for p, q in zip(a, b)]
    assert out["sub"] == [s(p - q) for p, q in zip(a, b)]
    assert out["neg"] == [-p for p in a]
    assert out["addc"] == [s(p + 5) for p in a]
    assert out["mulc"] == [s(-3 * p) for p in a]
    assert out["mul"] == [s(p * q) for p, q in zip(a, b)]
    assert out["sum"] == [s(sum(a))]
    assert out["dot"] == [s(sum(p * q for p, q in zip(a, b)))]
    assert out["const"] == [7, -(1 << 100)]


@pytest.mark.parametrize("L,d", [(125, 40), (80, 16), (61, 16), (40, 1), (20, 20), (64, 63)])
def test_trunc_is_within_two_ulp_of_the_exact_quotient(L: int, d: int) -> None:
    vals = bounded(L, 300)

    async def body(e):
        x = await share(e, "x", vals)
        return await reveal(e, "o", await e.trunc("t", x, d, L)), list(e.opened)

    (got, opened), _ = run3(body)
    for v, g in zip(vals, got):
        # g = floor(v / 2^d) + e - 1 with e in {0..3}: strictly within 2 ulp of v / 2^d
        assert (v >> d) - 1 <= g <= (v >> d) + 2
        assert abs(g * (1 << d) - v) < 2 * (1 << d)
    trunc_opens = [o for o in opened if o.purpose == "truncation"]
    assert [(o.label, o.count, o.to) for o in trunc_opens] == [("t", len(vals), (0, 2))]


@pytest.mark.parametrize("L,d", [(125, 60), (90, 32), (61, 16)])
def test_mul_trunc_and_reduce_trunc_in_one_round(L: int, d: int) -> None:
    half = L // 2
    a = bounded(half, 200)
    b = bounded(L - half - 1, 200)[:len(a)]

    async def body(e):
        x, y = await share(e, "x", a), await share(e, "y", b)
        before = e.exchange.stats.rounds
        z = await e.mul_trunc("mt", x, y, d, L)
        rounds = e.exchange.stats.rounds - before
        rows = np.stack([x[:100], x[100:200]], axis=1)           # (100, 2) values: a dot product per row
        cols = np.stack([y[:100], y[100:200]], axis=1)
        dot = await e.reduce_trunc("rt", e.sum(e.mul_local(rows, cols), axis=1), d, L)
        return await reveal(e, "o", z), await reveal(e, "od", dot), rounds, list(e.opened)

    (got, dots, rounds, opened), _ = run3(body)
    assert rounds == 1
    for p, q, g in zip(a, b, got):
        assert abs(g * (1 << d) - p * q) < 2 * (1 << d)
    for i, g in enumerate(dots):
        exact = a[i] * b[i] + a[100 + i] * b[100 + i]
        assert abs(g * (1 << d) - exact) < 2 * (1 << d)
    assert {(o.label, o.count, o.purpose) for o in opened if o.purpose == "truncation"} == \
        {("mt", len(a), "truncation"), ("rt", 100, "truncation")}


def test_a_shift_by_zero_is_exact_and_opens_nothing() -> None:
    vals = bounded(60, 50)

    async def body(e):
        x = await share(e, "x", vals)
        t = await e.trunc("t", x, 0, 60)
        m = await e.mul_trunc("mt", x, x, 0, 121)
        return await reveal(e, "o", t), await reveal(e, "om", m), [o.purpose for o in e.opened]

    (t, m, purposes), _ = run3(body)
    assert t == vals and m == [v * v for v in vals] and "truncation" not in purposes


def test_trunc_refuses_bounds_that_could_wrap() -> None:
    e = Replicated3WideEngine(MemoryNetwork(3).exchange(0))
    for d, L in ((0, 126), (10, 9), (-1, 5), (1.0, 5)):
        with pytest.raises(ValueError):
            asyncio.run(e.trunc("t", R.zeros((1, 2)), d, L))


def test_trunc_leak_bits_is_the_union_bound() -> None:
    assert trunc_leak_bits(61, 1 << 24) == -40
    assert trunc_leak_bits(61, 1 << 25) > -40
    assert trunc_leak_bits(125, 1) == 0
    assert Replicated3WideEngine(MemoryNetwork(3).exchange(0)).trunc_leak_bits(40, 1 << 10) == -75


def test_lift_is_exact_on_random_and_boundary_values_in_two_rounds() -> None:
    vals = LIFT_EDGE + RNG.integers(-(1 << 62), 1 << 62, 500).tolist()
    narrow = replicated.share(replicated.encode(np.array(vals, dtype=np.int64)))

    async def body(e):
        before = e.exchange.stats.rounds
        wide = await e.lift("lift", narrow[e.party])
        rounds = e.exchange.stats.rounds - before
        return await reveal(e, "o", wide), rounds

    (got, rounds), _ = run3(body)
    assert got == vals and rounds == 2


def test_downcast_keeps_the_low_64_bits() -> None:
    vals = [5, -5, (1 << 63) - 1, -(1 << 63), (1 << 64) + 3]

    async def body(e):
        return e.downcast(await share(e, "x", vals))

    shares, _ = run_all(body)
    got = replicated.to_signed(replicated.reconstruct_checked(dict(enumerate(shares)))).tolist()
    assert got == [5, -5, (1 << 63) - 1, -(1 << 63), 3]


def test_comparisons_on_wide_values() -> None:
    a = RNG.integers(-(1 << 62) + 1, 1 << 62, 300).tolist() + [0, -1, (1 << 62) - 1, -(1 << 62) + 1, 7]
    b = RNG.integers(-(1 << 62) + 1, 1 << 62, 300).tolist() + [0, 0, (1 << 62) - 1, (1 << 62) - 1, 7]
    z = [0, 1, -1, 1 << 64, 1 << 100, -(1 << 64), (1 << 127) - 1, -(1 << 127), 1 << 63, 0]
    u = [0, 1, -1, (1 << 127) - 1, -(1 << 127), 1 << 126, -(1 << 126), (1 << 64) - 1, -(1 << 64), 1 << 63,
         -(1 << 63), (1 << 127) - (1 << 63)]

    async def body(e):
        x, y = await share(e, "x", a), await share(e, "y", b)
        lt = await reveal(e, "olt", await e.less_than("lt", x, y, 62))
        zz = await share(e, "z", z)
        eq = await reveal(e, "oeq", await e.equal_zero("eq", zz))
        uu = await share(e, "u", u)
        up = await reveal(e, "oup", await e.upper_half("up", uu))
        rb = await reveal(e, "orb", await e.random_bits("rb", 200))
        sel, _ = await e.less_than_select("lts", x[:50], y[:50], 62, [(0, x[:50], y[:50])])
        mn = await reveal(e, "omn", sel[0])
        return lt, eq, up, rb, mn

    (lt, eq, up, rb, mn), _ = run3(body)
    assert lt == [int(p < q) for p, q in zip(a, b)]
    assert eq == [int(v == 0) for v in z]
    assert up == [int(v < 0) for v in u]
    assert set(rb) <= {0, 1} and 50 < sum(rb) < 150
    assert mn == [min(p, q) for p, q in zip(a[:50], b[:50])]


def test_normalize_on_every_power_of_two_and_neighbours() -> None:
    bits = 62
    xs = sorted({v for k in range(bits) for v in ((1 << k) - 1, 1 << k, (1 << k) + 1) if 0 < v < (1 << bits)}
                | {(1 << bits) - 1} | set(RNG.integers(1, 1 << bits, 100).tolist()))

    async def body(e):
        x = await share(e, "x", xs)
        before = e.exchange.stats.rounds
        v = await e.normalize("norm", x, bits)
        rounds = e.exchange.stats.rounds - before
        small = await e.normalize("norm16", (await share(e, "s", [1, 2, 3, 0x7FFF, 0x8000, 0xFFFF]))[:], 16)
        return await reveal(e, "o", v), rounds, await reveal(e, "os", small)

    (got, rounds, small), _ = run3(body)
    assert got == [1 << (bits - 1 - x.bit_length() + 1) for x in xs]
    for x, v in zip(xs, got):
        assert (1 << (bits - 1)) <= x * v < (1 << bits)
    assert rounds == 7 + 6 + 1 + 3 + 2
    assert small == [1 << 15, 1 << 14, 1 << 14, 2, 1, 1]


def test_consistent_rows_on_wide_rows() -> None:
    rows = [[1, -(1 << 100)], [3, 4], [5, 6]]

    async def body(e):
        x = (await share(e, "x", [v for r in rows for v in r])).reshape(3, 2, 2)
        if e.party == 1:                       # party 1 corrupts the high limb of one component of row 1
            x = x.copy()
            x[1, 0, 1]["hi"] ^= np.uint64(1)
        return (await e.consistent_rows("rows", x)).tolist()

    got, _ = run3(body)
    assert got == [True, False, True]


def test_narrow_and_wide_labels_stay_apart_on_one_exchange() -> None:
    async def body(e):
        r = await e.random("same", (4,))
        rn = await e.narrow.random("same", (4,))
        return await reveal(e, "o", r), replicated.to_signed(await e.narrow.open("on", rn, purpose="output")).tolist()

    (w, n), _ = run3(body)
    assert [v % (1 << 64) for v in w] != [v % (1 << 64) for v in n]


# ---- the job runner on the wide engine --------------------------------------------------------

EXT = [-(1 << 50), 3, (1 << 50)]


def _job(monkeypatch, ring_bits: int, client_values: dict[str, list[int]], bad_client: str | None = None):
    """A small job through jobrun.run_job (node inputs, client rows checked and lifted, products,
    a dot, a comparison and an argmax) on three in-process parties; returns (outputs as signed ints,
    rows that counted). `ring_bits_of` is set as a circuit asking for that ring would set it."""
    from mpcnode import jobrun
    from mpcnode.circuit import validate
    from mpcnode.computation.builder import CircuitBuilder
    from mpcnode.computation.spec import Computation

    monkeypatch.setattr(jobrun, "ring_bits_of", lambda circuit: ring_bits)
    clients = sorted(client_values)
    b = CircuitBuilder("wide-job")
    x = b.input("x", "a", 3, -1000, 1000)
    rows = b.client_input("rows", clients, 3, -(1 << 40), 1 << 40)
    ext = b.input("ext", "outside-org", 3, -(1 << 50), 1 << 50)     # an input-only party's node input
    total = b.column_sums(rows, 3)
    b.output("ext_x", b.mul(ext, x), ["a"])
    prod = b.mul(total, x)
    b.output("prod", prod, ["a"])
    b.output("dot", b.dot(total, x), ["a"])
    b.output("lt", b.lt(total, x, 50), ["a"])
    b.output("best", b.argmax(total, 50), ["a"])
    comp = Computation(circuit=b.build(), parties=("a", "b", "c"), threshold=1, protocol="replicated3",
                       input_parties=("outside-org",))
    spec = comp.job_spec("wide-j", timeout_s=60)
    plan = validate(spec.circuit, list(spec.parties), "replicated3", ["outside-org"])
    dealt = {c: replicated.share(replicated.encode(np.array(v, dtype=np.int64))) for c, v in client_values.items()}
    ext_shares = replicated.share(replicated.encode(np.array(EXT, dtype=np.int64)))
    if bad_client:
        dealt[bad_client][1] = dealt[bad_client][1].copy()
        dealt[bad_client][1][0, 0] += np.uint64(1)        # party 1's copy of component 1 differs from party 0's
    net = MemoryNetwork(3, timeout_s=60)
    exchanges = [net.exchange(i) for i in range(3)]
    xs = np.array([5, -7, 1000], dtype=np.int64)

    async def main():
        return await asyncio.gather(*(
            jobrun.run_job(exchanges[i], spec, plan, list(spec.parties), {"x": xs} if i == 0 else {},
                           lambda d, i=i: ({"outside-org": ext_shares[i]}, ["outside-org"]) if d.name == "ext"
                           else ({c: dealt[c][i] for c in clients}, clients))
            for i in range(3)))

    results = asyncio.run(main())
    # the wide engine ran: the dealt rows were lifted (the lift's rounds are on the exchange)
    assert ("inputs/lift/a" in exchanges[0].stats.labels) == (ring_bits == 128)
    out = {}
    for name in ("prod", "dot", "lt", "best", "ext_x"):
        shares = {i: r.outputs[name] for i, r in enumerate(results)}
        if shares[0].dtype == R.R128:     # (an executor may also hand outputs out downcast to Z_2^64)
            assert ring_bits == 128
            comps = [np.stack([s[..., 0], s[..., 1]]) for s in shares.values()]
            c0, c1, c2 = comps[0][0], comps[0][1], comps[1][1]
            assert R.equal(comps[2][1], c0).all() and R.equal(comps[1][0], c1).all()   # consistent
            out[name] = R.to_signed_ints(R.add(R.add(c0, c1), c2)).tolist()
        else:
            out[name] = replicated.to_signed(replicated.reconstruct_checked(shares)).tolist()
    return out, results[0].row_labels, [(e.credential, e.reason) for e in results[0].excluded]


def test_a_job_on_the_wide_engine_lifts_client_rows_and_matches_the_narrow_engine(monkeypatch) -> None:
    rows = {"c1": [1, 2, 3], "c2": [-(1 << 40), 5, 6], "c3": [7, 1 << 40, -9], "c4": [1, 1, 1]}
    narrow, labels_n, excl_n = _job(monkeypatch, 64, rows, bad_client="c4")
    wide, labels_w, excl_w = _job(monkeypatch, 128, rows, bad_client="c4")
    total = [sum(r[k] for c, r in rows.items() if c != "c4") for k in range(3)]
    assert wide["prod"] == [t * x for t, x in zip(total, [5, -7, 1000])]
    assert wide["dot"] == [sum(t * x for t, x in zip(total, [5, -7, 1000]))]
    assert wide["lt"] == [int(t < x) for t, x in zip(total, [5, -7, 1000])]
    assert wide["ext_x"] == [e * x for e, x in zip(EXT, [5, -7, 1000])]
    assert wide == narrow and sorted(labels_w) == sorted(labels_n) == ["c1", "c2", "c3"]   # order: fresh coins
    assert excl_w == excl_n and [c for c, _ in excl_w] == ["c4"]
