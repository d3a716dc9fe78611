"""Deadlines, clean failure and durable state, on a real 3-node deployment (n = 3, t = 1).

(1) Deadlines: every RPC call in the product code passes a deadline (checked in the source), and
    every job has a timeout that the nodes enforce.
(2) A node SIGKILLed in the middle of a computation, or during a client-input window, makes the
    job fail within its timeout, with a reason that names the node. The other nodes report
    FAILED and keep answering; no node stores an output, so no secret can be opened.
(3) A killed and restarted node keeps the output shares of finished jobs and the client input
    shares it accepted, and marks the job it was in the middle of FAILED, with a reason.
(4) A killed and restarted coordinator recovers every job from its database: finished jobs stay
    DONE, running jobs are re-attached and finish, jobs caught between steps are resumed, and a
    job id submitted twice runs once.

Nodes run with round_timeout_s = 8 and the coordinator with rpc_timeout_s = 4, so a missing
node is noticed within seconds instead of the production defaults (60 s / 30 s).
"""
from __future__ import annotations

import ast
import asyncio
import contextlib
import sqlite3
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest

from mpcnode.computation.builder import CircuitBuilder
from coordinator.client import JobFailed, close_inputs, submit as coordinator_submit, watch as coordinator_watch
from coordinator.jobplan import JobPlan
from mpcnode import field as F
from mpcnode import shamir
from mpcnode.computation.spec import Computation
from mpcnode.client import submit as client_submit
from mpcnode.recipient import FetchError
from mpcnode.store import ShareStore
from mpcnode.transport.tls import secure_channel
from parley.v1 import coordinator_pb2, node_pb2, node_pb2_grpc
from tests.integration.cluster import REPO, Cluster

THREE = ["ash", "birch", "cedar"]
READER = "reader"
VOTERS = [f"fv-{i:02d}" for i in range(1, 9)]
AMOUNTS = {"ash": 7_000_000_001, "birch": -42, "cedar": 123_456}
ROUND_TIMEOUT_S = 8.0
COORD_RPC_TIMEOUT_S = 4.0

SCENARIOS = [
    {"name": "fault-total", "kind": "total", "parties": THREE, "protocol": "shamir", "recipients": [READER],
     "input": {"name": "amount", "range": [-(10 ** 12), 10 ** 12]}, "timeout_s": 60},
    {"name": "fault-vote", "kind": "vote", "parties": THREE, "protocol": "shamir",
     "vote": {"options": ["x", "y", "z"], "output": "tally"}, "voters": VOTERS,
     "recipients": [READER], "timeout_s": 90},
    {"name": "fault-vote-short", "kind": "vote", "parties": THREE, "protocol": "shamir",
     "vote": {"options": ["x", "y"], "output": "tally"}, "voters": VOTERS, "recipients": [READER], "timeout_s": 4},
]
ORDER = {o: k for k, o in enumerate(THREE)}
ST = node_pb2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    chains = [chain_plan(), chain_plan(levels=25, width=50_000)]   # every product chain the tests run
    c = Cluster.create(tmp_path_factory.mktemp("faults"), SCENARIOS, {"fault-total": AMOUNTS},
                       approve={o: [p.computation.fingerprint() for p in chains] for o in THREE},
                       node_overrides={o: {"round_timeout_s": ROUND_TIMEOUT_S, "rpc_timeout_s": 4.0} for o in THREE},
                       coordinator_overrides={"rpc_timeout_s": COORD_RPC_TIMEOUT_S, "poll_interval_s": 0.1})
    with c.running():
        yield c


@pytest.fixture
def revive(cluster: Cluster):
    """Whatever a test kills is started again afterwards, so every test begins with a full cluster."""
    yield
    for name in [*THREE, "coordinator"]:
        cluster.restart(name)


# ---- helpers --------------------------------------------------------------------------------------

def ballot(voter: str) -> list[int]:
    k = VOTERS.index(voter)
    return [int(j == k % 3) for j in range(3)]


def tally(voters: list[str]) -> dict:
    counts = np.sum([ballot(v) for v in voters], axis=0)
    return {"x": int(counts[0]), "y": int(counts[1]), "z": int(counts[2]), "invalid": 0}


async def cast(cluster: Cluster, job_id: str, voters: list[str]) -> None:
    nodes = cluster.nodes_of("fault-vote")
    await asyncio.gather(*(client_submit(job_id, "ballots", ballot(v), nodes, cluster.tls(v),
                                         cluster.fingerprint("fault-vote")) for v in voters))


async def wait_node_state(cluster: Cluster, org: str, job_id: str, state: int, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                if (await cluster.node_status(org, job_id)).state == state:
                    return
            await asyncio.sleep(0.05)


async def operator_watch(cluster: Cluster, job_id: str, timeout: float = 60) -> coordinator_pb2.JobProgress:
    return await cluster.watch(job_id, timeout)


def stored_client_shares(cluster: Cluster, org: str, job_id: str) -> dict[str, np.ndarray]:
    store = ShareStore(cluster.data_dir(org) / "shares.sqlite3")
    try:
        return store.client_shares(job_id, "ballots")
    finally:
        store.close()


def stored_job(cluster: Cluster, org: str, job_id: str) -> tuple[str, str] | None:
    with contextlib.closing(sqlite3.connect(cluster.data_dir(org) / "shares.sqlite3", timeout=10)) as db:
        return db.execute("SELECT state, error FROM jobs WHERE job_id=?", (job_id,)).fetchone()


def prepared_count(cluster: Cluster, org: str, job_id: str) -> int:
    """How many times the node really prepared (admitted) the job, from its log."""
    return cluster.log(org).read_text(errors="replace").count(f"job {job_id} prepared (")


async def assert_failed_cleanly(cluster: Cluster, job_id: str, survivors: list[str], culprit: str) -> None:
    for org in survivors:
        st = await cluster.node_status(org, job_id)
        assert st.state == ST.JOB_STATE_FAILED, (org, st)
        assert (await cluster.health(org)).organization == org      # the node still answers
        assert stored_job(cluster, org, job_id)[0] == "FAILED"
    for org in THREE:
        assert cluster.stored_outputs(org, job_id) == 0, org          # nothing was half-written
    with pytest.raises(FetchError):
        await cluster.fetch(job_id, "tally" if "-vote-" in job_id else "zero", READER,
                            nodes={o: cluster.deployment.addresses[o] for o in survivors})


# ---- (1) deadlines ------------------------------------------------------------------------------------

def _rpc_names() -> set[str]:
    from parley.v1 import coordinator_pb2 as cop, node_pb2 as npb

    return {m.name for mod in (npb, cop) for svc in mod.DESCRIPTOR.services_by_name.values() for m in svc.methods}


def test_every_rpc_call_passes_a_deadline() -> None:
    """Every call of a gRPC method (stub.Method(...), or getattr(stub, name)(...)) in the product code
    passes timeout=..., so no call can wait forever on a peer that stopped answering.

    The one exception is PeerExchange.Link, a stream that lives as long as the link between two
    nodes: it is opened in one place only (transport/outbound.py), the wait for its first notice
    has a deadline, and so does every message written on it (its round's)."""
    names = _rpc_names()
    assert {"Link", "Prepare", "Start", "Status", "FetchOutput", "SubmitShare", "Watch", "Submit"} <= names
    opened = [p.relative_to(REPO).as_posix() for folder in ("mpcnode", "coordinator")
              for p in (REPO / folder).rglob("*.py") if "stream_stream(LINK_METHOD" in p.read_text()]
    assert opened == ["mpcnode/transport/outbound.py"], opened
    assert "asyncio.wait_for(call.read(), wait)" in (REPO / "mpcnode/transport/outbound.py").read_text()
    calls, missing = 0, []
    for folder in ("mpcnode", "coordinator", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                f = node.func
                is_rpc = (isinstance(f, ast.Attribute) and f.attr in names) or (
                    isinstance(f, ast.Call) and isinstance(f.func, ast.Name) and f.func.id == "getattr"
                    and any(isinstance(a, ast.Attribute) and a.attr in ("stub",) or
                            isinstance(a, ast.Call) and isinstance(a.func, ast.Attribute) and a.func.attr == "stub"
                            for a in f.args))
                if not is_rpc:
                    continue
                calls += 1
                kw = {k.arg: k.value for k in node.keywords}
                if "timeout" not in kw or (isinstance(kw["timeout"], ast.Constant) and kw["timeout"].value is None):
                    missing.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert calls >= 8, calls   # the scan finds the calls it is meant to check (12 today)
    assert not missing, f"RPC calls without a deadline: {missing}"


async def test_a_job_without_a_timeout_is_refused(cluster: Cluster) -> None:
    b = CircuitBuilder("fault-total")
    x = b.input("amount@ash", "ash", 1, -(10 ** 12), 10 ** 12, key="amount")
    b.output("total", b.sum(x), [READER])
    circuit = b.build()
    for timeout in (0.0, -1.0, 24 * 3600 + 1):
        spec = Computation(circuit, tuple(THREE), 1).job_spec(f"no-timeout-{uuid.uuid4().hex[:6]}", timeout)
        async with secure_channel(cluster.deployment.addresses["ash"], "ash", cluster.tls("coordinator")) as ch:
            reply = await node_pb2_grpc.NodeControlStub(ch).Prepare(spec, timeout=10)
        assert not reply.accepted and "timeout must be between 0 and 24 hours" in reply.reason


async def test_a_job_that_outlives_its_timeout_fails_with_that_reason(cluster: Cluster) -> None:
    """Nobody closes the input window: the nodes give up after the job's 4 s timeout."""
    started = time.monotonic()
    final = await cluster.run("fault-vote-short", expect="FAILED", timeout=40)
    assert time.monotonic() - started < 25
    assert "job timed out after 4s" in final.error, final.error
    for org in THREE:
        st = await cluster.node_status(org, final.job_id)
        assert st.state == ST.JOB_STATE_FAILED and "timed out" in st.error, (org, st)
        assert cluster.stored_outputs(org, final.job_id) == 0


# ---- (2) a node killed mid-job ----------------------------------------------------------------------

def chain_plan(levels: int = 60, width: int = 150_000) -> JobPlan:
    """A long chain of products (one interactive round per level); the result is 0."""
    b = CircuitBuilder("fault-chain")   # reads ash's fault-total dataset; the nodes approve it by fingerprint
    x = b.input("amount@ash", "ash", 1, -(10 ** 12), 10 ** 12, key="amount", dataset="fault-total")
    z = b.repeat(b.scale(b.sub(x, x), 0), width)   # zeros; times 0 so the wrap check knows it too
    for _ in range(levels):
        z = z * z
    b.output("zero", b.dot(z, z), [READER])
    return JobPlan("fault-total", b.build(), THREE, 1, 60)


async def test_node_killed_mid_computation_fails_cleanly_and_names_it(cluster: Cluster, revive) -> None:
    """The coordinator here waits the production default (30 s) before it calls a silent node gone,
    so it is the surviving nodes that notice first: the killed node's Link streams end, the rounds
    waiting for it fail at once (before their deadline, round_timeout_s), each survivor fails naming
    the missing node, and the coordinator reports their reasons."""
    victim, survivors = "birch", ["ash", "cedar"]
    async with cluster.local_coordinator(rpc_timeout_s=30.0, poll_interval_s=0.05) as (sched, addr):
        job_id = f"fault-total-chain-{uuid.uuid4().hex[:6]}"
        sched.submit_plan(job_id, chain_plan())
        live = sched.live[job_id]
        async with asyncio.timeout(40):
            while live.rounds_done < 4:
                assert live.state not in ("DONE", "FAILED"), live.error
                await live.changed.wait()
        cluster.kill(victim)
        killed_at = time.monotonic()
        seen: list[coordinator_pb2.JobProgress] = []
        with pytest.raises(JobFailed):
            await coordinator_watch(addr, cluster.tls("operator"), job_id, seen.append, timeout=60)
        took = time.monotonic() - killed_at
        final = seen[-1]
    assert final.state == "FAILED"
    assert victim in final.error, final.error
    assert final.rounds_done >= 4                     # it really was in the middle
    assert took < 60, took                            # within the job's timeout ...
    assert took < ROUND_TIMEOUT_S, took               # ... and before any round deadline (measured: 0.05 s)
    # the first survivor to notice names the node; the coordinator reports that and aborts the rest
    errors = {org: (await cluster.node_status(org, job_id)).error for org in survivors}
    naming = {org: e for org, e in errors.items() if f"waiting for {victim}" in e or f"to {victim}:" in e}
    assert naming, errors
    assert all(f"{org}: {e}" in final.error for org, e in naming.items()), (naming, final.error)
    assert all(e == "aborted by coordinator" for org, e in errors.items() if org not in naming), errors
    await assert_failed_cleanly(cluster, job_id, survivors, victim)
    # the killed node's disk: the job is still marked running (it died), without any output
    assert stored_job(cluster, victim, job_id)[0] == "RUNNING"
    # after a restart it marks the interrupted job FAILED, saying why
    cluster.restart(victim)
    st = await cluster.node_status(victim, job_id)
    assert st.state == ST.JOB_STATE_FAILED
    assert st.error == f"node {victim} restarted while the job was running"
    assert stored_job(cluster, victim, job_id) == ("FAILED", st.error)
    assert cluster.stored_outputs(victim, job_id) == 0


async def test_node_killed_during_the_input_window_fails_the_job_and_names_it(cluster: Cluster, revive) -> None:
    victim, survivors = "cedar", ["ash", "birch"]
    job_id = await cluster.submit("fault-vote")
    for org in THREE:
        await wait_node_state(cluster, org, job_id, ST.JOB_STATE_RUNNING)
    await cast(cluster, job_id, VOTERS[:4])
    cluster.kill(victim)
    killed_at = time.monotonic()
    # the operator closes the window as usual; with n = 3 and products (2t+1 = 3) the job cannot run on two
    await close_inputs(cluster.deployment.coordinator_address, cluster.tls("operator"), job_id)
    final = await operator_watch(cluster, job_id)
    took = time.monotonic() - killed_at
    assert final.state == "FAILED"
    assert victim in final.error, final.error
    assert took < 90 and took < ROUND_TIMEOUT_S + 15, took
    await assert_failed_cleanly(cluster, job_id, survivors, victim)


async def test_node_killed_during_the_input_window_without_close(cluster: Cluster, revive) -> None:
    """Nobody closes the window: the coordinator notices the node is gone (rpc_timeout_s) and fails the
    job, naming it, long before the job's 90 s timeout."""
    victim, survivors = "ash", ["birch", "cedar"]
    job_id = await cluster.submit("fault-vote")
    for org in THREE:
        await wait_node_state(cluster, org, job_id, ST.JOB_STATE_RUNNING)
    cluster.kill(victim)
    killed_at = time.monotonic()
    final = await operator_watch(cluster, job_id)
    took = time.monotonic() - killed_at
    assert final.state == "FAILED"
    assert f"node {victim} is unreachable" in final.error, final.error
    assert took < COORD_RPC_TIMEOUT_S + 15, took
    for org in survivors:
        st = await cluster.node_status(org, job_id)
        assert st.state == ST.JOB_STATE_FAILED and st.error == "aborted by coordinator", st
    await assert_failed_cleanly(cluster, job_id, survivors, victim)


# ---- (3) node restarts: durable shares ---------------------------------------------------------------

async def test_restarted_node_keeps_its_output_shares(cluster: Cluster, revive) -> None:
    final = await cluster.run("fault-total")
    before = {o: cluster.output_share(o, final.job_id, "total") for o in THREE}
    assert (await cluster.fetch(final.job_id, "total", READER)).value == sum(AMOUNTS.values())
    cluster.kill("ash")
    cluster.restart("ash")
    assert stored_job(cluster, "ash", final.job_id) == ("DONE", "")
    assert (await cluster.node_status("ash", final.job_id)).state == ST.JOB_STATE_DONE
    for org in THREE:
        assert np.array_equal(cluster.output_share(org, final.job_id, "total"), before[org])
    result = await cluster.fetch(final.job_id, "total", READER)
    assert result.value == sum(AMOUNTS.values()) and result.nodes == THREE
    # ash's share alone together with one other (t + 1 = 2) still opens it, unchecked, when asked to
    two = {o: cluster.deployment.addresses[o] for o in ("ash", "cedar")}
    unchecked = await cluster.fetch(final.job_id, "total", READER, nodes=two, accept_unchecked=True)
    assert unchecked.value == sum(AMOUNTS.values()) and not unchecked.checked


async def test_restarted_node_keeps_accepted_client_shares_and_fails_the_open_job(cluster: Cluster,
                                                                                   revive) -> None:
    victim = "cedar"
    job_id = await cluster.submit("fault-vote")
    for org in THREE:
        await wait_node_state(cluster, org, job_id, ST.JOB_STATE_RUNNING)
    voters = VOTERS[:5]
    await cast(cluster, job_id, voters)          # every node acknowledged every ballot
    cluster.kill(victim)
    on_disk = stored_client_shares(cluster, victim, job_id)   # straight after SIGKILL
    cluster.restart(victim)
    kept = stored_client_shares(cluster, victim, job_id)
    assert sorted(kept) == sorted(voters) and sorted(on_disk) == sorted(voters)
    # the kept shares are the real ones: with any other node's they reconstruct every ballot
    for org in ("ash", "birch"):
        other = stored_client_shares(cluster, org, job_id)
        for v in voters:
            shares = {ORDER[victim]: kept[v], ORDER[org]: other[v]}
            assert F.to_signed(shamir.reconstruct(shares)).tolist() == ballot(v)
    # the job it was in the middle of is FAILED on it, with the reason, and the coordinator says so
    st = await cluster.node_status(victim, job_id)
    assert st.state == ST.JOB_STATE_FAILED
    assert st.error == f"node {victim} restarted while the job was running"
    final = await operator_watch(cluster, job_id)
    assert final.state == "FAILED" and victim in final.error, final.error
    assert sorted(stored_client_shares(cluster, victim, job_id)) == sorted(voters)
    for org in THREE:
        assert cluster.stored_outputs(org, job_id) == 0


# ---- (4) coordinator restarts ---------------------------------------------------------------------------

def coordinator_db(cluster: Cluster) -> Path:
    return cluster.deployment.workdir / "coordinator.sqlite3"


async def test_finished_job_survives_a_coordinator_restart_and_runs_once(cluster: Cluster, revive) -> None:
    job_id = f"fault-total-once-{uuid.uuid4().hex[:6]}"
    path = cluster.scenarios["fault-total"][0]
    address, operator = cluster.deployment.coordinator_address, cluster.tls("operator")
    assert await coordinator_submit(address, operator, path, job_id) == (job_id, True)
    final = await operator_watch(cluster, job_id)
    assert final.state == "DONE"
    assert await coordinator_submit(address, operator, path, job_id) == (job_id, False)
    cluster.kill("coordinator")
    cluster.restart("coordinator")
    again = await operator_watch(cluster, job_id)
    assert again.state == "DONE" and again.error == "" and again.scenario == "fault-total"
    assert await coordinator_submit(address, operator, path, job_id) == (job_id, False)
    assert (await operator_watch(cluster, job_id)).state == "DONE"
    for org in THREE:
        assert prepared_count(cluster, org, job_id) == 1, org   # the nodes saw one job
        assert cluster.stored_jobs(org)[job_id] == "DONE"
    assert (await cluster.fetch(job_id, "total", READER)).value == sum(AMOUNTS.values())


async def test_the_same_id_submitted_concurrently_runs_once(cluster: Cluster) -> None:
    job_id = f"fault-total-twice-{uuid.uuid4().hex[:6]}"
    path = cluster.scenarios["fault-total"][0]
    address, operator = cluster.deployment.coordinator_address, cluster.tls("operator")
    replies = await asyncio.gather(*(coordinator_submit(address, operator, path, job_id) for _ in range(6)))
    assert sorted(created for _, created in replies) == [False] * 5 + [True]
    assert {got for got, _ in replies} == {job_id}
    assert (await operator_watch(cluster, job_id)).state == "DONE"
    for org in THREE:
        assert prepared_count(cluster, org, job_id) == 1, org
    assert (await cluster.fetch(job_id, "total", READER)).value == sum(AMOUNTS.values())


async def test_running_job_is_reattached_after_a_coordinator_restart(cluster: Cluster, revive) -> None:
    job_id = await cluster.submit("fault-vote")
    for org in THREE:
        await wait_node_state(cluster, org, job_id, ST.JOB_STATE_RUNNING)
    await cast(cluster, job_id, VOTERS[:6])
    cluster.kill("coordinator")
    cluster.restart("coordinator")
    progress = await asyncio.wait_for(_first_progress(cluster, job_id), 20)
    assert progress.state == "RUNNING", progress
    await cast(cluster, job_id, VOTERS[6:])     # the window is still open
    await close_inputs(cluster.deployment.coordinator_address, cluster.tls("operator"), job_id)
    final = await operator_watch(cluster, job_id)
    assert final.state == "DONE", final.error
    assert (await cluster.fetch(job_id, "tally", READER)).value == tally(VOTERS)
    for org in THREE:
        assert prepared_count(cluster, org, job_id) == 1, org


async def _first_progress(cluster: Cluster, job_id: str) -> coordinator_pb2.JobProgress:
    from parley.v1 import coordinator_pb2_grpc as copg

    async with secure_channel(cluster.deployment.coordinator_address, "coordinator", cluster.tls("operator")) as ch:
        async for p in copg.CoordinatorStub(ch).Watch(coordinator_pb2.WatchRequest(job_id=job_id), timeout=20):
            return p
    raise AssertionError("no progress")


def _spec_for(cluster: Cluster, scenario: str, job_id: str) -> node_pb2.JobSpec:
    """The JobSpec the coordinator itself sends for this scenario."""
    plan = JobPlan.of(cluster.scenarios[scenario][1])
    return plan.computation.job_spec(job_id, plan.timeout_s)


def _insert_job(cluster: Cluster, job_id: str, scenario: str, state: str) -> None:
    path = cluster.scenarios[scenario][0]
    now = time.time()
    with contextlib.closing(sqlite3.connect(coordinator_db(cluster), timeout=10)) as db:
        with db:
            db.execute("INSERT INTO jobs (job_id, scenario, scenario_path, scenario_yaml, state, created, updated)"
                       " VALUES (?,?,?,?,?,?,?)", (job_id, scenario, str(path), path.read_text(), state, now, now))


async def test_jobs_caught_between_steps_are_resumed_after_a_coordinator_restart(cluster: Cluster,
                                                                                  revive) -> None:
    """The coordinator dies (SIGKILL) at each step boundary; its database row is all that is left.
    Recreated exactly: the row, plus the Prepare/Start calls that had already reached nodes."""
    cluster.kill("coordinator")
    tag = uuid.uuid4().hex[:6]
    pending, preparing, started = (f"fault-total-{s}-{tag}" for s in ("pending", "preparing", "starting"))
    _insert_job(cluster, pending, "fault-total", "PENDING")          # recorded, nothing sent yet
    _insert_job(cluster, preparing, "fault-total", "PREPARING")      # died after Prepare reached ash only
    _insert_job(cluster, started, "fault-total", "RUNNING")          # died after Start reached ash only
    async with secure_channel(cluster.deployment.addresses["ash"], "ash", cluster.tls("coordinator")) as ch:
        assert (await node_pb2_grpc.NodeControlStub(ch).Prepare(_spec_for(cluster, "fault-total", preparing),
                                                                timeout=10)).accepted
    for org in THREE:
        async with secure_channel(cluster.deployment.addresses[org], org, cluster.tls("coordinator")) as ch:
            assert (await node_pb2_grpc.NodeControlStub(ch).Prepare(_spec_for(cluster, "fault-total", started),
                                                                    timeout=10)).accepted
    async with secure_channel(cluster.deployment.addresses["ash"], "ash", cluster.tls("coordinator")) as ch:
        await node_pb2_grpc.NodeControlStub(ch).Start(node_pb2.JobRef(job_id=started), timeout=10)
    cluster.restart("coordinator")
    for job_id in (pending, preparing, started):
        final = await operator_watch(cluster, job_id)
        assert final.state == "DONE", (job_id, final.error)
        assert (await cluster.fetch(job_id, "total", READER)).value == sum(AMOUNTS.values())
        for org in THREE:
            assert prepared_count(cluster, org, job_id) == 1, (job_id, org)


async def test_coordinator_killed_right_after_submit_loses_no_job(cluster: Cluster, revive) -> None:
    """Killed wherever it happens to be (recording, preparing, starting, running): every job ends DONE."""
    address, operator = cluster.deployment.coordinator_address, cluster.tls("operator")
    path = cluster.scenarios["fault-total"][0]
    ids = [f"fault-total-k{k}-{uuid.uuid4().hex[:6]}" for k in range(4)]
    for k, job_id in enumerate(ids):
        assert (await coordinator_submit(address, operator, path, job_id))[1]
        if k == len(ids) - 1:
            break
        await asyncio.sleep(0.02 * k)
    cluster.kill("coordinator")
    cluster.restart("coordinator")
    for job_id in ids:
        final = await operator_watch(cluster, job_id)
        assert final.state == "DONE", (job_id, final.error)
        assert (await cluster.fetch(job_id, "total", READER)).value == sum(AMOUNTS.values())


async def test_recovered_job_whose_node_restarted_meanwhile_fails_with_the_reason(cluster: Cluster,
                                                                                   revive) -> None:
    job_id = await cluster.submit("fault-vote")
    for org in THREE:
        await wait_node_state(cluster, org, job_id, ST.JOB_STATE_RUNNING)
    cluster.kill("coordinator")
    cluster.kill("birch")
    cluster.restart("birch")
    cluster.restart("coordinator")
    final = await operator_watch(cluster, job_id)
    assert final.state == "FAILED"
    assert "node birch restarted while the job was running" in final.error, final.error
    for org in ("ash", "cedar"):
        st = await cluster.node_status(org, job_id)
        assert st.state == ST.JOB_STATE_FAILED, st
    for org in THREE:
        assert cluster.stored_outputs(org, job_id) == 0


async def test_a_job_built_in_code_is_failed_with_a_reason_after_a_restart(cluster: Cluster, revive) -> None:
    """Circuits submitted in code (Scheduler.submit_plan) have no scenario to rebuild them from."""
    cluster.kill("coordinator")
    job_id = f"code-{uuid.uuid4().hex[:6]}"
    now = time.time()
    with contextlib.closing(sqlite3.connect(coordinator_db(cluster), timeout=10)) as db:
        with db:
            db.execute("INSERT INTO jobs (job_id, scenario, scenario_path, scenario_yaml, state, created, updated)"
                       " VALUES (?,?,?,?,?,?,?)", (job_id, "fault-total", "<circuit>", "", "RUNNING", now, now))
    cluster.restart("coordinator")
    final = await operator_watch(cluster, job_id)
    assert final.state == "FAILED"
    assert final.error == ("coordinator restarted and cannot rebuild the job: "
                           "a job built in code was recorded without its circuit"), final.error


async def test_a_job_built_in_code_is_reattached_by_a_restarted_scheduler(cluster: Cluster) -> None:
    """Scheduler.submit_plan records the circuit itself, so a restarted coordinator can re-attach."""
    db = cluster.root / f"code-{uuid.uuid4().hex[:6]}.sqlite3"
    job_id = f"fault-total-code-{uuid.uuid4().hex[:6]}"
    # plain polling (no held Status replies), so this scheduler sees the rounds progress and can be
    # stopped while the job is still running
    async with cluster.local_coordinator(database=db, poll_interval_s=0.05, status_wait_s=0.0) as (sched, _):
        sched.submit_plan(job_id, chain_plan(levels=25, width=50_000))
        live = sched.live[job_id]
        async with asyncio.timeout(40):
            while live.rounds_done < 3:
                assert live.state not in ("DONE", "FAILED"), live.error
                await live.changed.wait()
    # that scheduler is gone (its tasks cancelled, nothing more written); the job runs on at the nodes
    async with cluster.local_coordinator(database=db, poll_interval_s=0.05) as (sched, addr):
        assert sched.store.get(job_id).state == "RUNNING"
        sched.recover()
        final = await coordinator_watch(addr, cluster.tls("operator"), job_id, lambda p: None, timeout=60)
    assert final.state == "DONE"
    assert (await cluster.fetch(job_id, "zero", READER)).value == 0


def test_all_processes_survived(cluster: Cluster) -> None:
    cluster.assert_alive()
