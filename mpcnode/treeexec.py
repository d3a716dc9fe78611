"""OP_PREDICT in the executor (docs/prediction.md): a kept model's shares and the queries' keys
in, the margins, probabilities or classes of every query out, through protocols/trees.py.

Each predict op of a level runs concurrently with the level's other interactive ops. The round
labels come from structure only (level, op position), never from names a circuit author chose."""
from __future__ import annotations

import numpy as np

from parley.v1 import circuit_pb2 as cpb

from .computation.models import PREDICT_CLASS, PREDICT_PROBABILITY, shape_of
from .engines.base import Engine
from .errors import ConsentStop
from .protocols import treeoutput, trees


def level_tasks(engine: Engine, level: int, ops: list[cpb.Op], values: dict, circuit: cpb.Circuit,
                op_index: dict[str, int]) -> list:
    decls = {d.name: d for d in circuit.inputs}
    return [_predict(engine, f"L{level}/op{op_index[op.out]}", op, values, decls[op.args[0]].model)
            for op in ops if op.kind == cpb.OP_PREDICT]


async def _predict(engine: Engine, label: str, op: cpb.Op, values: dict, model: cpb.TreeModel) -> None:
    shape = shape_of(model)
    trees.check_engine(engine)
    shared = trees.unpack(shape, values[op.args[0]], engine.share_shape)
    flat = values[op.args[1]]
    n = engine.value_shape(flat)[0]
    if n == 0:
        # the querier's rows were all excluded (or it never sent them): every node sees the same
        # agreed rows, so all stop here together, before anything is opened
        raise ConsentStop("no query reached every node in range: nothing to predict")
    keys = flat.reshape((n // shape.features, shape.features) + tuple(engine.share_shape))
    columns = await trees.query_columns_from_keys(engine, f"{label}/keys", keys, shape.library)
    margins = await trees.evaluate(engine, label, shared, columns)                    # (Q, K)
    if op.ints[0] == PREDICT_PROBABILITY:
        out, _ = await treeoutput.probabilities(engine, f"{label}/prob", margins, shape)
    elif op.ints[0] == PREDICT_CLASS:
        out = await treeoutput.predicted_class(engine, f"{label}/class", margins, shape)
    else:
        out = margins
    values[op.out] = np.ascontiguousarray(out).reshape((-1,) + tuple(engine.share_shape))
