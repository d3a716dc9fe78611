"""The circuit rules of tree models (docs/prediction.md): a `model` job keeps the owner's model
at the compute nodes; a `predict` job reads it (INPUT_SOURCE_MODEL) into OP_PREDICT ops only.

What these rules stop a coordinator from doing with a circuit the nodes check:
* opening a model, or computing anything from it but predictions: a model value may be read by
  OP_PREDICT (as its model) and by nothing else, not even an output; a kept model feeds nothing;
* predicting on another engine, or with a shape other than the model's (each node also checks
  the shape against the one it stored, models.check_predict);
* charging nobody: a prediction is always an output, and never an operand of another op, so its
  recipients, who are charged its queries (query_charges), are exactly who learns anything from
  it; each compute node counts the charges against the owner's grants.
"""
from __future__ import annotations

from typing import Iterable

from parley.v1 import circuit_pb2 as cpb

from ..protocols.trees import ModelShape
from ..trees.forest import KINDS, LIBRARIES, MAX_DEPTH
from ..trees.keys import KEY_INF, KEY_NAN

MODEL_VALUE_BOUND = (1 << 59) - 1          # a model input's declared range: the field's signed range
MAX_TREES = 10_000
MAX_FEATURES = 10_000
MAX_CLASSES = 1_000
MAX_FRACTION_BITS = 40
PREDICT_MARGIN, PREDICT_PROBABILITY, PREDICT_CLASS = 0, 1, 2
PREDICT_MODES = {"margin": PREDICT_MARGIN, "probability": PREDICT_PROBABILITY, "class": PREDICT_CLASS}
PROBABILITY_FRAC_BITS = 16                 # probabilities leave as round(p 2^16): protocols/treeoutput.PROB_FRAC
PROBABILITY_MIN_FRAC_BITS = 18             # protocols/treeoutput.PROB_MIN_FRAC
_FIXED_KINDS = frozenset({cpb.OP_TRUNC, cpb.OP_MUL_TRUNC, cpb.OP_RECIPROCAL, cpb.OP_EXP, cpb.OP_SIGMOID})
MARGIN_BOUND = 1 << 62                     # trees/plain.encode_leaves refuses models whose margins could reach it


class ModelRuleError(ValueError):
    """A model declaration or prediction op breaks a rule; the message names it (circuit.validate
    turns it into a CircuitError)."""


def shape_of(m: cpb.TreeModel) -> ModelShape:
    return ModelShape(trees=m.trees, depth=m.depth, features=m.features, classes=m.classes,
                      tree_class=tuple(int(c) for c in m.tree_class), library=m.library,
                      fraction_bits=m.fraction_bits, kind=m.kind, feature_names=tuple(m.feature_names))


def tree_model(shape: ModelShape) -> cpb.TreeModel:
    return cpb.TreeModel(trees=shape.trees, depth=shape.depth, features=shape.features, classes=shape.classes,
                         tree_class=list(shape.tree_class), library=shape.library, kind=shape.kind,
                         fraction_bits=shape.fraction_bits, feature_names=list(shape.feature_names))


def check_shape(m: cpb.TreeModel, where: str) -> None:
    """The public shape is well formed and small enough to plan for."""
    if not 1 <= m.trees <= MAX_TREES:
        raise ModelRuleError(f"{where}: trees must be 1..{MAX_TREES}")
    if not 1 <= m.depth <= MAX_DEPTH:
        raise ModelRuleError(f"{where}: depth must be 1..{MAX_DEPTH}")
    if not 1 <= m.features <= MAX_FEATURES:
        raise ModelRuleError(f"{where}: features must be 1..{MAX_FEATURES}")
    if not 1 <= m.classes <= MAX_CLASSES:
        raise ModelRuleError(f"{where}: classes must be 1..{MAX_CLASSES}")
    if len(m.tree_class) != m.trees or any(c >= m.classes for c in m.tree_class):
        raise ModelRuleError(f"{where}: tree_class must give one class below {m.classes} for each of the {m.trees} trees")
    if m.library not in LIBRARIES:
        raise ModelRuleError(f"{where}: library must be one of {', '.join(LIBRARIES)}")
    if m.kind not in KINDS or (m.kind == "multiclass") != (m.classes > 1):
        raise ModelRuleError(f"{where}: kind must be one of {', '.join(KINDS)}, multiclass exactly when classes > 1")
    if not 1 <= m.fraction_bits <= MAX_FRACTION_BITS:
        raise ModelRuleError(f"{where}: fraction_bits must be 1..{MAX_FRACTION_BITS}")
    names = list(m.feature_names)
    if names and (len(names) != m.features or len(set(names)) != len(names)):
        raise ModelRuleError(f"{where}: feature_names must name each of the {m.features} features once")


def check_models(circuit: cpb.Circuit, protocol: str, compute_parties: Iterable[str]) -> None:
    """Every rule of the module docstring. ModelRuleError names the first break."""
    decls = {d.name: d for d in circuit.inputs}
    models = {d.name for d in circuit.inputs if d.HasField("model")}
    for d in circuit.inputs:
        where = f"input {d.name}"
        if d.source == cpb.INPUT_SOURCE_MODEL and not d.HasField("model"):
            raise ModelRuleError(f"{where}: a kept model input needs its public shape (model)")
        if not d.HasField("model"):
            continue
        if d.source == cpb.INPUT_SOURCE_CLIENTS:
            raise ModelRuleError(f"{where}: a model comes from its owner's node, not from input clients")
        check_shape(d.model, where)
        if d.source == cpb.INPUT_SOURCE_MODEL and not (d.key and d.owner):
            raise ModelRuleError(f"{where}: a kept model input names its model id (key) and owner")
        if d.length != shape_of(d.model).total:
            raise ModelRuleError(f"{where}: length {d.length} is not the model's {shape_of(d.model).total} values")
        if d.lo != -MODEL_VALUE_BOUND or d.hi != MODEL_VALUE_BOUND:
            raise ModelRuleError(f"{where}: a model's declared range is [-(2^59 - 1), 2^59 - 1]")
    if models and protocol != "replicated3":
        raise ModelRuleError(f"tree models run on the replicated3 engine with 3 parties; this job has {protocol}")
    if models and (circuit.ring_bits == 128 or any(op.kind in _FIXED_KINDS for op in circuit.ops)):
        # tree evaluation runs on the 64-bit ring (its probabilities take their own 128-bit step)
        raise ModelRuleError("a job with tree models runs on the 64-bit ring: no fixed-point ops, ring_bits 64")
    kept = set()
    for k in circuit.keep:
        d = decls.get(k.value)
        if d is None or d.source != cpb.INPUT_SOURCE_NODE or not d.HasField("model"):
            raise ModelRuleError(f"keep {k.model_id}: value {k.value!r} must be a node input holding a model file")
        if not k.model_id or len(k.model_id) > 128 or k.value in kept:
            raise ModelRuleError(f"keep {k.model_id}: needs a model id of 1-128 characters and its own input")
        queriers = [g.querier for g in k.grants]
        if len(set(queriers)) != len(queriers) or not all(queriers):
            raise ModelRuleError(f"keep {k.model_id}: each grant names one querier, once")
        kept.add(k.value)
    if len({k.model_id for k in circuit.keep}) != len(circuit.keep):
        raise ModelRuleError("keep: a model id is kept twice")
    for i, op in enumerate(circuit.ops):
        where = f"op {i} ({op.out})"
        for pos, a in enumerate(op.args):
            if a in models and not (op.kind == cpb.OP_PREDICT and pos == 0 and a not in kept
                                    and decls[a].source == cpb.INPUT_SOURCE_MODEL):
                raise ModelRuleError(f"{where}: a model may only be the model of a predict op")
        if op.kind != cpb.OP_PREDICT:
            continue
        if op.args[0] not in models or decls[op.args[0]].source != cpb.INPUT_SOURCE_MODEL:
            raise ModelRuleError(f"{where}: predict takes a kept model input first")
        if len(op.ints) != 1 or op.ints[0] not in PREDICT_MODES.values():
            raise ModelRuleError(f"{where}: predict takes one mode: 0 margin, 1 probability, 2 class")
        shape = shape_of(decls[op.args[0]].model)
        if op.ints[0] == PREDICT_PROBABILITY and shape.kind == "regression":
            raise ModelRuleError(f"{where}: a regression model has no probability")
        if op.ints[0] == PREDICT_PROBABILITY and shape.fraction_bits < PROBABILITY_MIN_FRAC_BITS:
            # the margins' public range would not fit the fixed-point comparisons (protocols/treeoutput.py)
            raise ModelRuleError(f"{where}: probabilities need a model with at least {PROBABILITY_MIN_FRAC_BITS} "
                                 f"fraction bits, this one has {shape.fraction_bits}")
        q = decls.get(op.args[1])
        if q is None or q.HasField("model") or q.source == cpb.INPUT_SOURCE_MODEL:
            raise ModelRuleError(f"{where}: predict takes the queries as a node or client input")
        if q.length % shape.features:
            raise ModelRuleError(f"{where}: the queries must hold {shape.features} keys per query")
        if q.lo < -KEY_INF or q.hi > KEY_NAN:
            # the nodes derive the missing bits by comparisons sound for keys in this range only
            raise ModelRuleError(f"{where}: query keys are declared within [{-KEY_INF}, {KEY_NAN}]")
        if q.source == cpb.INPUT_SOURCE_NODE and q.owner not in compute_parties:
            # an input-only party's input is not range-checked inside MPC (circuit.range_checked)
            raise ModelRuleError(f"{where}: queries come from a client or a compute party, whose keys are range-checked")
    for out in circuit.outputs:
        if out.value in models:
            raise ModelRuleError(f"output {out.name}: a model is never an output")
    predicted = {op.out for op in circuit.ops if op.kind == cpb.OP_PREDICT}
    for i, op in enumerate(circuit.ops):
        if predicted & set(op.args):
            # a prediction is released as it is: computing on it would let a job's failure (or a
            # value nobody is charged for) say something about the model
            raise ModelRuleError(f"op {i} ({op.out}): a prediction is only ever an output, not an operand")
    released = {out.value for out in circuit.outputs}
    for p in sorted(predicted - released):
        raise ModelRuleError(f"predict op {p}: its predictions must be an output (its recipients are charged)")
    if circuit.keep and circuit.outputs:
        raise ModelRuleError("a job that keeps a model opens nothing: it has no outputs")


def prediction_width(op: cpb.Op, shape: ModelShape) -> int:
    """Values per query of a predict op: the classes' margins or probabilities, or one class."""
    if op.ints[0] == PREDICT_CLASS:
        return 1
    return shape.classes


def predict_vals(circuit: cpb.Circuit, op: cpb.Op) -> tuple[int, tuple[int, int]]:
    """(length, interval) of a predict op's values, for computation/ranges.py."""
    shape = shape_of(next(d for d in circuit.inputs if d.name == op.args[0]).model)
    return (query_count(circuit, op) * prediction_width(op, shape),
            predict_interval(op, shape, PROBABILITY_FRAC_BITS))


def predict_truncation_leak(circuit: cpb.Circuit, op: cpb.Op) -> int:
    """What a predict op adds to the job's truncation budget (computation/ranges.py): nothing for
    margins and classes, protocols/treeoutput.truncation_leak for probabilities."""
    if op.ints[0] != PREDICT_PROBABILITY:
        return 0
    from ..protocols.treeoutput import truncation_leak
    shape = shape_of(next(d for d in circuit.inputs if d.name == op.args[0]).model)
    return truncation_leak(shape, query_count(circuit, op))


def predict_interval(op: cpb.Op, shape: ModelShape, prob_frac_bits: int) -> tuple[int, int]:
    """The interval of every value a predict op outputs (computation/ranges.py). Margins: the
    owner's node refuses a model whose encoded margins could reach 2^62 (trees/plain.encode_leaves)."""
    if op.ints[0] == PREDICT_CLASS:
        return (0, max(shape.classes - 1, 1))
    if op.ints[0] == PREDICT_PROBABILITY:     # within a few units of [0, 1] (protocols/treeoutput.py)
        return (-8, (1 << prob_frac_bits) + (1 << (prob_frac_bits - 6)))
    return (-MARGIN_BOUND, MARGIN_BOUND)


def query_count(circuit: cpb.Circuit, op: cpb.Op) -> int:
    """The most queries a predict op can answer: its queries input's length (all rows) / features."""
    decls = {d.name: d for d in circuit.inputs}
    q = decls[op.args[1]]
    rows = len(q.clients) if q.source == cpb.INPUT_SOURCE_CLIENTS else 1
    return q.length * rows // decls[op.args[0]].model.features


def query_charges(circuit: cpb.Circuit) -> dict[tuple[str, str], int]:
    """{(model id, querier): queries} this job takes from the owner's grants: each recipient of an
    output that depends on a predict op is charged that op's queries (query_count: the declared
    most, charged before the rows are known, so a querier cannot exceed its grant by submitting
    late)."""
    deps: dict[str, set[str]] = {d.name: set() for d in circuit.inputs}
    decls = {d.name: d for d in circuit.inputs}
    for op in circuit.ops:
        ds = set().union(*(deps.get(a, set()) for a in op.args))
        if op.kind == cpb.OP_PREDICT:
            ds = ds | {op.out}
        deps[op.out] = ds
    predicts = {op.out: decls[op.args[0]].key for op in circuit.ops if op.kind == cpb.OP_PREDICT}
    counts = {op.out: query_count(circuit, op) for op in circuit.ops if op.kind == cpb.OP_PREDICT}
    charges: dict[tuple[str, str], int] = {}
    for out in circuit.outputs:
        for p in sorted(deps.get(out.value, set()) & set(predicts)):
            for r in out.recipients:
                key = (predicts[p], r)
                charges[key] = charges.get(key, 0) + counts[p]
    # an output built from one prediction twice charges it once per output: a recipient of two
    # outputs of the same prediction learns nothing more, but counting it twice errs on the owner's side
    return charges


def model_inputs(circuit: cpb.Circuit) -> Iterable[cpb.InputDecl]:
    return (d for d in circuit.inputs if d.source == cpb.INPUT_SOURCE_MODEL)
