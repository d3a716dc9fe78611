"""Comparison, equality, tournaments and ballot checks (mpcnode/protocols/compare.py)
over the in-memory network, against plaintext."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mpcnode import field, shamir
from mpcnode.exchange import MemoryNetwork
from mpcnode.protocols import compare as C
from mpcnode.protocols.core import Session

NS = [3, 4, 5]
B59 = (1 << 59) - 1
B48 = (1 << 48) - 1
RNG = np.random.default_rng(20261123)
HYP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- helpers ------------------------------------------------------------------------

def deal(values, n: int) -> np.ndarray:
    """Test-side dealer: shares (n, *shape) of signed integers, threshold default_threshold(n)."""
    return shamir.share(field.asfield(np.asarray(values, dtype=np.int64)), n, shamir.default_threshold(n))


def reveal(shares: list[np.ndarray], n: int) -> np.ndarray:
    """Reconstruct from all n parties' shares (checking consistency) and decode signed."""
    return field.to_signed(shamir.reconstruct_checked(dict(enumerate(shares)), shamir.default_threshold(n)))


def mpc(n: int, body: Callable[[Session], Awaitable], *, timeout_s: float = 60.0):
    """Run body(session) on all n parties concurrently; open every returned array (or each
    element of a returned tuple). Returns (opened, sessions)."""
    net = MemoryNetwork(n, timeout_s=timeout_s)
    sessions = [Session(net.exchange(i), shamir.default_threshold(n)) for i in range(n)]

    async def main():
        return await asyncio.gather(*(body(s) for s in sessions))

    results = asyncio.run(main())
    assert all(not box for box in net._mail), "undelivered messages left behind"
    if isinstance(results[0], tuple):
        return tuple(reveal([r[k] for r in results], n) for k in range(len(results[0]))), sessions
    return reveal(results, n), sessions


def bounds(b: int) -> list[int]:
    return [0, -1, 1, b, -b, b - 1, -b + 1, 2, -2]


# ---- random solved bits, bitwise comparison ------------------------------------------

@pytest.mark.parametrize("n", NS)
def test_random_solved_bits_are_bits_that_sum_to_r(n: int) -> None:
    (r, bits), _ = mpc(n, lambda s: C.random_solved_bits(s, "r", 50))
    assert bits.shape == (C.BITS, 50) and set(np.unique(bits)) <= {0, 1}
    want = [sum(int(bits[i, j]) << i for i in range(C.BITS)) % field.P for j in range(50)]
    assert [int(v) % field.P for v in r] == want
    assert len({tuple(bits[:, j]) for j in range(50)}) == 50      # not all the same


@pytest.mark.parametrize("n", NS)
def test_bit_lt_public_against_integers(n: int) -> None:
    m = 40
    cvals = RNG.integers(0, field.P, m, dtype=np.uint64)
    rvals = RNG.integers(0, 1 << 61, m, dtype=np.uint64)
    # equal values, neighbours and the extremes 0, p - 1 and p = 2^61 - 1 (all ones)
    cvals[:6] = [5, 5, 0, 0, field.P - 1, field.P - 1]
    rvals[:6] = [5, 4, 0, field.P, field.P - 1, field.P]
    cvals[6], rvals[6] = 6, 7
    bits = np.array([(rvals >> np.uint64(i)) & np.uint64(1) for i in range(C.BITS)], dtype=np.int64)
    rb = shamir.share(bits.astype(np.uint64), n, shamir.default_threshold(n))
    got, _ = mpc(n, lambda s: C.bit_lt_public(s, "lt", cvals, rb[s.party]))
    assert got.tolist() == (cvals < rvals).astype(int).tolist()


# ---- ltz / less_than / greater_equal -------------------------------------------------

@pytest.mark.parametrize("n", NS)
def test_ltz_at_the_range_bounds(n: int) -> None:
    x = np.array(bounds(B59) + bounds(B48) + [1 << 58, -(1 << 58)], dtype=np.int64)
    X = deal(x, n)
    got, sessions = mpc(n, lambda s: C.ltz(s, "z", X[s.party], 59))
    assert got.tolist() == (x < 0).astype(int).tolist()
    assert len({s.ex.stats.rounds for s in sessions}) == 1


@pytest.mark.parametrize("n", NS)
def test_less_than_and_greater_equal_at_bounds_and_ties(n: int) -> None:
    b = np.array(bounds(B59), dtype=np.int64)
    a = np.concatenate([b, b, -b, np.zeros_like(b)])
    c = np.concatenate([b, -b, b, b])
    A, B = deal(a, n), deal(c, n)

    async def body(s: Session):
        lt = await C.less_than(s, "lt", A[s.party], B[s.party], 59)
        ge = await C.greater_equal(s, "ge", A[s.party], B[s.party], 59)
        return lt, ge

    (lt, ge), _ = mpc(n, body)
    assert lt.tolist() == (a < c).astype(int).tolist()
    assert ge.tolist() == (a >= c).astype(int).tolist()


@HYP
@given(n=st.sampled_from(NS), bl=st.sampled_from([8, 48, 59]), data=st.data())
def test_less_than_random_inputs(n: int, bl: int, data) -> None:
    lim = (1 << bl) - 1
    vals = st.integers(-lim, lim)
    pairs = data.draw(st.lists(st.tuples(vals, vals), min_size=1, max_size=20))
    pairs += [(v, v) for v, _ in pairs[:3]]                        # ties
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    A, B = deal(a, n), deal(b, n)
    got, _ = mpc(n, lambda s: C.less_than(s, "lt", A[s.party], B[s.party], bl))
    assert got.tolist() == (a < b).astype(int).tolist()


def test_ltz_with_precomputed_bits_and_2d_shape() -> None:
    n = 4
    x = RNG.integers(-B48, B48, (3, 5))
    X = deal(x, n)

    async def body(s: Session):
        solved = await C.random_solved_bits(s, "pre", x.size)
        return await C.ltz(s, "z", X[s.party], 48, solved=solved)

    got, _ = mpc(n, body)
    assert got.shape == (3, 5) and got.tolist() == (x < 0).astype(int).tolist()


@pytest.mark.parametrize("bad", [0, 60, 61, -3, True, 2.5])
def test_bit_length_is_validated(bad) -> None:
    s = Session(MemoryNetwork(3).exchange(0), 1)
    x = np.zeros(2, dtype=np.uint64)
    for call in (C.ltz(s, "z", x, bad), C.less_than(s, "lt", x, x, bad), C.greater_equal(s, "ge", x, x, bad),
                 C.argmax_and_max(s, "am", x, bad), C.top_two(s, "tt", x, bad)):
        with pytest.raises(ValueError, match="bit_length"):
            asyncio.run(call)


# ---- equality and selection ---------------------------------------------------------

@pytest.mark.parametrize("n", NS)
def test_equal_and_equal_zero(n: int) -> None:
    a = np.array([0, 0, -1, 1, B59, -B59, 7, 7, B48, 5, -5, 1 << 40], dtype=np.int64)
    b = np.array([0, 1, -1, -1, B59, B59, 7, 8, B48 - 1, -5, -5, (1 << 40) + 1], dtype=np.int64)
    A, B = deal(a, n), deal(b, n)

    async def body(s: Session):
        eq = await C.equal(s, "eq", A[s.party], B[s.party])
        ez = await C.equal_zero(s, "ez", A[s.party])
        return eq, ez

    (eq, ez), _ = mpc(n, body)
    assert eq.tolist() == (a == b).astype(int).tolist()
    assert ez.tolist() == (a == 0).astype(int).tolist()


def test_equal_zero_on_arbitrary_field_elements() -> None:
    n = 5
    x = RNG.integers(0, field.P, 30, dtype=np.uint64)
    x[::4] = 0
    x[1] = field.P - 1
    X = shamir.share(x, n, shamir.default_threshold(n))
    got, _ = mpc(n, lambda s: C.equal_zero(s, "ez", X[s.party]))
    assert got.tolist() == (x == 0).astype(int).tolist()


@pytest.mark.parametrize("n", NS)
def test_select(n: int) -> None:
    bit = np.array([1, 0, 1, 0])
    a = np.array([10, -20, B59, 0])
    b = np.array([-1, 30, 5, -B59])
    Bt, A, Bv = deal(bit, n), deal(a, n), deal(b, n)
    got, _ = mpc(n, lambda s: C.select(s, "sel", Bt[s.party], A[s.party], Bv[s.party]))
    assert got.tolist() == np.where(bit == 1, a, b).tolist()


# ---- tournaments ----------------------------------------------------------------------

def first_argmax(x) -> int:
    return int(np.argmax(np.asarray(x)))          # numpy returns the first maximum


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("x", [[5], [3, 3], [1, 9, 9, 2, 9], [9, 9, 9, 9, 9, 9, 9],
                               [-5, -3, -3, -B59 + 1], [B59, -B59, B59 - 1], [0, 1, 2, 3, 4, 5, 6, 7, 8],
                               [8, 7, 6, 5, 4, 3, 2, 1, 0, 8]])
def test_argmax_and_max_ties_go_to_the_earliest(n: int, x: list[int]) -> None:
    X = deal(x, n)
    (idx, mx), _ = mpc(n, lambda s: C.argmax_and_max(s, "am", X[s.party]))
    assert idx.shape == (1,) and mx.shape == (1,)
    assert (int(idx[0]), int(mx[0])) == (first_argmax(x), max(x))


@HYP
@given(n=st.sampled_from(NS),
       x=st.lists(st.integers(-50, 50) | st.integers(-B48, B48), min_size=1, max_size=40))
def test_argmax_and_top_two_random(n: int, x: list[int]) -> None:
    X = deal(x, n)

    async def body(s: Session):
        idx, mx = await C.argmax_and_max(s, "am", X[s.party], 48)
        tidx, tmx, second = await C.top_two(s, "tt", X[s.party], 48)
        return idx, mx, tidx, tmx, second

    (idx, mx, tidx, tmx, second), _ = mpc(n, body)
    srt = sorted(x)
    want_second = srt[-2] if len(x) > 1 else -(1 << 48)
    assert (int(idx[0]), int(mx[0])) == (first_argmax(x), max(x))
    assert (int(tidx[0]), int(tmx[0]), int(second[0])) == (first_argmax(x), max(x), want_second)


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("x,want", [
    ([3, 8, 8], (1, 8, 8)),                       # tied top bids: the price is the top bid
    ([8, 3, 8, 1, 8], (0, 8, 8)),
    ([1, 2, 3, 4, 5, 6, 7, 100, 99], (7, 100, 99)),
    ([-7], (0, -7, -(1 << 59))),                  # a single bid: the sentinel second
    ([4, -2], (0, 4, -2)),
    ([B59 - 1, -B59 + 1, B59 - 2], (0, B59 - 1, B59 - 2)),
    ([-B59 + 1, -B59 + 1], (0, -B59 + 1, -B59 + 1)),
])
def test_top_two_vickrey(n: int, x: list[int], want: tuple[int, int, int]) -> None:
    X = deal(x, n)
    (idx, mx, second), _ = mpc(n, lambda s: C.top_two(s, "tt", X[s.party]))
    assert (int(idx[0]), int(mx[0]), int(second[0])) == want


def test_seven_parties_tournament_and_comparisons() -> None:
    n = 7
    x = RNG.integers(-B48, B48, 23)
    x[5] = x[17] = x.max() + 1
    y = RNG.integers(-B48, B48, 23)
    y[:4] = x[:4]
    X, Y = deal(x, n), deal(y, n)

    async def body(s: Session):
        lt = await C.less_than(s, "lt", X[s.party], Y[s.party], 48)
        eq = await C.equal(s, "eq", X[s.party], Y[s.party])
        idx, mx, second = await C.top_two(s, "tt", X[s.party], 48)
        return lt, eq, idx, mx, second

    (lt, eq, idx, mx, second), _ = mpc(n, body)
    assert lt.tolist() == (x < y).astype(int).tolist()
    assert eq.tolist() == (x == y).astype(int).tolist()
    assert (int(idx[0]), int(mx[0]), int(second[0])) == (5, x.max(), x.max())


# ---- ballots ------------------------------------------------------------------------

PLURALITY = [
    ([0, 1, 0], True), ([1, 0, 0], True), ([0, 0, 1], True),
    ([0, 0, 0], False),          # no choice
    ([1, 1, 0], False),          # two choices
    ([2, 0, 0], False),          # not a bit
    ([2, -1, 0], False),         # sums to 1 but not bits
    ([-1, 1, 1], False),
    ([0, 3, -2], False),
    ([1, 0, 1 << 40], False),
]
APPROVAL = [
    ([1, 1, 0], True), ([0, 0, 0], True), ([1, 1, 1], True), ([0, 1, 0], True),
    ([2, 0, 0], False), ([1, -1, 1], False), ([2, -1, 0], False), ([0, 0, 5], False),
]


def plain_tally(rows: list[list[int]], ok: list[bool]) -> tuple[list[int], int]:
    counts = [sum(r[k] for r, v in zip(rows, ok) if v) for k in range(len(rows[0]))]
    return counts, ok.count(False)


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("exactly_one,cases", [(True, PLURALITY), (False, APPROVAL)])
def test_validate_and_tally(n: int, exactly_one: bool, cases) -> None:
    rows = [r for r, _ in cases] + [[0, 1, 0], [0, 0, 1], [0, 1, 0]]
    ok = [v for _, v in cases] + [True] * 3
    X = deal(np.array(rows), n)

    async def body(s: Session):
        valid = await C.validate_ballots(s, "vb", X[s.party], exactly_one)
        counts, invalid = await C.tally(s, "tally", X[s.party], valid)
        winner = await C.winner_of(s, "win", counts)
        return valid, counts, invalid, winner

    (valid, counts, invalid, winner), _ = mpc(n, body)
    want_counts, want_invalid = plain_tally(rows, ok)
    assert valid.tolist() == [int(v) for v in ok]
    assert counts.tolist() == want_counts and invalid.tolist() == [want_invalid]
    assert int(winner[0]) == first_argmax(want_counts)


@HYP
@given(data=st.data(), k=st.integers(1, 5), exactly_one=st.booleans())
def test_validate_random_ballots(data, k: int, exactly_one: bool) -> None:
    n = 3
    entry = st.sampled_from([0, 1]) | st.integers(-3, 3)
    rows = data.draw(st.lists(st.lists(entry, min_size=k, max_size=k), min_size=1, max_size=12))
    ok = [all(v in (0, 1) for v in r) and (not exactly_one or sum(r) == 1) for r in rows]
    X = deal(np.array(rows), n)
    valid, _ = mpc(n, lambda s: C.validate_ballots(s, "vb", X[s.party], exactly_one))
    assert valid.tolist() == [int(v) for v in ok]


def test_winner_ties_go_to_the_earliest_option() -> None:
    n = 3
    counts = [4, 9, 2, 9, 9]
    X = deal(counts, n)
    got, _ = mpc(n, lambda s: C.winner_of(s, "w", X[s.party]))
    assert got.tolist() == [1]


@pytest.mark.parametrize("n", NS)
def test_referendum_passes_with_at_least_half(n: int) -> None:
    yes = np.array([5, 4, 6, 0, 0, 1, 50, 49])
    valid = np.array([10, 10, 10, 0, 1, 1, 99, 99])
    Y, V = deal(yes, n), deal(valid, n)
    got, _ = mpc(n, lambda s: C.referendum(s, "ref", Y[s.party], V[s.party]))
    assert got.tolist() == (2 * yes >= valid).astype(int).tolist()


def test_referendum_from_a_yes_no_tally() -> None:
    n = 4
    rows = [[1, 0], [0, 1], [1, 0], [1, 1], [0, 1], [1, 0], [2, 0]]   # two invalid ballots
    X = deal(np.array(rows), n)

    async def body(s: Session):
        valid = await C.validate_ballots(s, "vb", X[s.party], True)
        counts, invalid = await C.tally(s, "t", X[s.party], valid)
        total = field.sub(field.add(counts[0:1], counts[1:2]), np.zeros(1, dtype=np.uint64))
        passed = await C.referendum(s, "ref", counts[0:1], total)
        return counts, invalid, passed

    (counts, invalid, passed), _ = mpc(n, body)
    assert counts.tolist() == [3, 2] and invalid.tolist() == [2] and passed.tolist() == [1]


@pytest.mark.parametrize("r_value", [0, field.P, field.P - 1, 1])
def test_extreme_masks_are_exact(r_value: int) -> None:
    """r = p (all 61 bits set, r = 0 mod p) and r = 0 are possible masks: ltz and equal_zero stay exact."""
    n = 3
    x = np.array([0, 0, 1, -1, 5, -5, B59, -B59, 2, -2], dtype=np.int64)
    X = deal(x, n)
    bits = np.array([[(r_value >> i) & 1] * x.size for i in range(C.BITS)], dtype=np.uint64)
    RB = shamir.share(bits, n, shamir.default_threshold(n))
    R = shamir.share(np.full(x.size, r_value % field.P, dtype=np.uint64), n, shamir.default_threshold(n))

    async def body(s: Session):
        solved = (R[s.party], RB[s.party])
        lt = await C.ltz(s, "z", X[s.party], 59, solved=solved)
        ez = await C.equal_zero(s, "ez", X[s.party], solved=solved)
        return lt, ez

    (lt, ez), _ = mpc(n, body)
    assert lt.tolist() == (x < 0).astype(int).tolist()
    assert ez.tolist() == (x == 0).astype(int).tolist()


# ---- bounded zero test: only for values whose range the nodes enforced -----------------------

@pytest.mark.parametrize("n", [3, 5])
def test_equal_zero_bounded_against_plaintext(n: int) -> None:
    x = np.array([0, 1, 2, 91, 0, 127, 64, 0], dtype=np.int64)
    sh = deal(x, n)

    async def body(s: Session) -> np.ndarray:
        return await s.open("o", await C.equal_zero_bounded(s, "z", sh[s.party], 127))

    assert mpc(n, body)[0].tolist() == (x == 0).astype(int).tolist()


def test_equal_zero_bounded_refuses_a_bound_too_wide_for_the_mask() -> None:
    sh = deal(np.zeros(2, dtype=np.int64), 3)

    async def body(s: Session) -> np.ndarray:
        return await C.equal_zero_bounded(s, "z", sh[s.party], 1 << 30)

    with pytest.raises(ValueError, match="too large"):
        mpc(3, body)


@pytest.mark.parametrize("n,k,exactly_one", [(3, 5, True), (3, 2, True), (5, 4, False)])
def test_validate_ballots_with_an_enforced_entry_range(n: int, k: int, exactly_one: bool) -> None:
    rng = np.random.default_rng(k)
    rows = rng.integers(-1, 3, size=(400, k))           # entries in the declared range [-1, 2]
    rows[:200] = 0
    rows[np.arange(200), rng.integers(0, k, 200)] = 1    # half of them valid one-hot ballots
    sh = deal(rows.reshape(-1), n)

    async def body(s: Session) -> np.ndarray:
        valid = await C.validate_ballots(s, "v", sh[s.party].reshape(-1, k), exactly_one, entry_range=(-1, 2))
        return await s.open("o", valid)

    want = np.all((rows == 0) | (rows == 1), axis=1)
    if exactly_one:
        want &= rows.sum(axis=1) == 1
    assert mpc(n, body)[0].tolist() == want.astype(int).tolist()
