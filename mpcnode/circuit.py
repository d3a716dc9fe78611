"""Circuit IR checks shared by nodes and coordinator: validation and round levels.

A node never trusts the circuit it is sent: it re-validates the structure and the value ranges
(computation/ranges.py: no value can wrap in the job's engine), then recomputes the computation's
fingerprint (computation/spec.py) before its policy is consulted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from parley.v1 import circuit_pb2 as cpb

from . import field as pfield

OpKind = cpb.OpKind
FIXED = {cpb.OP_TRUNC, cpb.OP_MUL_TRUNC, cpb.OP_RECIPROCAL, cpb.OP_EXP, cpb.OP_SIGMOID}
INTERACTIVE = {cpb.OP_MUL, cpb.OP_LT, cpb.OP_EQ, cpb.OP_GE, cpb.OP_ARGMAX, cpb.OP_TOP_TWO, cpb.OP_DOT,
               cpb.OP_SELECT, cpb.OP_MUL_ROWS, cpb.OP_ROWS_VALID, cpb.OP_NOISE, cpb.OP_PREDICT} | FIXED
ARITY = {cpb.OP_ADD: 2, cpb.OP_SUB: 2, cpb.OP_NEG: 1, cpb.OP_ADD_CONST: 1, cpb.OP_MUL_CONST: 1, cpb.OP_MUL: 2,
         cpb.OP_SUM: 1, cpb.OP_SLICE: 1, cpb.OP_LT: 2, cpb.OP_EQ: 2, cpb.OP_GE: 2, cpb.OP_ARGMAX: 1,
         cpb.OP_RESHAPE_SUM: 1, cpb.OP_DOT: 2, cpb.OP_SELECT: 3, cpb.OP_REPEAT: 1, cpb.OP_MUL_ROWS: 2,
         cpb.OP_TOP_TWO: 1, cpb.OP_ROWS_VALID: 1, cpb.OP_COUNT_ROWS: 1, cpb.OP_NOISE: 1,
         cpb.OP_TRUNC: 1, cpb.OP_MUL_TRUNC: 2, cpb.OP_RECIPROCAL: 1, cpb.OP_EXP: 1, cpb.OP_SIGMOID: 1,
         cpb.OP_PREDICT: 2}
MAX_FRAC_BITS = 30    # fixed point: fractional bits of an input, an output or a function's operand
MAX_OUTPUT_FRAC_BITS = 40   # an output's: a tree model's margins carry its fraction_bits (32 by default)
MAX_OPS = 100_000
MAX_BIT_LENGTH = 62   # the largest any engine accepts; the job engine's own maximum: computation/ranges.py


class CircuitError(ValueError):
    """The circuit is malformed; the message names the op or declaration."""


@dataclass(frozen=True)
class Plan:
    """Execution plan: ops grouped by the communication level at which they run."""
    levels: list[list[cpb.Op]]   # levels[L]: ops of level L in topological order
    depth: int                   # number of interactive levels
    # values within their analysed range for sure (range_checked below); empty: trust none
    checked: frozenset[str] = frozenset()
    ring_bits: int = 64          # replicated3's ring, as the range analysis requires (Circuit.ring_bits)
    # fixed-point ops: the interval of what they truncate (computation/ranges.py), computed by this node
    operands: dict[str, tuple[int, int]] = field(default_factory=dict)


def validate(circuit: cpb.Circuit, parties: list[str], protocol: str = "shamir",
             input_parties: Sequence[str] = ()) -> Plan:
    """The circuit's levels, or CircuitError naming the first problem: its structure, then
    (computation/ranges.py, RangeError) a value that could leave `protocol`'s signed domain or a
    comparison operand beyond its bit_length. A node input's owner is a compute party (`parties`)
    or an input-only party (`input_parties`: it only contributes node inputs, so it must own at
    least one)."""
    names: dict[str, int] = {}
    _check_input_parties(circuit, parties, input_parties)
    if not circuit.name:
        raise CircuitError("circuit has no name")
    if len(circuit.ops) > MAX_OPS:
        raise CircuitError(f"circuit has {len(circuit.ops)} ops, more than {MAX_OPS}")
    for decl in circuit.inputs:
        _fresh(decl.name, names, "input")
        if decl.source == cpb.INPUT_SOURCE_NODE:
            if decl.owner not in parties and decl.owner not in input_parties:
                raise CircuitError(f"input {decl.name}: owner {decl.owner!r} is not a compute party "
                                   "or an input-only party of the job")
        elif decl.source == cpb.INPUT_SOURCE_CLIENTS:
            if not decl.clients:
                raise CircuitError(f"input {decl.name}: no input clients listed")
            if len(set(decl.clients)) != len(decl.clients):
                # a client listed twice would count its one row twice (ballot stuffing), and the
                # document shows the population only by count and hash, where nobody would see it
                raise CircuitError(f"input {decl.name}: a client is listed twice")
        elif decl.source != cpb.INPUT_SOURCE_MODEL:     # a kept model's owner need not take part
            raise CircuitError(f"input {decl.name}: unknown source")
        if decl.length < 1:
            raise CircuitError(f"input {decl.name}: length must be at least 1")
        if not decl.lo <= decl.hi:
            raise CircuitError(f"input {decl.name}: range lo={decl.lo} > hi={decl.hi}")
        if max(abs(decl.lo), abs(decl.hi)) >= pfield.MAX_SIGNED:
            raise CircuitError(f"input {decl.name}: range exceeds the field's signed range +-2^59")
        if decl.frac_bits > MAX_FRAC_BITS:
            raise CircuitError(f"input {decl.name}: frac_bits {decl.frac_bits} exceeds {MAX_FRAC_BITS}")
        names[decl.name] = 0
    levels: dict[int, list[cpb.Op]] = {}
    for i, op in enumerate(circuit.ops):
        where = f"op {i} ({op.out or '?'})"
        if op.kind not in ARITY and op.kind != cpb.OP_CONCAT:
            raise CircuitError(f"{where}: unknown op kind {op.kind}")
        want = ARITY.get(op.kind)
        if want is not None and len(op.args) != want:
            raise CircuitError(f"{where}: takes {want} arguments, got {len(op.args)}")
        if op.kind == cpb.OP_CONCAT and not op.args:
            raise CircuitError(f"{where}: concat needs arguments")
        for a in op.args:
            if a not in names:
                raise CircuitError(f"{where}: argument {a!r} is not defined before use")
        if op.kind in (cpb.OP_ADD_CONST, cpb.OP_MUL_CONST) and not op.consts:
            raise CircuitError(f"{where}: needs constants")
        if op.kind in (cpb.OP_LT, cpb.OP_GE, cpb.OP_ARGMAX, cpb.OP_TOP_TWO) and not 1 <= op.bit_length <= MAX_BIT_LENGTH:
            raise CircuitError(f"{where}: bit_length must be 1..{MAX_BIT_LENGTH}")
        if op.tags:
            _check_tags(circuit, op, where)
        if op.kind in (cpb.OP_SLICE,) and len(op.ints) != 3:
            raise CircuitError(f"{where}: slice takes start, stop, step")
        if op.kind == cpb.OP_SLICE and op.ints[2] <= 0:
            raise CircuitError(f"{where}: slice step must be positive")
        if op.kind in (cpb.OP_RESHAPE_SUM, cpb.OP_MUL_ROWS, cpb.OP_REPEAT, cpb.OP_COUNT_ROWS) and (
                len(op.ints) < 1 or op.ints[0] < 1):
            raise CircuitError(f"{where}: needs a positive width")
        if op.kind == cpb.OP_ROWS_VALID and (len(op.ints) != 2 or op.ints[0] < 1 or op.ints[1] not in (0, 1)):
            raise CircuitError(f"{where}: rows_valid takes (columns, exactly_one 0/1)")
        if op.kind in FIXED:
            _check_fixed(op, where)
        if (op.kind == cpb.OP_NOISE) != op.HasField("noise"):
            raise CircuitError(f"{where}: a noise op needs its DpNoise, and only a noise op has one")
        level = max((names[a] for a in op.args), default=0) + (1 if op.kind in INTERACTIVE else 0)
        _fresh(op.out, names, where)
        names[op.out] = level
        levels.setdefault(level, []).append(op)
    seen_out = set()
    for out in circuit.outputs:
        if out.value not in names:
            raise CircuitError(f"output {out.name}: value {out.value!r} is not defined")
        if not out.recipients:
            raise CircuitError(f"output {out.name}: no recipients")
        if out.name in seen_out:
            raise CircuitError(f"output {out.name}: defined twice")
        seen_out.add(out.name)
        if out.frac_bits > MAX_OUTPUT_FRAC_BITS:
            raise CircuitError(f"output {out.name}: frac_bits {out.frac_bits} exceeds {MAX_OUTPUT_FRAC_BITS}")
    if not circuit.outputs and not circuit.keep:
        raise CircuitError("circuit has no outputs")
    from .computation import models, ranges   # here, not at the top: ranges imports CircuitError from this module
    try:
        models.check_models(circuit, protocol, parties)
    except models.ModelRuleError as exc:
        raise CircuitError(str(exc)) from None
    from . import dpcheck
    dpcheck.check(circuit)            # every DP release promises no more than the noise feeding it gives
    analysed = ranges.analysis(circuit, protocol)
    depth = max(levels, default=0)
    checked = range_checked(circuit, parties)
    for i, op in enumerate(circuit.ops):
        if op.kind in FIXED and not all(a in checked for a in op.args):
            # a truncation's privacy rests on its bound |z| < 2^L: a value nobody range-checked (an
            # input-only organization's) could exceed it and expose the other operand's high bits
            raise CircuitError(f"op {i} ({op.out}): a fixed-point op on a value computed from an input-only "
                               "party's input, which nothing range-checks inside MPC; truncation needs checked bounds")
    return Plan(levels=[levels.get(L, []) for L in range(depth + 1)], depth=depth,
                checked=checked, ring_bits=analysed.ring_bits, operands=analysed.operands)


def _check_fixed(op: cpb.Op, where: str) -> None:
    """The structural parameters of a fixed-point op (its ranges: computation/ranges.py)."""
    ints = list(op.ints)
    if op.kind in (cpb.OP_TRUNC, cpb.OP_MUL_TRUNC):
        if len(ints) != 1 or not 1 <= ints[0] <= 2 * MAX_FRAC_BITS:
            raise CircuitError(f"{where}: takes the number of bits to truncate, 1..{2 * MAX_FRAC_BITS}")
    elif op.kind == cpb.OP_RECIPROCAL:
        if len(ints) != 2 or not 1 <= ints[0] <= MAX_FRAC_BITS or not 1 <= ints[1] <= 6:
            raise CircuitError(f"{where}: reciprocal takes (frac_bits 1..{MAX_FRAC_BITS}, iterations 1..6)")
    elif len(ints) != 1 or not 1 <= ints[0] <= MAX_FRAC_BITS:
        raise CircuitError(f"{where}: takes frac_bits 1..{MAX_FRAC_BITS}")


# ops whose result lies in its range whatever their operands hold: bits and public counts
_ALWAYS_IN_RANGE = frozenset({cpb.OP_LT, cpb.OP_GE, cpb.OP_EQ, cpb.OP_ROWS_VALID, cpb.OP_COUNT_ROWS})


def range_checked(circuit: cpb.Circuit, compute_parties: Sequence[str]) -> frozenset[str]:
    """The values that lie in the interval computation/ranges.py gives them whatever anyone sends:
    those computed only from compute parties' node inputs (range-checked by their own node before
    sharing; honest-but-curious nodes do), client inputs (every client row outside its declared
    range is excluded inside MPC before the circuit runs: jobrun.take_client_rows) and constants,
    and every comparison or validity bit. Input-only organizations' inputs are not: an organization
    that changed its node can send any value, and nothing checks it inside MPC. Engines may use a
    cheaper comparison that is private only within the range (Shamir's bounded path) for checked
    operands only."""
    ok = {d.name for d in circuit.inputs
          if (d.source == cpb.INPUT_SOURCE_NODE and d.owner in compute_parties) or d.source == cpb.INPUT_SOURCE_CLIENTS}
    for op in circuit.ops:
        if op.kind == cpb.OP_NOISE and op.noise.source != "mpc":
            continue      # distributed noise: each node's part is unchecked and only tail-bounded
        if op.kind in _ALWAYS_IN_RANGE or all(a in ok for a in op.args):
            ok.add(op.out)
    return frozenset(ok)


def _check_input_parties(circuit: cpb.Circuit, parties: list[str], input_parties: Sequence[str]) -> None:
    if len(set(input_parties)) != len(input_parties):
        raise CircuitError("an input-only party is listed twice")
    both = sorted(set(input_parties) & set(parties))
    if both:
        raise CircuitError(f"{', '.join(both)} cannot be both a compute party and an input-only party")
    owners = {d.owner for d in circuit.inputs if d.source == cpb.INPUT_SOURCE_NODE}
    idle = [p for p in input_parties if p not in owners]
    if idle:
        # it would be asked to consent and to start, and deliver nothing: a recipient, not a party
        raise CircuitError(f"input-only party {idle[0]} owns no input (list it as a recipient instead)")


def _check_tags(circuit: cpb.Circuit, op: cpb.Op, where: str) -> None:
    """Row tags name rows one to one only when the tournament runs over the client input itself,
    one value per row: then value i is row i and its tag is row i's client."""
    if op.kind not in (cpb.OP_ARGMAX, cpb.OP_TOP_TWO):
        raise CircuitError(f"{where}: only argmax and top_two carry row tags")
    decl = next((d for d in circuit.inputs if d.name == op.tags), None)
    if decl is None or decl.source != cpb.INPUT_SOURCE_CLIENTS or decl.length != 1:
        raise CircuitError(f"{where}: tags must name a client input of one value per row")
    if list(op.args) != [op.tags]:
        raise CircuitError(f"{where}: an op carrying the tags of {op.tags!r} must take {op.tags!r} itself")


def _fresh(name: str, names: dict[str, int], where: str) -> None:
    if not name or not name.replace("_", "").replace("-", "").replace(".", "").replace("@", "").isalnum():
        raise CircuitError(f"{where}: bad array name {name!r}")
    if name in names:
        raise CircuitError(f"{where}: array {name!r} defined twice")
