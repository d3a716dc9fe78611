"""`make soak` (python -m tests.soak): faults, hostile input and load together, at a larger size.

One real deployment (4 node processes, n = 4, t = 1, plus the coordinator process, real
certificates; tests/integration/cluster.py) runs waves of concurrent jobs:

* totals and averages through the coordinator process;
* multiplication circuits (two levels of products and a dot product, each job with its own
  constant, so a message mixed into the wrong job shows in its result) through the coordinator's
  Scheduler in this process;
* votes with client ballots, one of them invalid (caught inside MPC) and one malformed share and one
  ballot from a stranger (refused by the nodes) per job;
* jobs whose node input is out of range or not a number (must fail at prepare, naming the node).

Meanwhile nodes are SIGKILLed at random points (coordinator.processes.kill) and restarted on the
same config and data, and fuzzed RPCs (random bytes, truncated encodings, hostile messages) are
sent to every service with the identities they accept.

Checks, against plaintext:
  wrong_results   a finished job whose result differs from the plaintext computation, or a job
                  with an invalid node input that finished at all
  data_lost       a finished job whose output can no longer be fetched, or whose share is gone
                  from a node that held it (checked after every restart and at the end), or, at the
                  end, a job a coordinator recorded DONE that a node which finished it no longer
                  holds DONE, committed and with its outputs
  secrets_opened  jobs whose result a non-recipient obtained, or whose output a recipient obtained
                  although the job failed
  disagreements   at the end, with every process up and every decision told (both coordinators,
                  the process and the in-process Scheduler, have no node left to tell): a job a
                  coordinator recorded FAILED that some node holds DONE or with outputs, or a
                  decision a coordinator could not deliver
A job may also fail: that is fine if its reason names a node (reported, not counted as an error).
Afterwards the parser and RPC fuzz suites run at PARLEY_FUZZ_SCALE (unless --no-suites).

The last line of output is machine-readable:
  SOAK jobs=<n> node_kills=<n> bad_inputs=<n> wrong_results=<n> data_lost=<n> secrets_opened=<n> disagreements=<n>
Exit status 1 if wrong_results, data_lost, secrets_opened or disagreements is non-zero, if a fuzzed
RPC hung or crashed a process, or if a fuzz suite failed.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mpcnode.computation.builder import CircuitBuilder  # noqa: E402
from coordinator.client import close_inputs  # noqa: E402
from coordinator.jobplan import JobPlan  # noqa: E402
from coordinator.scheduler import TERMINAL  # noqa: E402
from mpcnode import field as F  # noqa: E402
from mpcnode.computation.spec import Computation  # noqa: E402
from mpcnode.client import SubmitError, submit as client_submit  # noqa: E402
from mpcnode.recipient import FetchError  # noqa: E402
from mpcnode.transport import frames  # noqa: E402
from mpcnode.transport.tls import secure_channel  # noqa: E402
from parley.v1 import circuit_pb2 as cpb  # noqa: E402
from parley.v1 import coordinator_pb2 as cop  # noqa: E402
from parley.v1 import node_pb2  # noqa: E402
from tests.integration.cluster import Cluster  # noqa: E402

ORGS = ["sk-a", "sk-b", "sk-c", "sk-d"]
READER = "sk-reader"
OUTSIDER = "sk-outsider"
VOTERS = [f"sk-v{i:02d}" for i in range(1, 9)]
OPTIONS = ["x", "y", "z"]
VEC = 64
X, Y = 7, -3
V = [int(i % 11) for i in range(VEC)]
W = [int((3 * i) % 7) for i in range(VEC)]
AMOUNTS = {"sk-a": 123_456, "sk-b": -789}
AVG = {"sk-a": 10, "sk-b": 20, "sk-c": 30, "sk-d": 40}


def _total(name: str, kind: str, contributors: list[str] | None, lo: int, hi: int, recipients: list[str]) -> dict:
    sc = {"name": name, "kind": kind, "parties": ORGS, "threshold": 1, "recipients": recipients,
          "input": {"name": "amount", "range": [lo, hi]}, "timeout_s": 60}
    if contributors:
        sc["contributors"] = contributors
    return sc


SCENARIOS = [
    _total("soak-total", "total", ["sk-a", "sk-b"], -10 ** 9, 10 ** 9, [READER, "sk-a"]),
    _total("soak-avg", "average", None, 0, 1000, [READER]),
    _total("soak-mul", "total", ["sk-a", "sk-b"], -1000, 1000, [READER]),   # registers the input files of the mul circuits
    _total("soak-range", "total", None, 0, 1000, [READER]),                 # sk-c's input is out of range
    _total("soak-string", "total", None, 0, 1000, [READER]),                # sk-d's input is not a number
    {"name": "soak-vote", "kind": "vote", "parties": ORGS, "threshold": 1, "recipients": [READER], "timeout_s": 60,
     "vote": {"options": OPTIONS, "output": "tally"}, "voters": VOTERS},
]
INPUTS = {
    "soak-total": dict(AMOUNTS),
    "soak-avg": dict(AVG),
    "soak-mul": {"sk-a": {"amount": 1, "x": X, "v": V}, "sk-b": {"amount": 2, "y": Y, "w": W}},
    "soak-range": {**AVG, "sk-c": 2_000_000},
    "soak-string": {**AVG, "sk-d": "lots"},
}
EXPECTED = {
    "soak-total": {"total": sum(AMOUNTS.values())},
    "soak-avg": {"total": sum(AVG.values()), "average": sum(AVG.values()) // 4},
}
BAD_INPUT_REASON = {"soak-range": ("sk-c", "outside the declared range"), "soak-string": ("sk-d", "expected integers")}


def mul_plan(k: int) -> tuple[JobPlan, dict[str, object]]:
    """(x*y + k) * x and v.w + k: two levels of products and a dot product, from sk-a's and sk-b's inputs."""
    b = CircuitBuilder("soak-mul")
    x = b.input("x@sk-a", "sk-a", 1, -1000, 1000, key="x")
    y = b.input("y@sk-b", "sk-b", 1, -1000, 1000, key="y")
    v = b.input("v@sk-a", "sk-a", VEC, 0, 1000, key="v")
    w = b.input("w@sk-b", "sk-b", VEC, 0, 1000, key="w")
    b.output("prod", b.mul(b.add(b.mul(x, y), k), x), [READER])
    b.output("dot", b.add(b.dot(v, w), k), [READER])
    return JobPlan("soak-mul", b.build(), ORGS, 1, 60.0), {"prod": (X * Y + k) * X,
                                                           "dot": int(np.dot(V, W)) + k}


def mul_constant(seed: int, i: int) -> int:
    """Job i's own constant, known before the run: the nodes approve each product circuit by its
    fingerprint, so the soak lists all of them in the node policies up front."""
    return 1000 * i + random.Random(f"{seed}/{i}").randrange(1000)


def ballot(k: int) -> list[int]:
    return [int(j == k % len(OPTIONS)) for j in range(len(OPTIONS))]


# ---- bookkeeping -----------------------------------------------------------------------------------

@dataclass
class Done:
    job_id: str
    scenario: str
    expected: dict[str, object]
    holders: set[str]


@dataclass
class Stats:
    jobs: int = 0
    done: int = 0
    failed: int = 0
    node_kills: int = 0
    bad_inputs: int = 0
    wrong_results: int = 0
    data_lost: int = 0
    secrets_opened: int = 0
    disagreements: int = 0
    rpc_violations: int = 0
    unexplained_failures: int = 0
    unchecked_votes: int = 0
    fuzzed_rpcs: collections.Counter = field(default_factory=collections.Counter)
    failure_reasons: collections.Counter = field(default_factory=collections.Counter)
    problems: list[str] = field(default_factory=list)
    lost_jobs: set[str] = field(default_factory=set)

    def problem(self, text: str) -> None:
        self.problems.append(text)
        print(f"  PROBLEM: {text}", flush=True)


def names_a_node(error: str) -> bool:
    return any(org in error for org in ORGS)


def reason_kind(error: str) -> str:
    """A failure reason with ids and numbers taken out, for the summary."""
    import re
    text = re.sub(r"soak-[a-z]+-[0-9a-f-]+|[0-9]+(\.[0-9]+)?", "#", error)
    return text[:110]


# ---- the soak ------------------------------------------------------------------------------------

class Soak:
    def __init__(self, cluster: Cluster, args: argparse.Namespace):
        self.c = cluster
        self.args = args
        self.rng = random.Random(args.seed)
        self.stats = Stats()
        self.finished: list[Done] = []
        self.down_lock = asyncio.Lock()
        self.sched = None
        self.kill_tasks: list[asyncio.Task] = []
        self.stop_fuzz = asyncio.Event()
        self.opened: set[str] = set()   # jobs counted in secrets_opened

    # ---- jobs -------------------------------------------------------------------------------
    async def run_job(self, i: int) -> None:
        roll = self.rng.random()
        try:
            if roll < 0.06:
                await self.bad_input_job(self.rng.choice(["soak-range", "soak-string"]))
                return
            self.stats.jobs += 1
            if roll < 0.16:
                await self.vote_job()
            elif roll < 0.58:
                await self.mul_job(i)
            else:
                await self.total_job(self.rng.choice(["soak-total", "soak-total", "soak-avg"]))
        except Exception as exc:  # the soak itself must not die: record and go on
            self.stats.problem(f"job {i}: the soak's own call failed: {type(exc).__name__}: {exc}")

    async def total_job(self, scenario: str) -> None:
        job_id = await self.c.submit(scenario)
        final = await self.c.watch(job_id, timeout=150)
        await self.judge(job_id, scenario, final.state, final.error, EXPECTED[scenario])

    async def mul_job(self, i: int) -> None:
        k = mul_constant(self.args.seed, i)
        plan, expected = mul_plan(k)
        job_id = f"soak-mul-{i}-{k}"
        self.sched.submit_plan(job_id, plan)
        live = self.sched.live[job_id]
        async with asyncio.timeout(150):
            while live.state not in TERMINAL:
                await asyncio.sleep(0.1)
        await self.judge(job_id, "soak-mul", live.state, live.error, expected)

    async def vote_job(self) -> None:
        job_id = await self.c.submit("soak-vote")
        nodes = self.c.nodes_of("soak-vote")
        address, operator = self.c.deployment.coordinator_address, self.c.tls("operator")
        async with asyncio.timeout(60):   # ballots go in once every live node has started
            async with secure_channel(address, "coordinator", operator) as ch:
                async for progress in ch.unary_stream("/parley.v1.Coordinator/Watch",
                                                      request_serializer=cop.WatchRequest.SerializeToString,
                                                      response_deserializer=cop.JobProgress.FromString)(
                                                          cop.WatchRequest(job_id=job_id)):
                    if progress.state in ("RUNNING", "DONE", "FAILED"):
                        break
        all_in = True
        valid = VOTERS[:-2]
        results = await asyncio.gather(
            *(client_submit(job_id, "ballots", ballot(k), nodes, self.c.tls(v), self.c.fingerprint("soak-vote"))
              for k, v in enumerate(valid)),
            client_submit(job_id, "ballots", [1, 1, 0], nodes, self.c.tls(VOTERS[-2]), self.c.fingerprint("soak-vote"),
                          skip_local_check=True),
            return_exceptions=True)
        self.stats.bad_inputs += 1   # the invalid ballot, caught inside MPC
        refused = [r for r in results if isinstance(r, SubmitError)]
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, SubmitError):
                raise r
        if refused:
            all_in = False
            print(f"  [{self.elapsed():6.1f}s] {job_id}: {len(refused)} ballot(s) refused: {str(refused[0])[:120]}",
                  flush=True)
        # a malformed share (wrong length) and a stranger's ballot: refused by every node
        for identity, values, share_len in [(VOTERS[-1], [1, 0, 0, 0], 4), (OUTSIDER, [1, 0, 0], 3)]:
            self.stats.bad_inputs += 1
            for org, addr in nodes.items():
                req = node_pb2.ClientShare(job_id=job_id, input="ballots", share=b"\x01" + b"\x00" * (8 * share_len - 1),
                                           shape=[share_len])
                with contextlib.suppress(grpc.aio.AioRpcError):
                    async with secure_channel(addr, org, self.c.tls(identity)) as ch:
                        await ch.unary_unary("/parley.v1.InputIntake/SubmitShare",
                                             request_serializer=node_pb2.ClientShare.SerializeToString,
                                             response_deserializer=node_pb2.ClientAck.FromString)(req, timeout=10)
                        self.stats.problem(f"{org} accepted a bad share from {identity} for {job_id}")
        with contextlib.suppress(grpc.aio.AioRpcError):
            await close_inputs(address, operator, job_id)
        final = await self.c.watch(job_id, timeout=150)
        counts = np.sum([ballot(k) for k in range(len(valid))], axis=0)
        expected = {"tally": {**{o: int(c) for o, c in zip(OPTIONS, counts)}, "invalid": 1}}
        if not all_in:
            self.stats.unchecked_votes += 1
            expected = {"tally": None}   # which ballots count depends on which node was down: not checked
        await self.judge(job_id, "soak-vote", final.state, final.error, expected)

    async def bad_input_job(self, scenario: str) -> None:
        """A node's input is invalid: the job must fail at prepare, naming that node, and nothing opens."""
        self.stats.bad_inputs += 1
        job_id = await self.c.submit(scenario)
        final = await self.c.watch(job_id, timeout=150)
        org, problem = BAD_INPUT_REASON[scenario]
        if final.state == "DONE":
            self.stats.wrong_results += 1
            self.stats.problem(f"{job_id}: a job with an invalid input of {org} finished")
        elif not (f"{org} refused" in final.error and problem in final.error) and not names_a_node(final.error):
            self.stats.problem(f"{job_id}: failed without naming {org}: {final.error}")
        await self.expect_no_release(job_id, "total")

    async def judge(self, job_id: str, scenario: str, state: str, error: str, expected: dict[str, object]) -> None:
        if state != "DONE":
            self.stats.failed += 1
            self.stats.failure_reasons[reason_kind(error)] += 1
            if not names_a_node(error):
                self.stats.unexplained_failures += 1
                self.stats.problem(f"{job_id} failed without naming a node: {error}")
            for output in expected:
                if await self.expect_no_release(job_id, output):
                    break   # counted once per job
            return
        self.stats.done += 1
        holders: set[str] = set()
        for output, want in expected.items():
            try:
                result = await self.c.fetch(job_id, output, READER)
            except FetchError as exc:
                self.stats.problem(f"{job_id}: finished, but {output} cannot be fetched: {exc}")
                self.stats.data_lost += 1
                self.stats.lost_jobs.add(job_id)
                return
            holders |= set(result.nodes)
            if want is not None and result.value != want:
                self.stats.wrong_results += 1
                self.stats.problem(f"{job_id}: {output} = {result.value!r}, plaintext says {want!r}")
                return
            expected[output] = result.value
            # a non-recipient (a compute node that is not a recipient, or a stranger) gets nothing
            for who in (OUTSIDER, "sk-d"):
                try:
                    await self.c.fetch(job_id, output, who)
                except FetchError:
                    continue
                if job_id not in self.opened:   # counted once per job
                    self.opened.add(job_id)
                    self.stats.secrets_opened += 1
                self.stats.problem(f"{job_id}: non-recipient {who} obtained {output}")
        self.finished.append(Done(job_id, scenario, dict(expected), holders))

    async def expect_no_release(self, job_id: str, output: str) -> bool:
        """A failed job's output must not open, even for its recipient; True (and counted) if it does."""
        try:
            result = await self.c.fetch(job_id, output, READER)
        except FetchError:
            return False
        if job_id not in self.opened:
            self.opened.add(job_id)
            self.stats.secrets_opened += 1
        holders = ", ".join(sorted(result.nodes))
        self.stats.problem(f"{job_id} failed, but recipient {READER} obtained {output} = {result.value!r} "
                           f"from the nodes that had finished it ({holders})")
        return True

    # ---- node kills ---------------------------------------------------------------------------
    async def kill_and_restart(self, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self.down_lock:   # one node down at a time
            org = self.rng.choice(ORGS)
            self.c.kill(org)
            self.stats.node_kills += 1
            downtime = self.rng.uniform(0.3, 4.0)
            print(f"  [{self.elapsed():6.1f}s] killed {org}, restarting in {downtime:.1f}s", flush=True)
            await asyncio.sleep(downtime)
            await asyncio.to_thread(self.c.restart, org)
        await self.check_data(only=org)

    async def check_data(self, only: str | None = None, sample: int | None = 25) -> None:
        """Every finished job still opens to the same value, and its holders still hold their shares."""
        jobs = [d for d in self.finished if d.job_id not in self.stats.lost_jobs]
        if sample is not None and len(jobs) > sample:
            jobs = self.rng.sample(jobs, sample)
        for d in jobs:
            lost = ""
            for org in ([only] if only else sorted(d.holders)):
                if org in d.holders and await asyncio.to_thread(self.c.stored_outputs, org, d.job_id) < len(d.expected):
                    lost = f"{org} no longer holds its share"
            if not lost:
                for output, value in d.expected.items():
                    try:
                        got = (await self.c.fetch(d.job_id, output, READER)).value
                    except FetchError as exc:
                        lost = f"{output} cannot be fetched: {exc}"
                        break
                    if got != value:
                        lost = f"{output} opens to {got!r} now, {value!r} before"
                        break
            if lost:
                self.stats.data_lost += 1
                self.stats.lost_jobs.add(d.job_id)
                self.stats.problem(f"{d.job_id}: {lost}")

    async def check_agreement(self, databases: list[Path], settle_s: float = 60.0) -> None:
        """Once every process is up, each coordinator tells the nodes the decisions they missed; then
        every job a coordinator decided agrees with every node: DONE is held DONE, committed and
        with outputs by each party that finished it; FAILED is held DONE by none and has no outputs."""
        def unsettled() -> int:
            total = 0
            for db in databases:
                with contextlib.closing(sqlite3.connect(db, timeout=10)) as con:
                    total += con.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('DONE','FAILED')"
                                         " AND unsettled != ''").fetchone()[0]
            return total
        deadline = time.monotonic() + settle_s
        while (left := await asyncio.to_thread(unsettled)) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        if left:
            self.stats.disagreements += left
            self.stats.problem(f"{left} decided job(s) still not told to every node after {settle_s:g}s")
        decided: list[tuple[str, str, str]] = []
        for db in databases:
            with contextlib.closing(sqlite3.connect(db, timeout=10)) as con:
                decided += con.execute("SELECT job_id, state, live FROM jobs WHERE state IN ('DONE','FAILED')").fetchall()
        print(f"  [{self.elapsed():6.1f}s] agreement check of {len(decided)} decided jobs on {len(ORGS)} nodes",
              flush=True)
        for job_id, state, live in decided:
            for org in ORGS:
                row = await asyncio.to_thread(self.c.stored_job, org, job_id)
                outputs = await asyncio.to_thread(self.c.stored_outputs, org, job_id)
                finished_it = org in (live.split(",") if live else ORGS)
                if state == "DONE" and finished_it and (row != ("DONE", True) or not outputs):
                    self.stats.data_lost += 1
                    self.stats.lost_jobs.add(job_id)
                    self.stats.problem(f"{job_id}: the coordinator says DONE, {org} has {row} with {outputs} outputs")
                elif state == "FAILED" and ((row and row[0] == "DONE") or outputs):
                    self.stats.disagreements += 1
                    self.stats.problem(f"{job_id}: the coordinator says FAILED, {org} has {row} with {outputs} outputs")

    # ---- fuzzed RPCs --------------------------------------------------------------------------
    async def fuzz_rpcs(self, count: int) -> None:
        """`count` hostile RPCs spread over the job phase, each with an identity its service accepts."""
        fuzzer = RpcFuzzer(self.c, self.rng, self.finished)
        for n in range(count):
            if self.stop_fuzz.is_set():
                break
            await asyncio.sleep(self.rng.uniform(0, 0.05))
            verdict = await fuzzer.one()
            self.stats.bad_inputs += 1
            self.stats.fuzzed_rpcs[verdict] += 1
            if verdict.startswith("VIOLATION"):
                self.stats.rpc_violations += 1
                self.stats.problem(verdict)

    # ---- driver -------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def run(self) -> None:
        self.started = time.monotonic()
        args = self.args
        async with self.c.local_coordinator(poll_interval_s=0.1, rpc_timeout_s=4.0, prepare_timeout_s=3.0) as (sched, _):
            self.sched = sched
            # kills at random job positions, landing at random points of the jobs then in flight
            kill_at = sorted(self.rng.sample(range(args.jobs), min(args.kills, args.jobs)))
            fuzz_task = asyncio.create_task(self.fuzz_rpcs(args.bad_rpcs))
            i = 0
            while i < args.jobs and self.elapsed() < args.seconds:
                wave = list(range(i, min(args.jobs, i + args.concurrency)))
                for k in wave:
                    while kill_at and kill_at[0] <= k:
                        kill_at.pop(0)
                        self.kill_tasks.append(asyncio.create_task(self.kill_and_restart(self.rng.uniform(0, 1.5))))
                await asyncio.gather(*(self.run_job(k) for k in wave))
                i = wave[-1] + 1
                if i % (args.concurrency * 5) < args.concurrency:
                    s = self.stats
                    print(f"  [{self.elapsed():6.1f}s] {i} jobs: {s.done} done, {s.failed} failed, {s.node_kills} kills, "
                          f"{s.bad_inputs} bad inputs", flush=True)
            self.stop_fuzz.set()
            await asyncio.gather(*self.kill_tasks)
            await fuzz_task
            # everything up again: every finished job, every holder, in full
            for org in ORGS:
                await asyncio.to_thread(self.c.restart, org)
            print(f"  [{self.elapsed():6.1f}s] final check of {len(self.finished)} finished jobs", flush=True)
            await self.check_data(sample=None)
            await self.check_agreement([sched.cfg.database, self.c.deployment.workdir / "coordinator.sqlite3"])
        self.c.assert_alive()


class RpcFuzzer:
    """Random bytes, truncated encodings and hostile messages for every RPC (cf. tests/integration/test_fuzz_rpc.py)."""

    METHODS = {
        "/parley.v1.NodeControl/Health": "coordinator", "/parley.v1.NodeControl/Prepare": "coordinator",
        "/parley.v1.NodeControl/Start": "coordinator", "/parley.v1.NodeControl/Status": "coordinator",
        "/parley.v1.NodeControl/CloseInputs": "coordinator", "/parley.v1.NodeControl/Abort": "coordinator",
        "/parley.v1.NodeControl/Commit": "coordinator",
        "/parley.v1.PeerExchange/Link": "<peer>", "/parley.v1.ResultRelease/FetchOutput": READER,
        "/parley.v1.InputIntake/JobInfo": VOTERS[0], "/parley.v1.InputIntake/SubmitShare": VOTERS[0],
        "/parley.v1.Coordinator/Submit": "operator", "/parley.v1.Coordinator/Watch": "operator",
        "/parley.v1.Coordinator/CloseInputs": "operator",
    }

    def __init__(self, cluster: Cluster, rng: random.Random, finished: list[Done]):
        self.c = cluster
        self.rng = rng
        self.finished = finished

    def text(self) -> str:
        r = self.rng.random()
        if r < 0.1:
            return "x" * self.rng.choice([129, 10 ** 4, 10 ** 6])
        if r < 0.2:
            return self.rng.choice(["", "\x00", "a\nb", "../x", "*", "sk-a"])
        if r < 0.35 and self.finished:
            return self.rng.choice(self.finished).job_id   # a real job: the request gets further
        return "".join(chr(self.rng.randrange(32, 0x2FF)) for _ in range(self.rng.randrange(0, 30)))

    def shape(self) -> list[int]:
        return self.rng.choice([[], [0], [3], [2 ** 32 - 1], [2 ** 32 - 1] * 40, [1] * 10_000,
                                [self.rng.randrange(2 ** 32) for _ in range(self.rng.randrange(5))]])

    def payload(self) -> bytes:
        return self.rng.choice([b"", b"\xff" * 8, F.P.to_bytes(8, "little") * 3, b"\x00" * 24,
                                self.rng.randbytes(self.rng.randrange(100))])

    def message(self, method: str, peer: str, target: str) -> bytes:
        name = method.rsplit("/", 1)[1]
        if method.endswith("NodeControl/Prepare"):
            b = CircuitBuilder(self.rng.choice(["soak-mul", "soak-total", self.text()]))
            x = b.input("x@sk-a", self.rng.choice(ORGS + [OUTSIDER]), self.rng.choice([1, 2 ** 32 - 1]),
                        -self.rng.randrange(2 ** 62), self.rng.randrange(2 ** 62), key=self.rng.choice(["x", "nope"]))
            b.output("o", b.mul(x, x) if self.rng.random() < 0.5 else x, [self.rng.choice([READER, OUTSIDER])])
            circuit = b.build()
            if self.rng.random() < 0.3:
                circuit.ops.add(out=self.text(), kind=self.rng.randrange(50), args=[self.text()])
            parties = self.rng.sample(ORGS + [OUTSIDER], self.rng.randrange(6))
            threshold = self.rng.choice([0, 1, 2, 2 ** 32 - 1])
            try:   # the fingerprint an honest coordinator would send, so that the node looks further
                honest = Computation(circuit, tuple(parties), threshold).fingerprint()
            except Exception:
                honest = ""
            spec = node_pb2.JobSpec(job_id=f"soak-fuzz-{self.rng.randrange(10 ** 9)}",
                                    scenario=self.rng.choice(["soak-mul", "soak-total", "nope"]), circuit=circuit,
                                    parties=parties, threshold=threshold,
                                    timeout_s=self.rng.choice([0.0, -1.0, 1e308, float("nan"), 5.0]),
                                    fingerprint=self.rng.choice([honest, "", self.text()]))
            return spec.SerializeToString()
        if name in ("Start", "Status", "CloseInputs", "Abort", "Commit", "JobInfo") and "Coordinator" not in method:
            job = self.text()   # random, or a finished job: Start, CloseInputs and Commit leave it alone
            if name == "Abort" and any(d.job_id == job for d in self.finished) and \
                    self.c.stored_job(target, job) != ("DONE", True):
                # A committed job refuses Abort, which this checks. But the soak holds the coordinator's
                # certificate, and a node that has not got its Commit yet (it was down) cannot tell this
                # Abort from the coordinator's FAILED decision: sending it would be the soak contradicting
                # the coordinator, which never aborts a job it recorded DONE (until issue 8 the soak did,
                # and counted the outputs it had itself withdrawn as data_lost).
                job = f"soak-fuzz-never-{self.rng.randrange(10 ** 9)}"
            return node_pb2.JobRef(job_id=job, live=[self.text() for _ in range(self.rng.randrange(4))]).SerializeToString()
        if name == "Link":
            payload = self.payload()
            header = node_pb2.LinkHeader(job_id=self.text(), round=self.text(), sender=peer if self.rng.random() < 0.7
                                         else self.text(), receiver=target, shape=self.shape(),
                                         total=self.rng.choice([len(payload), 0, 2 ** 64 - 1, 2 ** 20]),
                                         offset=self.rng.choice([0, 0, 8]), want_ack=True)
            return frames.encode(header, payload)
        if name == "FetchOutput":
            return node_pb2.OutputRequest(job_id=self.text(), output=self.text()).SerializeToString()
        if name == "SubmitShare":
            return node_pb2.ClientShare(job_id=self.text(), input="ballots", share=self.payload(),
                                        shape=self.shape()).SerializeToString()
        if name == "Submit":
            text = self.c.scenarios[self.rng.choice(list(self.c.scenarios))][0].read_text()
            cut = self.rng.randrange(len(text))
            text = text[:cut] + self.rng.choice(["", "[", ":", "&a *a", "\t", "x" * 10 ** 5]) + text[cut + 3:]
            return cop.SubmitRequest(scenario_yaml=text, scenario_path=self.text(),
                                     job_id=f"soak-fuzz-{self.rng.randrange(10 ** 9)}").SerializeToString()
        if name == "Watch":
            return cop.WatchRequest(job_id=self.text()).SerializeToString()
        if "Coordinator/CloseInputs" in method:
            return cop.CloseRequest(job_id=self.text()).SerializeToString()
        return node_pb2.HealthRequest().SerializeToString()

    async def one(self) -> str:
        method = self.rng.choice(list(self.METHODS))
        target = "coordinator" if "Coordinator/" in method else self.rng.choice(ORGS)
        peer = self.rng.choice([o for o in ORGS if o != target])
        identity = peer if self.METHODS[method] == "<peer>" else self.METHODS[method]
        how = self.rng.random()
        if how < 0.3:
            body = self.rng.randbytes(self.rng.randrange(2000))
        else:
            body = self.message(method, peer, target)
            if how < 0.5:
                body = body[:self.rng.randrange(len(body) + 1)]
        address = (self.c.deployment.coordinator_address if target == "coordinator"
                   else self.c.deployment.addresses[target])
        try:
            async with secure_channel(address, target, self.c.tls(identity)) as ch:
                if method.endswith("/Link"):   # one frame on a stream of its own, then every notice
                    call = ch.stream_stream(method, request_serializer=None, response_deserializer=None)(timeout=30)
                    await call.write(body)
                    await call.done_writing()
                    async for _ in call:
                        pass
                elif method.endswith("/Watch"):   # the first snapshot is the answer; a running job streams on
                    call = ch.unary_stream(method, request_serializer=None, response_deserializer=None)(body, timeout=30)
                    async for _ in call:
                        call.cancel()
                        break
                else:
                    await ch.unary_unary(method, request_serializer=None, response_deserializer=None)(body, timeout=30)
            code = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN):
                return f"VIOLATION {method} on {target} -> {code.name}: {(exc.details() or '')[:200]}"
        # (a Submit whose mutated scenario is still valid is a legit job, which runs like any other)
        return f"{method.rsplit('/', 1)[1]}:{code.name}"


def run_suites(scale: float) -> list[tuple[str, int, float]]:
    """The parser and RPC fuzz suites with PARLEY_FUZZ_SCALE; (file, exit code, seconds) each."""
    out = []
    env = dict(os.environ, PARLEY_FUZZ_SCALE=str(scale), PYTHONPATH=str(REPO))
    for path in ["tests/unit/test_fuzz_parsers.py", "tests/integration/test_fuzz_rpc.py"]:
        started = time.monotonic()
        print(f"== {path} at PARLEY_FUZZ_SCALE={scale:g}", flush=True)
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path], cwd=REPO,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            output, _ = proc.communicate()
        except BaseException:
            # SIGINT lets pytest tear its cluster down (node processes run in their own sessions)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        tail = output.strip().splitlines()[-1] if output.strip() else ""
        print(f"   {tail}" if proc.returncode == 0 else output[-4000:], flush=True)
        out.append((path, proc.returncode, time.monotonic() - started))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Faults, hostile input and load together on a real 4-node deployment: waves of concurrent\n"
                    "jobs checked against plaintext, nodes SIGKILLed and restarted at random points, fuzzed RPCs,\n"
                    "invalid ballots and node inputs; then the parser and RPC fuzz suites at a larger scale.\n"
                    "The defaults take about 5-10 minutes on 2 cores.",
        epilog="The last line of output is\n"
               "  SOAK jobs=<n> node_kills=<n> bad_inputs=<n> wrong_results=<n> data_lost=<n> secrets_opened=<n>\n"
               "       disagreements=<n>   (on one line)\n"
               "Exit status 1 if wrong_results, data_lost, secrets_opened or disagreements is non-zero, a fuzzed\n"
               "RPC hung or hit an unhandled exception, or a fuzz suite failed; the work directory (logs) is\n"
               "then kept.")
    parser.add_argument("--jobs", type=int, default=500, help="jobs to run, in waves of --concurrency (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=8, help="jobs in flight together (default: %(default)s)")
    parser.add_argument("--kills", type=int, default=30, help="nodes to SIGKILL and restart at random points (default: %(default)s)")
    parser.add_argument("--bad-rpcs", type=int, default=1500, help="fuzzed RPCs sent while the jobs run (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=900, help="stop starting new jobs after this many seconds (default: %(default)s)")
    parser.add_argument("--fuzz-scale", type=float, default=4.0,
                        help="PARLEY_FUZZ_SCALE of the parser and RPC fuzz suites run afterwards (default: %(default)s)")
    parser.add_argument("--no-suites", action="store_true", help="skip the parser and RPC fuzz suites")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a random one, printed)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the deployment lives (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) even on success")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(10 ** 6)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="parley-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"soak: {args.jobs} jobs x{args.concurrency}, {args.kills} kills, {args.bad_rpcs} fuzzed RPCs, seed {args.seed}, "
          f"work dir {root}", flush=True)

    logging.basicConfig(level=logging.WARNING, format="  [%(name)s] %(message)s")

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)

    started = time.monotonic()
    approved = [mul_plan(mul_constant(args.seed, i))[0].computation.fingerprint() for i in range(args.jobs)]
    cluster = Cluster.create(
        root, SCENARIOS, INPUTS, extra_identities=[OUTSIDER, READER], approve={o: approved for o in ORGS},
        node_overrides={o: {"round_timeout_s": 6.0, "rpc_timeout_s": 3.0} for o in ORGS},
        coordinator_overrides={"rpc_timeout_s": 4.0, "poll_interval_s": 0.1, "prepare_timeout_s": 3.0})
    soak = None
    failed_suites: list[str] = []
    interrupted = False
    try:
        with cluster.running():
            soak = Soak(cluster, args)
            asyncio.run(soak.run())
        if not args.no_suites:
            for path, code, seconds in run_suites(args.fuzz_scale):
                if code != 0:
                    failed_suites.append(path)
    except KeyboardInterrupt:
        interrupted = True
        print("soak: interrupted; processes stopped", flush=True)
    finally:
        cluster.stop()
    s = soak.stats if soak else Stats()
    elapsed = time.monotonic() - started
    print(f"\n== soak summary ({elapsed:.0f}s, seed {args.seed})")
    print(f"jobs: {s.jobs} run, {s.done} done, {s.failed} failed ({s.unexplained_failures} without naming a node); "
          f"{s.unchecked_votes} votes not checked exactly (a ballot was refused while a node was down)")
    for reason, n in s.failure_reasons.most_common(8):
        print(f"  {n:4d} x {reason}")
    print(f"node kills: {s.node_kills}; finished jobs checked after restarts: {len(soak.finished) if soak else 0}")
    print(f"bad inputs: {s.bad_inputs} (fuzzed RPCs by outcome: {dict(s.fuzzed_rpcs.most_common(12))})")
    print(f"fuzzed RPCs that hung or hit an unhandled exception: {s.rpc_violations}")
    if not args.no_suites:
        print(f"fuzz suites at scale {args.fuzz_scale:g}: {'failed: ' + ', '.join(failed_suites) if failed_suites else 'passed'}")
    if s.problems:
        print(f"problems ({len(s.problems)}):")
        for p in s.problems[:30]:
            print(f"  {p}")
    bad = (s.wrong_results or s.data_lost or s.secrets_opened or s.disagreements or s.rpc_violations or failed_suites
           or interrupted or soak is None)
    if args.keep or bad:
        print(f"logs: {root / 'logs'}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    print(f"SOAK jobs={s.jobs} node_kills={s.node_kills} bad_inputs={s.bad_inputs} wrong_results={s.wrong_results} "
          f"data_lost={s.data_lost} secrets_opened={s.secrets_opened} disagreements={s.disagreements}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
