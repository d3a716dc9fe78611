"""A compute node's intake of input clients' shares (InputIntake.SubmitShare): who may submit what,
while the job is open, once, in the job's share format. Input-only organizations' node inputs take
the other way in, inputparty.accept_owner_share; both store a row with `store_row`. Errors are public: names, shapes and counts only."""
from __future__ import annotations

import asyncio
import hashlib
import time
from typing import TYPE_CHECKING

from parley.v1 import circuit_pb2 as cpb
from parley.v1 import node_pb2

from . import receipts, sharing
from .errors import Conflict, Denied, NotFound
from .protocols.clientchecks import Exclusion
from .store import DuplicateSubmission, ShareStore
from .transport.tls import TlsMaterial

if TYPE_CHECKING:
    from .node import Job

OPEN_STATES = ("PREPARED", "RUNNING")   # node.State: a job that may still take input


def store_row(store: ShareStore, job: "Job", decl: cpb.InputDecl, caller: str,
              req: node_pb2.ClientShare) -> bytes:
    """Decode one sender's share of its row of `decl` in the job's share format and store it;
    Conflict if that sender already submitted (a share is never replaced). Returns sha256 of the
    stored bytes (the receipt's hash)."""
    share = sharing.decode_row(job.spec.protocol or "shamir", req.share, req.shape, decl.length,
                               f"input {decl.name!r} from {caller}")
    try:
        store.add_client_share(req.job_id, decl.name, caller, share)
    except DuplicateSubmission as exc:
        raise Conflict(str(exc)) from None
    return hashlib.sha256(share.astype("<u8").tobytes()).digest()


def accept_client_share(store: ShareStore, job: "Job", caller: str | None, decl: cpb.InputDecl,
                        req: node_pb2.ClientShare, tls: TlsMaterial) -> node_pb2.ClientAck:
    """One listed client's share of its row of client input `decl`: stored once, while input is open."""
    if caller is None or caller not in job.client_lists[decl.name]:
        raise Denied(f"{caller!r} is not an input client of {req.input!r} in job {req.job_id}")
    if job.inputs_closed.is_set() or job.state not in OPEN_STATES or (
            job.spec.input_deadline_unix and time.time() > job.spec.input_deadline_unix):
        raise Conflict(f"input for job {req.job_id} is closed")
    digest = store_row(store, job, decl, caller, req)
    job.client_counts[decl.name] += 1
    receipt = node_pb2.Receipt(node=job.spec.parties[job.me], job_id=req.job_id, input=decl.name, client=caller,
                               share_sha256=digest)
    return node_pb2.ClientAck(accepted_count=job.client_counts[decl.name],
                              receipt=receipts.sign(receipt, tls.key, tls.cert))


async def wait_client_inputs(job: "Job") -> None:
    """Client submission stays open until the coordinator closes it or the deadline passes."""
    if not any(d.source == cpb.INPUT_SOURCE_CLIENTS for d in job.spec.circuit.inputs):
        return
    deadline = job.spec.input_deadline_unix
    if deadline:
        try:
            await asyncio.wait_for(job.inputs_closed.wait(), max(0.0, deadline - time.time()))
        except asyncio.TimeoutError:
            pass
    else:
        await job.inputs_closed.wait()
    job.inputs_closed.set()


def record_client_rows(store: ShareStore, job: "Job", counts: dict[str, int], excluded: list[Exclusion]) -> None:
    """The live nodes agreed on the client rows (jobrun.take_client_rows): keep, durably, how
    many count and which were excluded and why, with one audit event per exclusion. Names and
    reasons only, never a value: JobStatus shows them to the coordinator."""
    store.record_client_rows(job.spec.job_id, sum(counts.values()),
                             [(e.credential, e.input, e.reason) for e in excluded], job.spec.fingerprint)


def add_rows_status(store: ShareStore, job_id: str, status: node_pb2.JobStatus) -> node_pb2.JobStatus:
    """Fill JobStatus's client-row fields from the store (nothing before the rows were agreed; only
    that they were agreed when the status says rows_withheld)."""
    agreed, counted, excluded = store.client_rows_summary(job_id)
    status.rows_agreed = agreed
    if status.rows_withheld:      # a DP job that protects participation: the counts stay here
        return status
    status.rows_accepted = counted
    status.excluded.extend(node_pb2.ExcludedClient(credential=c, input=i, reason=r) for c, i, r in excluded)
    return status


def submission_status(store: ShareStore, org: str, caller: str | None,
                      req: node_pb2.SubmissionQuery, tls: TlsMaterial) -> node_pb2.SubmissionStatusReply:
    """InputIntake.SubmissionStatus: the state of the CALLER's own submission to `req.input` of
    `req.job_id` on this node (its certificate's identity; no other client's state is ever
    returned). Denied unless the caller is a listed client of that input."""
    row = store.job(req.job_id)
    if row is None:
        raise NotFound(f"no job {req.job_id} on {org}")
    spec = node_pb2.JobSpec.FromString(row.spec)
    decl = next((d for d in spec.circuit.inputs if d.name == req.input and d.source == cpb.INPUT_SOURCE_CLIENTS), None)
    if decl is None:
        raise NotFound(f"job {req.job_id} takes no client input {req.input!r}")
    if caller is None or caller not in decl.clients:
        raise Denied(f"{caller!r} is not an input client of {req.input!r} in job {req.job_id}")
    stored = store.client_share_bytes(req.job_id, decl.name, caller)
    if stored is None:
        return node_pb2.SubmissionStatusReply(state=node_pb2.SUBMISSION_STATE_NOT_RECEIVED)
    receipt = receipts.sign(node_pb2.Receipt(node=org, job_id=req.job_id, input=decl.name, client=caller,
                                             share_sha256=hashlib.sha256(stored).digest()), tls.key, tls.cert)
    verdict = store.client_verdict(req.job_id, decl.name, caller)
    if verdict is None:
        return node_pb2.SubmissionStatusReply(state=node_pb2.SUBMISSION_STATE_STORED, receipt=receipt)
    counted, reason = verdict
    return node_pb2.SubmissionStatusReply(
        state=node_pb2.SUBMISSION_STATE_COUNTED if counted else node_pb2.SUBMISSION_STATE_EXCLUDED,
        reason=reason, receipt=receipt)


def public_job(job: "Job", caller: str | None, coordinators: list[str]) -> node_pb2.PublicJob:
    """JobInfo: the canonical document this node runs, for those who may send it input (its
    clients, input-only parties) and its coordinators; Denied for anyone else."""
    if (caller not in coordinators and caller not in job.spec.input_parties
            and not any(caller in s for s in job.client_lists.values())):
        raise Denied(f"{caller!r} is not an input client of job {job.spec.job_id}")
    return node_pb2.PublicJob(job_id=job.spec.job_id, spec=job.canonical, fingerprint=job.spec.fingerprint,
                              live=job.spec.live, input_deadline_unix=job.spec.input_deadline_unix)
