"""Wrap checks: interval analysis of a circuit against its engine's plaintext domain.

A share holds a value modulo p (Shamir) or modulo 2^64 (replicated3). The engines decode an opened
value as a signed integer, and their comparisons assume small signed operands; a value outside
that range silently wraps and opens as a wrong number. This module propagates the declared input
ranges through the ops and refuses, before anything runs, a circuit in which

* any array an op produces could leave the engine's signed domain (`Domain.bound`):
  Shamir |v| < (p - 1)/2 = 2^60 - 1 with p = 2^61 - 1; replicated3 |v| < 2^63;
* an operand of a comparison (lt, ge, argmax, top_two) could exceed the op's declared
  bit_length: the engines require |a|, |b| < 2^bit_length (and accept top_two's sentinel
  -(2^bit_length), engines/base.py `less_than`), or the bit_length exceeds the engine's maximum.

Only the arrays the circuit names are checked. Inside one op, arithmetic is modulo p or 2^64, so
a sub-expression that wraps and comes back (select's x - y) changes nothing; what is interpreted
is the named arrays: comparison operands and opened outputs.

Client inputs are analysed with their declared range. Nodes range-check their own inputs before
sharing them; a client's row is checked inside MPC where the circuit asks for it (rows_valid), and
a client who submits out of range only spoils its own input, which is the client's problem.

Fixed point and the ring (docs/protocols.md, "Fixed-point numbers"): a fixed-point value is its
encoded integer, so the rules above hold for it unchanged. The fixed-point ops (trunc, mul_trunc,
reciprocal, exp, sigmoid) truncate, which only the replicated3 engine's 128-bit ring does: each
truncation of a value bounded by 2^L leaks at most 2^(L+3-128) per element, and the analysis sums
that over the job's truncations (counting every element, and every truncation inside a function,
protocols/fixedpoint.py `*_schedule`) and refuses a job above 2^-40. `required_ring` picks the
ring: 128 if the circuit truncates or a value could reach 2^63, else 64; a circuit whose
`ring_bits` says otherwise is refused (a node recomputes it: it never trusts the coordinator's
choice). On Shamir the truncating ops are refused: the 61-bit field has no room for them.

Representation: an array is a list of runs (count, lo, hi), consecutive positions sharing one
interval, so concatenations and slices of small arrays stay exact per position (an auction's
[index, max, second] keeps three intervals). An array whose length depends on how many clients
submit (0 to the listed number of rows) is `fixed = False`: it is kept as one run over its
maximum length, and a sum over it may have anything from zero to that many terms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from parley.v1 import circuit_pb2 as cpb

from .. import field
from ..circuit import CircuitError
from ..protocols import compare, fixedpoint
from . import models

Interval = tuple[int, int]
Run = tuple[int, int, int]    # (count, lo, hi)
MAX_RUNS = 1024               # more per-position detail than this is merged into one run


@dataclass(frozen=True)
class Domain:
    """The signed plaintext range of one engine: every value v must satisfy |v| < bound."""
    protocol: str
    bound: int
    bound_text: str
    max_bit_length: int       # comparisons: bit_length at most this


# The Shamir figures come from the Shamir code; replicated3's mirror engines/replicated3.py
# (tests/unit/test_ranges.py checks every registered engine against this table).
DOMAINS = {
    "shamir": Domain("shamir", (field.P - 1) // 2, "(p - 1)/2 = 2^60 - 1", compare.MAX_BIT_LENGTH),
    "replicated3": Domain("replicated3", 1 << 63, "2^63", 62),
}
MAX_ANY_BIT_LENGTH = max(d.max_bit_length for d in DOMAINS.values())
# replicated3 with ring_bits 128 (engines/replicated3_wide.py): comparisons still run on the narrow
# engine, hence 62; outputs are released as Z_2^64 shares, so they must stay below 2^63
WIDE = Domain("replicated3", 1 << 127, "2^127", 62)
RELEASE_BOUND = 1 << 63

FIXED_OPS = frozenset({cpb.OP_TRUNC, cpb.OP_MUL_TRUNC, cpb.OP_RECIPROCAL, cpb.OP_EXP, cpb.OP_SIGMOID})
# sum over every truncated element of 2^L must stay <= 2^(128 - 3 - 40): total leakage <= 2^-40
LEAK_BUDGET_BITS = 40
_LEAK_LIMIT = 1 << (128 - 3 - LEAK_BUDGET_BITS)
SHAMIR_NO_TRUNCATION = (
    "truncation is not available on the shamir engine: a statistically secure truncation masks a value "
    "with 40 bits more than it holds, and a fixed-point product at f = 16 already holds 2f = 32 fractional "
    "bits, so it needs over 72 bits where the 61-bit field's signed range has 60 (run it on replicated3, "
    "whose 128-bit ring has room; add, subtract, compare, select and multiply by integers are fine on shamir)")


class RangeError(CircuitError):
    """A value of the circuit could leave the engine's domain, or a comparison's declared range."""


@dataclass(frozen=True)
class Vals:
    """The possible values of one array: runs of positions with one interval each."""
    runs: tuple[Run, ...]
    fixed: bool = True        # False: the length may be anything from 0 to `length`

    @property
    def length(self) -> int:
        return sum(c for c, _, _ in self.runs)

    def hull(self) -> Interval | None:
        if not self.runs:
            return None
        return min(lo for _, lo, _ in self.runs), max(hi for _, _, hi in self.runs)

    def merged(self) -> "Vals":
        """One run over the whole array (or none if it is empty)."""
        h = self.hull()
        return Vals(((self.length, h[0], h[1]),) if h else (), self.fixed)


def _vals(runs: Sequence[Run], fixed: bool = True) -> Vals:
    out: list[Run] = []
    for c, lo, hi in runs:
        if c <= 0:
            continue
        if out and out[-1][1:] == (lo, hi):
            out[-1] = (out[-1][0] + c, lo, hi)
        else:
            out.append((c, lo, hi))
    v = Vals(tuple(out), fixed)
    return v.merged() if len(out) > MAX_RUNS else v


def _uniform(length: int, iv: Interval, fixed: bool = True) -> Vals:
    return _vals([(length, iv[0], iv[1])], fixed)


# ---- interval arithmetic (Python ints: exact) -------------------------------------------------

def _add(a: Interval, b: Interval) -> Interval:
    return a[0] + b[0], a[1] + b[1]


def _sub(a: Interval, b: Interval) -> Interval:
    return a[0] - b[1], a[1] - b[0]


def _mul(a: Interval, b: Interval) -> Interval:
    p = (a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1])
    return min(p), max(p)


def _hull2(a: Interval, b: Interval) -> Interval:
    return min(a[0], b[0]), max(a[1], b[1])


def _times(iv: Interval, count: int, fixed: bool) -> Interval:
    """The sum of `count` values in iv (of 0..count values if not fixed)."""
    if fixed:
        return count * iv[0], count * iv[1]
    return min(0, count * iv[0]), max(0, count * iv[1])


BIT: Interval = (0, 1)


# ---- arrays ----------------------------------------------------------------------------------

def _map(a: Vals, f: Callable[[Interval], Interval]) -> Vals:
    return _vals([(c,) + f((lo, hi)) for c, lo, hi in a.runs], a.fixed)


def _zip(a: Vals, b: Vals, f: Callable[[Interval, Interval], Interval]) -> Vals:
    """Elementwise f, with the executor's broadcasting (equal lengths, or a length-1 operand)."""
    if not a.runs or not b.runs:
        return Vals((), a.fixed and b.fixed)
    if a.fixed and a.length == 1 and (b.length != 1 or not b.fixed):
        x = a.hull()
        assert x is not None
        return _map(b, lambda y: f(x, y))
    if b.fixed and b.length == 1 and a.length != 1:
        y = b.hull()
        assert y is not None
        return _map(a, lambda x: f(x, y))
    if a.fixed and b.fixed and a.length == b.length:
        out: list[Run] = []
        ra, rb = list(a.runs), list(b.runs)
        i = j = 0
        left_a, left_b = ra[0][0], rb[0][0]
        while i < len(ra) and j < len(rb):
            n = min(left_a, left_b)
            out.append((n,) + f(ra[i][1:], rb[j][1:]))
            left_a -= n
            left_b -= n
            if left_a == 0:
                i += 1
                left_a = ra[i][0] if i < len(ra) else 0
            if left_b == 0:
                j += 1
                left_b = rb[j][0] if j < len(rb) else 0
        return _vals(out)
    # lengths that depend on the clients (or that the executor will refuse): the hulls
    ha, hb = a.hull(), b.hull()
    assert ha is not None and hb is not None
    return _uniform(max(a.length, b.length), f(ha, hb), a.fixed and b.fixed)


def _consts(values: Sequence[int]) -> Vals:
    return _vals([(1, v, v) for v in values])


def _with_consts(a: Vals, consts: Sequence[int], f: Callable[[Interval, Interval], Interval]) -> Vals:
    if len(consts) == 1:
        return _map(a, lambda x: f(x, (consts[0], consts[0])))
    if len(consts) > MAX_RUNS:     # one run anyway: skip building one per constant
        h = a.hull()
        return _uniform(a.length, f(h, (min(consts), max(consts))), a.fixed) if h else Vals((), a.fixed)
    c = _consts(consts)
    if a.fixed and a.length == len(consts):
        return _zip(a, c, f)
    h, hc = a.hull(), c.hull()
    if h is None or hc is None:
        return Vals((), a.fixed)
    return _uniform(a.length, f(h, hc), a.fixed)


def _slice(a: Vals, start: int, stop: int, step: int) -> Vals:
    if not a.fixed:
        n = len(range(*slice(start, stop, step).indices(a.length)))
        h = a.hull()
        return _uniform(n, h, False) if h and n else Vals((), False)
    picked = range(*slice(start, stop, step).indices(a.length))
    if not picked:
        return Vals(())
    out: list[Run] = []
    pos = 0
    first, last = picked[0], picked[-1]
    for c, lo, hi in a.runs:
        # positions first + k*step (k >= 0) in [max(pos, first), min(pos + c - 1, last)]
        s, e = max(pos, first), min(pos + c - 1, last)
        if s <= e:
            k0 = -((first - s) // step)          # ceil((s - first) / step)
            k1 = (e - first) // step
            if k1 >= k0:
                out.append((k1 - k0 + 1, lo, hi))
        pos += c
    return _vals(out)


def _concat(parts: list[Vals]) -> Vals:
    if all(p.fixed for p in parts):
        return _vals([r for p in parts for r in p.runs])
    hulls = [h for h in (p.hull() for p in parts) if h is not None]
    if not hulls:
        return Vals((), False)
    return _uniform(sum(p.length for p in parts), (min(h[0] for h in hulls), max(h[1] for h in hulls)), False)


def _sum(a: Vals) -> Vals:
    lo = hi = 0
    for c, rlo, rhi in a.runs:
        slo, shi = _times((rlo, rhi), c, a.fixed)
        lo, hi = lo + slo, hi + shi
    return _uniform(1, (lo, hi))


def _select(bit: Vals, x: Vals, y: Vals) -> Vals:
    b = bit.hull()
    if b is None:
        return Vals(())
    if BIT[0] <= b[0] and b[1] <= BIT[1]:
        return _zip(x, y, _hull2)
    # not a bit as far as the ranges tell: y + b (x - y), as the executor computes it
    return _zip(x, y, lambda xi, yi: _add(yi, _mul(b, _sub(xi, yi))))


def input_vals(decl: cpb.InputDecl) -> Vals:
    if decl.source == cpb.INPUT_SOURCE_CLIENTS:
        return _uniform(decl.length * len(decl.clients), (decl.lo, decl.hi), fixed=False)
    return _uniform(decl.length, (decl.lo, decl.hi))


def _fmt(v: int) -> str:
    if abs(v) < 1 << 64:
        return str(v)
    return f"{'-' if v < 0 else ''}about 2^{abs(v).bit_length() - 1}"


def _kind(op: cpb.Op) -> str:
    return cpb.OpKind.Name(op.kind).removeprefix("OP_").lower() if op.kind in cpb.OpKind.values() else str(op.kind)


@dataclass(frozen=True)
class Analysis:
    env: dict[str, Vals]            # every array's possible values
    ring_bits: int                  # the ring the circuit runs in (64 or 128; Shamir: 64 = n/a)
    operands: dict[str, Interval]   # fixed-point ops: the hull of what they truncate (product for mul_trunc)
    leak_bits: float                # log2 of the job's total truncation leakage (-inf: none)


def analyse(circuit: cpb.Circuit, protocol: str) -> dict[str, Vals]:
    """The possible values of every array of a structurally valid circuit (circuit.validate), or
    RangeError naming the first op whose value or operands could leave the engine's domain."""
    return analysis(circuit, protocol).env


def analysis(circuit: cpb.Circuit, protocol: str) -> Analysis:
    """`analyse`, in the ring `circuit.ring_bits` declares (0 = 64), which must be the ring the
    circuit needs (`required_ring`); also the fixed-point ops' operand bounds, for the executor."""
    domain = DOMAINS.get(protocol)
    if domain is None:
        raise RangeError(f"protocol: {protocol!r} is not supported (no value range is known for it; known: "
                         f"{', '.join(DOMAINS)})")
    ring = circuit.ring_bits or 64
    if ring not in (64, 128):
        raise RangeError(f"circuit: ring_bits {circuit.ring_bits} is not 64 or 128")
    if protocol == "shamir":
        for i, op in enumerate(circuit.ops):
            if op.kind in FIXED_OPS:
                raise RangeError(f"op {i} ({op.out}, {_kind(op)}): {SHAMIR_NO_TRUNCATION}")
    if ring == 128 and protocol != "replicated3":
        raise RangeError(f"circuit: ring_bits 128 asks for the 128-bit ring, which only the replicated3 engine has "
                         f"(the {protocol} engine's domain is |v| < {domain.bound_text})")
    result = _run(circuit, protocol, WIDE if ring == 128 else domain, ring)
    if ring == 128 and not result.operands and _largest(result.env) < RELEASE_BOUND:
        raise RangeError("circuit: ring_bits 128, but nothing is truncated and every value fits the 64-bit ring: "
                         "the range analysis picks 64 (ring_bits 0)")
    return result


def required_ring(circuit: cpb.Circuit, protocol: str) -> int:
    """The ring `circuit.ring_bits` must name: 128 on replicated3 if the circuit truncates or a value
    could reach 2^63, else 64 (then ring_bits stays 0). RangeError if even 128 bits cannot hold it."""
    if protocol != "replicated3":
        return 64
    result = _run(circuit, protocol, WIDE, 128)
    return 128 if result.operands or _largest(result.env) >= RELEASE_BOUND else 64


def values_so_far(circuit: cpb.Circuit) -> dict[str, Vals]:
    """Every array's values in a circuit under construction, as the 128-bit ring would hold them
    (for the builder's choice of comparison bit lengths); RangeError as `analysis`."""
    return _run(circuit, "replicated3", WIDE, 128, outputs=False).env


def _largest(env: dict[str, Vals]) -> int:
    return max((max(abs(h[0]), abs(h[1])) for h in (v.hull() for v in env.values()) if h), default=0)


def _run(circuit: cpb.Circuit, protocol: str, domain: Domain, ring: int, outputs: bool = True) -> Analysis:
    env: dict[str, Vals] = {d.name: input_vals(d) for d in circuit.inputs}
    for d in circuit.inputs:
        _check_value(domain, f"input {d.name}", env[d.name], ring)
    operands: dict[str, Interval] = {}
    leak = 0
    for i, op in enumerate(circuit.ops):
        where = f"op {i} ({op.out}, {_kind(op)})"
        args = [env[a] for a in op.args]
        if op.kind in (cpb.OP_LT, cpb.OP_GE, cpb.OP_ARGMAX, cpb.OP_TOP_TWO):
            _check_comparison(domain, where, op.bit_length, args)
        if op.kind in FIXED_OPS:
            if protocol == "shamir":
                raise RangeError(f"{where}: {SHAMIR_NO_TRUNCATION}")
            if ring != 128:
                raise RangeError(f"{where}: fixed-point truncation needs the 128-bit ring (ring_bits 128): the "
                                 "64-bit ring has no headroom for a truncation that never fails")
            env[op.out], operands[op.out], bounds = _fixed(op, args, where)
            # every element truncated: the result's length (a broadcast operand counts n times)
            leak += max(env[op.out].length, 1) * sum(1 << b for b in bounds)
            if leak > _LEAK_LIMIT:
                raise RangeError(f"{where}: the job's truncations could leak more than 2^-{LEAK_BUDGET_BITS} in "
                                 f"total (this op truncates values up to 2^{max(bounds)}, each leaking "
                                 f"2^({max(bounds)}+3-128)); narrow the declared ranges or split the job")
        elif op.kind == cpb.OP_PREDICT:        # computation/models.py checked its structure first
            env[op.out] = _uniform(*models.predict_vals(circuit, op), args[1].fixed)
            leak += models.predict_truncation_leak(circuit, op)    # probabilities truncate
            if leak > _LEAK_LIMIT:
                raise RangeError(f"{where}: the job's truncations could leak more than 2^-{LEAK_BUDGET_BITS} in "
                                 "total (the probabilities of this many queries and classes); split the job")
        else:
            env[op.out] = _value(op, args)
        _check_value(domain, where, env[op.out], ring)
    if ring == 128 and outputs:
        for out in circuit.outputs:
            h = env[out.value].hull()
            if h and max(abs(h[0]), abs(h[1])) >= RELEASE_BOUND:
                raise RangeError(f"output {out.name}: its value could reach {_fmt(max(abs(h[0]), abs(h[1])))}, "
                                 "beyond the 2^63 an output is released in")
    leak_bits = math.log2(leak) - (128 - 3) if leak else float("-inf")
    return Analysis(env, ring, operands, leak_bits)


def _fixed(op: cpb.Op, args: list[Vals], where: str) -> tuple[Vals, Interval, list[int]]:
    """A fixed-point op's values, the interval it truncates and its truncations' bound bits."""
    a = args[0]
    k = op.kind
    try:
        if k == cpb.OP_TRUNC:
            h = a.hull() or (0, 0)
            return _map(a, lambda x: fixedpoint.trunc_interval(x, op.ints[0])), h, [fixedpoint.trunc_bound(h, op.ints[0])]
        if k == cpb.OP_MUL_TRUNC:
            prod = _zip(a, args[1], _mul)
            h = prod.hull() or (0, 0)
            return _map(prod, lambda x: fixedpoint.trunc_interval(x, op.ints[0])), h, [fixedpoint.trunc_bound(h, op.ints[0])]
        h = a.hull() or (0, 0)
        if k == cpb.OP_RECIPROCAL:
            sched = fixedpoint.reciprocal_schedule(h, op.ints[0], op.ints[1])
        elif k == cpb.OP_EXP:
            sched = fixedpoint.exp_schedule(h, op.ints[0])
        else:
            sched = fixedpoint.sigmoid_schedule(h, op.ints[0])
    except fixedpoint.FixedPointError as exc:
        raise RangeError(f"{where}: {exc}") from None
    return _uniform(a.length, sched.out, a.fixed), h, list(sched.truncations)


def _check_value(domain: Domain, where: str, v: Vals, ring: int = 64) -> None:
    h = v.hull()
    if h is None:
        return
    worst = h[0] if -h[0] >= h[1] else h[1]
    if abs(worst) >= domain.bound:
        hint = " (the 128-bit ring would hold it: ring_bits 128)" if (
            domain.protocol == "replicated3" and ring == 64 and abs(worst) < WIDE.bound) else ""
        raise RangeError(f"{where}: its value could reach {_fmt(worst)}, outside the {domain.protocol} engine's "
                         f"signed range |v| < {domain.bound_text}{hint}")


def _check_comparison(domain: Domain, where: str, bit_length: int, args: list[Vals]) -> None:
    if bit_length > domain.max_bit_length:
        raise RangeError(f"{where}: bit_length {bit_length} exceeds the {domain.protocol} engine's maximum "
                         f"{domain.max_bit_length}")
    for a in args:
        h = a.hull()
        if h is None:
            continue
        # |v| < 2^bit_length, and top_two's sentinel -(2^bit_length) (engines/base.py less_than)
        if h[0] < -(1 << bit_length) or h[1] >= 1 << bit_length:
            worst = h[0] if h[0] < -(1 << bit_length) else h[1]
            raise RangeError(f"{where}: an operand could reach {_fmt(worst)}, outside |v| < 2^{bit_length} "
                             f"of its bit_length {bit_length}")


def _value(op: cpb.Op, args: list[Vals]) -> Vals:
    k = op.kind
    a = args[0] if args else Vals(())
    if k == cpb.OP_ADD:
        return _zip(a, args[1], _add)
    if k == cpb.OP_SUB:
        return _zip(a, args[1], _sub)
    if k == cpb.OP_MUL:
        return _zip(a, args[1], _mul)
    if k == cpb.OP_NEG:
        return _map(a, lambda x: (-x[1], -x[0]))
    if k == cpb.OP_ADD_CONST:
        return _with_consts(a, list(op.consts), _add)
    if k == cpb.OP_MUL_CONST:
        return _with_consts(a, list(op.consts), _mul)
    if k == cpb.OP_SUM:
        return _sum(a)
    if k == cpb.OP_DOT:
        return _sum(_zip(a, args[1], _mul))
    if k == cpb.OP_CONCAT:
        return _concat(args)
    if k == cpb.OP_SLICE:
        return _slice(a, op.ints[0], op.ints[1], op.ints[2])
    if k in (cpb.OP_LT, cpb.OP_GE, cpb.OP_EQ):
        return _zip(a, args[1], lambda x, y: BIT)
    if k == cpb.OP_SELECT:
        return _select(a, args[1], args[2])
    if k in (cpb.OP_ARGMAX, cpb.OP_TOP_TWO):
        h = a.hull()
        if h is None:          # an input known to be empty: nothing to bound
            return Vals(())
        index = (0, max(a.length - 1, 0))
        # rows that may be none (client inputs): the maximum of nothing is the sentinel
        # -(2^bit_length) (executor._empty_tournament), so that max >= floor says "no sale"
        top = h if a.fixed else (min(h[0], -(1 << op.bit_length)), h[1])
        if k == cpb.OP_ARGMAX:
            return _vals([(1,) + index, (1,) + top])
        # one value only: the second is the sentinel -(2^bit_length) (protocols/selection.py)
        second = h if a.fixed and a.length >= 2 else (min(h[0], -(1 << op.bit_length)), h[1])
        return _vals([(1,) + index, (1,) + top, (1,) + second])
    width = op.ints[0] if op.ints else 1
    rows = a.length // width
    if k == cpb.OP_NOISE:
        from .dp import noise_bound    # here: dp imports the builder, which imports this module lazily
        try:
            nlo, nhi = noise_bound(op.noise)
        except ValueError as exc:
            raise RangeError(f"op {op.out}: {exc}") from None
        return _map(a, lambda x: (x[0] + nlo, x[1] + nhi))
    if k == cpb.OP_ROWS_VALID:
        return _uniform(rows, BIT, a.fixed)
    if k == cpb.OP_RESHAPE_SUM:
        h = a.hull()
        return _uniform(width, _times(h, rows, a.fixed) if h else (0, 0))
    if k == cpb.OP_MUL_ROWS:
        h, s = a.hull(), args[1].hull()
        return _uniform(a.length, _mul(h, s), a.fixed) if h and s else Vals((), a.fixed)
    if k == cpb.OP_REPEAT:
        h = a.hull()
        return _uniform(op.ints[0], h) if h else Vals(())
    if k == cpb.OP_COUNT_ROWS:
        return _uniform(1, (rows if a.fixed else 0, rows))
    raise RangeError(f"op {op.out}: no range rule for kind {_kind(op)}")
