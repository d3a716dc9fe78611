"""The executor's fixed-point ops (OP_TRUNC, OP_MUL_TRUNC, OP_RECIPROCAL, OP_EXP, OP_SIGMOID).

They run on the 128-bit replicated engine (engines/replicated3_wide.py) only; the range analysis
refuses them anywhere else (computation/ranges.py). Like the executor's products, every op of one
level that can share a round does:

* all MUL_TRUNC ops of a level with the same truncation (bits d and bound L) are ONE
  `reduce_trunc` over their concatenated local products: one round for the whole group;
* TRUNC ops with the same (d, L) are one `trunc`;
* function ops with the same kind, parameters and operand interval are one batched call of
  protocols/fixedpoint.py.

The bound L of every truncation is this node's own range analysis (`Plan.operands`), never a
number from the coordinator, and it is exactly the L the analysis charged to the job's 2^-40
leakage budget (grouping only merges ops with equal L, so no op is truncated with a larger L
than was counted).
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

import numpy as np

from parley.v1 import circuit_pb2 as cpb

from .protocols import fixedpoint

FIXED_KINDS = frozenset({cpb.OP_TRUNC, cpb.OP_MUL_TRUNC, cpb.OP_RECIPROCAL, cpb.OP_EXP, cpb.OP_SIGMOID})
Values = dict[str, np.ndarray]
Broadcast = Callable[[np.ndarray, np.ndarray, cpb.Op], tuple[np.ndarray, np.ndarray]]


def level_tasks(E: Any, level: int, ops: list[cpb.Op], values: Values, operands: dict[str, tuple[int, int]],
                op_index: dict[str, int], broadcast: Broadcast) -> list[Awaitable[None]]:
    """The coroutines that compute this level's fixed-point ops into `values` (run concurrently
    with the level's other interactive ops)."""
    groups: dict[tuple, list[cpb.Op]] = {}
    for op in ops:
        if op.kind not in FIXED_KINDS:
            continue
        rng = operands.get(op.out)
        if rng is None:
            raise ValueError(f"op {op.out}: no analysed range for a fixed-point op")
        if op.kind in (cpb.OP_TRUNC, cpb.OP_MUL_TRUNC):
            key: tuple = (op.kind, op.ints[0], fixedpoint.trunc_bound(rng, op.ints[0]))
        else:
            key = (op.kind, tuple(op.ints), rng)
        groups.setdefault(key, []).append(op)
    tasks = []
    for key, group in groups.items():
        # labels from structure only (level, kind, the first op's index), as the executor's
        label = f"L{level}/fx{key[0]}/op{op_index[group[0].out]}"
        tasks.append(_run_group(E, label, key, group, values, broadcast))
    return tasks


async def _run_group(E: Any, label: str, key: tuple, ops: list[cpb.Op], values: Values,
                     broadcast: Broadcast) -> None:
    kind = key[0]
    if kind == cpb.OP_MUL_TRUNC:
        _, d, bound = key
        local = [E.mul_local(*broadcast(values[op.args[0]], values[op.args[1]], op)) for op in ops]
        out = await E.reduce_trunc(label, np.concatenate(local) if len(local) > 1 else local[0], d, bound)
    elif kind == cpb.OP_TRUNC:
        _, d, bound = key
        xs = [values[op.args[0]] for op in ops]
        out = await E.trunc(label, np.concatenate(xs) if len(xs) > 1 else xs[0], d, bound)
        local = xs
    else:
        _, ints, rng = key
        xs = [values[op.args[0]] for op in ops]
        x = np.concatenate(xs) if len(xs) > 1 else xs[0]
        local = xs
        if kind == cpb.OP_RECIPROCAL:
            out = await fixedpoint.reciprocal(E, label, x, ints[0], rng, ints[1])
        elif kind == cpb.OP_EXP:
            out = await fixedpoint.exp(E, label, x, ints[0], rng)
        else:
            out = await fixedpoint.sigmoid(E, label, x, ints[0], rng)
    pos = 0
    for op, part in zip(ops, local):
        values[op.out] = out[pos:pos + len(part)]
        pos += len(part)
