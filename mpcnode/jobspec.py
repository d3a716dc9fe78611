"""Whether a JobSpec a coordinator sent is well formed, before any policy is asked: the job id,
who takes part, the threshold, the deadline, the protocol's requirements, the circuit (structure,
then no value can wrap: circuit.validate), and the fingerprint recomputed from what the spec
holds. Everything here is public; errors name rules, never values. Node.prepare calls
`check_job_spec`, then the organization's policy (admission.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection

from parley.v1 import node_pb2

from .circuit import CircuitError, Plan, validate
from .computation.protocol import job_protocol_problem
from .computation.spec import Computation


@dataclass(frozen=True)
class CheckedSpec:
    parties: list[str]             # the compute parties, in order
    input_parties: list[str]       # parties that only contribute inputs
    input_only: bool               # this node is one of them
    plan: Plan
    computation: Computation
    document: dict[str, Any]
    canonical: bytes
    fingerprint: str


def check_job_spec(spec: node_pb2.JobSpec, org: str, peers: Collection[str]) -> CheckedSpec:
    """The checked parts of `spec` as node `org` (with configured `peers`) sees it, or CircuitError
    naming the first problem."""
    if not spec.job_id or len(spec.job_id) > 128:
        raise CircuitError("job id must be 1-128 characters")
    parties = list(spec.parties)
    input_parties = list(spec.input_parties)
    input_only = org in input_parties
    if org not in parties and not input_only:
        raise CircuitError(f"{org} is not a party of this job")
    if len(set(parties)) != len(parties):
        raise CircuitError("a party is listed twice")
    # compute parties talk to each other; an input-only party sends its shares to them
    unknown = [p for p in parties if p != org and p not in peers]
    if unknown:
        raise CircuitError(f"parties {unknown} are not configured peers of {org}")
    # an input-only party's shares are accepted by its certificate's name: it must be one of the
    # organizations this node knows, not any identity the CA certified (a client named like one)
    strangers = [p for p in input_parties if p != org and p not in peers]
    if strangers and not input_only:
        raise CircuitError(f"input-only parties {strangers} are not configured peers of {org}")
    n, t = len(parties), spec.threshold
    if not (n >= 3 and 1 <= t and 2 * t < n):
        raise CircuitError(f"threshold t={t} with n={n} parties: need 1 <= t and 2t < n")
    if not 0 < spec.timeout_s <= 24 * 3600:
        raise CircuitError("timeout must be between 0 and 24 hours")
    problem = job_protocol_problem(spec.protocol or "shamir", n, t, spec.dropouts or "within-threshold")
    if problem:
        raise CircuitError(problem)
    plan = validate(spec.circuit, parties, spec.protocol or "shamir", input_parties)
    comp = Computation.of_job(spec)
    try:
        doc = comp.document()
        canonical = comp.canonical()
    except ValueError as exc:
        raise CircuitError(str(exc)) from None
    fp = comp.fingerprint()
    if fp != spec.fingerprint:
        raise CircuitError(f"fingerprint mismatch: the computation sent hashes to {fp[:16]}..., "
                           f"the job claims {spec.fingerprint[:16]}...")
    return CheckedSpec(parties, input_parties, input_only, plan, comp, doc, canonical, fp)


def recomputed_fingerprint(spec: node_pb2.JobSpec) -> str:
    """The fingerprint of what a JobSpec actually holds ('' if it cannot be canonicalized): a replay
    that claims an existing job's fingerprint over another circuit is not "the same job"."""
    try:
        return Computation.of_job(spec).fingerprint()
    except ValueError:
        return ""
