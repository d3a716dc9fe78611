"""What every node checks of a circuit's differential privacy before it approves or runs it
(called by circuit.validate): a DpRelease must not promise more than the OP_NOISE feeding it gives,
so a coordinator that lowers a noise scale, or raises an epsilon, without the two matching is
refused, whatever the document says elsewhere.

For each output that carries `dp`:
* its value is an OP_NOISE op's result (a noisy total or histogram), or the index of an ARGMAX
  over one (report-noisy-max: slice [0:1] of the argmax, never its maximum), or, marked
  post_processing, the value of another DP output of the circuit (an average is that noisy total
  over a public divisor): post-processing is charged nothing, so it may only reuse a released value;
* the release's mechanism and scale are the noise's, exactly;
* the scale is at least what the release's epsilon and sensitivity need: discrete Laplace
  t >= Delta / epsilon; report-noisy-max's one-sided geometric t >= Delta / epsilon under
  add-remove (scores move one way) and 2 Delta / epsilon under replace-one;
* a stated rho is epsilon^2 / 2 (what the ledger charges) and the stated std is the noise's.
What this does NOT derive is the sensitivity itself from the circuit: it is a document field
(with the clipping bound it follows from, docs/privacy.md) that each organization approves.
"""
from __future__ import annotations

from fractions import Fraction

from parley.v1 import circuit_pb2 as cpb

from .circuit import CircuitError
from .dp import accounting

_POINTWISE = ("discrete-laplace", "discrete-gaussian")


class DpCheckError(CircuitError):
    """A DP release that the circuit's noise does not back; the message names the output."""


MAX_RR_EPSILON = 20   # the scenario's bound (computation/dp.py); above it a flip is practically never


def check(circuit: cpb.Circuit) -> None:
    ops = {op.out: op for op in circuit.ops}
    rr = {o.dp.epsilon for o in circuit.outputs if o.HasField("dp") and o.dp.mechanism == "randomized-response"}
    if len(rr) > 1:
        # the clients flip once, with one epsilon (the first they read): two different promises
        # would let a coordinator pair a harmless-looking one with one that flips nothing
        raise DpCheckError("outputs: randomized-response outputs state different epsilons")
    dp_values = {o.value for o in circuit.outputs if o.HasField("dp") and not o.dp.post_processing}
    for out in circuit.outputs:
        if not out.HasField("dp"):
            continue
        where = f"output {out.name}"
        rel = out.dp
        if rel.post_processing:
            if out.value not in dp_values:
                raise DpCheckError(f"{where}: marked post-processing but its value is not another DP output's")
            continue
        if rel.mechanism == "randomized-response":
            _check_rr(where, circuit, rel)
            continue
        noise_op, argmax = _noise_source(ops, out.value)
        if noise_op is None:
            raise DpCheckError(f"{where}: a DP release whose value is not the result of a noise op")
        _check_release(where, rel, noise_op.noise, argmax)


def withholds_rows(circuit: cpb.Circuit) -> bool:
    """Whether the nodes keep a job's client-row counts to themselves (JobStatus.rows_withheld): a
    DP output under add-remove over client inputs protects whether a client took part, and the
    exact number of counted rows (or who was excluded) would give that away to the operator."""
    return any(d.source == cpb.INPUT_SOURCE_CLIENTS for d in circuit.inputs) and any(
        o.HasField("dp") and o.dp.relation == "add-remove" for o in circuit.outputs)


def _check_rr(where: str, circuit: cpb.Circuit, rel: cpb.DpRelease) -> None:
    """Randomized response: the clients flip their own 0/1 answers (mpcnode/randomized_response.py)
    before sharing, so the circuit may read nothing but one 0/1 client value per row; the nodes
    cannot check the flips themselves (docs/privacy.md)."""
    if any(d.source != cpb.INPUT_SOURCE_CLIENTS or d.length != 1 or (d.lo, d.hi) != (0, 1) for d in circuit.inputs):
        raise DpCheckError(f"{where}: randomized response reads only one 0/1 answer per client")
    try:
        eps = accounting.parse_exact(rel.epsilon, "epsilon")
    except ValueError as exc:
        raise DpCheckError(f"{where}: {exc}") from None
    if eps <= 0 or (rel.rho and accounting.parse_exact(rel.rho, "rho") != accounting.rho_of_pure(eps)):
        raise DpCheckError(f"{where}: randomized response needs a positive epsilon and rho = epsilon^2/2")
    if eps > MAX_RR_EPSILON:
        raise DpCheckError(f"{where}: randomized response with epsilon above {MAX_RR_EPSILON} flips (practically) "
                           "no answer")


def _noise_source(ops: dict, value: str) -> tuple[cpb.Op | None, bool]:
    op = ops.get(value)
    if op is None:
        return None, False
    if op.kind == cpb.OP_NOISE:
        return op, False
    if op.kind == cpb.OP_SLICE and list(op.ints) == [0, 1, 1]:
        arg = ops.get(op.args[0])
        if arg is not None and arg.kind == cpb.OP_ARGMAX:
            inner = ops.get(arg.args[0])
            if inner is not None and inner.kind == cpb.OP_NOISE:
                return inner, True
    return None, False


def _check_release(where: str, rel: cpb.DpRelease, noise: cpb.DpNoise, argmax: bool) -> None:
    try:
        scale = accounting.parse_exact(noise.scale, "noise scale")
        eps = accounting.parse_exact(rel.epsilon, "epsilon") if rel.epsilon else None
        rel_scale = accounting.parse_exact(rel.scale, "release scale")
    except ValueError as exc:
        raise DpCheckError(f"{where}: {exc}") from None
    if rel.mechanism != noise.mechanism or rel_scale != scale:
        raise DpCheckError(f"{where}: the release states {rel.mechanism} scale {rel.scale} but its noise op "
                           f"adds {noise.mechanism} scale {noise.scale}")
    if rel.sensitivity < 1:
        raise DpCheckError(f"{where}: sensitivity must be at least 1")
    if eps is None or eps <= 0:
        raise DpCheckError(f"{where}: a {rel.mechanism} release needs a positive epsilon")
    if argmax:
        if noise.mechanism != "one-sided-geometric" or noise.source != "mpc":
            raise DpCheckError(f"{where}: report-noisy-max needs one-sided-geometric noise sampled in MPC")
        factor = 1 if rel.relation == "add-remove" else 2
        need = factor * Fraction(rel.sensitivity) / eps
    elif noise.mechanism == "discrete-laplace":
        need = Fraction(rel.sensitivity) / eps
    else:
        raise DpCheckError(f"{where}: {noise.mechanism} noise on a released value is not supported here")
    if scale < need:
        raise DpCheckError(f"{where}: noise scale {noise.scale} is below the {_text(need)} that epsilon "
                           f"{rel.epsilon} needs at sensitivity {rel.sensitivity}")
    if rel.relation not in ("add-remove", "replace-one"):
        raise DpCheckError(f"{where}: unknown neighbouring relation {rel.relation!r}")
    if rel.rho and accounting.parse_exact(rel.rho, "rho") != accounting.rho_of_pure(eps):
        raise DpCheckError(f"{where}: rho {rel.rho} is not epsilon^2/2 for epsilon {rel.epsilon}")
    if rel.std:
        true_std = accounting.std_of(noise.mechanism, scale)
        if abs(float(rel.std) - true_std) > 1e-4 * max(true_std, 1.0):
            raise DpCheckError(f"{where}: stated std {rel.std} is not the noise's {true_std:.6g}")
    if noise.source == "distributed" and noise.mechanism != "discrete-laplace":
        raise DpCheckError(f"{where}: distributed noise is discrete-laplace only")
    if noise.source == "distributed" and noise.min_live < 1:
        # the calibration (accounting.distributed_share) rests on it: never a node's default
        raise DpCheckError(f"{where}: distributed noise must state min_live")


def _text(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"
