"""The only source of randomness in Parley.

Secret-sharing coefficients, masks and seeds come from the operating system's CSPRNG
(os.urandom / getrandom), expanded with AES-256-CTR for bulk (the `cryptography`
package). Nothing else in Parley may import `random` or `np.random` for secrets.
"""
from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import field



_CHUNK_WORDS = 1 << 17


def _aes_words(key: bytes, nonce: bytes, count: int) -> np.ndarray:
    """`count` uint64 words of AES-256-CTR keystream, written straight into a numpy buffer."""
    encryptor = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    out = np.empty(count + 2, dtype=np.uint64)          # update_into wants block_size - 1 spare bytes
    zeros = np.zeros(8 * min(count, _CHUNK_WORDS), dtype=np.uint8)
    raw = out.view(np.uint8)
    for i in range(0, count, _CHUNK_WORDS):
        words = min(_CHUNK_WORDS, count - i)
        encryptor.update_into(zeros[: 8 * words], raw[8 * i: 8 * (i + words) + 16])
    return out[:count]


def _to_field(words: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    # Keep the low 61 bits and map the single value p to 0: statistical distance 2^-60 from uniform.
    words &= field._P
    words[words == field._P] = 0
    return words.reshape(shape)


class KeyedStream:
    """Deterministic pseudo-random field elements from a secret key (a PRF in counter mode)."""

    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("stream key must be 32 bytes")
        self._key = key

    def field(self, label: bytes, shape: tuple[int, ...] | int) -> np.ndarray:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = int(np.prod(shape, dtype=np.int64))
        return _to_field(_aes_words(self._key, _nonce_for(label), count), shape)

    def ring(self, label: bytes, shape: tuple[int, ...] | int) -> np.ndarray:
        """Deterministic pseudo-random elements of Z_2^64 (whole uint64 words, also used as
        64 packed random bits)."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = int(np.prod(shape, dtype=np.int64))
        return _aes_words(self._key, _nonce_for(label), count).reshape(shape)


def _nonce_for(label: bytes) -> bytes:
    from hashlib import sha256

    return sha256(label).digest()[:16]


def random_field(shape: tuple[int, ...] | int) -> np.ndarray:
    """Fresh uniform field elements from the OS CSPRNG (seed) expanded with AES-CTR."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    count = int(np.prod(shape, dtype=np.int64))
    if count <= 512:
        return _to_field(np.frombuffer(os.urandom(8 * count), dtype=np.uint64).copy(), shape)
    return _to_field(_aes_words(os.urandom(32), os.urandom(16), count), shape)


def random_ring(shape: tuple[int, ...] | int) -> np.ndarray:
    """Fresh uniform elements of Z_2^64 (uint64 words) from the OS CSPRNG expanded with AES-CTR."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    count = int(np.prod(shape, dtype=np.int64))
    if count <= 512:
        return np.frombuffer(os.urandom(8 * count), dtype=np.uint64).copy().reshape(shape)
    return _aes_words(os.urandom(32), os.urandom(16), count).reshape(shape)


def random_bits(count: int) -> np.ndarray:
    """Uniform 0/1 uint64 values."""
    raw = _aes_words(os.urandom(32), os.urandom(16), (count + 63) // 64).view(np.uint8)
    return np.unpackbits(raw)[:count].astype(np.uint64)


def new_key() -> bytes:
    return os.urandom(32)


# ---- exact integer coins for the DP samplers (mpcnode/dp/samplers.py) --------------------------
# Differential privacy needs EXACT distributions (Mironov, CCS 2012: floating-point Laplace leaks),
# so these return integers only, by rejection from uniform words: no float touches a coin.

def _fill_mask(m: np.ndarray) -> np.ndarray:
    """Smear the highest set bit of each m downwards: 2^bitlen(m) - 1, by integer shifts only."""
    for s in (1, 2, 4, 8, 16, 32):
        m = m | (m >> np.uint64(s))
    return m


def random_below(bounds: np.ndarray | int, count: int | None = None) -> np.ndarray:
    """Uniform integers in [0, bound) (int64), one per element of `bounds` (or `count` of them for
    an int bound), each bound in 1..2^62. Exact: draw bitlen(bound - 1) uniform bits and reject
    values >= bound (each try succeeds with probability > 1/2), all elements in one batch."""
    b = np.asarray(bounds, dtype=np.int64)
    if count is not None:
        b = np.broadcast_to(b, (count,))
    b = np.ascontiguousarray(b).reshape(-1)
    if b.size and (int(b.min()) < 1 or int(b.max()) > (1 << 62)):
        raise ValueError("random_below: bounds must lie in 1..2^62")
    bu = b.astype(np.uint64)
    if b.size and int(b.min()) == int(b.max()):   # one bound (the common case): one mask, no smearing
        mask = np.broadcast_to(np.uint64((1 << (int(b[0]) - 1).bit_length()) - 1), b.shape)
    else:
        mask = _fill_mask(bu - np.uint64(1))
    out = np.empty(b.size, dtype=np.uint64)
    todo = np.arange(b.size)
    while todo.size:
        w = random_ring(todo.size) & mask[todo]
        ok = w < bu[todo]
        out[todo[ok]] = w[ok]
        todo = todo[~ok]
    return out.astype(np.int64)


def bernoulli_rational(num: np.ndarray | int, den: np.ndarray | int, count: int | None = None) -> np.ndarray:
    """Exact Bernoulli(num / den) coins (bool), elementwise, 0 <= num <= den <= 2^62: [U < num] for
    U uniform below den."""
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    if count is None:
        num, den = np.broadcast_arrays(num, den)
        count = num.size
    else:
        num, den = np.broadcast_to(num, (count,)), np.broadcast_to(den, (count,))
    return random_below(den.reshape(-1), None) < num.reshape(-1)
