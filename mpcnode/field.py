"""The prime field F_p with p = 2^61 - 1 (a Mersenne prime) over numpy uint64 arrays.

Why this field: elements fit one machine word, reduction is a shift and a mask, and
p = 3 mod 4 with p > 2^60 gives a signed integer range of +-2^59 for values and their
differences (comparisons need |a - b| < p/2). No I/O and no randomness in this module.

Invariant: every array passed in or returned holds canonical elements, 0 <= x < p,
dtype uint64. Signed integers v are encoded as v mod p and decoded from the symmetric
range (-p/2, p/2).
"""
from __future__ import annotations

import numpy as np

P = (1 << 61) - 1
BITS = 61
MAX_SIGNED = (1 << 59)  # inputs and results must satisfy |v| < 2^59
_P = np.uint64(P)
_LOW32 = np.uint64(0xFFFFFFFF)
_LOW29 = np.uint64((1 << 29) - 1)
_U3 = np.uint64(3)
_U29 = np.uint64(29)
_U32 = np.uint64(32)
_U61 = np.uint64(61)

Array = np.ndarray


def _fold(x: Array) -> Array:
    """Reduce x < 2^64 (in place) to [0, p]; one more conditional subtraction makes it canonical."""
    hi = x >> _U61
    x &= _P
    x += hi
    return x


def _canon(x: Array) -> Array:
    """Map [0, 2p) to [0, p) in place: x - p wraps to a huge value exactly when x < p."""
    return np.minimum(x, x - _P, out=x)


def asfield(values: Array | int | list[int]) -> Array:
    """Encode signed integers (|v| < 2^63) as field elements."""
    a = np.asarray(values)
    if a.dtype == object:
        return np.array([int(v) % P for v in a.ravel()], dtype=np.uint64).reshape(a.shape)
    a = a.astype(np.int64, copy=False)
    # reduce |v| (< 2^63: fits uint64, one fold) and negate where v < 0; v + p would stay negative below -p
    flat = a.reshape(-1)
    mag = _canon(_fold(np.abs(flat).astype(np.uint64)))
    return np.where(flat < 0, neg(mag), mag).reshape(a.shape)


def to_signed(x: Array) -> Array:
    """Decode canonical elements to int64 in the symmetric range (-p/2, p/2)."""
    s = x.astype(np.int64)
    return np.where(x > _P >> np.uint64(1), s - np.int64(P), s)


# Large arrays are processed in blocks that fit in the CPU cache: every field op is a chain
# of numpy passes with temporaries, and streaming 48 MB temporaries through memory made the
# ops 3-5x slower than the same passes over 256 KB blocks (docs/performance.md).
_BLOCK = 1 << 15


def _blocked(kernel, a: Array, b: Array | np.uint64) -> Array:
    a = np.asarray(a, dtype=np.uint64)
    if isinstance(b, np.ndarray) and b.ndim and b.shape != a.shape:
        a, b = np.broadcast_arrays(a, b)
    shape = np.broadcast_shapes(a.shape, np.shape(b))
    out = np.empty(shape, dtype=np.uint64)
    if out.size <= _BLOCK:
        kernel(a, b, out)
        return out
    fa = np.ascontiguousarray(a).reshape(-1)
    fo = out.reshape(-1)
    scalar = not isinstance(b, np.ndarray) or b.ndim == 0
    fb = b if scalar else np.ascontiguousarray(b).reshape(-1)
    for i in range(0, fo.size, _BLOCK):
        j = i + _BLOCK
        kernel(fa[i:j], fb if scalar else fb[i:j], fo[i:j])
    return out


def _add_kernel(a: Array, b: Array, out: Array) -> None:
    np.add(a, b, out=out)
    np.minimum(out, out - _P, out=out)


def _sub_kernel(a: Array, b: Array, out: Array) -> None:
    np.subtract(_P, b, out=out)
    out += a                             # a + (p - b) < 2p
    np.minimum(out, out - _P, out=out)


def _mul_kernel(a: Array, b: Array, out: Array) -> None:
    """a*b mod p via 32-bit limbs and 2^61 = 1 (so 2^64 = 8).

    With a = a1*2^32 + a0 (a1 < 2^29): a*b = a1b1*2^64 + (a1b0 + a0b1)*2^32 + a0b0, and
    mid*2^32 = (mid >> 29) + (mid & (2^29-1))*2^32 (mod p). Every partial sum stays below
    2^63, so nothing wraps.
    """
    a0 = a & _LOW32
    a1 = a >> _U32
    b0 = b & _LOW32
    b1 = b >> _U32
    mid = a1 * b0
    mid += a0 * b1                      # < 2^62
    np.multiply(a0, b0, out=out)        # < 2^64
    _fold(out)                          # < 2^61 + 8
    a1 *= b1                            # < 2^58
    a1 <<= _U3                          # 8*a1b1 < 2^61
    out += a1
    out += mid >> _U29                  # < 2^33
    mid &= _LOW29
    mid <<= _U32                        # < 2^61
    out += mid                          # total < 2^63
    _fold(out)
    np.minimum(out, out - _P, out=out)


def _mul_small_kernel(a: Array, c: np.uint64, out: Array) -> None:
    """a * c for a public c < 2^32: two limb products instead of four."""
    np.bitwise_and(a, _LOW32, out=out)
    out *= c                            # < 2^64
    hi = a >> _U32                      # < 2^29
    hi *= c                             # < 2^61
    _fold(out)                          # < 2^61 + 8
    out += hi >> _U29                   # hi * 2^32 = (hi >> 29) * 2^61 + (hi & (2^29-1)) * 2^32
    hi &= _LOW29
    hi <<= _U32
    out += hi                           # < 2^63
    _fold(out)
    np.minimum(out, out - _P, out=out)


def add(a: Array, b: Array) -> Array:
    return _blocked(_add_kernel, a, b)


def sub(a: Array, b: Array) -> Array:
    return _blocked(_sub_kernel, a, b)


def neg(a: Array) -> Array:
    return sub(np.zeros_like(a, dtype=np.uint64), a)


def mul(a: Array, b: Array) -> Array:
    """Elementwise product mod p (see _mul_kernel)."""
    return _blocked(_mul_kernel, a, np.asarray(b, dtype=np.uint64))


def mul_small(a: Array, c: int) -> Array:
    """a * c mod p for a public 0 <= c < 2^32."""
    if not 0 <= c < (1 << 32):
        raise ValueError("mul_small needs 0 <= c < 2^32")
    return _blocked(_mul_small_kernel, a, np.uint64(c))


def mul_const(a: Array, c: int) -> Array:
    c %= P
    if c < (1 << 32):
        return mul_small(np.asarray(a, dtype=np.uint64), c)
    return mul(a, np.uint64(c))


def sum_all(a: Array, axis: int | None = None) -> Array:
    """Sum reduced mod p. Summing in chunks of 4 keeps partial sums of canonical elements below 2^64."""
    a = np.asarray(a, dtype=np.uint64)
    if axis is None:
        a = a.reshape(-1)
        axis = 0
    a = np.moveaxis(a, axis, 0)
    n = a.shape[0]
    if n == 0:
        return np.zeros(a.shape[1:], dtype=np.uint64)
    # fold chunks: 7 canonical values sum below 2^64 (7 * 2^61 < 2^64)
    while a.shape[0] > 1:
        m = a.shape[0]
        pad = (-m) % 7
        if pad:
            a = np.concatenate([a, np.zeros((pad,) + a.shape[1:], dtype=np.uint64)])
        s = a.reshape((-1, 7) + a.shape[1:]).sum(axis=1, dtype=np.uint64)
        a = _canon(_fold(s))
    return a[0]


def dot(a: Array, b: Array) -> Array:
    return sum_all(mul(a, b))


def pow_(a: Array, e: int) -> Array:
    result = np.ones_like(a, dtype=np.uint64)
    base = a.copy()
    while e:
        if e & 1:
            result = mul(result, base)
        e >>= 1
        if e:
            base = mul(base, base)
    return result


def inv_scalar(x: int) -> int:
    x %= P
    if x == 0:
        raise ZeroDivisionError("0 has no inverse in F_p")
    return pow(x, P - 2, P)


def check_canonical(a: Array, what: str) -> Array:
    """Validate peer-supplied data: dtype uint64 and every element below p."""
    if a.dtype != np.uint64:
        raise ValueError(f"{what}: expected uint64 field elements, got {a.dtype}")
    if a.size and int(a.max()) >= P:
        raise ValueError(f"{what}: element out of field range (>= 2^61 - 1)")
    return a
