"""Runs jobs on the nodes: prepare everywhere (policy checks, no input shared), then start,
then watch progress until every node is done or one fails. The coordinator only ever sees
job status, never a share or a result.

The outcome is decided once: recorded in the database first (JobStore.decide, which keeps an
earlier decision if there is one), then sent to the nodes, Commit for DONE and Abort for FAILED,
again and again until each node has answered, across coordinator restarts. So no node is told
anything the database does not say, Abort is never sent for a job recorded DONE, and a node that
was down when the job was decided is told when it is back (docs/fault-tolerance.md).
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

import grpc

from mpcnode.computation.scenario import parse_scenario_text
from mpcnode.configfile import ConfigError
from mpcnode.transport.tls import TlsMaterial, secure_channel
from parley.v1 import node_pb2, node_pb2_grpc

from .config import CoordinatorConfig
from .jobplan import JobPlan
from .rows import RowsView, cross_check_rows, rows_view
from .store import TERMINAL, JobStore

log = logging.getLogger("parley.coordinator")


@dataclass
class Live:
    """In-memory progress of a job, for watchers."""
    state: str = "PENDING"
    rounds_done: int = 0
    levels: int = 0
    bytes_sent: int = 0
    inputs_received: int = 0
    # once the nodes agreed on the client rows: how many count, and the excluded ones
    # [(credential, input, reason)], as every live node reports them (set only while all of them
    # that report rows report the same; see cross_check_rows)
    rows_agreed: bool = False
    rows_accepted: int = 0
    excluded: list[tuple[str, str, str]] = field(default_factory=list)
    rows_withheld: bool = False      # the nodes keep the counts (a DP job: node.proto JobStatus)
    error: str = ""
    started: float = field(default_factory=time.monotonic)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    plan: "JobPlan | None" = None
    live: list[str] = field(default_factory=list)   # the compute parties taking part (empty: all)

    def bump(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class Scheduler:
    def __init__(self, cfg: CoordinatorConfig, tls: TlsMaterial):
        self.cfg = cfg
        self.tls = tls
        self.store = JobStore(cfg.database)
        self.live: dict[str, Live] = {}
        self._stubs: dict[str, node_pb2_grpc.NodeControlStub] = {}
        self._channels: list[grpc.aio.Channel] = []
        self._tasks: set[asyncio.Task] = set()
        self._close_requests: dict[str, asyncio.Event] = {}
        # at most one task runs a job, and one tells the nodes its outcome: recover() called again,
        # or for a job this scheduler already follows, starts no second one
        self._running: dict[str, asyncio.Task] = {}
        self._settling: dict[str, asyncio.Task] = {}

    def stub(self, org: str) -> node_pb2_grpc.NodeControlStub:
        if org not in self._stubs:
            if org not in self.cfg.nodes:
                raise KeyError(f"no address configured for node {org}")
            ch = secure_channel(self.cfg.nodes[org], org, self.tls)
            self._channels.append(ch)
            self._stubs[org] = node_pb2_grpc.NodeControlStub(ch)
        return self._stubs[org]

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for ch in self._channels:
            await ch.close()
        self.store.close()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    def _busy(tasks: dict[str, asyncio.Task], job_id: str) -> bool:
        task = tasks.get(job_id)
        return task is not None and not task.done()

    # ---- submission ---------------------------------------------------------------
    def submit(self, text: str, path: str, job_id: str = "") -> tuple[str, bool]:
        """Validate the scenario and record the job; an existing id is not run again."""
        scenario = parse_scenario_text(text, path)  # raises ConfigError with file, field, problem
        missing = [p for p in scenario.parties if p not in self.cfg.nodes]   # compute and input-only
        if missing:
            raise ConfigError(path, "parties", f"no node address configured for {', '.join(missing)}")
        job_id = job_id or f"{scenario.name}-{uuid.uuid4().hex[:12]}"
        if not self.store.insert(job_id, scenario.name, path, text):
            return job_id, False
        self._launch(job_id, JobPlan.of(scenario))
        return job_id, True

    def submit_plan(self, job_id: str, plan: "JobPlan") -> None:
        """Run a circuit built in code (benchmarks, tests); recorded like any job. A plan the nodes
        would refuse (JobPlan.check) raises ValueError and is not recorded."""
        plan.check()
        if not self.store.insert(job_id, plan.name, "<circuit>", "", plan=plan.to_json()):
            raise ValueError(f"job {job_id} exists")
        self._launch(job_id, plan)

    def _launch(self, job_id: str, plan: "JobPlan") -> None:
        if self._busy(self._running, job_id):
            return
        self.store.update(job_id, fingerprint=plan.computation.fingerprint())
        self.live[job_id] = Live(plan=plan)
        self._close_requests[job_id] = asyncio.Event()
        self._running[job_id] = self._spawn(self._run(job_id, plan))

    def request_close(self, job_id: str) -> None:
        if job_id not in self._close_requests:
            raise KeyError(job_id)
        self._close_requests[job_id].set()

    def recover(self) -> None:
        """After a restart, pick up every unfinished job in the database where it stopped.

        PENDING (no node has it) and PREPARING (Prepare or Start may have been in flight; RUNNING is
        recorded only after every Start returned) run again from Prepare and Start, which a node
        answers idempotently for a job id and circuit it already holds. RUNNING is
        re-attached: Start is sent again to the live parties (a node that never got it starts
        now; one that has it just reports), then the nodes are watched as before. A job whose
        plan cannot be rebuilt is marked FAILED with the reason.

        DONE and FAILED jobs that some node has not been told about yet (it was down, or this
        coordinator died between recording the outcome and sending it) are told again.
        """
        for job_id in self.store.unfinished():
            if self._busy(self._running, job_id):
                continue   # this scheduler follows it already
            rec = self.store.get(job_id)
            assert rec is not None
            try:
                if rec.plan:
                    plan = JobPlan.from_json(rec.plan)
                elif rec.scenario_path == "<circuit>":
                    raise ValueError("a job built in code was recorded without its circuit")
                else:
                    plan = JobPlan.of(parse_scenario_text(rec.scenario_yaml, rec.scenario_path))
            except (ValueError, KeyError) as exc:
                # without the plan, the parties are unknown: every configured node is told (one
                # that never had the job answers NOT_FOUND)
                self.store.decide(job_id, "FAILED", f"coordinator restarted and cannot rebuild the job: {exc}",
                                  sorted(self.cfg.nodes))
                log.warning("job %s: cannot rebuild after restart: %s", job_id, exc)
                continue
            if rec.state in ("PENDING", "PREPARING"):
                log.info("job %s was %s: running it from Prepare", job_id, rec.state.lower())
                self._launch(job_id, plan)
            else:
                log.info("re-attaching to job %s (%s)", job_id, rec.state)
                self.live[job_id] = Live(plan=plan, state=rec.state, error=rec.error, rounds_done=rec.rounds_done,
                                         live=rec.live.split(",") if rec.live else [])
                self._close_requests[job_id] = asyncio.Event()
                self._running[job_id] = self._spawn(self._reattach(job_id, plan))
        for job_id in self.store.unsettled():
            self._settle_later(job_id)

    async def _reattach(self, job_id: str, plan: JobPlan) -> None:
        live = self.live[job_id].live or plan.parties
        for group in (live, plan.input_parties):   # compute parties first, as in _run
            await asyncio.gather(*(self._call(o, "Start", node_pb2.JobRef(job_id=job_id, live=live)) for o in group),
                                 return_exceptions=True)   # idempotent; an unreachable node is judged by the watch
        await self._watch_nodes(job_id, plan)

    # ---- running ----------------------------------------------------------------------
    def _set(self, job_id: str, **kw: object) -> None:
        live = self.live[job_id]
        for k, v in kw.items():
            setattr(live, k, v)
        durable: dict[str, object] = {}
        if "state" in kw or "error" in kw:
            durable.update(state=live.state, error=live.error, rounds_done=live.rounds_done)
        if "live" in kw:   # needed to re-attach after a restart: which parties take part
            durable["live"] = ",".join(live.live)
        if durable:
            self.store.update(job_id, **durable)
        live.bump()

    async def _run(self, job_id: str, plan: JobPlan) -> None:
        input_window = plan.input_window_s
        spec = plan.computation.job_spec(job_id, plan.timeout_s,
                                         time.time() + input_window if input_window else 0.0)
        self._set(job_id, state="PREPARING")
        # wait_for_ready: a node that is just restarting (its channel backing off) still gets the job
        # every node the job names: compute parties and input-only parties consent alike
        replies = await asyncio.gather(*(self._call(org, "Prepare", spec, wait_for_ready=True,
                                                    timeout=self.cfg.prepare_timeout_s)
                                         for org in plan.everyone), return_exceptions=True)
        refusals = [f"{org} refused: {r.reason}" for org, r in zip(plan.everyone, replies)
                    if not isinstance(r, BaseException) and not r.accepted]
        down = {org: _describe(r) for org, r in zip(plan.everyone, replies) if isinstance(r, BaseException)}
        if refusals:
            await self._decide(job_id, plan, "FAILED",
                               "; ".join(refusals + [f"{o} unreachable: {d}" for o, d in down.items()]))
            return
        live = [p for p in plan.parties if p not in down]
        why_not = plan.cannot_run_without(set(down))
        if why_not:
            await self._decide(job_id, plan, "FAILED",
                               "; ".join(f"{o} unreachable: {d}" for o, d in down.items()) + f" ({why_not})")
            return
        if down:
            log.warning("job %s runs without unreachable %s", job_id, ", ".join(down))
        self._set(job_id, live=live)
        # compute parties first: an input-only party checks, before it sends a share, that every live
        # compute node shows the job it approved with the live set it was started with
        for group in (live, plan.input_parties):
            started = await asyncio.gather(*(self._call(org, "Start", node_pb2.JobRef(job_id=job_id, live=live))
                                             for org in group), return_exceptions=True)
            failed = [f"{org}: {_describe(r)}" for org, r in zip(group, started) if isinstance(r, BaseException)]
            if failed:
                await self._decide(job_id, plan, "FAILED", "could not start on " + "; ".join(failed))
                return
        # RUNNING only once every live node has started: input clients wait for it, and a node that
        # has not started yet would tell them a different set of live parties
        self._set(job_id, state="RUNNING", levels=0)
        await self._watch_nodes(job_id, plan)

    async def _close_inputs(self, job_id: str, plan: JobPlan) -> None:
        """Close client submission. A node that went down during the input window is left out,
        if the job can run without it; the nodes then compute among the rest."""
        live = self.live[job_id].live or plan.parties
        probes = await asyncio.gather(*(self._call(o, "Status", node_pb2.JobRef(job_id=job_id)) for o in live),
                                      return_exceptions=True)
        down = {o for o, st in zip(live, probes) if isinstance(st, BaseException)}
        if down and not plan.cannot_run_without(down | (set(plan.parties) - set(live))):
            log.warning("job %s: closing inputs without unreachable %s", job_id, ", ".join(sorted(down)))
            live = [o for o in live if o not in down]
            self._set(job_id, live=live)
        await asyncio.gather(*(self._call(o, "CloseInputs", node_pb2.JobRef(job_id=job_id, live=live))
                               for o in live), return_exceptions=True)

    async def _watch_nodes(self, job_id: str, plan: JobPlan) -> None:
        has_clients = any(d.clients for d in plan.circuit.inputs)
        deadline = time.monotonic() + plan.timeout_s + 10.0
        unreachable_since: dict[str, float] = {}
        closed = False
        delivered: set[str] = set()   # input-only parties that reported their input delivered (DONE)
        rows_seen: dict[str, RowsView | None] = {}   # per compute node: the client rows it last reported
        while True:
            decided = self.store.decision(job_id)
            if decided:   # by another process on this database (one that re-attached it, say): that stands
                await self._decide(job_id, plan, *decided)
                return
            if has_clients and not closed and self._close_requests[job_id].is_set():
                await self._close_inputs(job_id, plan)
                closed = True
            live = self.live[job_id].live or plan.parties
            # an input-only party is watched until it reports its input delivered; its part then is over
            watched = live + [p for p in plan.input_parties if p not in delivered]
            # while client input is open, poll (a close request must not wait for a held reply);
            # afterwards each node holds its reply until the job ends there, so the end is seen at once
            polling = has_clients and not closed
            wait = 0.0 if polling else self.cfg.status_wait_s
            statuses = await asyncio.gather(*(self._call(o, "Status", node_pb2.JobRef(job_id=job_id, wait_s=wait),
                                                         timeout=self.cfg.rpc_timeout_s + wait)
                                              for o in watched), return_exceptions=True)
            now = time.monotonic()
            errors = []
            done = 0
            rounds = []
            for org, st in zip(watched, statuses):
                if isinstance(st, BaseException):
                    unreachable_since.setdefault(org, now)
                    if now - unreachable_since[org] > self.cfg.rpc_timeout_s or (
                            isinstance(st, grpc.aio.AioRpcError) and st.code() == grpc.StatusCode.NOT_FOUND):
                        errors.append(f"node {org} is unreachable: {_describe(st)}")
                    continue
                unreachable_since.pop(org, None)
                if st.state == node_pb2.JOB_STATE_FAILED:
                    errors.append(f"{org}: {st.error}")
                elif st.state == node_pb2.JOB_STATE_DONE and org in plan.input_parties:
                    delivered.add(org)
                elif st.state == node_pb2.JOB_STATE_DONE:
                    done += 1
                if org not in plan.input_parties:
                    rounds.append(st)
                    # a node that finished a job with client inputs has agreed on the rows before
                    # its circuit ran (jobrun.run_job): one that says DONE without them differs too
                    if st.rows_agreed or (has_clients and st.state == node_pb2.JOB_STATE_DONE):
                        rows_seen[org] = rows_view(st)
            if rounds:
                self._set(job_id, rounds_done=min(s.rounds_done for s in rounds),
                          levels=max(s.rounds_total for s in rounds), bytes_sent=max(s.bytes_sent for s in rounds),
                          inputs_received=max(s.inputs_received for s in rounds),
                          rows_withheld=any(s.rows_withheld for s in rounds))
            # Every live node reports the client rows it agreed on; all must report the same. The
            # nodes' agreement (jobrun.take_client_rows) gives every honest live node the same rows
            # before the circuit runs, so a difference means a node lies in its status, or the
            # nodes computed over different rows. Either way nobody can tell the operator which
            # client inputs the result counts, so the job FAILS (its outputs are dropped at every
            # node) rather than finishing with a warning beside a result whose inputs are disputed.
            # This gives a lying node no new power: any compute node can fail a job by stopping.
            agreed, differ = cross_check_rows({o: v for o, v in rows_seen.items() if o in live})
            if differ:   # no view is shown as the nodes' (one shown before the difference is withdrawn)
                self._set(job_id, rows_agreed=False, rows_accepted=0, excluded=[])
                errors.append(differ)
            elif agreed is not None:
                self._set(job_id, rows_agreed=True, rows_accepted=agreed[0], excluded=list(agreed[1]))
            if errors:
                await self._decide(job_id, plan, "FAILED", "; ".join(errors))
                return
            if done == len(live) and len(delivered) == len(plan.input_parties):
                await self._decide(job_id, plan, "DONE", "")
                return
            if now > deadline:
                await self._decide(job_id, plan, "FAILED", f"job timed out after {plan.timeout_s:g}s")
                return
            if polling or not wait or len(rounds) < len(live):   # nothing was held: do not spin
                await asyncio.sleep(self.cfg.poll_interval_s)

    # ---- the outcome ---------------------------------------------------------------------
    async def _decide(self, job_id: str, plan: JobPlan, state: str, error: str) -> None:
        """Record the outcome, tell the nodes once, then report it; nodes that did not answer are
        told again in the background.

        Recording comes first, so whatever a node is told is already what the database says, also
        if this process dies right after. If the job was decided already (by another task or process
        on this database), that decision stands and is what the nodes are told.
        DONE is told (Commit) to the live parties, which all finished the job; FAILED (Abort) to
        every party, since any of them may hold it prepared, running or finished.
        DONE is reported only after that first Commit round: a node releases outputs only once
        committed, so a recipient who fetches on seeing DONE finds every reachable node ready.
        """
        tell = ((self.live[job_id].live or plan.parties) + plan.input_parties) if state == "DONE" else plan.everyone
        rec = self.store.decide(job_id, state, error, list(tell))
        if (rec.state, rec.error) != (state, error):
            log.warning("job %s was decided %s already (%s); that stands", job_id, rec.state, rec.error)
        left = await self._tell(job_id)
        live = self.live[job_id]
        live.state, live.error = rec.state, rec.error
        live.bump()
        if left:
            self._settle_later(job_id)

    async def _tell(self, job_id: str) -> list[str]:
        """Send the recorded outcome to every node not yet told; the nodes still to be told.

        A node that answers, even with a refusal, is crossed off: retrying would not change its
        answer. A refusal here means the node contradicts the decision (its outputs of a DONE job
        are gone, or it committed a job recorded FAILED), which this design rules out; it is logged
        as an error for the operator. Only a node that cannot be reached is asked again.
        """
        rec = self.store.get(job_id)
        if rec is None or rec.state not in TERMINAL or not rec.unsettled:
            return []
        pending = rec.unsettled_nodes()
        method = "Commit" if rec.state == "DONE" else "Abort"
        replies = await asyncio.gather(*(self._call(o, method, node_pb2.JobRef(job_id=job_id)) for o in pending),
                                       return_exceptions=True)
        answered = []
        for org, r in zip(pending, replies):
            if not isinstance(r, BaseException):
                answered.append(org)
            elif isinstance(r, KeyError):   # no address configured for this node: it can never be told
                log.error("job %s: cannot send %s to %s: %s", job_id, method, org, r)
                answered.append(org)
            elif isinstance(r, grpc.aio.AioRpcError) and r.code() not in RETRY_CODES:
                if not (method == "Abort" and r.code() == grpc.StatusCode.NOT_FOUND):   # never had it: fine
                    log.error("job %s is %s, but %s refused %s: %s", job_id, rec.state, org, method, _describe(r))
                answered.append(org)
        return self.store.settled(job_id, answered)

    def _settle_later(self, job_id: str) -> None:
        if not self._busy(self._settling, job_id):
            self._settling[job_id] = self._spawn(self._settle(job_id))

    async def _settle(self, job_id: str) -> None:
        """Tell the outcome until every node has answered, backing off up to rpc_timeout_s between
        rounds. A node that stays down is asked for as long as this coordinator runs (and after a
        restart, see recover()): it must not keep a FAILED job's outputs, nor miss a Commit."""
        delay = self.cfg.poll_interval_s
        left = await self._tell(job_id)
        if left:
            log.warning("job %s: %s not told the outcome yet, asking until answered", job_id, ", ".join(left))
        while left:
            await asyncio.sleep(delay)
            delay = min(2 * delay, self.cfg.rpc_timeout_s)
            left = await self._tell(job_id)

    async def _call(self, org: str, method: str, request, wait_for_ready: bool = False,
                    timeout: float | None = None):
        return await getattr(self.stub(org), method)(request, timeout=timeout or self.cfg.rpc_timeout_s,
                                                     wait_for_ready=wait_for_ready)

    # ---- watching ---------------------------------------------------------------------
    def snapshot(self, job_id: str):
        from parley.v1 import coordinator_pb2 as cop

        rec = self.store.get(job_id)
        if rec is None:
            return None
        live = self.live.get(job_id)
        sc = live.plan if live else None
        outputs = [o.name for o in sc.circuit.outputs] if sc else []
        return cop.JobProgress(
            job_id=job_id, state=live.state if live else rec.state, rounds_done=live.rounds_done if live else rec.rounds_done,
            levels=live.levels if live else 0, elapsed_s=time.monotonic() - live.started if live else 0.0,
            error=live.error if live else rec.error,
            recipients=sorted({r for o in sc.circuit.outputs for r in o.recipients}) if sc else [], outputs=outputs,
            scenario=rec.scenario, bytes_sent=live.bytes_sent if live else 0, fingerprint=rec.fingerprint,
            inputs_received=live.inputs_received if live else 0,
            rows_agreed=live.rows_agreed if live else False, rows_accepted=live.rows_accepted if live else 0,
            excluded=[node_pb2.ExcludedClient(credential=c, input=i, reason=r) for c, i, r in live.excluded]
            if live else [], rows_withheld=live.rows_withheld if live else False)


# A node that answers with one of these may answer differently later (it is down, restarting or
# overloaded); any other answer is final.
RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
               grpc.StatusCode.UNKNOWN, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL,
               grpc.StatusCode.ABORTED)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"
