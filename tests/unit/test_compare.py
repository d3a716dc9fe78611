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
