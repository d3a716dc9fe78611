"""Protobuf stops here: arrays travel as little-endian uint64 bytes plus a shape."""
from __future__ import annotations

import numpy as np

from .. import field

MAX_DIMS = 32


def encode(arr: np.ndarray) -> tuple[bytes, list[int]]:
    return np.ascontiguousarray(arr, dtype="<u8").tobytes(), list(arr.shape)


def check_shape(shape: list[int] | tuple[int, ...], nbytes: int, what: str) -> None:
    """`nbytes` of uint64 elements fill exactly `shape` (checked without a huge product)."""
    if len(shape) > MAX_DIMS:
        raise ValueError(f"{what}: {len(shape)} dimensions, at most {MAX_DIMS}")
    if any(d < 0 for d in shape):
        raise ValueError(f"{what}: negative dimension")
    count = 0 if 0 in shape else 1
    for d in shape:
        count *= d
        if count > nbytes // 8:  # stop early: a hostile shape must not cost a huge product
            break
    if nbytes != 8 * count:
        raise ValueError(f"{what}: {nbytes} bytes do not hold shape {list(shape)}")


def decode(payload: bytes | memoryview, shape: list[int] | tuple[int, ...], what: str,
           field_elements: bool = True) -> np.ndarray:
    """Decode and validate peer-supplied values: length matches shape and, for a job over the prime
    field (field_elements), every element < p; over the ring Z_2^64 every uint64 is an element.
    The array is a read-only view of `payload` (no copy)."""
    check_shape(shape, len(payload), what)
    arr = np.frombuffer(payload, dtype="<u8").astype(np.uint64, copy=False).reshape(tuple(shape))
    return field.check_canonical(arr, what) if field_elements else arr
