"""Comparison and equality on Shamir shares (mpcnode/protocols/compare.py) over the in-memory
network, against plaintext. The engine-independent protocols built on them are tested in
test_selection.py and test_ballots.py."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mpcnode import field, shamir
from mpcnode.engines import ShamirEngine
from mpcnode.exchange import MemoryNetwork
from mpcnode.protocols import compare as C
from mpcnode.protocols.core import Session
from tests.unit.local_mpc import deal, mpc

NS = [3, 4, 5]
B59 = (1 << 59) - 1
B48 = (1 << 48) - 1
RNG = np.random.default_rng(20261123)
HYP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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
    s = ShamirEngine(MemoryNetwork(3).exchange(0), 1)
    x = np.zeros(2, dtype=np.uint64)
    # checked before any round: a lone party would otherwise wait for its peers
    for call in (C.ltz(s, "z", x, bad), C.less_than(s, "lt", x, x, bad), C.greater_equal(s, "ge", x, x, bad),
                 C.less_than_select(s, "ls", x, x, bad), s.less_than("elt", x, x, bad),
                 s.greater_equal("ege", x, x, bad)):
        with pytest.raises(ValueError, match="bit_length"):
            asyncio.run(call)


# ---- equality ---------------------------------------------------------------------

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


# ---- bounded comparison: statistically masked, for small declared bit lengths -------------------

def count_products(s: Session) -> None:
    """Count every element this party's degree reductions handle (all products: XORs of random
    bits, pair products, tree, final) on s.products; the path is told by this count."""
    s.products = 0
    inner = s.reduce_degree

    async def counted(label: str, d: np.ndarray) -> np.ndarray:
        s.products += d.size
        return await inner(label, d)

    s.reduce_degree = counted


def exact_products(t: int) -> int:
    """Products per element of the exact path: 61 random bits (t XORs each) + 30 pair products +
    55 tree products + 1 final."""
    return 61 * t + 30 + 55 + 1


def bounded_products(k: int, t: int) -> int:
    """The bounded path's cost formula (compare.py, "Cost"), written out again here."""
    m = k + 1
    tree, nodes = 0, (m + 1) // 2
    while nodes > 1:
        tree += 2 * (nodes // 2) - 1
        nodes -= nodes // 2
    return (k + 2) * t + m // 2 + tree + 1


def signed_cases(k: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (a, b) within the contract of bit_length k: random ones, every pairing of the
    boundaries +-(2^k - 1), -(2^k) (top_two's sentinel), 0, +-1, and ties."""
    lim = (1 << k) - 1
    edge = sorted({lim, -lim, -(1 << k), 0, 1, -1})
    ea, eb = (np.array(v, dtype=np.int64).reshape(-1) for v in np.meshgrid(edge, edge))
    ra = RNG.integers(-lim, lim + 1, count)
    rb = RNG.integers(-lim, lim + 1, count)
    a = np.concatenate([ea, ra, ra[:5]])
    b = np.concatenate([eb, rb, ra[:5]])               # the last five are ties
    return a, b


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("k", [1, 8, 16, "max"])
def test_bounded_less_than_against_plaintext(n: int, k) -> None:
    t = shamir.default_threshold(n)
    k = C.max_bounded_bit_length(t) if k == "max" else k
    a, b = signed_cases(k, 60)
    A, B = deal(a, n), deal(b, n)

    async def body(s: Session):
        await s.establish()
        count_products(s)
        lt = await C.less_than(s, "lt", A[s.party], B[s.party], k)
        ge = await C.greater_equal(s, "ge", A[s.party], B[s.party], k)
        return lt, ge

    (lt, ge), sessions = mpc(n, body)
    assert lt.tolist() == (a < b).astype(int).tolist()
    assert ge.tolist() == (a >= b).astype(int).tolist()
    # the bounded path ran: its product count, far below the exact path's
    assert {s.products for s in sessions} == {2 * a.size * bounded_products(k, t)}
    assert bounded_products(k, t) < exact_products(t) / 2


@pytest.mark.parametrize("n,k", [(3, 19), (3, 20), (3, 21), (3, 32), (5, 18), (5, 21)])
def test_exact_path_above_the_bound(n: int, k: int) -> None:
    """Just above max_bounded_bit_length(t) (18 at t = 1, 17 at t = 2), at 20, 21 and 32: the
    exact path, told by its product count, and still right at the boundaries."""
    t = shamir.default_threshold(n)
    assert k > C.max_bounded_bit_length(t)
    a, b = signed_cases(k, 20)
    A, B = deal(a, n), deal(b, n)

    async def body(s: Session):
        await s.establish()
        count_products(s)
        return await C.less_than(s, "lt", A[s.party], B[s.party], k)

    lt, sessions = mpc(n, body)
    assert lt.tolist() == (a < b).astype(int).tolist()
    assert {s.products for s in sessions} == {a.size * exact_products(t)}


def _traffic(n: int, k: int, m: int) -> tuple[int, int]:
    """(products per element, bytes per element summed over all parties) of less_than at
    bit_length k on m random in-range pairs, the key round left out."""
    a, b = signed_cases(k, m)
    a, b = a[:m], b[:m]
    A, B = deal(a, n), deal(b, n)

    async def body(s: Session):
        await s.establish()
        count_products(s)
        s.sent_before = s.ex.stats.bytes_sent
        return await C.less_than(s, "lt", A[s.party], B[s.party], k)

    lt, sessions = mpc(n, body)
    assert lt.tolist() == (a < b).astype(int).tolist()
    total = sum(s.ex.stats.bytes_sent - s.sent_before for s in sessions)
    assert total % m == 0 and sessions[0].products % m == 0
    return sessions[0].products // m, total // m


@pytest.mark.parametrize("n", [3, 5])
def test_bounded_path_costs_a_fraction_of_the_exact_one(n: int) -> None:
    """Products and bytes per comparison as compare.py's "Cost" states them: with seeded dealing a
    dealer sends one element to each of the n - 1 - t parties that do not share its seed; a
    product is dealt by 2t + 1 parties, a random bit and the high part by t + 1; the opening
    sends one element from every party to every other."""
    t = shamir.default_threshold(n)
    per_dealing = 8 * (n - 1 - t)
    opening = 8 * n * (n - 1)
    prod16, bytes16 = _traffic(n, 16, 40)
    prod32, bytes32 = _traffic(n, 32, 40)
    assert prod16 == bounded_products(16, t) and prod32 == exact_products(t)
    assert bytes16 == per_dealing * ((16 + 3) * (t + 1) + prod16 * (2 * t + 1)) + opening
    assert bytes32 == per_dealing * (61 * (t + 1) + prod32 * (2 * t + 1)) + opening
    assert 3 * prod16 < prod32 and 3 * bytes16 < bytes32
    if n == 3:
        assert (prod16, bytes16, prod32, bytes32) == (39, 1288, 147, 4552)
    assert C.lt_cost(16, t)[1] == prod16 and C.lt_cost(32, t)[1] == prod32


@pytest.mark.parametrize("k", [1, 2, 8, 32])
def test_fused_selection_on_both_paths(k: int) -> None:
    """less_than_select with two selections at different offsets and keep_bit, on the bounded path
    (k = 1: no tree round, the a*D products get their own; k = 2, 8) and the exact one (k = 32)."""
    n = 3
    a, b = signed_cases(k, 30)
    m = a.size
    X = RNG.integers(-1000, 1000, m)
    Y = RNG.integers(-1000, 1000, m)
    A, B, XS, YS = deal(a, n), deal(b, n), deal(X, n), deal(Y, n)
    half = m // 2

    async def body(s: Session):
        (s1, s2), bit = await C.less_than_select(s, "ls", A[s.party], B[s.party], k,
                                                 [(0, XS[s.party][:half], YS[s.party][:half]),
                                                  (half, XS[s.party][half:], YS[s.party][half:])],
                                                 keep_bit=(3, m - 2))
        return s1, s2, bit

    (s1, s2, bit), _ = mpc(n, body)
    lt = a < b
    assert s1.tolist() == np.where(lt, X, Y)[:half].tolist()
    assert s2.tolist() == np.where(lt, X, Y)[half:].tolist()
    assert bit.tolist() == lt[3:m - 2].astype(int).tolist()


@pytest.mark.parametrize("n", [3, 5])
def test_masks_serve_the_path_they_were_made_for(n: int) -> None:
    """comparison_masks with a small bit_length makes bounded masks (k + 2 bits), usable only at
    that bit_length; without one, solved masks that serve both paths and equal_zero."""
    t = shamir.default_threshold(n)
    k = 8
    a, b = signed_cases(k, 10)
    m = a.size
    A, B = deal(a, n), deal(b, n)

    async def body(s: Session):
        bounded = await C.comparison_masks(s, "mb", 2 * m, k)
        solved = await C.comparison_masks(s, "ms", 2 * m)
        big = await C.comparison_masks(s, "m32", 1, 32)
        assert isinstance(bounded, C.BoundedMasks) and bounded.bits.shape == (k + 2, 2 * m)
        assert not isinstance(solved, C.BoundedMasks) and solved[1].shape == (C.BITS, 2 * m)
        assert not isinstance(big, C.BoundedMasks)
        first = C.take_masks(bounded, 0, m)
        assert isinstance(first, C.BoundedMasks) and first.bit_length == k
        lt1 = await C.less_than(s, "lt1", A[s.party], B[s.party], k, solved=first)
        lt2 = await C.less_than(s, "lt2", A[s.party], B[s.party], k, solved=C.take_masks(solved, 0, m))
        lt3 = await C.less_than(s, "lt3", A[s.party], B[s.party], 40, solved=C.take_masks(solved, m, m))
        for call in (C.less_than(s, "x1", A[s.party], B[s.party], 32, solved=C.take_masks(bounded, m, m)),
                     C.less_than(s, "x2", A[s.party], B[s.party], k - 1, solved=C.take_masks(bounded, m, m)),
                     C.equal_zero(s, "x3", A[s.party], solved=C.take_masks(bounded, m, m)),
                     C.less_than(s, "x4", A[s.party], B[s.party], k, solved=C.take_masks(bounded, m, 3))):
            with pytest.raises(ValueError, match="masks"):
                await call
        return lt1, lt2, lt3

    (lt1, lt2, lt3), _ = mpc(n, body)
    want = (a < b).astype(int).tolist()
    assert lt1.tolist() == lt2.tolist() == lt3.tolist() == want
    assert C.max_bounded_bit_length(t) >= k


# The opened masked value: its distribution must not depend on the input. Per input, 4096 samples
# of c mod 2^(k+2) over 64 buckets (k = 4): a chi-square statistic with 63 degrees of freedom
# exceeds 132 with probability about 1e-6 for uniform data (Wilson-Hilferty), and the two-sample
# (homogeneity) statistic has the same null distribution; the high parts' means differ by more
# than 6 standard deviations with probability about 2e-9. With 3 inputs, 2 uniformity and 2
# homogeneity tests and 2 mean tests, a correct mask fails this test with probability below 1e-5.
CHI2_63_CRITICAL = 132.0


def _chi2_uniform(counts: np.ndarray) -> float:
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2 / expected).sum())


def _chi2_two_samples(c1: np.ndarray, c2: np.ndarray) -> float:
    total = c1 + c2
    keep = total > 0
    e1 = total * c1.sum() / (c1.sum() + c2.sum())
    e2 = total - e1
    return float((((c1 - e1) ** 2 / e1)[keep] + ((c2 - e2) ** 2 / e2)[keep]).sum())


def test_opened_masked_value_does_not_depend_on_the_input() -> None:
    """x = 0, x = 2^k - 1 and x = -(2^(k+1) - 1) (the widest difference): the low k + 2 bits of
    the opened c are uniform for each and equally distributed across them; the high part (the
    t + 1 dealt 40-bit values) has the same mean for each. False-alarm rate: below 1e-5 (see
    CHI2_63_CRITICAL). A mask with only k + 1 random low bits, or without the high part, fails."""
    n, k, per = 3, 4, 4096
    xs = [0, (1 << k) - 1, -((1 << (k + 1)) - 1)]
    x = np.repeat(np.array(xs, dtype=np.int64), per)
    X = deal(x, n)

    async def body(s: Session):
        opened = []
        inner = s.open

        async def recording(label, arr, to=None, *, purpose=None):
            out = await inner(label, arr, to, purpose=purpose)
            if label.endswith("/open"):
                opened.append(out)
            return out

        s.open = recording
        bit = await C.ltz(s, "z", X[s.party], k)
        s.opened = opened
        return bit

    bit, sessions = mpc(n, body)
    assert bit.tolist() == (x < 0).astype(int).tolist()
    (c,) = sessions[0].opened
    assert all(np.array_equal(c, s.opened[0]) for s in sessions)
    width = 1 << (k + 2)
    lows = [np.bincount((c[i * per:(i + 1) * per] % np.uint64(width)).astype(np.int64), minlength=width)
            for i in range(len(xs))]
    for counts in lows:
        assert _chi2_uniform(counts) < CHI2_63_CRITICAL
    for other in lows[1:]:
        assert _chi2_two_samples(lows[0], other) < CHI2_63_CRITICAL
    # high part: c >> (k+2) is R (plus a carry): t + 1 = 2 uniform 40-bit values, sd 2^40 / sqrt(6)
    highs = [(c[i * per:(i + 1) * per] >> np.uint64(k + 2)).astype(np.float64) for i in range(len(xs))]
    sd_diff = 2.0 ** 40 / np.sqrt(6) * np.sqrt(2 / per)
    for other in highs[1:]:
        assert abs(highs[0].mean() - other.mean()) < 6 * sd_diff
    assert min(h.max() for h in highs) > 2.0 ** 39          # the high part is there at all
