"""OP_NOISE in the executor: every noise op of one level in as few batches as possible.

Ops with the same DpNoise (mechanism, source, scale, min_live) are concatenated into one call of
protocols/noise.py add_noise (distributed: one share_inputs round for all of them; mpc: one
random_bits and one comparison batch); ops with different noise run concurrently."""
from __future__ import annotations

import numpy as np

from parley.v1 import circuit_pb2 as cpb

from .engines.base import Engine
from .protocols import noise as noise_protocol


def level_tasks(engine: Engine, level: int, ops: list[cpb.Op], values: dict) -> list:
    groups: dict[bytes, list[cpb.Op]] = {}
    for op in ops:
        if op.kind == cpb.OP_NOISE:
            groups.setdefault(op.noise.SerializeToString(deterministic=True), []).append(op)
    # labels from structure only (level, group position), never from names a circuit author chose
    return [_noise_group(engine, f"L{level}/noise{i}", group, values) for i, group in enumerate(groups.values())]


async def _noise_group(engine: Engine, label: str, ops: list[cpb.Op], values: dict) -> None:
    xs = [values[op.args[0]] for op in ops]
    both = np.concatenate(xs) if len(xs) > 1 else xs[0]
    noisy = await noise_protocol.add_noise(engine, label, both, ops[0].noise)
    pos = 0
    for op, x in zip(ops, xs):
        values[op.out] = noisy[pos:pos + len(x)]
        pos += len(x)
