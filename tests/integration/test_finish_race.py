"""A job's outcome when a node dies (or a second coordinator steps in) just as the job finishes.

The coordinator decides each job once: it records DONE or FAILED in its database, then tells the
nodes (Commit or Abort) until every one of them has answered, also across restarts of either side.
A node releases a finished job's outputs only once committed, withdraws them on Abort only while
not committed, and refuses Abort after Commit. Each test below makes the race happen on purpose,
by routing the coordinator's calls to the nodes through a hook that kills a node, or withholds an
answer, at the exact moment that matters (no sleeps decide the order):

1. a node dies the moment it finishes, before the coordinator sees it finished: the coordinator
   decides FAILED and aborts the others; the node comes back DONE (after the coordinator itself
   was restarted) and is made to withdraw, so no node keeps outputs of a failed job;
2. a node dies after the coordinator saw every node finish, before its Commit arrives: the job is
   DONE, a late Abort cannot withdraw it, and the node is committed when it is back;
3. two coordinators (one restarted and re-attached while the first still runs, on one database)
   watch the job as it finishes: the first sees it finish and decides DONE, the second cannot reach
   one node and would fail the job; it adopts DONE instead of aborting a job reported DONE (before
   the fix it withdrew the outputs: "coordinator says DONE, nodes say aborted after it finished").

Nodes run with rpc_timeout_s = 3 and the coordinators with rpc_timeout_s = 2, so an unreachable
node is given up on within seconds.
"""
from __future__ import annotations

import asyncio
import contextlib
import sqlite3

import grpc
import pytest

from coordinator.deploy import free_ports
from coordinator.scheduler import Scheduler
from mpcnode.recipient import FetchError
from mpcnode.transport.tls import secure_channel
from parley.v1 import node_pb2, node_pb2_grpc
from tests.integration.cluster import Cluster

ORGS = ["fr-a", "fr-b", "fr-c"]
READER = "fr-reader"
AMOUNTS = {"fr-a": 5, "fr-b": 70, "fr-c": 900}
COORD_RPC_TIMEOUT_S = 2.0
SCENARIO = {"name": "fr-total", "kind": "total", "parties": ORGS, "protocol": "shamir", "recipients": [READER],
            "input": {"name": "amount", "range": [0, 1000]}, "timeout_s": 30}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = Cluster.create(tmp_path_factory.mktemp("finish-race"), [SCENARIO], {"fr-total": AMOUNTS},
                       node_overrides={o: {"round_timeout_s": 6.0, "rpc_timeout_s": 3.0} for o in ORGS})
    with c.running():
        yield c


@pytest.fixture
def revive(cluster: Cluster):
    yield
    for org in ORGS:
        cluster.restart(org)


def coordinator(cluster: Cluster, db, **config):
    """An in-process coordinator (Scheduler) on database `db`, watching closely."""
    return cluster.local_coordinator(database=db, rpc_timeout_s=COORD_RPC_TIMEOUT_S, poll_interval_s=0.05, **config)


def submit(cluster: Cluster, sched: Scheduler) -> str:
    path = cluster.scenarios["fr-total"][0]
    return sched.submit(path.read_text(), str(path))[0]


def route(sched: Scheduler, hook) -> None:
    """Send each of the scheduler's calls to the nodes through `hook(org, method, call)`, where
    `call()` makes the real call (the way a test stands between the coordinator and a node)."""
    real = sched._call

    async def _call(org, method, request, **kw):
        return await hook(org, method, lambda: real(org, method, request, **kw))
    sched._call = _call


async def until(predicate, timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"waited {timeout:g}s for {what}") from None


def node_row(cluster: Cluster, org: str, job_id: str) -> tuple[str, int] | None:
    """(state, committed) in the node's store."""
    with contextlib.closing(sqlite3.connect(cluster.data_dir(org) / "shares.sqlite3", timeout=10)) as db:
        return db.execute("SELECT state, committed FROM jobs WHERE job_id=?", (job_id,)).fetchone()


async def abort_as_coordinator(cluster: Cluster, org: str, job_id: str) -> grpc.StatusCode:
    async with secure_channel(cluster.deployment.addresses[org], org, cluster.tls("coordinator")) as ch:
        try:
            await node_pb2_grpc.NodeControlStub(ch).Abort(node_pb2.JobRef(job_id=job_id), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def assert_done_everywhere(cluster: Cluster, job_id: str) -> None:
    for org in ORGS:
        assert node_row(cluster, org, job_id) == ("DONE", 1), (org, node_row(cluster, org, job_id))
        assert cluster.stored_outputs(org, job_id) == 1, org


async def test_node_killed_as_it_finishes_ends_failed_like_the_coordinator(cluster: Cluster, tmp_path,
                                                                          revive) -> None:
    victim = "fr-c"
    killed = asyncio.Event()

    async def die_on_finishing(org, method, call):
        if org == victim and method == "Status" and not killed.is_set():
            reply = await call()
            if reply.state == node_pb2.JOB_STATE_DONE:
                # it finished: it dies now, and the coordinator never gets this answer
                await asyncio.to_thread(cluster.kill, victim)
                killed.set()
                return await call()   # fails: nobody answers any more
            return reply
        return await call()

    db = tmp_path / "coordinator.sqlite3"
    async with coordinator(cluster, db) as (sched, _):
        route(sched, die_on_finishing)
        job_id = submit(cluster, sched)
        live = sched.live[job_id]
        await until(lambda: live.state in ("DONE", "FAILED"), 30, "the coordinator to decide")
        assert killed.is_set()
        assert live.state == "FAILED" and f"node {victim} is unreachable" in live.error, live.error
        for org in ORGS[:2]:   # told at once: outputs withdrawn
            assert node_row(cluster, org, job_id)[0] == "FAILED" and cluster.stored_outputs(org, job_id) == 0, org
        assert sched.store.get(job_id).unsettled_nodes() == [victim]
    # that coordinator is gone before it could tell the victim, which now comes back DONE
    await asyncio.to_thread(cluster.restart, victim)
    assert node_row(cluster, victim, job_id) == ("DONE", 0)
    with pytest.raises(FetchError, match="not yet confirmed by the coordinator"):   # and releases nothing
        await cluster.fetch(job_id, "total", READER, nodes={victim: cluster.deployment.addresses[victim]})
    async with coordinator(cluster, db) as (sched, _):
        sched.recover()   # a restarted coordinator tells what it decided to the nodes not yet told
        await until(lambda: node_row(cluster, victim, job_id)[0] == "FAILED", 15, "the victim to be aborted")
        await until(lambda: not sched.store.get(job_id).unsettled, 5, "the decision to be settled")
    assert cluster.stored_outputs(victim, job_id) == 0
    with pytest.raises(FetchError):
        await cluster.fetch(job_id, "total", READER)


async def test_node_killed_before_its_commit_keeps_the_job_done(cluster: Cluster, tmp_path, revive) -> None:
    victim = "fr-b"
    killed = asyncio.Event()

    async def die_before_commit(org, method, call):
        if org == victim and method == "Commit" and not killed.is_set():
            await asyncio.to_thread(cluster.kill, victim)   # it finished, and dies before it hears DONE
            killed.set()
        return await call()

    async with coordinator(cluster, tmp_path / "coordinator.sqlite3") as (sched, _):
        route(sched, die_before_commit)
        job_id = submit(cluster, sched)
        live = sched.live[job_id]
        await until(lambda: live.state in ("DONE", "FAILED"), 30, "the coordinator to decide")
        assert killed.is_set()
        assert live.state == "DONE", live.error
        with pytest.raises(FetchError, match=f"missing: {victim}"):    # the victim is down: fails closed
            await cluster.fetch(job_id, "total", READER)
        res = await cluster.fetch(job_id, "total", READER, accept_unchecked=True)
        assert res.value == sum(AMOUNTS.values()) and not res.checked
        # an Abort now (late, or sent with the coordinator's certificate by anyone) changes nothing
        for org in ORGS:
            if org != victim:
                assert await abort_as_coordinator(cluster, org, job_id) == grpc.StatusCode.FAILED_PRECONDITION
        assert node_row(cluster, victim, job_id) == ("DONE", 0)
        await asyncio.to_thread(cluster.restart, victim)
        await until(lambda: node_row(cluster, victim, job_id) == ("DONE", 1), 15, "the victim to be committed")
        await until(lambda: not sched.store.get(job_id).unsettled, 5, "the decision to be settled")
    assert await abort_as_coordinator(cluster, victim, job_id) == grpc.StatusCode.FAILED_PRECONDITION
    assert_done_everywhere(cluster, job_id)
    only_victim_and_a = {o: cluster.deployment.addresses[o] for o in (victim, "fr-a")}
    res = await cluster.fetch(job_id, "total", READER, nodes=only_victim_and_a, accept_unchecked=True)
    assert res.value == sum(AMOUNTS.values()) and not res.checked
    assert (await cluster.fetch(job_id, "total", READER)).checked


async def test_a_second_coordinator_adopts_done_instead_of_aborting(cluster: Cluster, tmp_path) -> None:
    far = "fr-a"
    release = asyncio.Event()
    second_lost_far = asyncio.Event()

    async def hold_done(org, method, call):
        reply = await call()
        if method == "Status" and reply.state == node_pb2.JOB_STATE_DONE:
            await release.wait()   # the first coordinator sees the job finish only when the test says so
        return reply

    async def note_far_down(org, method, call):
        try:
            return await call()
        except grpc.aio.AioRpcError:
            if org == far and method == "Status":
                second_lost_far.set()
            raise

    db = tmp_path / "coordinator.sqlite3"
    unreachable = {**cluster.deployment.addresses, far: f"127.0.0.1:{free_ports(1)[0]}"}   # nothing listens
    try:
        async with coordinator(cluster, db) as (first, _):
            route(first, hold_done)
            job_id = submit(cluster, first)
            live = first.live[job_id]
            first.recover()   # called again while it runs the job: no second task takes the job over
            assert first.live[job_id] is live
            await until(lambda: all((node_row(cluster, o, job_id) or ("",))[0] == "DONE" for o in ORGS), 30,
                        "every node to finish")
            # a second coordinator on the same database re-attaches, and cannot reach fr-a
            async with coordinator(cluster, db, nodes=unreachable) as (second, _):
                route(second, note_far_down)
                second.recover()
                await asyncio.wait_for(second_lost_far.wait(), 10)
                release.set()
                await until(lambda: live.state in ("DONE", "FAILED"), 10, "the first coordinator to decide")
                assert live.state == "DONE", live.error
                # long enough for the second to give fr-a up (rpc_timeout_s) and, before the fix, abort
                await until(lambda: second.live[job_id].state in ("DONE", "FAILED"), COORD_RPC_TIMEOUT_S + 5,
                            "the second coordinator to decide")
                await asyncio.sleep(COORD_RPC_TIMEOUT_S + 0.5)
                assert second.live[job_id].state == "DONE", second.live[job_id].error
                assert first.store.get(job_id).state == "DONE"
    finally:
        release.set()
    assert_done_everywhere(cluster, job_id)
    assert (await cluster.fetch(job_id, "total", READER)).value == sum(AMOUNTS.values())


def test_all_processes_survived(cluster: Cluster) -> None:
    cluster.assert_alive()
