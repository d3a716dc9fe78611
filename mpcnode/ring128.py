"""The ring Z_2^128 on numpy arrays: two uint64 limbs per element. Pure math: no I/O, no randomness.

Representation: the structured dtype R128 = [("lo", <u8), ("hi", <u8)], value = hi * 2^64 + lo,
read as two's complement when signed (bit 127 is the sign). One element is one array item, so a
replicated share keeps the layout value axes + (2,) components exactly like Z_2^64
(engines/base.py "Shares"): slicing, np.concatenate, np.repeat, reshape and expand_dims act on
whole elements and the executor's structural operations work unchanged. Arithmetic goes through
the functions below, which operate on the two limb planes with vectorized uint64 numpy (carries by
unsigned comparison, the 64x64 -> 128 product by 32-bit halves), never with Python ints.

Wire form: `to_words` views an array as uint64 with a trailing limb axis (..., 2) = (lo, hi),
what mpcnode/exchange.py and the gRPC transport carry (little-endian uint64 words); `from_words`
is its inverse and checks the length.

Invariants: every function returns a fresh array (or writes `out`); arithmetic is mod 2^128;
inputs broadcast like numpy. Property-tested against Python ints in tests/unit/test_ring128.py.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

R128 = np.dtype([("lo", "<u8"), ("hi", "<u8")])
BITS = 128
MOD = 1 << BITS
_U = np.uint64
_M32 = _U(0xFFFFFFFF)
_S32 = _U(32)
_S63 = _U(63)
_MASK64 = (1 << 64) - 1


# ---- construction and conversion ----------------------------------------------------------------

def empty(shape: tuple[int, ...] | int) -> np.ndarray:
    return np.empty(shape, dtype=R128)


def zeros(shape: tuple[int, ...] | int) -> np.ndarray:
    return np.zeros(shape, dtype=R128)


def pack(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """An R128 array from its limbs (broadcast together)."""
    lo, hi = np.broadcast_arrays(np.asarray(lo, dtype=_U), np.asarray(hi, dtype=_U))
    out = np.empty(lo.shape, dtype=R128)
    out["lo"] = lo
    out["hi"] = hi
    return out


def from_int64(values: np.ndarray | int | Iterable[int]) -> np.ndarray:
    """Signed int64 values -> Z_2^128 (sign-extended two's complement)."""
    v = np.asarray(values, dtype=np.int64)
    return pack(v.view(_U), (v >> 63).view(_U))


def from_uint64(values: np.ndarray) -> np.ndarray:
    """Unsigned uint64 values -> Z_2^128 (zero-extended)."""
    v = np.asarray(values, dtype=_U)
    return pack(v, np.zeros_like(v))


def from_ints(values: Iterable[int] | int) -> np.ndarray:
    """Python ints (any size, signed; reduced mod 2^128) -> Z_2^128. Not for hot paths."""
    arr = np.asarray(values, dtype=object)
    flat = [int(x) % MOD for x in arr.reshape(-1)]
    lo = np.fromiter((x & _MASK64 for x in flat), dtype=_U, count=len(flat))
    hi = np.fromiter((x >> 64 for x in flat), dtype=_U, count=len(flat))
    return pack(lo, hi).reshape(arr.shape)


def encode(values: np.ndarray | int | Iterable[int]) -> np.ndarray:
    """Signed integers -> Z_2^128: int64 arrays fast, Python ints of any size exactly."""
    if isinstance(values, (np.ndarray, np.void)) and values.dtype == R128:
        return np.array(values, dtype=R128)
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu" and values.dtype.itemsize <= 8:
        return from_uint64(values) if values.dtype == _U else from_int64(values)
    arr = np.asarray(values, dtype=object)
    if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in arr.reshape(-1)):
        # a float here is a fixed-point value its owner forgot to encode: refuse, never truncate
        raise TypeError("ring128.encode takes integers (encode fixed-point values before sharing them)")
    if all(-(1 << 63) <= int(x) < (1 << 63) for x in arr.reshape(-1)):
        return from_int64(np.asarray(arr.tolist(), dtype=np.int64).reshape(arr.shape))
    return from_ints(arr)


def to_signed_ints(values: np.ndarray) -> np.ndarray:
    """Z_2^128 -> an object array of signed Python ints (two's complement). For decoding results
    and for tests, not for hot paths."""
    a = np.asarray(values, dtype=R128)
    lo = a["lo"].reshape(-1).tolist()
    hi = a["hi"].reshape(-1).tolist()
    out = np.empty(len(lo), dtype=object)
    out[:] = [(h << 64 | l) - MOD if h >> 63 else (h << 64 | l) for l, h in zip(lo, hi)]
    return out.reshape(a.shape)


def fits_int64(values: np.ndarray) -> np.ndarray:
    """Bool array: which elements are in the signed 64-bit range."""
    a = np.asarray(values, dtype=R128)
    return a["hi"] == ((a["lo"].view(np.int64) >> 63).view(_U))


def to_int64(values: np.ndarray) -> np.ndarray:
    """Z_2^128 -> signed int64, ValueError if some element is outside [-2^63, 2^63)."""
    a = np.asarray(values, dtype=R128)
    if not np.all(fits_int64(a)):
        raise ValueError("ring128: value outside the signed 64-bit range")
    return a["lo"].view(np.int64).copy()


def to_float(values: np.ndarray, frac_bits: int = 0) -> np.ndarray:
    """Z_2^128 (signed) -> float64 values / 2^frac_bits (rounded to float64 precision)."""
    a = np.asarray(values, dtype=R128)
    hi = a["hi"].view(np.int64).astype(np.float64)
    lo = a["lo"].astype(np.float64)
    return (hi * 18446744073709551616.0 + lo) / float(2.0 ** frac_bits)


def to_words(a: np.ndarray) -> np.ndarray:
    """The wire form: a contiguous uint64 array of shape a.shape + (2,) = (lo, hi) limbs."""
    a = np.ascontiguousarray(a, dtype=R128)
    return a.view(_U).reshape(a.shape + (2,))


def from_words(words: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Inverse of `to_words` for flat or (..., 2) uint64 words; `shape` (element shape) checked."""
    w = np.ascontiguousarray(np.asarray(words, dtype=_U)).reshape(-1)
    if w.size % 2:
        raise ValueError(f"ring128: {w.size} words do not make whole 128-bit elements")
    out = w.view(R128)
    if shape is not None:
        if int(np.prod(shape, dtype=np.int64)) != out.size:
            raise ValueError(f"ring128: {out.size} elements, expected shape {shape}")
        out = out.reshape(shape)
    return out


# ---- arithmetic --------------------------------------------------------------------------------

def _limbs(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return a["lo"], a["hi"]


def words_view(a: np.ndarray) -> np.ndarray:
    """A uint64 view (a.shape + (2,)) = (lo, hi) of any R128 array, also a strided or broadcast
    one (no copy): lets add and sub run one pass over both limbs together."""
    lo = a["lo"]
    return np.lib.stride_tricks.as_strided(lo, shape=a.shape + (2,), strides=a.strides + (8,), writeable=False)


def _from_sums(w: np.ndarray) -> np.ndarray:
    """A fresh contiguous (..., 2) uint64 array of limbs as an R128 array of shape w.shape[:-1]."""
    return w.view(R128).reshape(w.shape[:-1])


def add(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a + b mod 2^128 (broadcasting): both limbs summed in one pass, then the carry of the low
    limbs ([lo < a.lo]) into the high ones."""
    wa = words_view(np.asarray(a, dtype=R128))
    w = np.add(wa, words_view(np.asarray(b, dtype=R128)))
    w[..., 1] += w[..., 0] < wa[..., 0]
    return _into(_from_sums(w), out)


def sub(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a - b mod 2^128: both limbs subtracted in one pass, then the borrow [a.lo < b.lo]."""
    wa = words_view(np.asarray(a, dtype=R128))
    wb = words_view(np.asarray(b, dtype=R128))
    w = np.subtract(wa, wb)
    w[..., 1] -= wa[..., 0] < wb[..., 0]
    return _into(_from_sums(w), out)


def _into(res: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return res
    if out.shape != res.shape:
        raise ValueError(f"ring128: out has shape {out.shape}, result {res.shape}")
    out[...] = res
    return out


def neg(a: np.ndarray) -> np.ndarray:
    """-a mod 2^128 = NOT(a) + 1."""
    w = np.invert(words_view(np.asarray(a, dtype=R128)))
    w[..., 0] += np.uint64(1)
    w[..., 1] += w[..., 0] == 0       # the +1 carries into hi exactly when the low limb was 0
    return _from_sums(w)


def mul_wide(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The full 128-bit product of uint64 arrays x * y as (lo, hi) limbs. The low limb is numpy's
    wrapping product; the high one comes from 32-bit halves x = x1 2^32 + x0, y likewise: every
    partial product of two halves fits 64 bits, and mid = (x0 y0 >> 32) + lo32(x0 y1) + lo32(x1 y0)
    < 3 * 2^32 cannot overflow. In-place steps keep the temporaries to a few arrays."""
    x, y = np.broadcast_arrays(x, y)
    lo = np.multiply(x, y)
    x0 = x & _M32
    x1 = x >> _S32
    y0 = y & _M32
    y1 = y >> _S32
    hi = np.multiply(x1, y1)
    p01 = np.multiply(x0, y1, out=y1)
    p10 = np.multiply(x1, y0, out=x1)
    mid = np.multiply(x0, y0, out=x0)
    mid >>= _S32
    t = np.bitwise_and(p01, _M32, out=y0)
    mid += t
    np.bitwise_and(p10, _M32, out=t)
    mid += t
    p01 >>= _S32
    hi += p01
    p10 >>= _S32
    hi += p10
    mid >>= _S32
    hi += mid
    return lo, hi


# ---- limb pairs: the hot paths' form -----------------------------------------------------------
# A structured element's limbs are strided (16-byte stride), which makes every numpy pass about
# 4x slower than on contiguous words. Protocol steps with many passes (a local product, a
# truncation) split their operands once into contiguous (lo, hi) pairs, work on those, and pack
# the result once.
Limbs = tuple[np.ndarray, np.ndarray]


def split(a: np.ndarray) -> Limbs:
    """Contiguous copies of the two limbs of an R128 array."""
    return np.ascontiguousarray(a["lo"]), np.ascontiguousarray(a["hi"])


def l_add(x: Limbs, y: Limbs, out: Limbs | None = None) -> Limbs:
    """x + y on limb pairs (same shapes); `out` may be x."""
    lo, hi = (None, None) if out is None else out
    lo = np.add(x[0], y[0], out=lo)
    hi = np.add(x[1], y[1], out=hi)
    hi += lo < y[0]                  # the low limbs carried iff the wrapped sum is below an addend
    return lo, hi


def l_sub(x: Limbs, y: Limbs, out: Limbs | None = None) -> Limbs:
    """x - y on limb pairs; `out` may be x."""
    borrow = x[0] < y[0]
    lo, hi = (None, None) if out is None else out
    hi = np.subtract(x[1], y[1], out=hi)
    hi -= borrow
    lo = np.subtract(x[0], y[0], out=lo)
    return lo, hi


def l_mul(x: Limbs, y: Limbs) -> Limbs:
    """x * y mod 2^128 on limb pairs."""
    lo, hi = mul_wide(x[0], y[0])
    hi += x[0] * y[1]
    hi += x[1] * y[0]
    return lo, hi


def l_neg(x: Limbs) -> Limbs:
    lo = np.negative(x[0])
    hi = np.invert(x[1])
    hi += lo == 0
    return lo, hi


def l_cond_neg(x: Limbs, bits: np.ndarray) -> Limbs:
    """x (1 - 2 b) for 0/1 uint64 bits b: -x where b = 1, as NOT(x) + 1 under the all-ones mask -b
    (x ^ mask + b, with the carry into the high limb exactly when the low sum wraps)."""
    mask = np.negative(bits)
    lo = np.bitwise_xor(x[0], mask)
    lo += bits
    hi = np.bitwise_xor(x[1], mask)
    hi += lo < bits
    return lo, hi


def l_shr(x: Limbs, d: int) -> Limbs:
    """Logical right shift by 0 <= d < 128 on limb pairs."""
    return split(shr(pack(*x), d)) if d >= 64 or d == 0 else \
        ((x[0] >> _U(d)) | (x[1] << _U(64 - d)), x[1] >> _U(d))


def l_const(value: int) -> Limbs:
    """A Python int (mod 2^128) as scalar limbs, to broadcast against limb pairs."""
    value %= MOD
    return np.array(value & _MASK64, dtype=_U), np.array(value >> 64, dtype=_U)


def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a * b mod 2^128: lo*lo in full, plus (a.lo b.hi + a.hi b.lo) mod 2^64 into the high limb."""
    al, ah = _limbs(a)
    bl, bh = _limbs(b)
    lo, hi = mul_wide(al, bl)
    hi += al * bh
    hi += ah * bl
    return pack(lo, hi)


def mul_small(a: np.ndarray, c: np.ndarray | int) -> np.ndarray:
    """a * c for uint64 c (broadcast): a cheaper `mul` when the multiplier fits one limb."""
    al, ah = _limbs(a)
    c = np.asarray(c, dtype=_U)
    lo, hi = mul_wide(al, np.broadcast_to(c, np.broadcast_shapes(al.shape, c.shape)) if c.ndim else
                      np.full(al.shape, c, dtype=_U))
    hi += ah * c
    return pack(lo, hi)


def shl(a: np.ndarray, d: int) -> np.ndarray:
    """a * 2^d mod 2^128 for 0 <= d < 128."""
    d = _check_shift(d)
    al, ah = _limbs(a)
    if d == 0:
        return pack(al, ah)
    if d >= 64:
        return pack(np.zeros_like(al), al << _U(d - 64))
    return pack(al << _U(d), (ah << _U(d)) | (al >> _U(64 - d)))


def shr(a: np.ndarray, d: int) -> np.ndarray:
    """Logical right shift: floor(a / 2^d) for a read as unsigned in [0, 2^128)."""
    d = _check_shift(d)
    al, ah = _limbs(a)
    if d == 0:
        return pack(al, ah)
    if d >= 64:
        return pack(ah >> _U(d - 64), np.zeros_like(ah))
    return pack((al >> _U(d)) | (ah << _U(64 - d)), ah >> _U(d))


def sar(a: np.ndarray, d: int) -> np.ndarray:
    """Arithmetic right shift: floor(a / 2^d) for a read as signed (two's complement)."""
    d = _check_shift(d)
    al, ah = _limbs(a)
    sh = ah.view(np.int64)
    if d == 0:
        return pack(al, ah)
    if d >= 64:
        return pack((sh >> (d - 64)).view(_U), (sh >> 63).view(_U))
    return pack((al >> _U(d)) | (ah << _U(64 - d)), (sh >> d).view(_U))


def low_bits(a: np.ndarray, k: int) -> np.ndarray:
    """a mod 2^k (unsigned), 0 <= k <= 128."""
    if not 0 <= k <= BITS:
        raise ValueError(f"ring128: bit count {k} outside 0..128")
    al, ah = _limbs(a)
    if k >= 64:
        return pack(al, ah & _U((1 << (k - 64)) - 1) if k < 128 else ah)
    return pack(al & _U((1 << k) - 1), np.zeros_like(ah))


def sum(a: np.ndarray, axis: int = 0, keepdims: bool = False) -> np.ndarray:
    """Sum over `axis` mod 2^128: the low limbs are summed as 32-bit halves (each half-sum fits
    64 bits for up to 2^32 terms), then recombined with the carries into the high limb."""
    al, ah = _limbs(a)
    if a.shape[axis] >= (1 << 32):
        raise ValueError("ring128.sum: more than 2^32 terms")
    s0 = np.sum(al & _M32, axis=axis, dtype=_U, keepdims=keepdims)
    s1 = np.sum(al >> _S32, axis=axis, dtype=_U, keepdims=keepdims)
    hi = np.sum(ah, axis=axis, dtype=_U, keepdims=keepdims)
    # total low = s0 + s1 * 2^32, s1 < 2^64: split s1 into its low 32 bits (into lo) and the rest
    lo = s0 + (s1 << _S32)
    carry = (s0 >> _S32) + (s1 & _M32)        # < 2^33 + 2^32: the bits of s0 + s1 2^32 above 2^32
    hi += (s1 >> _S32) + (carry >> _S32)
    return pack(lo, hi)


def msb(a: np.ndarray) -> np.ndarray:
    """Bit 127 (the sign) as 0/1 uint64."""
    return a["hi"] >> _S63


def equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a["lo"] == b["lo"]) & (a["hi"] == b["hi"])


def less_unsigned(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[a < b] for both read as unsigned."""
    return (a["hi"] < b["hi"]) | ((a["hi"] == b["hi"]) & (a["lo"] < b["lo"]))


def less_signed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[a < b] for both read as signed (flip the sign bits, compare unsigned)."""
    flip = _U(1 << 63)
    return less_unsigned(pack(a["lo"], a["hi"] ^ flip), pack(b["lo"], b["hi"] ^ flip))


def abs_below(a: np.ndarray, bits: int) -> np.ndarray:
    """[|a| < 2^bits] for a read as signed (0 <= bits <= 127): -2^bits < a < 2^bits."""
    bound = from_ints([1 << bits, -(1 << bits)])
    return less_signed(a, bound[0]) & less_signed(bound[1], a)


def _check_shift(d: int) -> int:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= int(d) < BITS:
        raise ValueError(f"ring128: shift {d!r} outside 0..127")
    return int(d)
