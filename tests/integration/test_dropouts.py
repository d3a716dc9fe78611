"""n = 5 with one node stopped at each phase (docs/fault-tolerance.md):

* before the job (prepare): the job runs among the other four, if the stopped node owns no
  input and enough parties remain (t+1 for linear circuits, 2t+1 with products);
* during the client input window: the coordinator closes inputs without it; ballots that
  reached every remaining node count;
* during the computation: the job fails cleanly, naming the node, with no output stored;
* after completion: recipients reconstruct from the remaining nodes (any t+1).
"""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from coordinator import processes
from mpcnode.computation.builder import CircuitBuilder
from coordinator.config import CoordinatorConfig
from coordinator.jobplan import JobPlan
from coordinator.scheduler import Scheduler
from mpcnode.client import SubmitError, submit as client_submit
from tests.integration.cluster import Cluster, run_sync

PARTIES = ["drop-a", "drop-b", "drop-c", "drop-d", "drop-e"]
READER = "drop-reader"
VOTERS = [f"dv-{i:03d}" for i in range(1, 13)]
TOTAL = {"name": "drop-total", "kind": "total", "parties": PARTIES, "contributors": PARTIES[:4],
         "input": {"name": "amount", "range": [-(10 ** 12), 10 ** 12]}, "recipients": [READER], "timeout_s": 60}
VOTE = {"name": "drop-vote", "kind": "vote", "parties": PARTIES, "threshold": 1,
        "vote": {"options": ["x", "y", "z"], "output": "tally"},
        "voters": VOTERS, "recipients": [READER], "timeout_s": 60}
AMOUNTS = {"drop-a": 123_456_789, "drop-b": -98_765, "drop-c": 5_000_000_000, "drop-d": 42}


def chain_plan() -> JobPlan:
    """A long chain of products on drop-a's amount (read from its drop-total dataset)."""
    b = CircuitBuilder("drop-chain")
    x = b.input("amount", "drop-a", 1, -(10 ** 12), 10 ** 12, dataset="drop-total")
    z = b.repeat(b.scale(b.sub(x, x), 0), 200_000)   # zeros; times 0 so the wrap check knows it too
    for _ in range(60):
        z = z * z
    b.output("zero", b.sum(z), [READER])
    return JobPlan("drop-total", b.build(), PARTIES, 2, 60)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster.create(tmp_path_factory.mktemp("drop"), [TOTAL, VOTE], inputs={"drop-total": AMOUNTS},
                       approve={o: [chain_plan().computation.fingerprint()] for o in PARTIES},
                       node_overrides={o: {"round_timeout_s": 8.0, "rpc_timeout_s": 5.0} for o in PARTIES})
    with c.running():
        yield c


def restart(cluster: Cluster, org: str) -> None:
    if cluster.procs[org].poll() is None:
        return
    proc = processes.start_node(cluster.deployment.node_configs[org], cluster.log(org))
    cluster.procs[org] = proc
    run_sync(processes.wait_node_ready(org, cluster.deployment.addresses[org], cluster.tls("operator"), proc,
                                       log=cluster.log(org)))


@pytest.fixture
def stop_e(cluster):
    yield lambda: processes.kill(cluster.procs["drop-e"])
    restart(cluster, "drop-e")


def ballot(k: int) -> list[int]:
    return [int(j == k % 3) for j in range(3)]


async def cast(cluster: Cluster, job_id: str, voters: list[str]) -> None:
    nodes = cluster.nodes_of("drop-vote")
    await asyncio.gather(*(client_submit(job_id, "ballots", ballot(VOTERS.index(v)), nodes, cluster.tls(v),
                                       cluster.fingerprint("drop-vote"))
                           for v in voters))


def tally(voters: list[str]) -> dict:
    counts = np.sum([ballot(VOTERS.index(v)) for v in voters], axis=0)
    return {"x": int(counts[0]), "y": int(counts[1]), "z": int(counts[2]), "invalid": 0}


async def test_node_down_before_the_job(cluster, stop_e) -> None:
    stop_e()
    final = await cluster.run("drop-total")
    res = await cluster.fetch(final.job_id, "total", READER)
    assert res.value == sum(AMOUNTS.values()) and res.checked    # four of five answer: t + 2 = 3 suffice
    assert "drop-e" not in res.nodes
    # a circuit with products needs 2t+1 = 3 of the 5 with t = 1: four remain
    job_id = await cluster.submit("drop-vote")
    await cluster.wait_running("drop-a", job_id)
    await cast(cluster, job_id, VOTERS)
    from coordinator.client import close_inputs
    await close_inputs(cluster.deployment.coordinator_address, cluster.tls("operator"), job_id)
    final = await cluster.watch(job_id)
    assert final.state == "DONE", final.error
    assert (await cluster.fetch(job_id, "tally", READER)).value == tally(VOTERS)


async def test_node_down_during_the_input_window(cluster, stop_e) -> None:
    from coordinator.client import close_inputs

    job_id = await cluster.submit("drop-vote")
    await cluster.wait_running("drop-a", job_id)
    early, late = VOTERS[:7], VOTERS[7:]
    await cast(cluster, job_id, early)
    stop_e()
    with pytest.raises(SubmitError, match="drop-e"):
        await cast(cluster, job_id, late[:1])   # a live node is gone: the client is told, nothing counts half
    await close_inputs(cluster.deployment.coordinator_address, cluster.tls("operator"), job_id)
    final = await cluster.watch(job_id)
    assert final.state == "DONE", final.error
    assert (await cluster.fetch(job_id, "tally", READER)).value == tally(early)


async def test_node_killed_during_the_computation_fails_cleanly(cluster, stop_e) -> None:
    # a long chain of products, scheduled with the coordinator's own scheduler
    certs = cluster.certs
    sched = Scheduler(CoordinatorConfig(listen="127.0.0.1:0", tls={"ca": certs / "ca.pem", "cert": certs / "coordinator.pem",
                                                                   "key": certs / "coordinator.key"},
                                        nodes=cluster.deployment.addresses, database=cluster.root / "chain.sqlite3",
                                        poll_interval_s=0.05, rpc_timeout_s=5.0), cluster.tls("coordinator"))
    try:
        sched.submit_plan("chain-1", chain_plan())
        live = sched.live["chain-1"]
        async with asyncio.timeout(30):
            while live.rounds_done < 4:
                await live.changed.wait()
        started = time.monotonic()
        stop_e()
        async with asyncio.timeout(40):
            while live.state not in ("DONE", "FAILED"):
                await live.changed.wait()
        assert live.state == "FAILED"
        assert "drop-e" in live.error
        assert time.monotonic() - started < 30
    finally:
        await sched.close()
    for org in PARTIES[:4]:
        assert cluster.stored_outputs(org, "chain-1") == 0
        assert (await cluster.node_status(org, "chain-1")).state == 4  # JOB_STATE_FAILED


async def test_node_down_after_completion(cluster, stop_e) -> None:
    final = await cluster.run("drop-total")
    stop_e()
    res = await cluster.fetch(final.job_id, "total", READER)   # asks all five; four answer
    assert res.value == sum(AMOUNTS.values()) and res.checked
    assert res.nodes == sorted(PARTIES[:4])
