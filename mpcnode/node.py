"""The node's domain logic: jobs, consent policy, inputs, outputs. Servicers call into it.

Every public method takes the caller's certificate identity first and decides whether that
caller may do this, before touching any state.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field as dc_field

import numpy as np

from parley.v1 import circuit_pb2 as cpb
from parley.v1 import node_pb2

from .admission import Admission, Approved, resolve_approvals
from .circuit import CircuitError, Plan, validate
from .computation.spec import Computation, protocol_parameters
from .config import NodeConfig
from .configfile import ConfigError
from .errors import Conflict, Denied, NotFound
from .exchange import ExchangeTimeout
from .inputs import InputError, load_node_inputs
from .jobrun import run_job
from .store import DuplicateSubmission, ShareStore
from .transport import serde
from .transport.peers import GrpcExchange, Mailbox, PeerLinks, PeerUnavailable, ProtocolViolation
from .transport.tls import TlsMaterial

log = logging.getLogger("parley.node")

# How many messages of the largest allowed size (max_message_mb) one peer may have waiting in a
# job's mailbox, counting those still arriving in chunks (transport/mailbox.py)
PENDING_MESSAGES_OF_MAX_SIZE = 2


class State:
    PREPARED = "PREPARED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"


_PB_STATE = {State.PREPARED: node_pb2.JOB_STATE_PREPARED, State.RUNNING: node_pb2.JOB_STATE_RUNNING,
             State.DONE: node_pb2.JOB_STATE_DONE, State.FAILED: node_pb2.JOB_STATE_FAILED}


@dataclass
class Job:
    spec: node_pb2.JobSpec
    plan: Plan
    me: int
    mailbox: Mailbox
    inputs: dict[str, np.ndarray]
    state: str = State.PREPARED
    error: str = ""
    started: float = 0.0
    finished: float = 0.0
    exchange: GrpcExchange | None = None
    task: asyncio.Task | None = None
    inputs_closed: asyncio.Event = dc_field(default_factory=asyncio.Event)
    live: list[str] = dc_field(default_factory=list)
    client_inputs: set[str] = dc_field(default_factory=set)
    canonical: bytes = b""   # the computation document the job runs (shown to input clients)


class Node:
    def __init__(self, cfg: NodeConfig, tls: TlsMaterial, approvals: list[Approved] | None = None):
        self.cfg = cfg
        self.org = cfg.organization
        self.store = ShareStore(cfg.data_dir / "shares.sqlite3")
        if approvals is None:
            approvals = resolve_approvals(cfg, "(node config)")
        self.admission = Admission(cfg, approvals, self.store.jobs_with_fingerprint)
        self.links = PeerLinks(self.org, cfg.peers, tls, cfg.max_message_mb, connect_timeout_s=cfg.rpc_timeout_s)
        self.links.inbox = self   # mailbox / peer_lost / job_failed below
        self.jobs: dict[str, Job] = {}
        self._recover()

    def _recover(self) -> None:
        """A job that was prepared or running when this process died cannot resume: its
        in-flight intermediate shares lived only in memory. Mark it failed, keep everything else."""
        for state in (State.PREPARED, State.RUNNING):
            for job_id in self.store.jobs_in_state(state):
                self.store.set_state(job_id, State.FAILED, f"node {self.org} restarted while the job was {state.lower()}")

    async def close(self) -> None:
        for job in self.jobs.values():
            if job.task and not job.task.done():
                job.task.cancel()
        await self.links.close()
        self.store.close()

    # ---- coordinator -> node ----------------------------------------------------------
    def _require_coordinator(self, caller: str | None) -> str:
        if caller is None or caller not in self.cfg.policy.coordinators:
            raise Denied(f"{caller!r} may not schedule jobs on {self.org}")
        return caller

    def prepare(self, caller: str | None, spec: node_pb2.JobSpec) -> node_pb2.PrepareReply:
        """Check the job against structure and consent policy; no input is shared here."""
        self._require_coordinator(caller)
        existing = self.jobs.get(spec.job_id) or self.store.job(spec.job_id)
        if existing is not None:
            fp = existing.spec.fingerprint if isinstance(existing, Job) else existing.fingerprint
            if fp == spec.fingerprint:
                return node_pb2.PrepareReply(accepted=True)  # the same job submitted again: idempotent
            self.store.audit("refused", spec.job_id, spec.fingerprint, "job id already used for another computation")
            return _refuse(f"job id {spec.job_id} is already used for another circuit")
        try:
            job, approval = self._admit(spec)
        except InputError as exc:
            # the public reason names the input and the rule; the value and the file stay here
            log.warning("job %s refused: %s", spec.job_id, exc.detail)
            self.store.audit("refused", spec.job_id, spec.fingerprint, str(exc))
            return _refuse(str(exc))
        except (CircuitError, Denied) as exc:
            log.warning("job %s refused: %s", spec.job_id, exc)
            self.store.audit("refused", spec.job_id, spec.fingerprint, str(exc))
            return _refuse(str(exc))
        self.store.put_job(spec.job_id, spec.SerializeToString(deterministic=True), spec.fingerprint, State.PREPARED)
        self.jobs[spec.job_id] = job
        fed = sorted({d.dataset for d in spec.circuit.inputs
                      if d.source == cpb.INPUT_SOURCE_NODE and d.owner == self.org})
        self.store.audit("accepted", spec.job_id, spec.fingerprint,
                         f"approved computation {approval.label or spec.circuit.name}"
                         + (f" ({approval.note})" if approval.note else "")
                         + f"; datasets fed: {', '.join(fed) if fed else 'none'}")
        log.info("job %s prepared (%s, %d parties)", spec.job_id, spec.scenario, len(spec.parties))
        return node_pb2.PrepareReply(accepted=True)

    def _admit(self, spec: node_pb2.JobSpec) -> tuple[Job, Approved]:
        if not spec.job_id or len(spec.job_id) > 128:
            raise CircuitError("job id must be 1-128 characters")
        parties = list(spec.parties)
        if self.org not in parties:
            raise CircuitError(f"{self.org} is not a compute party of this job")
        if len(set(parties)) != len(parties):
            raise CircuitError("a party is listed twice")
        unknown = [p for p in parties if p != self.org and p not in self.cfg.peers]
        if unknown:
            raise CircuitError(f"parties {unknown} are not configured peers of {self.org}")
        n, t = len(parties), spec.threshold
        if not (n >= 3 and 1 <= t and 2 * t < n):
            raise CircuitError(f"threshold t={t} with n={n} parties: need 1 <= t and 2t < n")
        if not 0 < spec.timeout_s <= 24 * 3600:
            raise CircuitError("timeout must be between 0 and 24 hours")
        plan = validate(spec.circuit, parties)
        comp = Computation.of_job(spec)
        try:
            protocol_parameters(comp.protocol)
            doc = comp.document()
            canonical = comp.canonical()
        except ValueError as exc:
            raise CircuitError(str(exc)) from None
        fp = comp.fingerprint()
        if fp != spec.fingerprint:
            raise CircuitError(f"fingerprint mismatch: the computation sent hashes to {fp[:16]}..., "
                               f"the job claims {spec.fingerprint[:16]}...")
        approval = self.admission.check(comp, doc, fp)
        policy = self.cfg.policy
        mine = [d for d in spec.circuit.inputs if d.source == cpb.INPUT_SOURCE_NODE and d.owner == self.org]
        inputs: dict[str, np.ndarray] = {}
        for dataset in sorted({d.dataset for d in mine}):
            inputs.update(load_node_inputs(self.cfg.inputs.get(dataset), [d for d in mine if d.dataset == dataset],
                                           dataset))
        clients = {c for d in spec.circuit.inputs if d.source == cpb.INPUT_SOURCE_CLIENTS for c in d.clients}
        if clients and "*" not in policy.input_clients:
            stray = sorted(clients - set(policy.input_clients))
            if stray:
                raise Denied(f"{self.org}'s policy does not accept input from {', '.join(stray[:5])}")
        me = parties.index(self.org)
        # a peer may run ahead by a few rounds; what it sends for rounds not reached yet is capped
        mailbox = Mailbox(spec.job_id, parties, me,
                          max_pending_bytes=PENDING_MESSAGES_OF_MAX_SIZE * self.links.max_message_bytes)
        job = Job(spec=spec, plan=plan, me=me, mailbox=mailbox, inputs=inputs, canonical=canonical)
        mailbox.on_violation = lambda reason: self._violation(job, reason)
        return job, approval

    def start(self, caller: str | None, job_id: str, live: list[str] | None = None) -> node_pb2.JobStatus:
        self._require_coordinator(caller)
        job = self._job(job_id)
        if job.state == State.PREPARED and job.task is None:
            self._set_live(job, live)
            job.state = State.RUNNING
            job.started = time.monotonic()
            self.store.set_state(job_id, State.RUNNING)
            job.task = asyncio.get_running_loop().create_task(self._run(job))
            self.store.audit("started", job_id, job.spec.fingerprint, f"live parties: {', '.join(job.live)}")
        return self._status(job)

    def status(self, caller: str | None, job_id: str) -> node_pb2.JobStatus:
        self._require_coordinator(caller)
        if job_id in self.jobs:
            return self._status(self.jobs[job_id])
        row = self.store.job(job_id)
        if row is None:
            raise NotFound(f"no job {job_id} on {self.org}")
        return node_pb2.JobStatus(job_id=job_id, state=_PB_STATE[row.state], error=row.error)

    def close_inputs(self, caller: str | None, job_id: str, live: list[str] | None = None) -> node_pb2.JobStatus:
        self._require_coordinator(caller)
        job = self._job(job_id)
        if not job.inputs_closed.is_set():
            self._set_live(job, live)
        job.inputs_closed.set()
        return self._status(job)

    def abort(self, caller: str | None, job_id: str) -> node_pb2.JobStatus:
        """Stop a job. A job this node already finished is withdrawn too: when the coordinator
        declares a job failed (say another node died after our last round), no node may keep
        releasing its output, or a recipient could open the result of a "failed" job."""
        self._require_coordinator(caller)
        job = self.jobs.get(job_id)
        if job is None:
            row = self.store.job(job_id)
            if row is None:
                raise NotFound(f"no job {job_id} on {self.org}")
            if row.state == State.DONE:
                self.store.withdraw_outputs(job_id, f"aborted by {caller} after it finished here")
            return self.status(caller, job_id)
        if job.state in (State.PREPARED, State.RUNNING):
            self._fail(job, f"aborted by {caller}")
            if job.task:
                job.task.cancel()
        elif job.state == State.DONE:
            job.state, job.error = State.FAILED, f"aborted by {caller} after it finished here"
            self.store.withdraw_outputs(job_id, job.error)
        return self._status(job)

    def _set_live(self, job: Job, live: list[str] | None) -> None:
        """Which parties take part; the computation starts only after this is final."""
        parties = list(job.spec.parties)
        live = list(live) if live else parties
        t = job.spec.threshold
        if job.spec.dropouts == "none" and sorted(live) != sorted(parties):
            raise ValueError("this computation was approved to run with all its parties only (dropouts: none)")
        if not set(live) <= set(parties) or self.org not in live:
            raise ValueError(f"live parties {live} must be parties of the job and include {self.org}")
        missing_owners = sorted({d.owner for d in job.spec.circuit.inputs
                                 if d.source == cpb.INPUT_SOURCE_NODE and d.owner not in live})
        if missing_owners:
            raise ValueError(f"cannot run without input owners {', '.join(missing_owners)}")
        need = 2 * t + 1 if job.plan.depth else t + 1
        if len(live) < need:
            raise ValueError(f"{len(live)} live parties, this circuit needs {need} with t={t}")
        job.live = sorted(live, key=parties.index)
        del job.spec.live[:]
        job.spec.live.extend(job.live)

    def _job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no active job {job_id} on {self.org}")
        return job

    def _status(self, job: Job) -> node_pb2.JobStatus:
        ex = job.exchange
        end = job.finished or time.monotonic()
        return node_pb2.JobStatus(
            job_id=job.spec.job_id, state=_PB_STATE[job.state], rounds_done=ex.stats.rounds if ex else 0,
            rounds_total=job.plan.depth, bytes_sent=ex.stats.bytes_sent if ex else 0, error=job.error,
            elapsed_s=(end - job.started) if job.started else 0.0,
            inputs_received=self.store.count_client_shares(job.spec.job_id))

    def _fail(self, job: Job, reason: str) -> None:
        if job.state in (State.DONE, State.FAILED):
            return
        job.state = State.FAILED
        job.error = reason
        job.finished = time.monotonic()
        job.mailbox.close(reason)
        self.store.set_state(job.spec.job_id, State.FAILED, reason)
        self.store.audit("failed", job.spec.job_id, job.spec.fingerprint, reason)
        log.warning("job %s failed: %s", job.spec.job_id, reason)

    # ---- running a job ---------------------------------------------------------------
    async def _run(self, job: Job) -> None:
        spec = job.spec
        round_timeout = min(self.cfg.round_timeout_s, 0.9 * spec.timeout_s)
        job.exchange = GrpcExchange(spec.job_id, list(spec.parties), job.me, self.links, job.mailbox, round_timeout)
        try:
            async with asyncio.timeout(spec.timeout_s):
                await self._wait_client_inputs(job)
                # the same function `coordinator plan` dry-runs (jobrun.py), so its cost estimate is this run's cost
                result = await run_job(job.exchange, spec, job.plan, job.live or list(spec.parties), job.inputs,
                                       lambda decl: (self.store.client_shares(spec.job_id, decl.name),
                                                     self.store.client_order(spec.job_id, decl.name)))
            self.store.finish_job(spec.job_id, {
                out.name: (result.outputs[out.name], list(out.recipients), result.row_labels)
                for out in spec.circuit.outputs})
            job.state = State.DONE
            job.finished = time.monotonic()
            self.store.audit("done", spec.job_id, spec.fingerprint,
                             f"outputs stored: {', '.join(o.name for o in spec.circuit.outputs)}")
            job.mailbox.close("done")
            log.info("job %s done in %.2fs, %d rounds, %d bytes sent", spec.job_id, job.finished - job.started,
                     job.exchange.stats.rounds, job.exchange.stats.bytes_sent)
        except asyncio.CancelledError:
            self._fail(job, job.error or "cancelled")
        except TimeoutError as exc:
            reason = str(exc) if isinstance(exc, ExchangeTimeout) else f"job timed out after {spec.timeout_s:g}s"
            self._fail(job, reason)
        except (PeerUnavailable, ProtocolViolation, InputError) as exc:
            self._fail(job, str(exc))   # InputError's str() is its public part
        except ValueError as exc:
            if isinstance(exc, ConfigError):   # names a local file: it stays in this node's log
                log.warning("job %s failed: %s", spec.job_id, exc)
                self._fail(job, f"configuration error on {self.org} (details in its log)")
            else:   # protocol and executor checks name ops, rounds and shapes, never values
                self._fail(job, str(exc))
        except Exception as exc:  # the job fails cleanly; the node keeps serving
            # the message may hold anything the failing code saw: it stays in this node's log
            log.exception("job %s crashed", spec.job_id)
            self._fail(job, f"internal error on {self.org} ({type(exc).__name__}; details in its log)")

    async def _wait_client_inputs(self, job: Job) -> None:
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

    # ---- node <-> node (transport/inbound.py's Inbox) ----------------------------------------
    def mailbox(self, peer: str, job_id: str) -> Mailbox:
        """Where a peer's message for `job_id` goes. The link checked the peer's certificate when
        the stream opened; messages of a job that is not active here are refused."""
        if peer not in self.cfg.peers:
            raise Denied(f"{peer!r} is not a peer of {self.org}")
        job = self.jobs.get(job_id)
        if job is None or job.state not in (State.PREPARED, State.RUNNING):
            raise NotFound(f"job {job_id} is not active on {self.org}")
        return job.mailbox

    def peer_lost(self, peer: str, job_id: str, detail: str) -> None:
        job = self.jobs.get(job_id)
        if job is not None and job.state in (State.PREPARED, State.RUNNING):
            job.mailbox.peer_lost(peer, detail)

    def job_failed(self, job_id: str, exc: Exception) -> None:
        """A peer refused one of the job's messages: its waits raise `exc`, and the job fails with
        that reason (in _run)."""
        job = self.jobs.get(job_id)
        if job is not None and job.state in (State.PREPARED, State.RUNNING):
            job.mailbox.fail(exc)

    def _violation(self, job: Job, reason: str) -> None:
        """A peer broke the protocol in this job (two different messages under one label)."""
        self._fail(job, reason)
        if job.task:
            job.task.cancel()

    # ---- recipient -> node ------------------------------------------------------------
    def fetch_output(self, caller: str | None, req: node_pb2.OutputRequest) -> node_pb2.OutputShare:
        row = self.store.job(req.job_id)
        if row is None:
            raise NotFound(f"no job {req.job_id} on {self.org}")
        spec = node_pb2.JobSpec.FromString(row.spec)
        decl = next((o for o in spec.circuit.outputs if o.name == req.output), None)
        if decl is None:
            raise NotFound(f"job {req.job_id} has no output {req.output!r}")
        if caller is None or caller not in decl.recipients:
            raise Denied(f"{caller!r} is not a recipient of output {req.output!r} of job {req.job_id}")
        if row.state != State.DONE:
            raise Conflict(f"job {req.job_id} is {row.state.lower()} on {self.org}{': ' + row.error if row.error else ''}")
        out = self.store.output(req.job_id, req.output)
        if out is None:
            raise NotFound(f"output {req.output!r} of job {req.job_id} is missing on {self.org}")
        payload, shape = serde.encode(out.share)
        self.store.audit("fetched", req.job_id, row.fingerprint, f"{caller} fetched output {req.output}")
        return node_pb2.OutputShare(job_id=req.job_id, output=req.output, node=self.org,
                                    party_index=list(spec.parties).index(self.org), share=payload, shape=shape,
                                    threshold=spec.threshold, party_count=len(spec.parties),
                                    public_divisor=decl.public_divisor, row_labels=out.row_labels,
                                    description=decl.description)

    # ---- input client -> node ---------------------------------------------------------
    def submit_client_share(self, caller: str | None, req: node_pb2.ClientShare) -> node_pb2.ClientAck:
        job = self.jobs.get(req.job_id)
        if job is None:
            raise NotFound(f"job {req.job_id} is not open for input on {self.org}")
        decl = next((d for d in job.spec.circuit.inputs
                     if d.name == req.input and d.source == cpb.INPUT_SOURCE_CLIENTS), None)
        if decl is None:
            raise NotFound(f"job {req.job_id} takes no client input {req.input!r}")
        if caller is None or caller not in decl.clients:
            raise Denied(f"{caller!r} is not an input client of {req.input!r} in job {req.job_id}")
        if job.inputs_closed.is_set() or job.state not in (State.PREPARED, State.RUNNING) or (
                job.spec.input_deadline_unix and time.time() > job.spec.input_deadline_unix):
            raise Conflict(f"input for job {req.job_id} is closed")
        share = serde.decode(req.share, list(req.shape), f"input share from {caller}")
        if share.shape != (decl.length,):
            raise ValueError(f"input {req.input!r} takes {decl.length} values per client, got shape {list(share.shape)}")
        try:
            count = self.store.add_client_share(req.job_id, req.input, caller, share)
        except DuplicateSubmission as exc:
            raise Conflict(str(exc)) from None
        return node_pb2.ClientAck(accepted_count=count)

    def job_info(self, caller: str | None, job_id: str) -> node_pb2.PublicJob:
        """The computation an input client's data would feed, as the canonical document this node
        runs: the client recomputes its fingerprint and compares it with the one it was given, and
        with what every other node shows, before it sends anything."""
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id} is not open on {self.org}")
        if caller not in self.cfg.policy.coordinators and not any(
                caller in d.clients for d in job.spec.circuit.inputs if d.source == cpb.INPUT_SOURCE_CLIENTS):
            raise Denied(f"{caller!r} is not an input client of job {job_id}")
        return node_pb2.PublicJob(job_id=job_id, spec=job.canonical, fingerprint=job.spec.fingerprint,
                                  live=job.spec.live, input_deadline_unix=job.spec.input_deadline_unix)


def _refuse(reason: str) -> node_pb2.PrepareReply:
    return node_pb2.PrepareReply(accepted=False, reason=reason)

