"""Runs a validated circuit on one party, level by level, through an engine (engines/base.py).

Local (linear) ops cost nothing; every interactive op of one level runs in the same
communication round(s): all products of a level (MUL, DOT, SELECT, MUL_ROWS) are reduced
together in ONE round (the engine's mul_local + reduce), all comparisons of one kind and bit
length form ONE vectorized comparison, and the remaining interactive ops of the level run
concurrently. Fixed-point ops (fixedexec.py) fuse the same way: a level's fixed-point products
are one `reduce_trunc` round.

The executor never looks inside a share: arithmetic goes through the engine, and structural ops
(concat, slice, repeat, rows) act on the leading value axis only, so the same code runs an engine
whose shares hold several ring elements per value (engines/base.py, "Shares").
"""
from __future__ import annotations

import asyncio
from typing import Callable

import numpy as np

from parley.v1 import circuit_pb2 as cpb

from . import fixedexec, noiseexec, treeexec
from .circuit import Plan
from .engines.base import Engine
from .protocols import ballots, selection

Values = dict[str, np.ndarray]


class Executor:
    def __init__(self, engine: Engine, circuit: cpb.Circuit, plan: Plan,
                 on_level: Callable[[int], None] | None = None):
        self.engine = engine
        self.circuit = circuit
        self.plan = plan
        self.on_level = on_level or (lambda level: None)
        # {client input name: int64 tag per accepted row, in row order}: each row's client as its
        # position in the input's approved `clients` list; set by whoever fixed the rows
        # (jobrun.take_client_rows), read by ARGMAX / TOP_TWO ops that carry tags (Op.tags). Not a
        # constructor argument: the executor exists before the nodes agree on the rows, so
        # jobrun.run_job assigns this attribute then; public, the same at every live node
        self.row_tags: dict[str, np.ndarray] = {}
        self._column_sums = _fusable_column_sums(circuit)
        self._fused_sums = frozenset(self._column_sums.values())    # computed with their products
        # round labels are built from structure only (level, kind, op index), never from a name a
        # circuit author chose: an op named "prod" must not share the label, and so the seeds
        # (engines derive seeded shares from (job key, label)), of a level's products round
        self._op_index = {op.out: i for i, op in enumerate(circuit.ops)}

    async def share_node_inputs(self, parties: list[str], my_values: dict[str, np.ndarray]) -> Values:
        """Every owner among the compute parties shares all of its input arrays in one round
        (concatenated in declaration order). Inputs of input-only parties are not dealt here: their
        owners submitted their shares (jobrun.take_owner_inputs)."""
        decls = [d for d in self.circuit.inputs if d.source == cpb.INPUT_SOURCE_NODE and d.owner in parties]
        lengths: dict[int, int] = {}
        for d in decls:
            owner = parties.index(d.owner)
            lengths[owner] = lengths.get(owner, 0) + d.length
        me = self.engine.party
        mine = None
        if me in lengths:
            mine = np.concatenate([my_values[d.name].reshape(-1) for d in decls if d.owner == parties[me]])
        shares = await self.engine.share_inputs("inputs/node", {me: mine} if mine is not None else {},
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
                if op.kind not in _INTERACTIVE_KINDS and op.out not in self._fused_sums:
                    values[op.out] = _local(self.engine, op, values)
            self.on_level(level)
        outputs = {out.name: values[out.value] for out in self.circuit.outputs}
        if getattr(self.engine, "ring_bits", 64) == 128:
            # outputs leave as Z_2^64 shares (the range analysis bounds them below 2^63), so the
            # store, the release and every recipient stay as they are: the downcast is local, exact
            outputs = {name: self.engine.downcast(x) for name, x in outputs.items()}
        return outputs

    async def _interactive_level(self, level: int, ops: list[cpb.Op], values: Values) -> None:
        tasks = []
        products = [op for op in ops if op.kind in (cpb.OP_MUL, cpb.OP_DOT, cpb.OP_SELECT, cpb.OP_MUL_ROWS)]
        if products:
            tasks.append(self._products(f"L{level}/prod", products, values))
        by_bits: dict[int, list[cpb.Op]] = {}
        for op in ops:
            if op.kind in (cpb.OP_LT, cpb.OP_GE):
                by_bits.setdefault(self._bits_for(op, op.bit_length), []).append(op)
        for bits, group in by_bits.items():
            tasks.append(self._compare(f"L{level}/lt{bits}", group, values, bits))
        eqs = [op for op in ops if op.kind == cpb.OP_EQ]
        if eqs:
            tasks.append(self._equal(f"L{level}/eq", eqs, values))
        for op in ops:
            if op.kind == cpb.OP_ARGMAX:
                tasks.append(self._argmax(f"L{level}/op{self._op_index[op.out]}", op, values))
            elif op.kind == cpb.OP_TOP_TWO:
                tasks.append(self._top_two(f"L{level}/op{self._op_index[op.out]}", op, values))
            elif op.kind == cpb.OP_ROWS_VALID:
                tasks.append(self._rows_valid(f"L{level}/op{self._op_index[op.out]}", op, values))
        tasks += noiseexec.level_tasks(self.engine, level, ops, values)
        tasks += treeexec.level_tasks(self.engine, level, ops, values, self.circuit, self._op_index)
        tasks += fixedexec.level_tasks(self.engine, level, ops, values, self.plan.operands, self._op_index, _broadcast)
        await _gather_all(tasks)

    async def _products(self, label: str, ops: list[cpb.Op], values: Values) -> None:
        E = self.engine
        local = []
        for op in ops:
            a = values[op.args[0]]
            if op.kind == cpb.OP_MUL:
                local.append(E.mul_local(*_broadcast(a, values[op.args[1]], op)))
            elif op.kind == cpb.OP_DOT:
                # only the sum is reduced: an inner product of any length costs one element
                x, y = _same(a, values[op.args[1]], op)
                local.append(E.sum(E.mul_local(x, y), keepdims=True))
            elif op.kind == cpb.OP_SELECT:
                bit = a
                if len(bit) != 1:
                    raise ValueError(f"select {op.out}: condition must have length 1")
                x, y = _broadcast(values[op.args[1]], values[op.args[2]], op)
                local.append(E.mul_local(E.sub(x, y), bit))      # bit ? x : y = y + bit (x - y)
            else:  # MUL_ROWS
                width = op.ints[0]
                rows = _rows(a, width, op)
                scale = values[op.args[1]]
                if len(scale) != len(rows):
                    raise ValueError(f"mul_rows {op.out}: {len(rows)} rows but {len(scale)} scales")
                prod = E.mul_local(rows, np.expand_dims(scale, 1))
                if op.out in self._column_sums:
                    # only its column sums are used: sum the local products first and reduce
                    # `width` elements instead of every row's (a tally of N ballots costs K)
                    local.append(E.sum(prod, axis=0))
                else:
                    local.append(prod.reshape((-1,) + prod.shape[2:]))
        reduced = await E.reduce(label, np.concatenate(local) if len(local) > 1 else local[0])
        pos = 0
        for op, prod in zip(ops, local):
            out = reduced[pos:pos + len(prod)]
            pos += len(prod)
            if op.kind == cpb.OP_SELECT:
                x, y = _broadcast(values[op.args[1]], values[op.args[2]], op)
                out = E.add(out, y)
            if op.out in self._column_sums:
                values[self._column_sums[op.out]] = out     # the RESHAPE_SUM's result; the rows never exist
                continue
            values[op.out] = out

    def _bits_for(self, op: cpb.Op, bits: int) -> int:
        """`bits`, or for operands nobody range-checked the engine's exact comparison's bit_length."""
        return bits if all(a in self.plan.checked for a in op.args) else self.engine.exact_bit_length(bits)

    async def _compare(self, label: str, ops: list[cpb.Op], values: Values, bits: int) -> None:
        E = self.engine
        pairs = [_broadcast(values[op.args[0]], values[op.args[1]], op) for op in ops]
        lt = await E.less_than(label, np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]),
                               bits)
        pos = 0
        for op, (x, _) in zip(ops, pairs):
            r = lt[pos:pos + len(x)]
            pos += len(x)
            values[op.out] = r if op.kind == cpb.OP_LT else E.one_minus(r)

    async def _equal(self, label: str, ops: list[cpb.Op], values: Values) -> None:
        pairs = [_broadcast(values[op.args[0]], values[op.args[1]], op) for op in ops]
        eq = await self.engine.equal(label, np.concatenate([p[0] for p in pairs]),
                                     np.concatenate([p[1] for p in pairs]))
        pos = 0
        for op, (x, _) in zip(ops, pairs):
            values[op.out] = eq[pos:pos + len(x)]
            pos += len(x)

    def _tags(self, op: cpb.Op) -> np.ndarray | None:
        if not op.tags:
            return None
        if op.tags not in self.row_tags:
            raise ValueError(f"op {op.out}: no row tags for client input {op.tags!r}")
        return self.row_tags[op.tags]

    async def _argmax(self, label: str, op: cpb.Op, values: Values) -> None:
        if not len(values[op.args[0]]):
            values[op.out] = self._empty_tournament(op, 2)
            return
        idx, mx = await selection.argmax_and_max(self.engine, label, values[op.args[0]],
                                                 self._bits_for(op, op.bit_length), self._tags(op))
        values[op.out] = np.concatenate([idx, mx])

    async def _top_two(self, label: str, op: cpb.Op, values: Values) -> None:
        if not len(values[op.args[0]]):
            values[op.out] = self._empty_tournament(op, 3)
            return
        idx, mx, second = await selection.top_two(self.engine, label, values[op.args[0]],
                                                  self._bits_for(op, op.bit_length), self._tags(op))
        values[op.out] = np.concatenate([idx, mx, second])

    def _empty_tournament(self, op: cpb.Op, width: int) -> np.ndarray:
        """argmax / top_two of zero rows (an auction nobody bid in): index 0, and the maximum and
        second "minus infinity", the sentinel -(2^bit_length) top_two already gives a single value's
        second (computation/ranges.py bounds both outputs with it when the row count is not fixed),
        so any `max >= floor` is 0: no sale. The row count is public and agreed (it fixes every
        shape), so every node takes this path, with no round, and nothing more is revealed."""
        sentinel = -(1 << op.bit_length)
        return self.engine.constant(self.engine.encode(np.array([0] + [sentinel] * (width - 1), dtype=np.int64)))

    async def _rows_valid(self, label: str, op: cpb.Op, values: Values) -> None:
        rows = _rows(values[op.args[0]], op.ints[0], op)
        # a compute party's node input was range-checked by its own node before sharing, and a
        # client row inside MPC before the circuit (out of range: excluded), so a bounded zero
        # test is sound; input-only organizations' inputs are unchecked and get the exact test
        decl = next((d for d in self.circuit.inputs if d.name == op.args[0]), None)
        checked = decl is not None and decl.name in self.plan.checked
        values[op.out] = await ballots.validate_ballots(self.engine, label, rows, exactly_one=bool(op.ints[1]),
                                                        entry_range=(decl.lo, decl.hi) if checked else None)


_INTERACTIVE_KINDS = frozenset({cpb.OP_MUL, cpb.OP_LT, cpb.OP_EQ, cpb.OP_GE, cpb.OP_ARGMAX, cpb.OP_TOP_TWO,
                                cpb.OP_DOT, cpb.OP_SELECT, cpb.OP_MUL_ROWS, cpb.OP_ROWS_VALID, cpb.OP_NOISE,
                                cpb.OP_PREDICT}) | fixedexec.FIXED_KINDS


def _fusable_column_sums(circuit: cpb.Circuit) -> dict[str, str]:
    """{MUL_ROWS output: the RESHAPE_SUM output} for every MUL_ROWS whose only use is one
    RESHAPE_SUM over rows of the same width (column sums, as a tally is): its products can be
    summed locally before the reduction round. The values computed are the same; only the
    RESHAPE_SUM's result is ever held."""
    uses: dict[str, list[cpb.Op]] = {}
    for op in circuit.ops:
        for arg in op.args:
            uses.setdefault(arg, []).append(op)
    opened = {out.value for out in circuit.outputs}
    fused = {}
    for op in circuit.ops:
        if op.kind != cpb.OP_MUL_ROWS or op.out in opened:
            continue
        users = uses.get(op.out, [])
        if len(users) == 1 and users[0].kind == cpb.OP_RESHAPE_SUM and list(users[0].args) == [op.out] \
                and users[0].ints[0] == op.ints[0]:
            fused[op.out] = users[0].out
    return fused


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
    """Equal lengths, or a length-1 operand repeated to the other's length."""
    if len(a) == len(b):
        return a, b
    if len(a) == 1:
        return np.broadcast_to(a, b.shape[:1] + a.shape[1:]).copy(), b
    if len(b) == 1:
        return a, np.broadcast_to(b, a.shape[:1] + b.shape[1:]).copy()
    raise ValueError(f"op {op.out}: lengths {len(a)} and {len(b)} do not match")


def _same(a: np.ndarray, b: np.ndarray, op: cpb.Op) -> tuple[np.ndarray, np.ndarray]:
    if len(a) != len(b):
        raise ValueError(f"op {op.out}: lengths {len(a)} and {len(b)} differ")
    return a, b


def _rows(a: np.ndarray, width: int, op: cpb.Op) -> np.ndarray:
    """A flat array as rows of `width` values (component axes kept)."""
    if len(a) % width:
        raise ValueError(f"op {op.out}: length {len(a)} is not a multiple of {width}")
    return a.reshape((-1, width) + a.shape[1:])


def _consts(E: Engine, op: cpb.Op, size: int) -> np.ndarray:
    """The op's signed constants in the engine's plaintext domain, one or one per element."""
    c = E.encode(np.array(list(op.consts), dtype=np.int64))
    if c.size not in (1, size):
        raise ValueError(f"op {op.out}: {c.size} constants for {size} elements")
    return np.broadcast_to(c, (size,))


def _local(E: Engine, op: cpb.Op, values: Values) -> np.ndarray:
    """Linear and structural ops on shares: every party applies them to its own share, no
    communication."""
    k = op.kind
    a = values[op.args[0]] if op.args else None
    if k == cpb.OP_ADD:
        return E.add(*_broadcast(a, values[op.args[1]], op))
    if k == cpb.OP_SUB:
        return E.sub(*_broadcast(a, values[op.args[1]], op))
    if k == cpb.OP_NEG:
        return E.neg(a)
    if k == cpb.OP_ADD_CONST:
        return E.add_const(a, _consts(E, op, len(a)))
    if k == cpb.OP_MUL_CONST:
        return E.mul_const(a, _consts(E, op, len(a)))
    if k == cpb.OP_SUM:
        return E.sum(a, keepdims=True)
    if k == cpb.OP_CONCAT:
        return np.concatenate([values[x] for x in op.args])
    if k == cpb.OP_SLICE:
        start, stop, step = op.ints
        return a[start:stop:step].copy()
    if k == cpb.OP_RESHAPE_SUM:
        return E.sum(_rows(a, op.ints[0], op), axis=0)
    if k == cpb.OP_REPEAT:
        if len(a) != 1:
            raise ValueError(f"repeat {op.out}: needs a length-1 array")
        return np.repeat(a, op.ints[0], axis=0)
    if k == cpb.OP_COUNT_ROWS:
        # the number of rows is public (it fixes the shapes): a constant share
        return E.constant(E.encode([len(a) // op.ints[0]]))
    raise ValueError(f"op {op.out}: kind {k} is not a local op")
