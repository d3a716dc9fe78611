"""A small builder API that produces circuit IR (protobuf). Arrays are named handles."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

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
    def output(self, name: str, value: Arr, recipients: Sequence[str], public_divisor: int = 0,
               description: str = "", reveal_participants: bool = False) -> None:
        self.c.outputs.add(name=name, value=value.name, recipients=list(recipients), public_divisor=public_divisor,
                           description=description, reveal_participants=reveal_participants)

    def build(self) -> cpb.Circuit:
        return self.c
