"""Runs a validated circuit on one party, level by level.

Local (linear) ops cost nothing; every interactive op of one level runs in the same
communication round(s): all degree-2t products of a level (MUL, DOT, SELECT, MUL_ROWS)
are reduced together in ONE round, all comparisons of one kind and bit length form ONE
vectorized comparison, and the remaining interactive ops of the level run concurrently.
"""
from __future__ import annotations

import asyncio
from typing import Callable

import numpy as np

from parley.v1 import circuit_pb2 as cpb

from . import field
from .circuit import Plan
from .protocols import compare
from .protocols.core import Session

Values = dict[str, np.ndarray]


class Executor:
    def __init__(self, session: Session, circuit: cpb.Circuit, plan: Plan,
                 on_level: Callable[[int], None] | None = None):
        self.s = session
        self.circuit = circuit
        self.plan = plan
        self.on_level = on_level or (lambda level: None)

    async def share_node_inputs(self, parties: list[str], my_values: dict[str, np.ndarray]) -> Values:
        """Every owner shares all of its input arrays in one round (concatenated in declaration order)."""
        decls = [d for d in self.circuit.inputs if d.source == cpb.INPUT_SOURCE_NODE]
        lengths: dict[int, int] = {}
        for d in decls:
            owner = parties.index(d.owner)
            lengths[owner] = lengths.get(owner, 0) + d.length
        me = self.s.party
        mine = None
        if me in lengths:
            mine = np.concatenate([my_values[d.name].reshape(-1) for d in decls if d.owner == parties[me]])
        shares = await self.s.share_from_many("inputs/node", {me: mine} if mine is not None else {},
                                              {o: (n,) for o, n in lengths.items()})
        values: Values = {}
        pos: dict[int, int] = {o: 0 for o in lengths}
        for d in decls:
            owner = parties.index(d.owner)
            values[d.name] = shares[owner][pos[owner]:pos[owner] + d.length]
            pos[owner] += d.length
        return values

    async def run(self, values: Values) -> Values:
        """Evaluate every op; returns the shares of every output, keyed by output name."""
        for level, ops in enumerate(self.plan.levels):
            interactive = [op for op in ops if op.kind in _INTERACTIVE_KINDS]
            if interactive:
                await self._interactive_level(level, interactive, values)
            for op in ops:
                if op.kind not in _INTERACTIVE_KINDS:
                    values[op.out] = _local(op, values)
            self.on_level(level)
        return {out.name: values[out.value] for out in self.circuit.outputs}

    async def _interactive_level(self, level: int, ops: list[cpb.Op], values: Values) -> None:
        tasks = []
        products = [op for op in ops if op.kind in (cpb.OP_MUL, cpb.OP_DOT, cpb.OP_SELECT, cpb.OP_MUL_ROWS)]
        if products:
            tasks.append(self._products(f"L{level}/prod", products, values))
        by_bits: dict[int, list[cpb.Op]] = {}
        for op in ops:
            if op.kind in (cpb.OP_LT, cpb.OP_GE):
                by_bits.setdefault(op.bit_length, []).append(op)
        for bits, group in by_bits.items():
            tasks.append(self._compare(f"L{level}/lt{bits}", group, values, bits))
        eqs = [op for op in ops if op.kind == cpb.OP_EQ]
        if eqs:
            tasks.append(self._equal(f"L{level}/eq", eqs, values))
        for op in ops:
            if op.kind == cpb.OP_ARGMAX:
                tasks.append(self._argmax(f"L{level}/{op.out}", op, values))
            elif op.kind == cpb.OP_TOP_TWO:
                tasks.append(self._top_two(f"L{level}/{op.out}", op, values))
            elif op.kind == cpb.OP_ROWS_VALID:
                tasks.append(self._rows_valid(f"L{level}/{op.out}", op, values))
        await _gather_all(tasks)

    async def _products(self, label: str, ops: list[cpb.Op], values: Values) -> None:
        local = []
        for op in ops:
            a = values[op.args[0]]
            if op.kind == cpb.OP_MUL:
                x, y = _broadcast(a, values[op.args[1]], op)
                local.append(field.mul(x, y))
            elif op.kind == cpb.OP_DOT:
                x, y = _same(a, values[op.args[1]], op)
                local.append(field.sum_all(field.mul(x, y)).reshape(1))
            elif op.kind == cpb.OP_SELECT:
                bit = a
                if bit.size != 1:
                    raise ValueError(f"select {op.out}: condition must have length 1")
                x, y = _broadcast(values[op.args[1]], values[op.args[2]], op)
                local.append(field.mul(field.sub(x, y), bit))
            else:  # MUL_ROWS
                width = op.ints[0]
                rows = _rows(a, width, op)
                scale = values[op.args[1]]
                if scale.size != rows.shape[0]:
                    raise ValueError(f"mul_rows {op.out}: {rows.shape[0]} rows but {scale.size} scales")
                local.append(field.mul(rows, scale[:, None]).reshape(-1))
        reduced = await self.s.reduce_degree(label, np.concatenate(local) if len(local) > 1 else local[0])
        pos = 0
        for op, prod in zip(ops, local):
            out = reduced[pos:pos + prod.size]
            pos += prod.size
            if op.kind == cpb.OP_SELECT:
                x, y = _broadcast(values[op.args[1]], values[op.args[2]], op)
                out = field.add(out, y)
            values[op.out] = out

    async def _compare(self, label: str, ops: list[cpb.Op], values: Values, bits: int) -> None:
        pairs = [_broadcast(values[op.args[0]], values[op.args[1]], op) for op in ops]
        a = np.concatenate([p[0] for p in pairs])
        b = np.concatenate([p[1] for p in pairs])
        lt = await compare.less_than(self.s, label, a, b, bits)
        pos = 0
        for op, (x, _) in zip(ops, pairs):
            r = lt[pos:pos + x.size]
            pos += x.size
            values[op.out] = r if op.kind == cpb.OP_LT else field.sub(np.ones_like(r), r)

    async def _equal(self, label: str, ops: list[cpb.Op], values: Values) -> None:
        pairs = [_broadcast(values[op.args[0]], values[op.args[1]], op) for op in ops]
        eq = await compare.equal(self.s, label, np.concatenate([p[0] for p in pairs]),
                                 np.concatenate([p[1] for p in pairs]))
        pos = 0
        for op, (x, _) in zip(ops, pairs):
            values[op.out] = eq[pos:pos + x.size]
            pos += x.size

    async def _argmax(self, label: str, op: cpb.Op, values: Values) -> None:
        idx, mx = await compare.argmax_and_max(self.s, label, values[op.args[0]], op.bit_length)
        values[op.out] = np.concatenate([idx.reshape(1), mx.reshape(1)])

    async def _top_two(self, label: str, op: cpb.Op, values: Values) -> None:
        idx, mx, second = await compare.top_two(self.s, label, values[op.args[0]], op.bit_length)
        values[op.out] = np.concatenate([idx.reshape(1), mx.reshape(1), second.reshape(1)])

    async def _rows_valid(self, label: str, op: cpb.Op, values: Values) -> None:
        rows = _rows(values[op.args[0]], op.ints[0], op)
        # a node input's range was checked by its owner before sharing, so a bounded zero test
        # is sound; client rows are unchecked and get the exact full-field test
        decl = next((d for d in self.circuit.inputs if d.name == op.args[0]), None)
        checked = decl is not None and decl.source == cpb.INPUT_SOURCE_NODE
        values[op.out] = await compare.validate_ballots(self.s, label, rows, exactly_one=bool(op.ints[1]),
                                                        entry_range=(decl.lo, decl.hi) if checked else None)


_INTERACTIVE_KINDS = frozenset({cpb.OP_MUL, cpb.OP_LT, cpb.OP_EQ, cpb.OP_GE, cpb.OP_ARGMAX, cpb.OP_TOP_TWO,
                                cpb.OP_DOT, cpb.OP_SELECT, cpb.OP_MUL_ROWS, cpb.OP_ROWS_VALID})


async def _gather_all(tasks: list) -> None:
    """Run concurrently; if one fails, cancel the rest and raise the first error."""
    if len(tasks) == 1:
        await tasks[0]
        return
    running = [asyncio.ensure_future(t) for t in tasks]
    try:
        await asyncio.gather(*running)
    except BaseException:
        for r in running:
            r.cancel()
        raise


def _broadcast(a: np.ndarray, b: np.ndarray, op: cpb.Op) -> tuple[np.ndarray, np.ndarray]:
    if a.size == b.size:
        return a, b
    if a.size == 1:
        return np.broadcast_to(a, b.shape).copy(), b
    if b.size == 1:
        return a, np.broadcast_to(b, a.shape).copy()
    raise ValueError(f"op {op.out}: lengths {a.size} and {b.size} do not match")


def _same(a: np.ndarray, b: np.ndarray, op: cpb.Op) -> tuple[np.ndarray, np.ndarray]:
    if a.size != b.size:
        raise ValueError(f"op {op.out}: lengths {a.size} and {b.size} differ")
    return a, b


def _rows(a: np.ndarray, width: int, op: cpb.Op) -> np.ndarray:
    if a.size % width:
        raise ValueError(f"op {op.out}: length {a.size} is not a multiple of {width}")
    return a.reshape(-1, width)


def _consts(op: cpb.Op, size: int) -> np.ndarray:
    c = field.asfield(np.array(list(op.consts), dtype=np.int64))
    if c.size not in (1, size):
        raise ValueError(f"op {op.out}: {c.size} constants for {size} elements")
    return c


def _local(op: cpb.Op, values: Values) -> np.ndarray:
    """Linear ops on shares: every party applies them to its own share, no communication."""
    k = op.kind
    a = values[op.args[0]] if op.args else None
    if k == cpb.OP_ADD:
        return field.add(*_broadcast(a, values[op.args[1]], op))
    if k == cpb.OP_SUB:
        return field.sub(*_broadcast(a, values[op.args[1]], op))
    if k == cpb.OP_NEG:
        return field.neg(a)
    if k == cpb.OP_ADD_CONST:
        # adding a public constant: every share shifts by it (the constant polynomial)
        return field.add(a, np.broadcast_to(_consts(op, a.size), a.shape))
    if k == cpb.OP_MUL_CONST:
        return field.mul(a, np.broadcast_to(_consts(op, a.size), a.shape))
    if k == cpb.OP_SUM:
        return field.sum_all(a).reshape(1)
    if k == cpb.OP_CONCAT:
        return np.concatenate([values[x] for x in op.args])
    if k == cpb.OP_SLICE:
        start, stop, step = op.ints
        return a[start:stop:step].copy()
    if k == cpb.OP_RESHAPE_SUM:
        return field.sum_all(_rows(a, op.ints[0], op), axis=0)
    if k == cpb.OP_REPEAT:
        if a.size != 1:
            raise ValueError(f"repeat {op.out}: needs a length-1 array")
        return np.repeat(a, op.ints[0])
    if k == cpb.OP_COUNT_ROWS:
        return field.asfield(np.array([a.size // op.ints[0]], dtype=np.int64))
    raise ValueError(f"op {op.out}: kind {k} is not a local op")
