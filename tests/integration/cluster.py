"""A real Parley deployment on localhost for integration tests.

`Cluster.create(tmp, scenarios, inputs)` makes a fresh CA and certificates in `tmp` (never
deploy/certs), writes each organization's input files, and writes node + coordinator configs
with coordinator.deploy.write_deployment. `with cluster.running():` starts every node process
and the coordinator process, waits until each answers over mutual TLS (by RPC, never by
sleeping), and always stops them again.

Process management is synchronous (for pytest fixtures of any scope); the readiness checks run
in a private event loop on a helper thread. Everything that talks gRPC from a test is an
`async` method meant to run in the test's own event loop, so no grpc.aio object outlives the
loop that created it.

Usage in a test module:

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory):
        c = Cluster.create(tmp_path_factory.mktemp("x"), [scenario_dict, Path("scenarios/a.yaml")],
                           inputs={"scenario-name": {"org": 5, ...}})
        with c.running():
            yield c

    async def test_it(cluster):
        progress = await cluster.run("scenario-name")
        result = await cluster.fetch(progress.job_id, "total", recipient="org")
"""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import sqlite3
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import grpc
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from coordinator import processes  # noqa: E402
from coordinator.client import submit as coordinator_submit, watch as coordinator_watch, JobFailed  # noqa: E402
from coordinator.deploy import Deployment, write_deployment  # noqa: E402
from mpcnode.computation.protocol import default_dropouts, protocol_problem  # noqa: E402
from mpcnode.computation.scenario import AnyScenario, load_scenario  # noqa: E402
from mpcnode.shamir import default_threshold  # noqa: E402
from mpcnode import certs as certmod  # noqa: E402
from mpcnode import field as F  # noqa: E402
from mpcnode.recipient import Result, fetch as recipient_fetch  # noqa: E402
from mpcnode.transport.tls import TlsMaterial, secure_channel  # noqa: E402
from parley.v1 import coordinator_pb2 as cop  # noqa: E402
from parley.v1 import node_pb2, node_pb2_grpc  # noqa: E402

START_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 60.0

# Every process any cluster started, so that even an interrupted run (Ctrl-C between fixture
# setup and teardown) does not leave nodes behind: they run in their own sessions.
_LIVE: set[subprocess.Popen] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        processes.kill(proc)
        _LIVE.discard(proc)


def run_sync(coro, timeout: float = START_TIMEOUT_S + 30):
    """Run a coroutine to completion in a fresh event loop on a helper thread; usable from sync fixtures
    whether or not the calling thread has a loop. Pass a coroutine that has not created anything bound
    to a loop yet (call asyncio.gather etc. inside it, not around it)."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="cluster-sync", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"cluster operation did not finish within {timeout:g}s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("result")


def make_certs(folder: Path, identities: set[str] | list[str], nodes: set[str] | list[str] = ()) -> Path:
    """A fresh deployment CA in `folder` and one certificate per identity (mpcnode.certs.ensure):
    `nodes` get the node role, "coordinator" the coordinator's, the rest the client role. With
    loopback SANs, as a deployment on one machine asks for."""
    certmod.ensure(folder, sorted(set(identities)), nodes=set(nodes), loopback=True)
    return folder


def make_foreign_identity(folder: Path, identity: str) -> TlsMaterial:
    """A certificate for `identity` from ANOTHER CA (created in `folder`); `ca` is that other CA."""
    ca_cert, ca_key = certmod.create_ca(folder, common_name="Some other CA")
    certmod.issue(folder, identity, ca_cert, ca_key)
    return TlsMaterial.for_identity(folder, identity)


@dataclass
class Cluster:
    root: Path
    certs: Path
    deployment: Deployment
    scenarios: dict[str, tuple[Path, AnyScenario]]
    input_root: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)   # scenario -> why its protocol cannot run it

    # ---- building -----------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, scenarios: list[dict | Path], inputs: dict[str, dict[str, object]] | None = None,
               extra_identities: tuple[str, ...] | list[str] = (), policy_overrides: dict[str, dict] | None = None,
               node_overrides: dict[str, dict] | None = None,
               coordinator_overrides: dict | None = None,
               approve: dict[str, list[str]] | None = None, protocol: str | None = None,
               model_files: dict[str, Path] | None = None) -> "Cluster":
        """Write scenarios, inputs, certificates and configs under `root` (nothing is started).

        scenarios: scenario mappings (as in a YAML file) or paths of scenario files (copied).
        inputs: {scenario name: {org: value}}; a value that is a mapping is written as the whole
        input file, anything else as {<input name>: value} (total/average scenarios). Written to
        <root>/inputs/<scenario>/<org>.yaml, where write_deployment(input_root=...) finds them.
        node_overrides / coordinator_overrides: fields merged into a node's / the coordinator's
        config file (e.g. round_timeout_s, max_message_mb / rpc_timeout_s, poll_interval_s).
        approve: {org: [fingerprint, ...]} approved besides the scenarios (circuits built in code;
        see approve_plans).
        model_files: {model scenario name: its owner's model file} (deploy.write_deployment).
        protocol: the engine every scenario runs under: its `protocol:` field is set to it (the core
        suites pass the `protocol` fixture of tests/conftest.py, ENGINES_UNDER_TEST). A scenario that
        engine cannot run (replicated3: not 3 parties, a dropout rule other than none) is left out
        (`left_out`), and a test that submits it is skipped. Without `protocol`, a scenario that
        states none gets `protocol: shamir`: tests that are not about the engine keep the engine
        they were written for, whatever the default rule (computation/protocol.py) picks.
        """
        root = root.resolve()
        sdir = root / "scenarios"
        sdir.mkdir(parents=True, exist_ok=True)
        loaded: dict[str, tuple[Path, AnyScenario]] = {}
        left_out: dict[str, str] = {}
        for item in scenarios:
            data = yaml.safe_load(item.read_text()) if isinstance(item, Path) else dict(item)
            name = data["name"]
            target = protocol or data.get("protocol") or "shamir"
            if data.get("protocol") == target and isinstance(item, Path):
                text = item.read_text()      # as shipped, comments and all
            else:
                data["protocol"] = target
                text = yaml.safe_dump(data, sort_keys=False)
            n = len(data.get("compute") or data["parties"])     # the compute nodes run the engine
            problem = protocol_problem(target, n, data.get("threshold") or default_threshold(n),
                                       data.get("dropouts") or default_dropouts(target))
            if problem:
                left_out[name] = problem
                continue
            path = sdir / f"{name}.yaml"
            path.write_text(text)
            loaded[name] = (path, load_scenario(path))
        input_root = root / "inputs"
        cluster_inputs = inputs or {}
        for scen_name, per_org in cluster_inputs.items():
            if scen_name in left_out:
                continue
            sc = loaded[scen_name][1]
            for org, value in per_org.items():
                write_input_file(input_root, sc, org, value)
        identities = {"coordinator", "operator", *extra_identities}
        nodes: set[str] = set(approve or {})
        for _, sc in loaded.values():
            identities |= sc.identities()
            nodes |= set(sc.parties)
        certs = make_certs(root / "certs", identities | nodes, nodes)
        dep = write_deployment(root / "deploy", certs, list(loaded.values()), input_root=input_root,
                               policy_overrides=policy_overrides, node_overrides=node_overrides,
                               approve=approve, model_files=model_files)
        if coordinator_overrides:
            cfg = yaml.safe_load(dep.coordinator_config.read_text())
            cfg.update(coordinator_overrides)
            dep.coordinator_config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return cls(root, certs, dep, loaded, input_root, left_out=left_out)

    @property
    def orgs(self) -> list[str]:
        return sorted(self.deployment.addresses)

    def tls(self, identity: str) -> TlsMaterial:
        return TlsMaterial.for_identity(self.certs, identity)

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.log(name)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def data_dir(self, org: str) -> Path:
        return self.deployment.workdir / "nodes" / org

    def input_file(self, scenario: str, org: str) -> Path:
        return self.input_root / scenario / f"{org}.yaml"

    def fingerprint(self, scenario: str) -> str:
        """The computation's fingerprint, as its organizers would publish it to input clients."""
        return self.scenarios[scenario][1].computation().fingerprint()

    def nodes_of(self, scenario: str) -> dict[str, str]:
        return {o: self.deployment.addresses[o] for o in self.scenarios[scenario][1].compute_parties}

    # ---- processes ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start every node, wait until each answers Health as itself, then the coordinator."""
        operator = self.tls("operator")
        for org, cfg in self.deployment.node_configs.items():
            self._spawn(org, processes.start_node(cfg, self.log(org)))

        async def nodes_ready() -> None:
            await asyncio.gather(*(
                processes.wait_node_ready(org, self.deployment.addresses[org], operator, self.procs[org],
                                          timeout=START_TIMEOUT_S, log=self.log(org))
                for org in self.deployment.node_configs))

        run_sync(nodes_ready())
        coord = processes.start_coordinator(self.deployment.coordinator_config, self.log("coordinator"))
        self._spawn("coordinator", coord)
        run_sync(processes.wait_coordinator_ready(self.deployment.coordinator_address, operator, coord,
                                                  timeout=START_TIMEOUT_S, log=self.log("coordinator")))

    def _spawn(self, name: str, proc: subprocess.Popen) -> None:
        self.procs[name] = proc
        _LIVE.add(proc)

    def stop(self, name: str | None = None) -> None:
        """SIGTERM (then SIGKILL after a grace period) one process, or every process."""
        names = [name] if name else list(self.procs)[::-1]
        for n in names:
            proc = self.procs.get(n)
            if proc is not None:
                processes.stop(proc)
                _LIVE.discard(proc)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        processes.kill(proc)
        _LIVE.discard(proc)

    def restart(self, name: str) -> None:
        """Start a node (or "coordinator") again after kill/stop, on the same config and data, and wait
        until it answers; a process that is still running is left alone."""
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            return
        operator = self.tls("operator")
        if name == "coordinator":
            proc = processes.start_coordinator(self.deployment.coordinator_config, self.log(name))
            self._spawn(name, proc)
            run_sync(processes.wait_coordinator_ready(self.deployment.coordinator_address, operator, proc,
                                                      timeout=START_TIMEOUT_S, log=self.log(name)))
        else:
            proc = processes.start_node(self.deployment.node_configs[name], self.log(name))
            self._spawn(name, proc)
            run_sync(processes.wait_node_ready(name, self.deployment.addresses[name], operator, proc,
                                               timeout=START_TIMEOUT_S, log=self.log(name)))

    @contextlib.contextmanager
    def running(self) -> Iterator["Cluster"]:
        try:
            self.start()
            yield self
        finally:
            self.stop()

    def assert_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        assert not dead, f"processes exited: {dead}\n" + "\n".join(self.log_tail(n) for n in dead)

    # ---- jobs (async: call from the test's event loop) ----------------------------------------
    def needs(self, *scenarios: str) -> None:
        """Skip the calling test if this cluster's engine cannot run one of `scenarios`."""
        for name in scenarios:
            if name in self.left_out:
                pytest.skip(f"{name}: {self.left_out[name]}")

    async def submit(self, scenario: str, job_id: str = "") -> str:
        self.needs(scenario)
        path = self.scenarios[scenario][0]
        job_id = job_id or f"{scenario}-{uuid.uuid4().hex[:8]}"
        got, created = await coordinator_submit(self.deployment.coordinator_address, self.tls("operator"), path,
                                                job_id)
        assert got == job_id and created
        return job_id

    async def watch(self, job_id: str, timeout: float = JOB_TIMEOUT_S) -> cop.JobProgress:
        """The job's final progress, DONE or FAILED (never raises for a failed job)."""
        seen: list[cop.JobProgress] = []
        async with asyncio.timeout(timeout):
            try:
                return await coordinator_watch(self.deployment.coordinator_address, self.tls("operator"), job_id,
                                               seen.append, timeout=timeout)
            except JobFailed:
                return seen[-1]

    async def run(self, scenario: str, expect: str = "DONE", timeout: float = JOB_TIMEOUT_S) -> cop.JobProgress:
        """Submit a scenario and follow it to the end; asserts it ends in state `expect`."""
        job_id = await self.submit(scenario)
        final = await self.watch(job_id, timeout)
        assert final.state == expect, f"job {job_id}: {final.state} ({final.error})"
        return final

    async def fetch(self, job_id: str, output: str, recipient: str, nodes: dict[str, str] | None = None,
                    timeout: float = 15.0, accept_unchecked: bool = False) -> Result:
        """The recipient's fetch from the scenario's nodes (or `nodes`). It fails closed when too few
        answer to check the result: pass accept_unchecked only where a node is down on purpose."""
        scenario = max((name for name in self.scenarios if job_id.startswith(name + "-")), key=len)
        async with asyncio.timeout(timeout + 5):
            return await recipient_fetch(job_id, output, nodes or self.nodes_of(scenario), self.tls(recipient),
                                         timeout, accept_unchecked=accept_unchecked)

    async def node_status(self, org: str, job_id: str, identity: str = "coordinator") -> node_pb2.JobStatus:
        """NodeControl.Status as `identity` (raises grpc.aio.AioRpcError, e.g. NOT_FOUND)."""
        async with secure_channel(self.deployment.addresses[org], org, self.tls(identity)) as ch:
            return await node_pb2_grpc.NodeControlStub(ch).Status(node_pb2.JobRef(job_id=job_id), timeout=10)

    async def wait_running(self, org: str, job_id: str, timeout: float = 30.0) -> None:
        """Until `org` runs the job (client inputs open then); NOT_FOUND until Prepare arrives."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    if (await self.node_status(org, job_id)).state == node_pb2.JOB_STATE_RUNNING:
                        return
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                await asyncio.sleep(0.05)

    async def health(self, org: str, timeout: float = 10.0) -> node_pb2.HealthReply:
        """NodeControl.Health (raises grpc.aio.AioRpcError when the node does not answer)."""
        async with secure_channel(self.deployment.addresses[org], org, self.tls("operator")) as ch:
            return await node_pb2_grpc.NodeControlStub(ch).Health(node_pb2.HealthRequest(), timeout=timeout)

    @contextlib.asynccontextmanager
    async def local_coordinator(self, **config: object):
        """The coordinator's own Scheduler and gRPC service, in this test's event loop, as identity
        "coordinator", on a fresh database and port. For circuits built in code
        (Scheduler.submit_plan), which the coordinator process only accepts as scenarios.
        Yields (scheduler, address): follow a job with `coordinator.client.watch(address, ...)`."""
        from coordinator.config import CoordinatorConfig
        from coordinator.deploy import free_ports
        from coordinator.scheduler import Scheduler
        from coordinator.service import CoordinatorService
        from parley.v1 import coordinator_pb2_grpc as copg

        address = f"127.0.0.1:{free_ports(1)[0]}"
        cfg = CoordinatorConfig(**{
            "listen": address, "tls": {"ca": self.certs / "ca.pem", "cert": self.certs / "coordinator.pem",
                                       "key": self.certs / "coordinator.key"},
            "nodes": self.deployment.addresses,
            "database": self.root / f"local-coordinator-{uuid.uuid4().hex[:8]}.sqlite3", **config})
        tls = self.tls("coordinator")
        scheduler = Scheduler(cfg, tls)
        server = grpc.aio.server()
        copg.add_CoordinatorServicer_to_server(CoordinatorService(scheduler), server)
        assert server.add_secure_port(address, tls.server_credentials()) != 0
        await server.start()
        try:
            yield scheduler, address
        finally:
            await server.stop(grace=0.5)
            await scheduler.close()

    # ---- node state on disk -------------------------------------------------------------------
    def output_share(self, org: str, job_id: str, output: str) -> np.ndarray:
        with contextlib.closing(sqlite3.connect(self.data_dir(org) / "shares.sqlite3", timeout=10)) as db:
            row = db.execute("SELECT share, shape FROM outputs WHERE job_id=? AND name=?", (job_id, output)).fetchone()
        assert row is not None, f"{org} holds no output {output!r} of {job_id}"
        share = np.frombuffer(row[0], dtype="<u8").astype(np.uint64)
        return share.reshape(tuple(int(d) for d in row[1].split(","))) if row[1] else share

    def set_output_share(self, org: str, job_id: str, output: str, share: np.ndarray) -> None:
        """Overwrite a node's stored output share (as an attacker with disk access would)."""
        with contextlib.closing(sqlite3.connect(self.data_dir(org) / "shares.sqlite3", timeout=10)) as db:
            with db:
                cur = db.execute("UPDATE outputs SET share=? WHERE job_id=? AND name=?",
                                 (np.ascontiguousarray(share, dtype="<u8").tobytes(), job_id, output))
            assert cur.rowcount == 1

    def tamper_output_share(self, org: str, job_id: str, output: str, delta: int = 1) -> None:
        share = self.output_share(org, job_id, output)
        self.set_output_share(org, job_id, output, F.add(share, F.asfield(np.full(share.shape, delta))))

    def stored_jobs(self, org: str) -> dict[str, str]:
        """job id -> state in the node's SQLite store."""
        with contextlib.closing(sqlite3.connect(self.data_dir(org) / "shares.sqlite3", timeout=10)) as db:
            return dict(db.execute("SELECT job_id, state FROM jobs").fetchall())

    def stored_job(self, org: str, job_id: str) -> tuple[str, bool] | None:
        """(state, committed) of the job in the node's SQLite store; None if it has no such job."""
        with contextlib.closing(sqlite3.connect(self.data_dir(org) / "shares.sqlite3", timeout=10)) as db:
            row = db.execute("SELECT state, committed FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return (row[0], bool(row[1])) if row else None

    def stored_outputs(self, org: str, job_id: str) -> int:
        with contextlib.closing(sqlite3.connect(self.data_dir(org) / "shares.sqlite3", timeout=10)) as db:
            return db.execute("SELECT COUNT(*) FROM outputs WHERE job_id=?", (job_id,)).fetchone()[0]


def write_input_file(input_root: Path, sc: AnyScenario, org: str, value: object) -> Path:
    path = input_root / sc.name / f"{org}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = value if isinstance(value, dict) else {sc.input.name: value}  # type: ignore[union-attr]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def rpc_code(call) -> grpc.StatusCode:
    """The status code an RPC ends with (OK when it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK
