"""The node's domain logic: jobs, consent policy, inputs, outputs. Servicers call into it.

Every public method takes the caller's certificate identity first and decides whether that
caller may do this, before touching any state.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field as dc_field
from datetime import datetime, timezone

import numpy as np

from parley.v1 import circuit_pb2 as cpb, node_pb2

from .admission import Admission, Approved, accepted_note, resolve_approvals
from .circuit import CircuitError, Plan
from .computation.liveness import live_set_problem
from .computation.spec import Feeds, output_feeds
from .config import NodeConfig
from .engines import ENGINES
from .errors import Conflict, ConsentStop, Denied, NotFound
from .exchange import ExchangeTimeout
from .expiry import expire_unless_started
from .inputparty import DeliveryError, accept_owner_share, deliver, wait_owner_inputs
from .inputs import InputError, load_node_inputs
from .intake import (accept_client_share, add_rows_status, public_job, record_client_rows, submission_status,
                     wait_client_inputs)
from .jobrun import run_job
from .jobspec import check_job_spec, recomputed_fingerprint
from .dpcheck import withholds_rows
from .ledger import EXPIRED, REFUNDED, BudgetExceeded, PrivacyLedger, job_charges
from .models import ModelJobs
from .opened import describe as describe_opened
from .protocols.agreement import MissingInput
from .release import output_share, participants
from .store import ShareStore
from .transport.peers import GrpcExchange, Mailbox, PeerLinks, PeerUnavailable, ProtocolViolation
from .transport.tls import TlsMaterial

log = logging.getLogger("parley.node")
MAX_STATUS_WAIT_S = 5.0

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
    # client input name -> the clients it lists, as a set: a membership test per submission must not
    # scan a list of a million voters; and how many shares this node accepted for it so far
    client_lists: dict[str, frozenset[str]] = dc_field(default_factory=dict)
    client_counts: dict[str, int] = dc_field(default_factory=dict)
    committed: bool = False   # DONE and the coordinator recorded it DONE (see Node.commit)
    ended: asyncio.Event = dc_field(default_factory=asyncio.Event)   # set once DONE or FAILED
    feeds: dict[str, Feeds] = dc_field(default_factory=dict)   # per output: the inputs behind it
    approval: Approved | None = None
    # this node is an input-only party of the job: it delivers its inputs and holds no shares
    input_only: bool = False
    # compute node: the node inputs of input-only parties not received yet; `owner_inputs` is set
    # once none is missing
    owner_pending: set[str] = dc_field(default_factory=set)
    owner_inputs: asyncio.Event = dc_field(default_factory=asyncio.Event)
    charges: dict = dc_field(default_factory=dict)   # privacy-ledger key -> ρ reserved at Prepare (ledger.py)
    models: dict = dc_field(default_factory=dict)    # input name -> this node's share of a kept model (Start)


class Node:
    def __init__(self, cfg: NodeConfig, tls: TlsMaterial, approvals: list[Approved] | None = None):
        self.cfg = cfg
        self.tls = tls
        self.org = cfg.organization
        self.store = ShareStore(cfg.data_dir / "shares.sqlite3")
        self.ledger = PrivacyLedger(self.store, cfg)
        self.models = ModelJobs(self.store, self.org)
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
                # a prepared job never started: its reservation is refunded; a running one was spent at Start
                self.store.set_state(job_id, State.FAILED, f"node {self.org} restarted while the job was {state.lower()}",
                                     lambda conn, j=job_id: PrivacyLedger.settle_in(conn, j, REFUNDED))

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
        if spec.live:
            # the live set is decided at Start and agreed among the nodes; a Prepare that sets it
            # would choose which nodes input clients send their shares to before anyone agreed
            self.store.audit("refused", spec.job_id[:128], spec.fingerprint, "Prepare may not set the live parties")
            return _refuse("the live parties are set at Start, not in Prepare")
        existing = self.jobs.get(spec.job_id) or self.store.job(spec.job_id)
        if existing is not None:
            fp = existing.spec.fingerprint if isinstance(existing, Job) else existing.fingerprint
            if fp == spec.fingerprint and recomputed_fingerprint(spec) == fp:
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
        try:   # the reservation and the job row commit together, or neither does
            self.store.put_job(spec.job_id, spec.SerializeToString(deterministic=True), spec.fingerprint,
                               State.PREPARED, self.ledger.reserver(spec.job_id, job.charges))
        except BudgetExceeded as exc:
            log.warning("job %s refused: %s", spec.job_id, exc)
            self.store.audit("refused", spec.job_id, spec.fingerprint, str(exc))
            return _refuse(str(exc))
        self.jobs[spec.job_id] = job
        expire_unless_started(job, self.cfg.prepared_ttl_s, self._fail)
        self.store.audit("accepted", spec.job_id, spec.fingerprint, accepted_note(self.org, spec, approval,
                                                                                 job.input_only, job.charges))
        log.info("job %s prepared (%s, %d parties)", spec.job_id, spec.scenario, len(spec.parties))
        return node_pb2.PrepareReply(accepted=True)

    def _admit(self, spec: node_pb2.JobSpec) -> tuple[Job, Approved]:
        checked = check_job_spec(spec, self.org, self.cfg.peers)      # its form, then its fingerprint
        parties, input_parties, input_only = checked.parties, checked.input_parties, checked.input_only
        plan, comp, doc, canonical, fp = checked.plan, checked.computation, checked.document, checked.canonical, \
            checked.fingerprint
        approval = self.admission.check(comp, doc, fp)
        self.admission.check_clients(spec.circuit)
        if not input_only:
            self.models.check(spec.circuit)       # kept models read here, and the grants' room
        # a budgeted dataset feeds DP outputs only (Denied otherwise); the charge is reserved at put_job
        charges = job_charges(spec.circuit, self.org, self.cfg, holds_client_shares=not input_only)
        # every policy check is done: only now is our data read (a refusal above never touched it)
        mine = [d for d in spec.circuit.inputs if d.source == cpb.INPUT_SOURCE_NODE and d.owner == self.org]
        inputs: dict[str, np.ndarray] = {}
        for dataset in sorted({d.dataset for d in mine}):
            inputs.update(load_node_inputs(self.cfg.inputs.get(dataset), [d for d in mine if d.dataset == dataset],
                                           dataset))
        me = -1 if input_only else parties.index(self.org)
        lists = {d.name: frozenset(d.clients) for d in spec.circuit.inputs if d.source == cpb.INPUT_SOURCE_CLIENTS}
        # a peer may run ahead (capped, mailbox.py); an input-only party's mailbox knows no sender
        mailbox = Mailbox(spec.job_id, [] if input_only else parties, me,
                          max_pending_bytes=PENDING_MESSAGES_OF_MAX_SIZE * self.links.max_message_bytes,
                          field_elements=ENGINES[spec.protocol or "shamir"].field_modulus is not None)
        pending = set() if input_only else {d.name for d in spec.circuit.inputs
                                            if d.source == cpb.INPUT_SOURCE_NODE and d.owner in input_parties}
        job = Job(spec=spec, plan=plan, me=me, mailbox=mailbox, inputs=inputs, canonical=canonical,
                  client_lists=lists, client_counts={name: 0 for name in lists},
                  feeds=output_feeds(doc), approval=approval, input_only=input_only, owner_pending=pending,
                  charges=charges)
        if not pending:
            job.owner_inputs.set()
        mailbox.on_violation = lambda reason: self._violation(job, reason)
        return job, approval

    def start(self, caller: str | None, job_id: str, live: list[str] | None = None) -> node_pb2.JobStatus:
        self._require_coordinator(caller)
        job = self._job(job_id)
        if job.state == State.PREPARED and job.task is None:
            expires = job.approval.expires if job.approval else None
            if expires is not None and datetime.now(timezone.utc) >= expires:
                # an approval bounds when our data may be used, not only when a job may be prepared
                self._fail(job, f"{self.org}'s approval of computation {job.spec.fingerprint[:16]}... expired "
                                f"at {expires:%Y-%m-%dT%H:%M:%SZ} before the job started")
                return self._status(job)
            self._set_live(job, live)
            try:   # a predict job's queries are counted before any share of the model is used
                job.models = {} if job.input_only else self.models.take(job_id, job.spec.circuit)
            except Denied as exc:
                self._fail(job, str(exc))
                return self._status(job)
            job.state = State.RUNNING
            job.started = time.monotonic()
            # spent as the job starts, before any share that depends on our data leaves this node:
            # from then on the other nodes can finish and release it without us (an Abort sent to us
            # alone, or our crash, must not give the budget back while they do)
            self.store.set_state(job_id, State.RUNNING, "", lambda conn: PrivacyLedger.spend_in(conn, job_id))
            job.task = asyncio.get_running_loop().create_task(self._deliver(job) if job.input_only else self._run(job))
            self.store.audit("started", job_id, job.spec.fingerprint,
                             f"{'sharing its input with compute parties' if job.input_only else 'live parties'}: "
                             f"{', '.join(job.live)}")
        return self._status(job)

    async def wait_status(self, caller: str | None, job_id: str, wait_s: float) -> node_pb2.JobStatus:
        """Status, held until the job ends or `wait_s` (at most MAX_STATUS_WAIT_S) passes: the
        coordinator's watch learns of a job's end when it happens, not at its next poll."""
        self._require_coordinator(caller)
        job = self.jobs.get(job_id)
        if job is not None and wait_s > 0 and not job.ended.is_set():
            try:
                await asyncio.wait_for(job.ended.wait(), min(wait_s, MAX_STATUS_WAIT_S))
            except TimeoutError:
                pass
        return self.status(caller, job_id)

    def status(self, caller: str | None, job_id: str) -> node_pb2.JobStatus:
        self._require_coordinator(caller)
        if job_id in self.jobs:
            return self._status(self.jobs[job_id])
        row = self.store.job(job_id)
        if row is None:
            raise NotFound(f"no job {job_id} on {self.org}")
        return add_rows_status(self.store, job_id, node_pb2.JobStatus(
            job_id=job_id, state=_PB_STATE[row.state], error=row.error, committed=row.committed))

    def close_inputs(self, caller: str | None, job_id: str, live: list[str] | None = None) -> node_pb2.JobStatus:
        self._require_coordinator(caller)
        job = self._job(job_id)
        if not job.inputs_closed.is_set():
            before = list(job.live)
            self._set_live(job, live)
            if job.live != before:
                self.store.audit("live", job_id, job.spec.fingerprint, f"live parties now: {', '.join(job.live)}")
        job.inputs_closed.set()
        return self._status(job)

    def commit(self, caller: str | None, job_id: str) -> node_pb2.JobStatus:
        """The coordinator recorded the job DONE. From now on this node releases its outputs and
        keeps them: Abort is refused. Idempotent; the coordinator resends it until it gets an answer."""
        self._require_coordinator(caller)
        job = self.jobs.get(job_id)
        row = self.store.job(job_id)
        if row is None:
            raise NotFound(f"no job {job_id} on {self.org}")
        if not self.store.commit_job(job_id):
            # the coordinator decides DONE only after this node reported DONE, and only Abort ends
            # DONE; so this is a node whose outputs were withdrawn or lost: say so, change nothing
            raise Conflict(f"job {job_id} is {row.state.lower()} on {self.org}, it cannot be committed")
        if job is not None:
            job.committed = True
        if not row.committed:
            log.info("job %s committed by %s", job_id, caller)
            released = "" if job is not None and job.input_only else "; outputs released"
            self.store.audit("committed", job_id, row.fingerprint, f"{caller} recorded the job done{released}")
        return self._status(job) if job is not None else self.status(caller, job_id)

    def abort(self, caller: str | None, job_id: str) -> node_pb2.JobStatus:
        """Stop a job. A job this node already finished is withdrawn too, unless it is committed:
        the coordinator sends Abort only for a job it recorded FAILED (say another node died after
        our last round), and then no node may keep its output, or a recipient could open the result
        of a "failed" job. A committed job was recorded DONE, which the coordinator never revokes:
        an Abort for it is stale or forged, and is refused without changing anything."""
        self._require_coordinator(caller)
        job = self.jobs.get(job_id)
        row = self.store.job(job_id) if job is None or job.state == State.DONE else None
        if job is None and row is None:
            raise NotFound(f"no job {job_id} on {self.org}")
        if job is not None and job.state in (State.PREPARED, State.RUNNING):
            self._fail(job, f"aborted by {caller}")
            if job.task:
                job.task.cancel()
        elif row is not None and row.state == State.DONE:
            reason = f"aborted by {caller} after it finished here"
            if not self.store.withdraw_outputs(job_id, reason):
                raise Conflict(f"job {job_id} was committed on {self.org}: its outputs are kept")
            log.warning("job %s: outputs withdrawn, %s", job_id, reason)
            input_only = self.org in node_pb2.JobSpec.FromString(row.spec).input_parties
            self.store.audit("withdrawn", job_id, row.fingerprint,
                             f"{'input was delivered, the job failed' if input_only else 'outputs deleted'}: {reason}")
            if job is not None:
                job.state, job.error = State.FAILED, reason
        return self._status(job) if job is not None else self.status(caller, job_id)

    def _set_live(self, job: Job, live: list[str] | None) -> None:
        """Which parties take part; the computation starts only after this is final."""
        parties = list(job.spec.parties)
        live = list(live) if live else parties
        if self.org not in live and not job.input_only:
            raise ValueError(f"live parties {live} must include {self.org}")
        owners = {d.owner for d in job.spec.circuit.inputs if d.source == cpb.INPUT_SOURCE_NODE}
        problem = live_set_problem(parties, job.spec.threshold, owners, job.plan.depth > 0,
                                   job.spec.dropouts or "within-threshold", live)
        if problem:
            raise ValueError(problem)
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
        withheld = withholds_rows(job.spec.circuit)
        return add_rows_status(self.store, job.spec.job_id, node_pb2.JobStatus(
            job_id=job.spec.job_id, state=_PB_STATE[job.state], rounds_done=ex.stats.rounds if ex else 0,
            rounds_total=job.plan.depth, bytes_sent=ex.stats.bytes_sent if ex else 0, error=job.error,
            committed=job.committed, elapsed_s=(end - job.started) if job.started else 0.0,
            inputs_received=0 if withheld else sum(job.client_counts.values()), rows_withheld=withheld))

    def _fail(self, job: Job, reason: str, expired: bool = False) -> None:
        if job.state in (State.DONE, State.FAILED):
            return
        job.state = State.FAILED
        job.error = reason
        job.finished = time.monotonic()
        job.mailbox.close(reason)
        # a job that never started has its reservation freed with the state; one that started was
        # spent at Start and stays spent (settle_in touches reserved charges only)
        self.store.set_state(job.spec.job_id, State.FAILED, reason, lambda conn: PrivacyLedger.settle_in(
            conn, job.spec.job_id, EXPIRED if expired else REFUNDED))
        self.store.audit("failed", job.spec.job_id, job.spec.fingerprint, reason)
        job.ended.set()
        log.warning("job %s failed: %s", job.spec.job_id, reason)

    # ---- running a job ---------------------------------------------------------------
    async def _run(self, job: Job) -> None:
        spec = job.spec
        round_timeout = min(self.cfg.round_timeout_s, 0.9 * spec.timeout_s)
        job.exchange = GrpcExchange(spec.job_id, list(spec.parties), job.me, self.links, job.mailbox, round_timeout)
        try:
            async with asyncio.timeout(spec.timeout_s):
                await wait_client_inputs(job)
                await wait_owner_inputs(job, self.org, round_timeout)
                # the same function `coordinator plan` dry-runs (jobrun.py), so its cost estimate is this run's cost
                result = await run_job(job.exchange, spec, job.plan, job.live or list(spec.parties), job.inputs,
                                       lambda decl: (self.store.client_shares(spec.job_id, decl.name),
                                                     self.store.client_order(spec.job_id, decl.name)),
                                       lambda rows: self.admission.check_rows(job.feeds, rows),
                                       lambda counted, excluded: record_client_rows(self.store, job, counted, excluded),
                                       kept_models=job.models)
            keep = self.models.keeper(spec.circuit, result.kept, list(spec.parties))   # DONE iff models kept
            self.store.finish_job(spec.job_id, {
                out.name: (result.outputs[out.name], list(out.recipients), participants(spec, out, result.row_labels))
                for out in spec.circuit.outputs}, (spec.fingerprint, [describe_opened(o) for o in result.opened]),
                lambda conn: (PrivacyLedger.spend_in(conn, spec.job_id), keep(conn)))  # spent at Start: a no-op
            self.models.audit_kept(spec.job_id, spec.circuit)
            self._done(job, "done", f"outputs stored: {', '.join(o.name for o in spec.circuit.outputs)}"
                       if spec.circuit.outputs else f"models kept: {', '.join(k.model_id for k in spec.circuit.keep)}")
            log.info("job %s done in %.2fs, %d rounds, %d bytes sent", spec.job_id, job.finished - job.started,
                     job.exchange.stats.rounds, job.exchange.stats.bytes_sent)
        except asyncio.CancelledError:
            self._fail(job, job.error or "cancelled")
        except TimeoutError as exc:
            reason = str(exc) if isinstance(exc, ExchangeTimeout) else f"job timed out after {spec.timeout_s:g}s"
            self._fail(job, reason)
        except (PeerUnavailable, ProtocolViolation, ConsentStop, MissingInput) as exc:
            self._fail(job, str(exc))   # these name peers, rounds, rules and counts, never a value
        except Exception as exc:  # the job fails cleanly; the node keeps serving
            # the message may hold anything the failing code saw: it stays in this node's log
            log.exception("job %s crashed", spec.job_id)
            self._fail(job, f"internal error on {self.org} ({type(exc).__name__}; details in its log)")

    def _done(self, job: Job, event: str, detail: str) -> None:
        """The job ended well here (its outputs, if any, are stored): say so to waiters and the audit log."""
        job.state = State.DONE
        job.finished = time.monotonic()
        self.store.audit(event, job.spec.job_id, job.spec.fingerprint, detail)
        job.ended.set()
        job.mailbox.close("done")

    async def _deliver(self, job: Job) -> None:
        """Input-only party: share our node inputs to the live compute parties (inputparty.py).
        DONE here means delivered: no output is stored, none is ever released by this node."""
        spec = job.spec
        try:
            async with asyncio.timeout(spec.timeout_s):
                names = await deliver(spec, self.org, job.live, job.inputs, self.cfg.peers, self.tls,
                                      self.cfg.rpc_timeout_s)
            # our input left as shares: spent (no later failure can tell that nothing was released)
            self.store.finish_job(spec.job_id, {}, in_tx=lambda conn: PrivacyLedger.spend_in(conn, spec.job_id))
            self._done(job, "delivered", f"input {', '.join(names)} shared to compute parties {', '.join(job.live)}")
            log.info("job %s: input delivered to %s", spec.job_id, ", ".join(job.live))
        except asyncio.CancelledError:
            self._fail(job, job.error or "cancelled")
        except TimeoutError:
            self._fail(job, f"job timed out after {spec.timeout_s:g}s before its input was delivered")
        except DeliveryError as exc:
            self._fail(job, str(exc))
        except Exception as exc:  # the job fails cleanly; the node keeps serving
            log.exception("job %s: delivering input crashed", spec.job_id)
            self._fail(job, f"internal error on {self.org} ({type(exc).__name__}; details in its log)")

    # ---- node <-> node (transport/inbound.py's Inbox) ----------------------------------------
    def mailbox(self, peer: str, job_id: str) -> Mailbox:
        """Where a peer's message for `job_id` goes. The link checked the peer's certificate when
        the stream opened; messages of a job that is not active here are refused."""
        if peer not in self.cfg.peers:
            raise Denied(f"{peer!r} is not a peer of {self.org}")
        job = self.jobs.get(job_id)
        if job is None or job.state not in (State.PREPARED, State.RUNNING) or job.input_only:
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
        return output_share(self.store, self.org, caller, req)

    # ---- input client -> node ---------------------------------------------------------
    def submit_client_share(self, caller: str | None, req: node_pb2.ClientShare) -> node_pb2.ClientAck:
        job = self.jobs.get(req.job_id)
        if job is None:
            raise NotFound(f"job {req.job_id} is not open for input on {self.org}")
        if job.input_only:
            raise Denied(f"{self.org} is an input-only party of job {req.job_id}: it takes no shares")
        owned = next((d for d in job.spec.circuit.inputs if d.name == req.input and d.source == cpb.INPUT_SOURCE_NODE
                      and d.owner in job.spec.input_parties), None)
        if owned is not None:
            return accept_owner_share(self.store, job, caller, owned, req)
        decl = next((d for d in job.spec.circuit.inputs
                     if d.name == req.input and d.source == cpb.INPUT_SOURCE_CLIENTS), None)
        if decl is None:
            raise NotFound(f"job {req.job_id} takes no client input {req.input!r}")
        return accept_client_share(self.store, job, caller, decl, req, self.tls)

    def submission_status(self, caller: str | None, req: node_pb2.SubmissionQuery) -> node_pb2.SubmissionStatusReply:
        """The caller's own submission only: stored, counted or excluded (intake.submission_status)."""
        return submission_status(self.store, self.org, caller, req, self.tls)

    def job_info(self, caller: str | None, job_id: str) -> node_pb2.PublicJob:
        """The computation an input client's data would feed, as the canonical document this node
        runs: the client recomputes its fingerprint and compares it with the one it was given, and
        with what every other node shows, before it sends anything."""
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id} is not open on {self.org}")
        return public_job(job, caller, self.cfg.policy.coordinators)


def _refuse(reason: str) -> node_pb2.PrepareReply:
    return node_pb2.PrepareReply(accepted=False, reason=reason)

