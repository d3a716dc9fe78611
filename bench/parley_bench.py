"""Parley side of `make bench`: real node processes on localhost with mutual TLS, circuits built
with the builder, timed from submission until the recipient holds the reconstructed result.
"""
from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from coordinator import processes
from mpcnode.computation.builder import CircuitBuilder
from coordinator.config import CoordinatorConfig
from coordinator.deploy import Deployment, write_nodes
from coordinator.jobplan import JobPlan
from coordinator.scheduler import Scheduler
from mpcnode.certs import ensure
from mpcnode.recipient import fetch
from mpcnode.transport.tls import TlsMaterial, secure_channel
from parley.v1 import node_pb2, node_pb2_grpc

PARTIES = ["bench-p0", "bench-p1", "bench-p2"]
RECIPIENT = "bench-recipient"


def parties_for(n: int) -> list[str]:
    """The compute nodes of an n-party benchmark deployment (bench-p0 owns every node input)."""
    return [f"bench-p{i}" for i in range(n)]


@dataclass(frozen=True)
class Setup:
    """Which engine and how many compute nodes a benchmark job runs with."""
    protocol: str = "shamir"
    n: int = 3

    @property
    def parties(self) -> list[str]:
        return parties_for(self.n)

    def plan(self, circuit, timeout_s: float) -> JobPlan:
        # the replicated engine runs with all three parties (no dropout rule but "none")
        return JobPlan(circuit.name, circuit, self.parties, (self.n - 1) // 2, timeout_s, protocol=self.protocol,
                       dropouts="none" if self.protocol == "replicated3" else "within-threshold")


SHAMIR3 = Setup()


@dataclass
class Figures:
    seconds: float
    rounds: int
    bytes_per_node: int
    result: list[int]
    value: object = None          # the result as the recipient renders it (recipient.Result.value)
    after_close_s: float = 0.0    # from closing client inputs to the recipient's result (client jobs)
    node_s: float = 0.0           # the slowest node's own job time, Start to outputs stored (JobStatus.elapsed_s)


class Cluster:
    """The compute node processes of `setup` (three by default) and an in-process scheduler (the
    coordinator's own code)."""

    def __init__(self, workdir: Path, inputs: dict[str, Path], clients: list[str] = (), poll_interval_s: float = 0.01,
                 status_wait_s: float = 1.0, setup: Setup = SHAMIR3,
                 party_inputs: dict[str, dict[str, Path]] | None = None):
        self.workdir = workdir
        self.setup = setup
        parties = setup.parties
        self.poll_interval_s = poll_interval_s
        self.status_wait_s = status_wait_s
        self.certs = workdir / "certs"
        ensure(self.certs, parties + ["coordinator", "operator", RECIPIENT, *clients], nodes=parties, loopback=True)
        # party_inputs: datasets of every party ({org: {dataset: file}}); else party 0 owns `inputs`
        self.dep: Deployment = write_nodes(workdir, self.certs, parties, party_inputs or {parties[0]: inputs},
                                           # benchmarks build circuits of every size on the fly; consent
                                           # is not what they measure (the approval check is a hash lookup)
                                           {o: {"approve_any_computation_insecure": True, "input_clients": ["*"]}
                                            for o in parties},
                                           {o: {"round_timeout_s": 600.0, "rpc_timeout_s": 600.0} for o in parties})
        self.procs = []

    async def __aenter__(self) -> "Cluster":
        operator = TlsMaterial.for_identity(self.certs, "operator")
        for org, cfg in self.dep.node_configs.items():
            self.procs.append(processes.start_node(cfg, self.workdir / "logs" / f"{org}.log"))
        await asyncio.gather(*(processes.wait_node_ready(o, self.dep.addresses[o], operator, p,
                                                         log=self.workdir / "logs" / f"{o}.log")
                               for o, p in zip(self.setup.parties, self.procs)))
        cfg = CoordinatorConfig(listen="127.0.0.1:0", tls={"ca": self.certs / "ca.pem",
                                                            "cert": self.certs / "coordinator.pem",
                                                            "key": self.certs / "coordinator.key"},
                                nodes=self.dep.addresses, database=self.workdir / "coordinator.sqlite3",
                                poll_interval_s=self.poll_interval_s, status_wait_s=self.status_wait_s,
                                rpc_timeout_s=600.0)
        self.scheduler = Scheduler(cfg, TlsMaterial.for_identity(self.certs, "coordinator"))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.scheduler.close()
        for p in self.procs:
            processes.stop(p)

    async def run(self, job_id: str, circuit, output: str, before_close: Callable | None = None,
                  timeout_s: float = 1800) -> Figures:
        t0 = t_close = time.perf_counter()
        plan = self.setup.plan(circuit, timeout_s)
        self.scheduler.submit_plan(job_id, plan)
        live = self.scheduler.live[job_id]
        if before_close is not None:
            while live.state not in ("RUNNING", "DONE", "FAILED"):
                await live.changed.wait()
            await before_close(job_id)
            t_close = time.perf_counter()
            self.scheduler.request_close(job_id)
        while live.state not in ("DONE", "FAILED"):
            await live.changed.wait()
        if live.state == "FAILED":
            raise RuntimeError(f"{job_id} failed: {live.error}")
        res = await fetch(job_id, output, self.dep.addresses, TlsMaterial.for_identity(self.certs, RECIPIENT))
        elapsed = time.perf_counter() - t0
        statuses = await self.node_status(job_id)
        return Figures(elapsed, max(s.rounds_done for s in statuses), max(s.bytes_sent for s in statuses), res.values,
                       res.value, time.perf_counter() - t_close, max(s.elapsed_s for s in statuses))

    async def node_status(self, job_id: str) -> list[node_pb2.JobStatus]:
        tls = TlsMaterial.for_identity(self.certs, "coordinator")
        out = []
        for org in self.setup.parties:
            async with secure_channel(self.dep.addresses[org], org, tls) as ch:
                out.append(await node_pb2_grpc.NodeControlStub(ch).Status(node_pb2.JobRef(job_id=job_id), timeout=30))
        return out


def chain_circuit(rounds: int, name: str = "bench-latency"):
    """x * x * ... * x: `rounds` dependent products, one interactive round each (x = -1, so the
    result is known without big numbers and no round is cheaper than another)."""
    b = CircuitBuilder(name)
    x = b.input("x", PARTIES[0], 1, -1, 1)
    y = x
    for _ in range(rounds):
        y = y * x
    b.output("y", y, [RECIPIENT])
    return b.build()


async def run_noop(repeats: int = 30, setup: Setup = SHAMIR3) -> tuple[float, float]:
    """Fixed cost of a job: an empty one (one node input of one value, summed, opened to one
    recipient), from submission to the recipient holding the result: Prepare with the consent
    checks, the key round with the job agreement, input sharing, held Status replies, the decision
    and Commit, storing, and the recipient's fetch over fresh TLS channels. The scheduler uses the
    coordinator's default polling (0.2 s; held Status replies end the wait when the job ends).
    Returns (median, minimum) in seconds over `repeats` runs after two warm-up runs."""
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        work = Path(tmp)
        np.savez(work / "inputs.npz", x=np.array([3], dtype=np.int64))
        async with Cluster(work, {"bench-noop": work / "inputs.npz"}, poll_interval_s=0.2, setup=setup) as cluster:
            b = CircuitBuilder("bench-noop")
            b.output("y", b.sum(b.input("x", PARTIES[0], 1, 0, 10)), [RECIPIENT])
            circuit = b.build()
            times = []
            for k in range(repeats + 2):
                figs = await cluster.run(f"bench-noop-{k}", circuit, "y")
                if figs.result != [3]:
                    raise RuntimeError(f"noop: wrong result {figs.result}")
                times.append(figs.seconds)
    times = sorted(times[2:])
    return times[len(times) // 2], times[0]


async def run_latency(rounds: int = 200, repeats: int = 5, setup: Setup = SHAMIR3) -> tuple[float, float, int]:
    """Milliseconds per dependent round of a chain of `rounds` products among the 3 nodes.

    Measured from the nodes' own timers (JobStatus.elapsed_s: Start until the outputs are
    stored) as the marginal cost of a round: the same job with 0 products has the same fixed
    part (key round, input sharing, storing outputs), so
    ms_per_round = (elapsed(chain) - elapsed(no chain)) / (rounds(chain) - rounds(no chain)),
    medians over `repeats` alternating runs. Also returns the plain elapsed/rounds of the chain
    job (fixed part included) and the chain job's round count."""
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        work = Path(tmp)
        np.savez(work / "inputs.npz", x=np.array([-1], dtype=np.int64))
        # both circuits are named bench-latency: a node input's dataset is the circuit's name. The
        # figure comes from the nodes' timers, so the scheduler polls them rarely: 100 Status calls
        # a second per node would take CPU from the rounds measured on this 2-core machine
        async with Cluster(work, {"bench-latency": work / "inputs.npz"}, poll_interval_s=0.25,
                           setup=setup) as cluster:
            chain, empty = chain_circuit(rounds), chain_circuit(0)
            samples: list[tuple[float, float, int, int]] = []
            for k in range(repeats + 1):     # the first pair warms up both circuits
                pair = []
                for tag, circuit in (("c", chain), ("e", empty)):
                    job_id = f"bench-latency-{tag}{k}"
                    figs = await cluster.run(job_id, circuit, "y")
                    want = [(-1) ** (rounds + 1)] if tag == "c" else [-1]
                    if figs.result != want:
                        raise RuntimeError(f"latency: wrong result {figs.result} != {want}")
                    st = await cluster.node_status(job_id)
                    pair.append((max(s.elapsed_s for s in st), max(s.rounds_done for s in st)))
                if k:
                    samples.append((pair[0][0], pair[1][0], pair[0][1], pair[1][1]))
    per_round = sorted((c - e) / (rc - re) for c, e, rc, re in samples)[len(samples) // 2]
    plain = sorted(c / rc for c, _, rc, _ in samples)[len(samples) // 2]
    return per_round * 1000, plain * 1000, samples[0][2]


def sum_bound(n: int) -> int:
    """|input| bound of the sum workload: 2^47 (MPyC's SecInt(64) range), lowered so that the sum of
    n inputs cannot leave the field's signed range (the wrap check refuses a circuit that could)."""
    return min(1 << 47, ((1 << 59) - 1) // n)


def sum_circuit(n: int):
    b = CircuitBuilder("bench-sum")
    x = b.input("x", PARTIES[0], n, -sum_bound(n), sum_bound(n))
    b.output("total", b.sum(x), [RECIPIENT])
    return b.build()


def mul_circuit(n: int):
    # products of 29-bit values stay inside the field's +-2^59 signed range
    b = CircuitBuilder("bench-mul")
    x = b.input("x", PARTIES[0], n, -(1 << 29), 1 << 29)
    y = b.input("y", PARTIES[0], n, -(1 << 29), 1 << 29)
    b.output("products", x * y, [RECIPIENT])
    return b.build()


def workload_inputs(workload: str, n: int, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if workload == "sum":
        return {"x": rng.integers(-sum_bound(n), sum_bound(n), n, dtype=np.int64)}
    if workload == "mul":
        return {"x": rng.integers(-(1 << 29), 1 << 29, n, dtype=np.int64),
                "y": rng.integers(-(1 << 29), 1 << 29, n, dtype=np.int64)}
    raise ValueError(workload)


async def run_arith(workload: str, n: int, setup: Setup = SHAMIR3) -> Figures:
    """sum: total of n inputs; mul: n elementwise products, all opened to the recipient (as MPyC does)."""
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        work = Path(tmp)
        data = workload_inputs(workload, n)
        np.savez(work / "inputs.npz", **data)
        async with Cluster(work, {f"bench-{workload}": work / "inputs.npz"}, setup=setup) as cluster:
            circuit = sum_circuit(n) if workload == "sum" else mul_circuit(n)
            circuit.name = f"bench-{workload}"
            figs = await cluster.run(f"bench-{workload}", circuit, "total" if workload == "sum" else "products")
        want = [int(data["x"].astype(object).sum())] if workload == "sum" else (data["x"] * data["y"]).tolist()
        if figs.result != want:
            raise RuntimeError(f"{workload}: wrong result {figs.result[:4]}... != {want[:4]}...")
        return figs


# ---- comparison, auction and vote workloads (one party provides each whole batch) --------

CMP_RANGE = 1 << 30
BID_RANGE = 1 << 30


def make_ballots(rng: np.random.Generator, n: int, k: int, invalid_fraction: float = 0.01) -> np.ndarray:
    """n one-hot ballots over k options; about 1% malformed (empty, two ticks, a 2, a -1)."""
    choice = rng.choice(k, size=n, p=np.arange(k, 0, -1) / (k * (k + 1) / 2))
    ballots = np.zeros((n, k), dtype=np.int64)
    ballots[np.arange(n), choice] = 1
    bad = np.flatnonzero(rng.random(n) < invalid_fraction)
    kind = rng.integers(0, 4, bad.size)
    col = rng.integers(0, k, bad.size)
    ballots[bad] = 0
    two = bad[kind == 1]
    ballots[two, col[kind == 1]] = 1
    ballots[two, (col[kind == 1] + 1) % k] = 1
    ballots[bad[kind == 2], col[kind == 2]] = 2
    neg = bad[kind == 3]
    ballots[neg, col[kind == 3]] = -1
    ballots[neg, (col[kind == 3] + 1) % k] = 2
    return ballots


def plaintext_valid(ballots: np.ndarray) -> np.ndarray:
    return np.all((ballots == 0) | (ballots == 1), axis=1) & (ballots.sum(axis=1) == 1)


def secure_workload(workload: str, n: int, seed: int = 11):
    """(circuit, inputs of party 0, output name, expected opened values)."""
    rng = np.random.default_rng(seed)
    b = CircuitBuilder(f"bench-{workload}")
    owner = PARTIES[0]
    if workload == "cmp":
        a = rng.integers(-CMP_RANGE, CMP_RANGE, n, dtype=np.int64)
        c = rng.integers(-CMP_RANGE, CMP_RANGE, n, dtype=np.int64)
        c[: n // 10] = a[: n // 10]
        x = b.input("a", owner, n, -CMP_RANGE, CMP_RANGE)
        y = b.input("b", owner, n, -CMP_RANGE, CMP_RANGE)
        b.output("lt", b.lt(x, y, 32), [RECIPIENT])
        return b.build(), {"a": a, "b": c}, "lt", list((a < c).astype(int))
    if workload == "vickrey":
        bids = rng.integers(0, BID_RANGE, n, dtype=np.int64)
        bids[n // 3] = bids[(2 * n) // 3] = BID_RANGE - 1   # a tie at the top: the first bid wins
        x = b.input("bids", owner, n, 0, BID_RANGE)
        top = b.top_two(x, 32)
        b.output("result", b.concat([top[0], top[2]]), [RECIPIENT])
        order = np.argsort(-bids, kind="stable")
        return b.build(), {"bids": bids}, "result", [int(order[0]), int(bids[order[1]])]
    k = 2 if workload == "referendum" else 5
    ballots = make_ballots(rng, n, k)
    valid = plaintext_valid(ballots)
    counts = (ballots * valid[:, None]).sum(axis=0)
    x = b.input("ballots", owner, n * k, -1, 2)
    ok = b.rows_valid(x, k, exactly_one=True)
    tally = b.column_sums(b.mul_rows(x, k, ok), k)
    if workload == "vote_tally":
        b.output("tally", b.concat([tally, b.sub(b.count_rows(x, k), b.sum(ok))]), [RECIPIENT])
        return b.build(), {"ballots": ballots.reshape(-1)}, "tally", [*map(int, counts), int(n - valid.sum())]
    if workload == "vote_winner":
        b.output("winner", b.argmax(tally, 32)[0], [RECIPIENT])
        return b.build(), {"ballots": ballots.reshape(-1)}, "winner", [int(np.argmax(counts))]
    b.output("passed", b.ge(b.scale(tally[0], 2), b.sum(ok), 33), [RECIPIENT])
    return b.build(), {"ballots": ballots.reshape(-1)}, "passed", [int(2 * counts[0] >= valid.sum())]


async def run_circuit(circuit, data: dict[str, np.ndarray], output: str, setup: Setup = SHAMIR3) -> Figures:
    """Run `circuit` as one job on fresh node processes of `setup`, with `data` as the first
    party's input file (one .npz, the job's dataset), and fetch `output` as the recipient."""
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        work = Path(tmp)
        np.savez(work / "inputs.npz", **data)
        async with Cluster(work, {circuit.name: work / "inputs.npz"}, setup=setup) as cluster:
            return await cluster.run(circuit.name, circuit, output)


async def run_secure(workload: str, n: int, setup: Setup = SHAMIR3) -> Figures:
    circuit, data, output, want = secure_workload(workload, n)
    figs = await run_circuit(circuit, data, output, setup)
    if figs.result != want:
        shown = figs.result[:8], want[:8]
        raise RuntimeError(f"{workload}: wrong result {shown[0]}... != {shown[1]}...")
    return figs


async def run_submissions(count: int, concurrency: int = 64) -> tuple[float, float, list[float]]:
    """`count` voters submit ballots concurrently over mutual TLS; returns (per_s, p99_ms, latencies)."""
    from mpcnode.client import submit

    voters = [f"voter-{i:05d}" for i in range(count)]
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        work = Path(tmp)
        b = CircuitBuilder("bench-submit")
        x = b.client_input("ballots", voters, 5, 0, 1)
        b.output("tally", b.column_sums(x, 5), [RECIPIENT])
        circuit = b.build()
        latencies: list[float] = []
        # what the organizers would publish: each client checks every node runs exactly this
        expected = SHAMIR3.plan(circuit, 1800).computation.fingerprint()
        async with Cluster(work, {}, clients=voters) as cluster:
            gate = asyncio.Semaphore(concurrency)
            tls = {v: TlsMaterial.for_identity(cluster.certs, v) for v in voters}
            span = [0.0]

            async def one(v: str, k: int) -> None:
                async with gate:
                    t = time.perf_counter()
                    await submit("bench-submit", "ballots", [int(j == k % 5) for j in range(5)],
                                 cluster.dep.addresses, tls[v], expected)
                    latencies.append(time.perf_counter() - t)

            async def submit_all(job_id: str) -> None:
                t0 = time.perf_counter()
                await asyncio.gather(*(one(v, k) for k, v in enumerate(voters)))
                span[0] = time.perf_counter() - t0

            figs = await cluster.run("bench-submit", circuit, "tally", before_close=submit_all)
        expect = [len([k for k in range(count) if k % 5 == j]) for j in range(5)]
        if figs.result != expect:
            raise RuntimeError(f"submit: tally {figs.result} != {expect}")
        lat = sorted(latencies)
        return count / span[0], lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000, lat
