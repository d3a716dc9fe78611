"""Three-party replicated secret sharing over the ring Z_2^64 on numpy arrays. No I/O.

A secret x (uint64, arithmetic mod 2^64) is split into three uniform components
x = x_0 + x_1 + x_2, and party i (0-based, i in 0..2) holds the pair (x_i, x_{i+1 mod 3}),
stored as the last axis of its share: share[..., 0] = x_i, share[..., 1] = x_{i+1}
(Araki, Furukawa, Lindell, Nof, Ohara, CCS 2016). Any one party's pair is independent of x;
any two parties hold all three components. Component x_j is held by parties j (first slot)
and j - 1 (second slot), which is what `reconstruct_checked` compares.

Boolean (XOR) sharings have the same layout with XOR in place of addition; they pack 64 bits
per uint64 word (engines/replicated3.py).

This module is what a client uses to share its input for a replicated3 job and what a
recipient uses to put an output back together; the engine uses the same layout.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .randomness import random_ring

PARTIES = 3
COMPONENTS = 2          # ring elements per value in one party's share


class InconsistentShares(ValueError):
    """Two parties disagree on a component they both hold."""

    def __init__(self, message: str, culprits: tuple[int, ...]):
        super().__init__(message)
        self.culprits = culprits


def encode(values: np.ndarray | int | list[int]) -> np.ndarray:
    """Signed integers -> Z_2^64 (two's complement)."""
    return np.asarray(values, dtype=np.int64).astype(np.uint64)


def to_signed(x: np.ndarray) -> np.ndarray:
    """Z_2^64 -> signed int64 (two's complement)."""
    return np.asarray(x, dtype=np.uint64).view(np.int64)


# a @ b over Z_2^64 through float64 matrix products (BLAS) on limbs of `width` bits is exact while
# every entry of a limb product, a sum of at most (limbs) k terms below 2^(2 width), stays below
# 2^53: 16-bit limbs (four, for 64 bits) allow k <= 2^19; 17-bit limbs (two, for results wanted
# mod 2^bits, bits <= 34) k <= 2^18.
_LIMBS = {64: (16, 4), 34: (17, 2)}
# Splitting into limbs costs a few passes over both matrices; below about 128 rows or columns the
# plain integer loop is faster (one query against a 100-tree model: 2 ms against 50 ms).
_MIN_LIMB_SIDE = 128


def ring_matmul(a: np.ndarray, b: np.ndarray, bits: int = 64) -> np.ndarray:
    """a @ b mod 2^bits for uint64 matrices (m, k) and (k, n), bits <= 64 (for bits < 64 the upper
    bits of the result are 0). numpy's own integer matmul (which wraps mod 2^64, the ring's
    arithmetic) is a plain loop; for large m and n, splitting into limbs and summing the limb
    products of each shift s (sum_{i+j=s} a_i b_j, one float64 matmul of width k(s+1)) runs BLAS,
    about 2x faster here on (6300 x 180) @ (180 x 1000) with four 16-bit limbs. Limb pairs with
    i + j >= limbs only touch bits >= bits and are skipped, so a result wanted mod 2^33 (two
    17-bit limbs: 3 limb products against 10) costs about a third of the full one."""
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    if not 1 <= bits <= 64:
        raise ValueError(f"ring_matmul: bits must be in 1..64, got {bits}")
    mask = np.uint64((1 << bits) - 1) if bits < 64 else None
    width, limbs = _LIMBS[34] if bits <= 34 else _LIMBS[64]
    k = a.shape[-1]
    if a.ndim != 2 or b.ndim != 2 or limbs * k > 2**(53 - 2 * width) or min(a.shape[0], b.shape[1]) < _MIN_LIMB_SIDE:
        out = np.matmul(a, b)
        return out if mask is None else np.bitwise_and(out, mask, out=out)
    lm = np.uint64((1 << width) - 1)
    al = [((a >> np.uint64(width * i)) & lm).astype(np.float64) for i in range(limbs)]
    bl = [((b >> np.uint64(width * j)) & lm).astype(np.float64) for j in range(limbs)]
    out = np.zeros((a.shape[0], b.shape[1]), dtype=np.uint64)
    for s in range(limbs):
        part = np.concatenate(al[:s + 1], axis=1) @ np.concatenate([bl[s - i] for i in range(s + 1)], axis=0)
        out += part.astype(np.uint64) << np.uint64(width * s)
    return out if mask is None else np.bitwise_and(out, mask, out=out)


def share(values: np.ndarray) -> list[np.ndarray]:
    """Fresh shares of uint64 `values` (any shape S): a list of three arrays of shape S + (2,),
    party i's share at index i."""
    values = np.asarray(values, dtype=np.uint64)
    x1 = random_ring(values.shape)
    x2 = random_ring(values.shape)
    x0 = values - x1 - x2
    comps = (x0, x1, x2)
    return [np.stack([comps[i], comps[(i + 1) % 3]], axis=-1) for i in range(PARTIES)]


def constant(public: np.ndarray, party: int) -> np.ndarray:
    """Party `party`'s share of a public array every party knows: the sharing (c, 0, 0), so party 0
    holds c in slot 0, party 2 in slot 1 and party 1 only zeros. No randomness is needed: the
    value is public."""
    public = np.asarray(public, dtype=np.uint64)
    out = np.zeros(public.shape + (COMPONENTS,), dtype=np.uint64)
    if party == 0:
        out[..., 0] = public
    elif party == 2:
        out[..., 1] = public
    return out


def share_xor(words: np.ndarray) -> list[np.ndarray]:
    """Fresh XOR shares of uint64 words (64 packed bits each), same layout as `share`."""
    words = np.asarray(words, dtype=np.uint64)
    x1 = random_ring(words.shape)
    x2 = random_ring(words.shape)
    comps = (words ^ x1 ^ x2, x1, x2)
    return [np.stack([comps[i], comps[(i + 1) % 3]], axis=-1) for i in range(PARTIES)]


def components_checked(shares: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
    """The three components {j: x_j} from the shares of at least two parties (keys 0..2, each of
    shape S + (2,)).

    Every component held by two of the given parties must agree between them, else
    InconsistentShares naming the two parties (which of them lies cannot be told from two)."""
    if len(shares) < 2 or not set(shares) <= {0, 1, 2}:
        raise ValueError(f"need the shares of at least two of parties 0..2, got {sorted(shares)}")
    comps: dict[int, np.ndarray] = {}
    for i in sorted(shares):
        s = np.asarray(shares[i], dtype=np.uint64)
        if s.shape[-1:] != (COMPONENTS,):
            raise ValueError(f"party {i}: a replicated share has {COMPONENTS} components on its last axis")
        for slot, j in ((0, i), (1, (i + 1) % 3)):
            c = s[..., slot]
            if j in comps:
                if comps[j].shape != c.shape or not np.array_equal(comps[j], c):
                    holder = j if slot == 1 else (j - 1) % 3
                    raise InconsistentShares(f"parties {min(i, holder)} and {max(i, holder)} disagree on "
                                             f"component {j}", (min(i, holder), max(i, holder)))
            else:
                comps[j] = c
    return comps


def reconstruct_checked(shares: Mapping[int, np.ndarray]) -> np.ndarray:
    """The secret (uint64, mod 2^64) from the arithmetic shares of at least two parties."""
    c = components_checked(shares)
    return c[0] + c[1] + c[2]


def reconstruct_xor_checked(shares: Mapping[int, np.ndarray]) -> np.ndarray:
    """The secret words from the XOR shares of at least two parties."""
    c = components_checked(shares)
    return c[0] ^ c[1] ^ c[2]
