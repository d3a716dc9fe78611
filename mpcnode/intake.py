"""A compute node's intake of input clients' shares (InputIntake.SubmitShare): who may submit what,
while the job is open, once, in the job's share format. Input-only organizations' node inputs take
the other way in, inputparty.accept_owner_share; both store a row with `store_row`. Errors are public: names, shapes and counts only."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from parley.v1 import circuit_pb2 as cpb
from parley.v1 import node_pb2

from . import sharing
from .errors import Conflict, Denied
from .store import DuplicateSubmission, ShareStore

if TYPE_CHECKING:
    from .node import Job

OPEN_STATES = ("PREPARED", "RUNNING")   # node.State: a job that may still take input


def store_row(store: ShareStore, job: "Job", decl: cpb.InputDecl, caller: str,
              req: node_pb2.ClientShare) -> None:
    """Decode one sender's share of its row of `decl` in the job's share format and store it;
    Conflict if that sender already submitted (a share is never replaced)."""
    share = sharing.decode_row(job.spec.protocol or "shamir", req.share, req.shape, decl.length,
                               f"input {decl.name!r} from {caller}")
    try:
        store.add_client_share(req.job_id, decl.name, caller, share)
    except DuplicateSubmission as exc:
        raise Conflict(str(exc)) from None


def accept_client_share(store: ShareStore, job: "Job", caller: str | None, decl: cpb.InputDecl,
                        req: node_pb2.ClientShare) -> node_pb2.ClientAck:
    """One listed client's share of its row of client input `decl`: stored once, while input is open."""
    if caller is None or caller not in job.client_lists[decl.name]:
        raise Denied(f"{caller!r} is not an input client of {req.input!r} in job {req.job_id}")
    if job.inputs_closed.is_set() or job.state not in OPEN_STATES or (
            job.spec.input_deadline_unix and time.time() > job.spec.input_deadline_unix):
        raise Conflict(f"input for job {req.job_id} is closed")
    store_row(store, job, decl, caller, req)
    job.client_counts[decl.name] += 1
    return node_pb2.ClientAck(accepted_count=job.client_counts[decl.name])


def public_job(job: "Job", caller: str | None, coordinators: list[str]) -> node_pb2.PublicJob:
    """JobInfo: the canonical document this node runs, for those who may send it input (its
    clients, input-only parties) and its coordinators; Denied for anyone else."""
    if (caller not in coordinators and caller not in job.spec.input_parties
            and not any(caller in s for s in job.client_lists.values())):
        raise Denied(f"{caller!r} is not an input client of job {job.spec.job_id}")
    return node_pb2.PublicJob(job_id=job.spec.job_id, spec=job.canonical, fingerprint=job.spec.fingerprint,
                              live=job.spec.live, input_deadline_unix=job.spec.input_deadline_unix)
