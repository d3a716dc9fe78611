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

_ZERO_CHUNK = bytes(1 << 20)


def _aes_stream(key: bytes, nonce: bytes, nbytes: int) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    out = bytearray()
    while len(out) < nbytes:
        out += encryptor.update(_ZERO_CHUNK[: min(len(_ZERO_CHUNK), nbytes - len(out))])
    return bytes(out)


def _to_field(raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
    # Keep the low 61 bits and fold the single value p to 0: statistical distance 2^-60 from uniform.
    x = np.frombuffer(raw, dtype=np.uint64).reshape(shape).copy()
    x &= field._P
    return field._canon(x)


class KeyedStream:
    """Deterministic pseudo-random field elements from a secret key (a PRF in counter mode)."""

    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("stream key must be 32 bytes")
        self._key = key

    def field(self, label: bytes, shape: tuple[int, ...] | int) -> np.ndarray:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = int(np.prod(shape, dtype=np.int64))
        nonce = _nonce_for(label)
        return _to_field(_aes_stream(self._key, nonce, 8 * count), shape)


def _nonce_for(label: bytes) -> bytes:
    from hashlib import sha256

    return sha256(label).digest()[:16]


def random_field(shape: tuple[int, ...] | int) -> np.ndarray:
    """Fresh uniform field elements from the OS CSPRNG (seed) expanded with AES-CTR."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    count = int(np.prod(shape, dtype=np.int64))
    if count <= 512:
        return _to_field(os.urandom(8 * count), shape)
    return _to_field(_aes_stream(os.urandom(32), os.urandom(16), 8 * count), shape)


def random_bits(count: int) -> np.ndarray:
    """Uniform 0/1 uint64 values."""
    raw = np.frombuffer(_aes_stream(os.urandom(32), os.urandom(16), (count + 7) // 8), dtype=np.uint8)
    return np.unpackbits(raw)[:count].astype(np.uint64)


def new_key() -> bytes:
    return os.urandom(32)
