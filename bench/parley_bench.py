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
from coordinator.builder import CircuitBuilder
from coordinator.config import CoordinatorConfig
from coordinator.deploy import Deployment, write_nodes
from coordinator.scheduler import JobPlan, Scheduler
from mpcnode.certs import ensure
from mpcnode.recipient import fetch
from mpcnode.transport.tls import TlsMaterial, secure_channel
from parley.v1 import node_pb2, node_pb2_grpc

PARTIES = ["bench-p0", "bench-p1", "bench-p2"]
RECIPIENT = "bench-recipient"


@dataclass
class Figures:
    seconds: float
    rounds: int
    bytes_per_node: int
    result: list[int]


class Cluster:
    """Three node processes and an in-process scheduler (the coordinator's own code)."""

    def __init__(self, workdir: Path, inputs: dict[str, Path], clients: list[str] = ()):
        self.workdir = workdir
        self.certs = workdir / "certs"
        ensure(self.certs, PARTIES + ["coordinator", "operator", RECIPIENT, *clients])
        self.dep: Deployment = write_nodes(workdir, self.certs, PARTIES, {PARTIES[0]: inputs},
                                           {o: {"scenarios": ["*"], "recipients": ["*"]} for o in PARTIES},
                                           {o: {"round_timeout_s": 600.0, "rpc_timeout_s": 600.0} for o in PARTIES})
        self.procs = []

    async def __aenter__(self) -> "Cluster":
        operator = TlsMaterial.for_identity(self.certs, "operator")
        for org, cfg in self.dep.node_configs.items():
            self.procs.append(processes.start_node(cfg, self.workdir / "logs" / f"{org}.log"))
        await asyncio.gather(*(processes.wait_node_ready(o, self.dep.addresses[o], operator, p,
                                                         log=self.workdir / "logs" / f"{o}.log")
                               for o, p in zip(PARTIES, self.procs)))
        cfg = CoordinatorConfig(listen="127.0.0.1:0", tls={"ca": self.certs / "ca.pem",
                                                            "cert": self.certs / "coordinator.pem",
                                                            "key": self.certs / "coordinator.key"},
                                nodes=self.dep.addresses, database=self.workdir / "coordinator.sqlite3",
                                poll_interval_s=0.01, rpc_timeout_s=600.0)
        self.scheduler = Scheduler(cfg, TlsMaterial.for_identity(self.certs, "coordinator"))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.scheduler.close()
        for p in self.procs:
            processes.stop(p)

    async def run(self, job_id: str, circuit, output: str, before_close: Callable | None = None,
                  timeout_s: float = 1800) -> Figures:
        t0 = time.perf_counter()
        plan = JobPlan(circuit.name, circuit, PARTIES, 1, timeout_s)
        self.scheduler.submit_plan(job_id, plan)
        live = self.scheduler.live[job_id]
        if before_close is not None:
            while live.state not in ("RUNNING", "DONE", "FAILED"):
                await live.changed.wait()
            await before_close(job_id)
            self.scheduler.request_close(job_id)
        while live.state not in ("DONE", "FAILED"):
            await live.changed.wait()
        if live.state == "FAILED":
            raise RuntimeError(f"{job_id} failed: {live.error}")
        res = await fetch(job_id, output, self.dep.addresses, TlsMaterial.for_identity(self.certs, RECIPIENT))
        elapsed = time.perf_counter() - t0
        statuses = await self.node_status(job_id)
        return Figures(elapsed, max(s.rounds_done for s in statuses), max(s.bytes_sent for s in statuses), res.values)

    async def node_status(self, job_id: str) -> list[node_pb2.JobStatus]:
        tls = TlsMaterial.for_identity(self.certs, "coordinator")
        out = []
        for org in PARTIES:
            async with secure_channel(self.dep.addresses[org], org, tls) as ch:
                out.append(await node_pb2_grpc.NodeControlStub(ch).Status(node_pb2.JobRef(job_id=job_id), timeout=30))
        return out


def sum_circuit(n: int):
    b = CircuitBuilder("bench-sum")
    x = b.input("x", PARTIES[0], n, -(1 << 47), 1 << 47)
    b.output("total", b.sum(x), [RECIPIENT])
    return b.build()


def mul_circuit(n: int):
    b = CircuitBuilder("bench-mul")
    x = b.input("x", PARTIES[0], n, -(1 << 19), 1 << 19)
    y = b.input("y", PARTIES[0], n, -(1 << 19), 1 << 19)
    b.output("products", b.sum(x * y), [RECIPIENT])
    return b.build()


def workload_inputs(workload: str, n: int, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if workload == "sum":
        return {"x": rng.integers(-(1 << 47), 1 << 47, n, dtype=np.int64)}
    if workload == "mul":
        return {"x": rng.integers(-(1 << 19), 1 << 19, n, dtype=np.int64),
                "y": rng.integers(-(1 << 19), 1 << 19, n, dtype=np.int64)}
    raise ValueError(workload)


async def run_arith(workload: str, n: int) -> Figures:
    """sum: total of n inputs; mul: n elementwise products (their sum is opened, as in the MPyC run)."""
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        work = Path(tmp)
        data = workload_inputs(workload, n)
        np.savez(work / "inputs.npz", **data)
        async with Cluster(work, {f"bench-{workload}": work / "inputs.npz"}) as cluster:
            circuit = sum_circuit(n) if workload == "sum" else mul_circuit(n)
            circuit.name = f"bench-{workload}"
            figs = await cluster.run(f"bench-{workload}", circuit, "total" if workload == "sum" else "products")
        want = int(data["x"].astype(object).sum()) if workload == "sum" else int(
            (data["x"].astype(object) * data["y"].astype(object)).sum())
        if figs.result != [want]:
            raise RuntimeError(f"{workload}: wrong result {figs.result} != {want}")
        return figs
