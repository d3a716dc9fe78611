"""mpcnode/ring128.py against Python ints: random values, carries, 2^127, -1, 0."""
from __future__ import annotations

import numpy as np
import pytest

from mpcnode import ring128 as R

RNG = np.random.default_rng(20261126)
MOD = 1 << 128
EDGE = [0, 1, -1, 2, (1 << 64) - 1, 1 << 64, -(1 << 64), (1 << 63), -(1 << 63), (1 << 63) - 1,
        (1 << 127) - 1, -(1 << 127), (1 << 32) - 1, 1 << 32, 12345678901234567890123456789]


def rand_ints(n: int) -> list[int]:
    words = RNG.integers(0, 1 << 63, size=(n, 4), dtype=np.int64).tolist()
    # mix full-width values with values whose limbs are all ones or zeros (carry chains)
    out = [((a << 65) ^ (b << 33) ^ c ^ (d << 1)) % MOD for a, b, c, d in words]
    return out + EDGE


def signed(v: int) -> int:
    v %= MOD
    return v - MOD if v >> 127 else v


def check(arr: np.ndarray, expected: list[int]) -> None:
    assert R.to_signed_ints(arr).reshape(-1).tolist() == [signed(v) for v in expected]


A = rand_ints(300)
B = rand_ints(300)[::-1]


def test_round_trip_and_int64() -> None:
    check(R.from_ints(A), A)
    small = np.array([0, 1, -1, -(1 << 63), (1 << 63) - 1, 42], dtype=np.int64)
    check(R.encode(small), small.tolist())
    assert R.to_int64(R.encode(small)).tolist() == small.tolist()
    with pytest.raises(ValueError):
        R.to_int64(R.from_ints([1 << 63]))
    assert R.fits_int64(R.from_ints([1 << 63, -(1 << 63), -(1 << 63) - 1])).tolist() == [False, True, False]
    words = R.to_words(R.from_ints(A))
    assert words.dtype == np.uint64 and words.shape == (len(A), 2)
    check(R.from_words(words.reshape(-1), (len(A),)), A)
    with pytest.raises(ValueError):
        R.from_words(np.zeros(3, dtype=np.uint64))
    for bad in ([1.5], np.array([2.0]), [True]):
        with pytest.raises(TypeError):
            R.encode(bad)
    check(R.encode([1 << 100, -5]), [1 << 100, -5])


def test_add_sub_neg_mul() -> None:
    a, b = R.from_ints(A), R.from_ints(B)
    check(R.add(a, b), [x + y for x, y in zip(A, B)])
    check(R.sub(a, b), [x - y for x, y in zip(A, B)])
    check(R.neg(a), [-x for x in A])
    check(R.mul(a, b), [x * y for x, y in zip(A, B)])
    c = [x % (1 << 64) for x in B]
    check(R.mul_small(a, np.array(c, dtype=np.uint64)), [x * y for x, y in zip(A, c)])
    check(R.mul_small(a, 3), [3 * x for x in A])


def test_mul_wide_is_the_full_64_bit_product() -> None:
    x = np.array([(1 << 64) - 1, 0, 1, 1 << 63, 0xFFFFFFFF, 0x1_0000_0001] + [v % (1 << 64) for v in A[:50]],
                 dtype=np.uint64)
    y = x[::-1].copy()
    lo, hi = R.mul_wide(x, y)
    assert [(int(h) << 64) | int(l) for l, h in zip(lo, hi)] == [int(p) * int(q) for p, q in zip(x, y)]


@pytest.mark.parametrize("d", [0, 1, 16, 63, 64, 65, 100, 127])
def test_shifts(d: int) -> None:
    a = R.from_ints(A)
    check(R.shl(a, d), [x << d for x in A])
    check(R.shr(a, d), [(x % MOD) >> d for x in A])
    check(R.sar(a, d), [signed(x) >> d for x in A])
    check(R.low_bits(a, d), [x % (1 << d) for x in A])


def test_sum_and_broadcasting() -> None:
    m = np.array(A[:240], dtype=object).reshape(8, 30)
    arr = R.from_ints(m)
    for axis in (0, 1):
        check(R.sum(arr, axis=axis), [int(v) for v in m.sum(axis=axis)])
    check(R.sum(R.from_ints([(1 << 64) - 1] * 1000)), [1000 * ((1 << 64) - 1)])
    col = R.from_ints([[5], [-7]])
    check(R.add(arr[:2], col).reshape(-1), [int(v) + c for row, c in zip(m[:2], (5, -7)) for v in row])


def test_comparisons_and_float() -> None:
    a, b = R.from_ints(A), R.from_ints(B)
    assert R.less_signed(a, b).tolist() == [signed(x) < signed(y) for x, y in zip(A, B)]
    assert R.less_unsigned(a, b).tolist() == [x % MOD < y % MOD for x, y in zip(A, B)]
    assert R.equal(a, a).all() and R.msb(a).tolist() == [int(signed(x) < 0) for x in A]
    assert R.abs_below(R.from_ints([(1 << 70) - 1, 1 << 70, -(1 << 70) + 1, -(1 << 70)]), 70).tolist() == \
        [True, False, True, False]
    vals = [3 << 16, -(5 << 15), 1 << 100, -(1 << 90)]
    assert R.to_float(R.from_ints(vals), 16).tolist() == [v / 65536 for v in vals]


@pytest.mark.parametrize("d", [0, 1, 17, 63, 64, 90])
def test_limb_pair_operations(d: int) -> None:
    a, b = R.from_ints(A), R.from_ints(B)
    x, y = R.split(a), R.split(b)
    check(R.pack(*R.l_add(x, y)), [p + q for p, q in zip(A, B)])
    check(R.pack(*R.l_sub(x, y)), [p - q for p, q in zip(A, B)])
    check(R.pack(*R.l_mul(x, y)), [p * q for p, q in zip(A, B)])
    check(R.pack(*R.l_neg(x)), [-p for p in A])
    check(R.pack(*R.l_shr(x, d)), [(p % MOD) >> d for p in A])
    check(R.pack(*R.l_add(x, R.l_const(-(1 << 70)))), [p - (1 << 70) for p in A])
    flips = np.array([i % 2 for i in range(len(A))], dtype=np.uint64)
    check(R.pack(*R.l_cond_neg(x, flips)), [-p if i % 2 else p for i, p in enumerate(A)])
    z = (x[0].copy(), x[1].copy())
    R.l_add(z, y, out=z)                           # in place
    check(R.pack(*z), [p + q for p, q in zip(A, B)])
