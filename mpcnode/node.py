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

from .circuit import CircuitError, Plan, fingerprint, recipients_of, validate
from .config import NodeConfig
from .exchange import ExchangeTimeout
from .executor import Executor
from .inputs import InputError, load_node_inputs
from .protocols.core import Session
from .store import DuplicateSubmission, ShareStore
from .transport import serde
from .transport.peers import GrpcExchange, Mailbox, PeerLinks, PeerUnavailable, ProtocolViolation
from .transport.tls import TlsMaterial

log = logging.getLogger("parley.node")


class Denied(PermissionError):
    """The caller may not do this."""


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    """The request conflicts with the job's state (e.g. a second submission)."""


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
    committed: bool = False   # DONE and the coordinator recorded it DONE (see Node.commit)


class Node:
    def __init__(self, cfg: NodeConfig, tls: TlsMaterial):
        self.cfg = cfg
        self.org = cfg.organization
        self.store = ShareStore(cfg.data_dir / "shares.sqlite3")
        self.links = PeerLinks(self.org, cfg.peers, tls, cfg.max_message_mb)
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
            return _refuse(f"job id {spec.job_id} is already used for another circuit")
        try:
            job = self._admit(spec)
        except (CircuitError, InputError) as exc:
            return _refuse(str(exc))
        except Denied as exc:
            return _refuse(str(exc))
        self.store.put_job(spec.job_id, spec.SerializeToString(deterministic=True), spec.fingerprint, State.PREPARED)
        self.jobs[spec.job_id] = job
        log.info("job %s prepared (%s, %d parties)", spec.job_id, spec.scenario, len(spec.parties))
        return node_pb2.PrepareReply(accepted=True)

    def _admit(self, spec: node_pb2.JobSpec) -> Job:
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
        fp = fingerprint(spec.circuit)
        if fp != spec.fingerprint:
            raise CircuitError(f"circuit fingerprint mismatch: computed {fp[:16]}..., job says {spec.fingerprint[:16]}...")
        policy = self.cfg.policy
        if not policy.allows_scenario(spec.scenario, fp):
            raise Denied(f"{self.org}'s policy does not allow scenario {spec.scenario!r} (circuit {fp[:16]}...)")
        bad = policy.disallowed_recipients(recipients_of(spec.circuit))
        if bad:
            raise Denied(f"{self.org}'s policy does not allow results to go to {', '.join(bad)}")
        mine = [d for d in spec.circuit.inputs if d.source == cpb.INPUT_SOURCE_NODE and d.owner == self.org]
        inputs = load_node_inputs(self.cfg.inputs.get(spec.scenario), mine, spec.scenario)
        clients = {c for d in spec.circuit.inputs if d.source == cpb.INPUT_SOURCE_CLIENTS for c in d.clients}
        if clients and "*" not in policy.input_clients:
            stray = sorted(clients - set(policy.input_clients))
            if stray:
                raise Denied(f"{self.org}'s policy does not accept input from {', '.join(stray[:5])}")
        me = parties.index(self.org)
        return Job(spec=spec, plan=plan, me=me, mailbox=Mailbox(spec.job_id, parties, me), inputs=inputs)

    def start(self, caller: str | None, job_id: str, live: list[str] | None = None) -> node_pb2.JobStatus:
        self._require_coordinator(caller)
        job = self._job(job_id)
        if job.state == State.PREPARED and job.task is None:
            self._set_live(job, live)
            job.state = State.RUNNING
            job.started = time.monotonic()
            self.store.set_state(job_id, State.RUNNING)
            job.task = asyncio.get_running_loop().create_task(self._run(job))
        return self._status(job)

    def status(self, caller: str | None, job_id: str) -> node_pb2.JobStatus:
        self._require_coordinator(caller)
        if job_id in self.jobs:
            return self._status(self.jobs[job_id])
        row = self.store.job(job_id)
        if row is None:
            raise NotFound(f"no job {job_id} on {self.org}")
        return node_pb2.JobStatus(job_id=job_id, state=_PB_STATE[row.state], error=row.error, committed=row.committed)

    def close_inputs(self, caller: str | None, job_id: str, live: list[str] | None = None) -> node_pb2.JobStatus:
        self._require_coordinator(caller)
        job = self._job(job_id)
        if not job.inputs_closed.is_set():
            self._set_live(job, live)
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
            if job is not None:
                job.state, job.error = State.FAILED, reason
        return self._status(job) if job is not None else self.status(caller, job_id)

    def _set_live(self, job: Job, live: list[str] | None) -> None:
        """Which parties take part; the computation starts only after this is final."""
        parties = list(job.spec.parties)
        live = list(live) if live else parties
        t = job.spec.threshold
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
            committed=job.committed,
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
        log.warning("job %s failed: %s", job.spec.job_id, reason)

    # ---- running a job ---------------------------------------------------------------
    async def _run(self, job: Job) -> None:
        spec = job.spec
        round_timeout = min(self.cfg.round_timeout_s, 0.9 * spec.timeout_s)
        job.exchange = GrpcExchange(spec.job_id, list(spec.parties), job.me, self.links, job.mailbox,
                                    round_timeout, self.cfg.rpc_timeout_s)
        try:
            async with asyncio.timeout(spec.timeout_s):
                await self._wait_client_inputs(job)
                parties = list(spec.parties)
                session = Session(job.exchange, spec.threshold, [parties.index(p) for p in job.live or parties])
                executor = Executor(session, spec.circuit, job.plan)
                values = await executor.share_node_inputs(parties, job.inputs)
                labels = await self._client_inputs(job, session, values)
                outputs = await executor.run(values)
            self.store.finish_job(spec.job_id, {
                out.name: (outputs[out.name], list(out.recipients), labels) for out in spec.circuit.outputs})
            job.state = State.DONE
            job.finished = time.monotonic()
            job.mailbox.close("done")
            log.info("job %s done in %.2fs, %d rounds, %d bytes sent", spec.job_id, job.finished - job.started,
                     job.exchange.stats.rounds, job.exchange.stats.bytes_sent)
        except asyncio.CancelledError:
            self._fail(job, job.error or "cancelled")
        except TimeoutError as exc:
            reason = str(exc) if isinstance(exc, ExchangeTimeout) else f"job timed out after {spec.timeout_s:g}s"
            self._fail(job, reason)
        except (PeerUnavailable, ProtocolViolation, ValueError) as exc:
            self._fail(job, str(exc))
        except Exception as exc:  # the job fails cleanly; the node keeps serving
            log.exception("job %s crashed", spec.job_id)
            self._fail(job, f"internal error: {type(exc).__name__}: {exc}")

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

    async def _client_inputs(self, job: Job, session: Session, values: dict[str, np.ndarray]) -> list[str]:
        """Wait until client submission closes, then agree with the other nodes on whose input counts.

        Every node sends, for each listed client, 1 + the rank at which it received that client's
        share (0 = not received). A client counts only if every node holds its share; rows are
        ordered by the first party's arrival order, so "earliest submission" is well defined.
        """
        decls = [d for d in job.spec.circuit.inputs if d.source == cpb.INPUT_SOURCE_CLIENTS]
        if not decls:
            return []
        labels: list[str] = []
        for k, decl in enumerate(decls):
            got = self.store.client_shares(job.spec.job_id, decl.name)
            order = self.store.client_order(job.spec.job_id, decl.name)
            ranks = np.array([order.index(c) + 1 if c in got else 0 for c in decl.clients], dtype=np.uint64)
            everyone = list(session.parties)
            peers = await session.ex.round(f"clients/{k}", {j: ranks for j in everyone if j != session.party}, everyone)
            peers[session.party] = ranks
            for i, r in peers.items():
                if r.shape != ranks.shape:
                    raise ProtocolViolation(f"client agreement: party {i} sent {r.size} ranks, expected {ranks.size}")
            present = np.all(np.stack([peers[i] > 0 for i in everyone]), axis=0)
            first = peers[everyone[0]].astype(np.int64)
            chosen = sorted((int(first[c]), c) for c in np.flatnonzero(present))
            rows = [decl.clients[c] for _, c in chosen]
            if not labels:
                labels = rows
            width = decl.length
            values[decl.name] = (np.concatenate([got[c] for c in rows]) if rows
                                 else np.zeros(0, dtype=np.uint64)).reshape(len(rows) * width)
        return labels

    # ---- node <-> node ----------------------------------------------------------------
    def deliver(self, caller: str | None, msg: node_pb2.PeerMessage) -> None:
        if caller is None or caller not in self.cfg.peers:
            raise Denied(f"{caller!r} is not a peer of {self.org}")
        if msg.sender != caller:
            raise Denied(f"caller {caller} claims to be {msg.sender!r}")
        job = self.jobs.get(msg.job_id)
        if job is None or job.state not in (State.PREPARED, State.RUNNING):
            raise NotFound(f"job {msg.job_id} is not active on {self.org}")
        arr = serde.decode(msg.payload, list(msg.shape), f"round {msg.round} from {caller}")
        job.mailbox.deliver(msg.round, msg.sender, msg.receiver, arr)

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
        if not row.committed:
            # finished here, but the coordinator has not recorded the job DONE yet (or this node has
            # not heard it): it may still decide FAILED, and then no output of the job may open
            raise Conflict(f"job {req.job_id} is finished on {self.org} but not yet confirmed by the coordinator")
        out = self.store.output(req.job_id, req.output)
        if out is None:
            raise NotFound(f"output {req.output!r} of job {req.job_id} is missing on {self.org}")
        payload, shape = serde.encode(out.share)
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

    def job_info(self, caller: str | None, job_id: str) -> node_pb2.JobSpec:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id} is not open on {self.org}")
        if caller in self.cfg.policy.coordinators:
            return job.spec
        mine = [d for d in job.spec.circuit.inputs if caller in d.clients]
        if not mine:
            raise Denied(f"{caller!r} is not an input client of job {job_id}")
        # What a client needs: parties, threshold, live set, fingerprint and its own input
        # declarations. Not the whole circuit with every other client's name in it (that made
        # each JobInfo answer grow with the number of voters).
        slim = node_pb2.JobSpec(job_id=job.spec.job_id, scenario=job.spec.scenario, parties=job.spec.parties,
                                threshold=job.spec.threshold, fingerprint=job.spec.fingerprint,
                                input_deadline_unix=job.spec.input_deadline_unix, live=job.spec.live)
        slim.circuit.name = job.spec.circuit.name
        for d in mine:
            slim.circuit.inputs.add(name=d.name, length=d.length, lo=d.lo, hi=d.hi, source=d.source)
        return slim


def _refuse(reason: str) -> node_pb2.PrepareReply:
    return node_pb2.PrepareReply(accepted=False, reason=reason)

