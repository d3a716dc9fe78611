"""What a node releases to an output's recipient (ResultRelease.FetchOutput), and what it keeps.

A recipient gets this node's share of the output and the canonical computation document the node
ran, nothing about who took part: the recipient takes every name it renders from that document
(checked against every other answering node's copy, mpcnode/recipient.py), and the opened numbers
from the shares. Two extras exist, each only where the approved computation says so:
- an output that carries row tags (Op.tags, an auction's winner) comes with the tagged input's
  approved client list, so that the opened index can be named; that list is the approved
  population (its hash is in the document), not the clients who submitted;
- an output with `reveal_participants` comes with the credentials whose rows counted, in the
  approved list's order (never the order rows arrived in).
"""
from __future__ import annotations

from typing import Sequence

from parley.v1 import circuit_pb2 as cpb
from parley.v1 import node_pb2

from .computation.spec import Computation
from .errors import Conflict, Denied, NotFound
from .store import ShareStore
from .transport import serde

DONE = "DONE"   # node.State.DONE


def participants(spec: node_pb2.JobSpec, out: cpb.OutputDecl, counted: Sequence[str]) -> list[str]:
    """The credentials to store with output `out`: those in `counted` (the rows of the job's first
    client input, in the agreed order), in the approved list's order, when the output reveals
    them; [] otherwise."""
    if not out.reveal_participants:
        return []
    decl = next((d for d in spec.circuit.inputs if d.source == cpb.INPUT_SOURCE_CLIENTS), None)
    if decl is None:
        return []
    took_part = set(counted)
    return [c for c in decl.clients if c in took_part]


def tag_labels(spec: node_pb2.JobSpec, out: cpb.OutputDecl) -> list[str]:
    """The approved client list of the input whose row tags output `out` depends on ([] if none).
    Found by following the output's value back through the ops to a tag-carrying op."""
    producers = {op.out: op for op in spec.circuit.ops}
    seen: set[str] = set()
    todo = [out.value]
    tagged = ""
    while todo and not tagged:
        name = todo.pop()
        op = producers.get(name)
        if op is None or name in seen:
            continue
        seen.add(name)
        tagged = op.tags
        todo.extend(op.args)
    decl = next((d for d in spec.circuit.inputs if d.name == tagged), None)
    return list(decl.clients) if decl is not None else []


def output_share(store: ShareStore, org: str, caller: str | None, req: node_pb2.OutputRequest) -> node_pb2.OutputShare:
    """This node's OutputShare for `req`, after checking that `caller` is one of the output's
    recipients and that the job is done and committed here."""
    row = store.job(req.job_id)
    if row is None:
        raise NotFound(f"no job {req.job_id} on {org}")
    spec = node_pb2.JobSpec.FromString(row.spec)
    if org in spec.input_parties:
        raise NotFound(f"{org} is an input-only party of job {req.job_id} and holds no output shares; "
                       "fetch them from the compute parties")
    decl = next((o for o in spec.circuit.outputs if o.name == req.output), None)
    if decl is None:
        raise NotFound(f"job {req.job_id} has no output {req.output!r}")
    if caller is None or caller not in decl.recipients:
        raise Denied(f"{caller!r} is not a recipient of output {req.output!r} of job {req.job_id}")
    if row.state != DONE:
        raise Conflict(f"job {req.job_id} is {row.state.lower()} on {org}{': ' + row.error if row.error else ''}")
    if not row.committed:
        # finished here, but the coordinator has not recorded the job DONE yet (or this node has
        # not heard it): it may still decide FAILED, and then no output of the job may open
        raise Conflict(f"job {req.job_id} is finished on {org} but not yet confirmed by the coordinator")
    out = store.output(req.job_id, req.output)
    if out is None:
        raise NotFound(f"output {req.output!r} of job {req.job_id} is missing on {org}")
    try:
        # the document of what this node holds, recomputed: a stored spec changed after approval
        # no longer hashes to the fingerprint the job was approved under, and the recipient sees it
        canonical = Computation.of_job(spec).canonical()
    except ValueError:
        canonical = b""
    payload, shape = serde.encode(out.share)
    store.audit("fetched", req.job_id, row.fingerprint, f"{caller} fetched output {req.output}")
    return node_pb2.OutputShare(job_id=req.job_id, output=req.output, node=org,
                                party_index=list(spec.parties).index(org), share=payload, shape=shape,
                                threshold=spec.threshold, party_count=len(spec.parties),
                                public_divisor=decl.public_divisor, description=decl.description,
                                protocol=spec.protocol or "shamir", spec=canonical, fingerprint=row.fingerprint,
                                tag_labels=tag_labels(spec, decl), participants=out.participants)
