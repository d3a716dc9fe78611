"""A decoder for the UBJSON that XGBoost's Booster.save_model writes (*.ubj): Universal Binary
JSON draft 12, big-endian, with optimized containers ('$' type, '#' count). Typed numeric arrays
come back as numpy arrays (float32 thresholds stay float32, bit for bit), everything else as
the json module would give it. Written by hand because it is small and the only maintained
library for it (py-ubjson) has had no release since 2020."""
from __future__ import annotations


import numpy as np

_NUMERIC = {b"i": ">i1", b"U": ">u1", b"I": ">i2", b"l": ">i4", b"L": ">i8", b"d": ">f4", b"D": ">f8"}


class UBJSONError(ValueError):
    """The bytes are not the UBJSON this decoder reads."""


def loads(data: bytes) -> object:
    """Decode one UBJSON value from `data` (all of it)."""
    dec = _Decoder(data)
    value = dec.value(dec.marker())
    if dec.pos != len(data):
        raise UBJSONError(f"{len(data) - dec.pos} bytes after the value at offset {dec.pos}")
    return value


class _Decoder:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise UBJSONError(f"truncated at offset {self.pos} (wanted {n} bytes)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def marker(self) -> bytes:
        m = self.take(1)
        while m == b"N":                      # no-op padding
            m = self.take(1)
        return m

    def number(self, m: bytes) -> int | float:
        fmt = _NUMERIC.get(m)
        if fmt is None:
            raise UBJSONError(f"expected a number, found marker {m!r} at offset {self.pos - 1}")
        size = np.dtype(fmt).itemsize
        v = np.frombuffer(self.take(size), dtype=fmt)[0]
        return float(v) if m in (b"d", b"D") else int(v)

    def length(self) -> int:
        n = self.number(self.marker())
        if not isinstance(n, int) or n < 0:
            raise UBJSONError(f"bad length {n!r} at offset {self.pos}")
        return n

    def string(self) -> str:
        return self.take(self.length()).decode("utf-8")

    def value(self, m: bytes) -> object:
        if m in _NUMERIC:
            if m == b"d":                     # keep float32 exact: a Python float holds it exactly
                return float(np.frombuffer(self.take(4), dtype=">f4")[0])
            return self.number(m)
        if m == b"Z":
            return None
        if m == b"T":
            return True
        if m == b"F":
            return False
        if m == b"S":
            return self.string()
        if m == b"C":
            return self.take(1).decode("ascii")
        if m == b"H":
            return float(self.string())
        if m == b"[":
            return self.array()
        if m == b"{":
            return self.obj()
        raise UBJSONError(f"unknown marker {m!r} at offset {self.pos - 1}")

    def container_header(self) -> tuple[bytes | None, int | None]:
        typ = count = None
        if self.data[self.pos:self.pos + 1] == b"$":
            self.pos += 1
            typ = self.take(1)
            if self.take(1) != b"#":
                raise UBJSONError(f"a typed container needs a count, offset {self.pos - 1}")
            count = self.length()
        elif self.data[self.pos:self.pos + 1] == b"#":
            self.pos += 1
            count = self.length()
        return typ, count

    def array(self) -> object:
        typ, count = self.container_header()
        if typ is not None and typ in _NUMERIC:
            size = np.dtype(_NUMERIC[typ]).itemsize
            arr = np.frombuffer(self.take(size * count), dtype=_NUMERIC[typ])
            return arr.astype(arr.dtype.newbyteorder("="))
        out = []
        if count is not None:
            for _ in range(count):
                out.append(self.value(typ if typ is not None else self.marker()))
            return out
        while True:
            m = self.marker()
            if m == b"]":
                return out
            out.append(self.value(m))

    def obj(self) -> dict:
        typ, count = self.container_header()
        out: dict = {}
        if count is not None:
            for _ in range(count):
                key = self.string()
                out[key] = self.value(typ if typ is not None else self.marker())
            return out
        while True:
            if self.data[self.pos:self.pos + 1] == b"}":
                self.pos += 1
                return out
            key = self.string()
            out[key] = self.value(self.marker())


