"""A small builder API that produces circuit IR (protobuf). Arrays are named handles.

Fixed point (docs/protocols.md, "Fixed-point numbers"): `fixed_input` / `fixed_client_input`
declare real-valued inputs with f fractional bits and return a `Fixed`, on which `+ - * /`,
comparisons, `select`, `sigmoid`, `exp` and `reciprocal` keep the scale bookkeeping: a product of
two values with f bits is truncated back to f bits in the same round (OP_MUL_TRUNC), a division is
x * reciprocal(y). `build()` then asks for the 128-bit ring when the circuit truncates; the range
analysis (computation/ranges.py) bounds every value and refuses what would overflow.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

from parley.v1 import circuit_pb2 as cpb


@dataclass(frozen=True)
class Arr:
    """A named array in the circuit under construction."""
    b: "CircuitBuilder"
    name: str

    def __add__(self, other: "Arr | int") -> "Arr":
        return self.b.add(self, other)

    def __sub__(self, other: "Arr | int") -> "Arr":
        return self.b.sub(self, other)

    def __mul__(self, other: "Arr | int") -> "Arr":
        return self.b.mul(self, other)

    def __neg__(self) -> "Arr":
        return self.b._op(cpb.OP_NEG, [self])

    def __getitem__(self, s: slice | int) -> "Arr":
        if isinstance(s, int):
            s = slice(s, s + 1 if s != -1 else None)
        return self.b.slice(self, s.start or 0, s.stop, s.step or 1)


Real = Union[int, float]


def encode_fixed(x: float, f: int) -> int:
    """The fixed-point encoding of x with f fractional bits: round(x * 2^f), ties to even (the
    same rule as numpy's rint, which input owners use: inputs.encode_fixed_values)."""
    if not math.isfinite(x):
        raise ValueError(f"{x!r} is not a finite number")
    return round(x * (1 << f))


@dataclass(frozen=True)
class Fixed:
    """A fixed-point array: the integers `arr` stand for arr / 2^f."""
    arr: Arr
    f: int

    @property
    def b(self) -> "CircuitBuilder":
        return self.arr.b

    def _other(self, other: "Fixed | Real") -> "Fixed":
        if isinstance(other, Fixed):
            if other.f != self.f:
                raise ValueError(f"fixed-point operands with {self.f} and {other.f} fractional bits: rescale first")
            return other
        raise TypeError(type(other).__name__)

    def __add__(self, other: "Fixed | Real") -> "Fixed":
        if not isinstance(other, Fixed):
            return Fixed(self.b.add(self.arr, encode_fixed(other, self.f)), self.f)
        return Fixed(self.b.add(self.arr, self._other(other).arr), self.f)

    __radd__ = __add__

    def __sub__(self, other: "Fixed | Real") -> "Fixed":
        if not isinstance(other, Fixed):
            return Fixed(self.b.add(self.arr, -encode_fixed(other, self.f)), self.f)
        return Fixed(self.b.sub(self.arr, self._other(other).arr), self.f)

    def __neg__(self) -> "Fixed":
        return Fixed(-self.arr, self.f)

    def __mul__(self, other: "Fixed | Real") -> "Fixed":
        if isinstance(other, int) and not isinstance(other, bool):
            return Fixed(self.b.scale(self.arr, other), self.f)     # exact, local
        if isinstance(other, float):
            # x * c: multiply by c's encoding (local), then one truncation back to f bits
            return Fixed(self.b.trunc(self.b.scale(self.arr, encode_fixed(other, self.f)), self.f), self.f)
        o = self._other(other)
        return Fixed(self.b.mul_trunc(self.arr, o.arr, self.f), self.f)

    __rmul__ = __mul__

    def __truediv__(self, other: "Fixed | Real") -> "Fixed":
        if isinstance(other, Fixed):
            return self * self.b.reciprocal(other)
        return self * (1.0 / other)

    def sum(self) -> "Fixed":
        return Fixed(self.b.sum(self.arr), self.f)

    def __getitem__(self, s: slice | int) -> "Fixed":
        return Fixed(self.arr[s], self.f)

    def lt(self, other: "Fixed") -> Arr:
        """[self < other] as a 0/1 integer array; the bit length comes from the range analysis."""
        o = self._other(other)
        return self.b.lt(self.arr, o.arr, self.b.bit_length_for(self.arr, o.arr))

    def ge(self, other: "Fixed") -> Arr:
        o = self._other(other)
        return self.b.ge(self.arr, o.arr, self.b.bit_length_for(self.arr, o.arr))

    def __lt__(self, other: "Fixed") -> Arr:
        return self.lt(other)

    def __ge__(self, other: "Fixed") -> Arr:
        return self.ge(other)

    def __gt__(self, other: "Fixed") -> Arr:
        return self._other(other).lt(self)

    def __le__(self, other: "Fixed") -> Arr:
        return self._other(other).ge(self)


class CircuitBuilder:
    def __init__(self, name: str):
        self.c = cpb.Circuit(name=name)
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}{self._count}"

    def _op(self, kind: int, args: Sequence[Arr], consts: Sequence[int] = (), ints: Sequence[int] = (),
            bit_length: int = 0, out: str | None = None, tags: str = "") -> Arr:
        name = out or self._name(cpb.OpKind.Name(kind)[3:].lower() + "_")
        self.c.ops.add(out=name, kind=kind, args=[a.name for a in args], consts=list(consts), ints=list(ints),
                       bit_length=bit_length, tags=tags)
        return Arr(self, name)

    # ---- inputs -----------------------------------------------------------------
    def input(self, name: str, owner: str, length: int, lo: int, hi: int, key: str = "", dataset: str = "") -> Arr:
        """An array the owner's node reads from field `key` (default: name) of its local `dataset`
        (default: the circuit's name)."""
        self.c.inputs.add(name=name, owner=owner, length=length, lo=lo, hi=hi, source=cpb.INPUT_SOURCE_NODE, key=key,
                          dataset=dataset or self.c.name)
        return Arr(self, name)

    def client_input(self, name: str, clients: Sequence[str], length: int, lo: int, hi: int) -> Arr:
        """Rows submitted by light input clients, each row `length` values, concatenated."""
        self.c.inputs.add(name=name, length=length, lo=lo, hi=hi, source=cpb.INPUT_SOURCE_CLIENTS,
                          clients=list(clients))
        return Arr(self, name)

    def fixed_input(self, name: str, owner: str, length: int, lo: float, hi: float, frac_bits: int = 16,
                    key: str = "", dataset: str = "") -> Fixed:
        """A real-valued node input with `frac_bits` fractional bits; its declared range is the
        encodings of lo and hi (the owner checks each encoded value before sharing)."""
        arr = self.input(name, owner, length, encode_fixed(lo, frac_bits), encode_fixed(hi, frac_bits), key, dataset)
        self.c.inputs[-1].frac_bits = frac_bits
        return Fixed(arr, frac_bits)

    def fixed_client_input(self, name: str, clients: Sequence[str], length: int, lo: float, hi: float,
                           frac_bits: int = 16) -> Fixed:
        arr = self.client_input(name, clients, length, encode_fixed(lo, frac_bits), encode_fixed(hi, frac_bits))
        self.c.inputs[-1].frac_bits = frac_bits
        return Fixed(arr, frac_bits)

    # ---- fixed point (one round each; need the 128-bit ring) ---------------------------
    def trunc(self, a: Arr, bits: int) -> Arr:
        """a / 2^bits, within 2 units of the last place."""
        return self._op(cpb.OP_TRUNC, [a], ints=[bits])

    def mul_trunc(self, a: Arr, b: Arr, bits: int) -> Arr:
        """a * b / 2^bits in one round: the product of two fixed-point values with `bits` bits."""
        return self._op(cpb.OP_MUL_TRUNC, [a, b], ints=[bits])

    def reciprocal(self, x: Fixed, iterations: int = 2) -> Fixed:
        """1/x; x's declared range must be positive (protocols/fixedpoint.py reciprocal)."""
        return Fixed(self._op(cpb.OP_RECIPROCAL, [x.arr], ints=[x.f, iterations]), x.f)

    def exp(self, x: Fixed) -> Fixed:
        return Fixed(self._op(cpb.OP_EXP, [x.arr], ints=[x.f]), x.f)

    def sigmoid(self, x: Fixed) -> Fixed:
        return Fixed(self._op(cpb.OP_SIGMOID, [x.arr], ints=[x.f]), x.f)

    def square_of_sum(self, x: Fixed) -> Fixed:
        """(sum of x)^2: the sum is exact (no truncation), then one fixed-point product whose bound
        the range analysis takes from the sum's range (n * max|x|)^2."""
        s = x.sum()
        return s * s

    def select_fixed(self, bit: Arr, a: Fixed, b: Fixed) -> Fixed:
        return Fixed(self.select(bit, a.arr, a._other(b).arr), a.f)

    def bit_length_for(self, *arrays: Arr) -> int:
        """The least bit_length the range analysis accepts for comparing these arrays."""
        from . import ranges       # here: ranges imports the circuit module, which the builder must not need
        env = ranges.values_so_far(self.c)
        worst = 0
        for a in arrays:
            h = env[a.name].hull()
            if h:
                worst = max(worst, abs(h[0]), abs(h[1]))
        return max(worst.bit_length(), 1)

    # ---- linear -----------------------------------------------------------------
    def add(self, a: Arr, b: Arr | int) -> Arr:
        if isinstance(b, int):
            return self._op(cpb.OP_ADD_CONST, [a], consts=[b])
        return self._op(cpb.OP_ADD, [a, b])

    def sub(self, a: Arr, b: Arr | int) -> Arr:
        if isinstance(b, int):
            return self._op(cpb.OP_ADD_CONST, [a], consts=[-b])
        return self._op(cpb.OP_SUB, [a, b])

    def scale(self, a: Arr, c: int | Sequence[int]) -> Arr:
        return self._op(cpb.OP_MUL_CONST, [a], consts=[c] if isinstance(c, int) else list(c))

    def sum(self, a: Arr) -> Arr:
        return self._op(cpb.OP_SUM, [a])

    def concat(self, arrays: Sequence[Arr]) -> Arr:
        return self._op(cpb.OP_CONCAT, list(arrays))

    def slice(self, a: Arr, start: int, stop: int | None, step: int = 1) -> Arr:
        return self._op(cpb.OP_SLICE, [a], ints=[start, stop if stop is not None else 2**62, step])

    def column_sums(self, a: Arr, columns: int) -> Arr:
        return self._op(cpb.OP_RESHAPE_SUM, [a], ints=[columns])

    def repeat(self, a: Arr, times: int) -> Arr:
        return self._op(cpb.OP_REPEAT, [a], ints=[times])

    def count_rows(self, a: Arr, columns: int) -> Arr:
        return self._op(cpb.OP_COUNT_ROWS, [a], ints=[columns])

    # ---- interactive --------------------------------------------------------------
    def mul(self, a: Arr, b: Arr | int) -> Arr:
        if isinstance(b, int):
            return self.scale(a, b)
        return self._op(cpb.OP_MUL, [a, b])

    def dot(self, a: Arr, b: Arr) -> Arr:
        return self._op(cpb.OP_DOT, [a, b])

    def mul_rows(self, rows: Arr, columns: int, scale: Arr) -> Arr:
        return self._op(cpb.OP_MUL_ROWS, [rows, scale], ints=[columns])

    def select(self, bit: Arr, a: Arr, b: Arr) -> Arr:
        return self._op(cpb.OP_SELECT, [bit, a, b])

    def lt(self, a: Arr, b: Arr, bit_length: int) -> Arr:
        return self._op(cpb.OP_LT, [a, b], bit_length=bit_length)

    def ge(self, a: Arr, b: Arr, bit_length: int) -> Arr:
        return self._op(cpb.OP_GE, [a, b], bit_length=bit_length)

    def eq(self, a: Arr, b: Arr) -> Arr:
        return self._op(cpb.OP_EQ, [a, b])

    def argmax(self, a: Arr, bit_length: int, tagged: bool = False) -> Arr:
        """[index of the first maximum, maximum]. `tagged` (a client input of one value per row):
        the index is the winning row's client's position in the input's `clients` list."""
        return self._op(cpb.OP_ARGMAX, [a], bit_length=bit_length, tags=a.name if tagged else "")

    def top_two(self, a: Arr, bit_length: int, tagged: bool = False) -> Arr:
        """[index of the first maximum, maximum, largest of the others]; `tagged` as for argmax."""
        return self._op(cpb.OP_TOP_TWO, [a], bit_length=bit_length, tags=a.name if tagged else "")

    def rows_valid(self, a: Arr, columns: int, exactly_one: bool) -> Arr:
        return self._op(cpb.OP_ROWS_VALID, [a], ints=[columns, int(exactly_one)])

    # ---- outputs ------------------------------------------------------------------
    def output(self, name: str, value: Arr | Fixed, recipients: Sequence[str], public_divisor: int = 0,
               description: str = "", reveal_participants: bool = False) -> None:
        """Open `value` to the recipients; a Fixed value is decoded (divided by 2^f) by them."""
        frac_bits = value.f if isinstance(value, Fixed) else 0
        arr = value.arr if isinstance(value, Fixed) else value
        self.c.outputs.add(name=name, value=arr.name, recipients=list(recipients), public_divisor=public_divisor,
                           description=description, reveal_participants=reveal_participants, frac_bits=frac_bits)

    def build(self, protocol: str | None = None) -> cpb.Circuit:
        """The circuit. Its ring: 128 bits if it truncates (fixed-point products and functions);
        with `protocol`, the ring the range analysis requires, and the analysis runs now, so an
        overflowing circuit is refused here (RangeError naming the op) rather than by the nodes."""
        from . import ranges
        if protocol is None:
            self.c.ring_bits = 128 if any(op.kind in ranges.FIXED_OPS for op in self.c.ops) else 0
            return self.c
        ring = ranges.required_ring(self.c, protocol)
        self.c.ring_bits = 128 if ring == 128 else 0
        ranges.analysis(self.c, protocol)
        return self.c
