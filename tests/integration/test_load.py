"""Load: 50 jobs submitted at once to one 3-node deployment (n = 3, t = 1) all finish, each
with the right result for every recipient.

The mix, all in flight together:
* 25 totals and averages over five scenarios with different inputs, through the coordinator process;
* 10 votes (client ballots, validated inside MPC with products), through the coordinator process,
  each job with its own ballots;
* 15 multiplication circuits built with CircuitBuilder (products over two levels and a dot
  product of 20 000-element vectors that the nodes read from .npz input files, with a per-job
  constant), scheduled by the coordinator's own Scheduler in this process (the coordinator
  process only takes scenarios).
Different inputs per job mean a message mixed into the wrong job would show in some result.
"""
from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import numpy as np
import pytest

from mpcnode.computation.builder import CircuitBuilder
from coordinator.client import close_inputs, watch as coordinator_watch
from coordinator.jobplan import JobPlan
from mpcnode.client import submit as client_submit
from parley.v1 import coordinator_pb2 as cop
from parley.v1 import coordinator_pb2_grpc as copg
from mpcnode.transport.tls import secure_channel
from tests.integration.cluster import Cluster

NODES = ["oak", "pine", "elm"]
READERS = ["reader-a", "reader-b"]
VOTERS = [f"lv-{i:02d}" for i in range(1, 13)]
LENGTH = 20_000
B = 1 << 10

_rng = np.random.default_rng(5150)
TOTALS = [f"load-total-{k}" for k in range(3)] + [f"load-average-{k}" for k in range(2)]
AMOUNTS = {name: {o: int(v) for o, v in zip(NODES, _rng.integers(-(1 << 40), 1 << 40, 3))} for name in TOTALS}
VEC = {o: _rng.integers(-B, B, LENGTH).tolist() for o in NODES}

SCENARIOS = [
    *({"name": n, "kind": "total", "parties": NODES, "protocol": "shamir", "recipients": READERS,
       "input": {"name": "amount", "range": [-(1 << 40), 1 << 40]}, "timeout_s": 120} for n in TOTALS[:3]),
    *({"name": n, "kind": "average", "parties": NODES[::-1], "protocol": "shamir", "recipients": READERS[:1],
       "input": {"name": "amount", "range": [-(1 << 40), 1 << 40]}, "timeout_s": 120} for n in TOTALS[3:]),
    {"name": "load-vote", "kind": "vote", "parties": NODES, "protocol": "shamir",
     "vote": {"options": ["a", "b", "c"], "output": "tally"}, "voters": VOTERS,
     "recipients": READERS, "timeout_s": 120},
]
INPUTS = AMOUNTS
MUL = "load-mul"   # not a scenario: the nodes approve each job's circuit by fingerprint; vectors come from .npz
MUL_JOBS = range(15)   # one circuit per k (each adds its own constant)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("load").resolve()
    (root / "npz").mkdir()
    node_cfg = {}
    for o in NODES:   # large node inputs belong in .npz files (YAML is for small ones)
        np.savez(root / "npz" / f"{o}.npz", vec=np.array(VEC[o], dtype=np.int64))
        files = {n: str(root / "inputs" / n / f"{o}.yaml") for n in TOTALS}   # where Cluster.create writes them
        node_cfg[o] = {"inputs": {**files, MUL: str(root / "npz" / f"{o}.npz")}}
    # the scenarios are approved by their files; the product circuits by fingerprint
    approve = {o: [mul_plan(k).computation.fingerprint() for k in MUL_JOBS] for o in NODES}
    c = Cluster.create(root, SCENARIOS, INPUTS, node_overrides=node_cfg, approve=approve)
    with c.running():
        yield c


# ---- one job of each kind, start to verified result ----------------------------------------------------

async def total_job(cluster: Cluster, name: str) -> str:
    final = await cluster.run(name, timeout=120)
    total = sum(AMOUNTS[name].values())
    sc = cluster.scenarios[name][1]
    for reader in sc.recipients:
        assert (await cluster.fetch(final.job_id, "total", reader, timeout=30)).value == total
        if sc.kind == "average":
            assert Fraction((await cluster.fetch(final.job_id, "average", reader, timeout=30)).value) \
                == Fraction(total, 3)
    return final.job_id


def ballot(voter: str, k: int) -> list[int]:
    return [int(j == (VOTERS.index(voter) + k) % 3) for j in range(3)]


async def _wait_running(cluster: Cluster, job_id: str) -> None:
    async with secure_channel(cluster.deployment.coordinator_address, "coordinator", cluster.tls("operator")) as ch:
        async for p in copg.CoordinatorStub(ch).Watch(cop.WatchRequest(job_id=job_id), timeout=120):
            if p.state == "RUNNING":
                return
            assert p.state not in ("DONE", "FAILED"), p.error
    raise AssertionError(f"{job_id} never ran")


async def vote_job(cluster: Cluster, k: int) -> str:
    job_id = await cluster.submit("load-vote", f"load-vote-{k:02d}")
    await _wait_running(cluster, job_id)
    voters = VOTERS[k % 4: k % 4 + 3 + k % 2]   # 3 or 4 of them, a different set per job
    nodes = cluster.nodes_of("load-vote")
    await asyncio.gather(*(client_submit(job_id, "ballots", ballot(v, k), nodes, cluster.tls(v),
                                         cluster.fingerprint("load-vote"), timeout=60)
                           for v in voters))
    await close_inputs(cluster.deployment.coordinator_address, cluster.tls("operator"), job_id)
    final = await cluster.watch(job_id, 120)
    assert final.state == "DONE", (job_id, final.error)
    counts = np.sum([ballot(v, k) for v in voters], axis=0)
    expect = {"a": int(counts[0]), "b": int(counts[1]), "c": int(counts[2]), "invalid": 0}
    for reader in READERS:
        assert (await cluster.fetch(job_id, "tally", reader, timeout=30)).value == expect
    return job_id


def mul_plan(k: int) -> JobPlan:
    b = CircuitBuilder(MUL)
    x = b.input("x", "oak", LENGTH, -B, B, key="vec")
    y = b.input("y", "pine", LENGTH, -B, B, key="vec")
    z = b.input("z", "elm", LENGTH, -B, B, key="vec")
    xy = x * y                                        # level 1
    b.output("dot", b.add(b.dot(xy, b.add(z, k)), k), [READERS[k % 2]])         # level 2, + k
    b.output("products", b.sum(b.scale(xy, k + 1)), [READERS[(k + 1) % 2]])   # level 1 only
    return JobPlan(MUL, b.build(), NODES, 1, 120)


async def mul_job(cluster: Cluster, sched, addr: str, k: int) -> str:
    job_id = f"load-total-0-mul-{k:02d}"   # cluster.fetch finds the nodes by the id's scenario prefix
    sched.submit_plan(job_id, mul_plan(k))
    final = await coordinator_watch(addr, cluster.tls("operator"), job_id, lambda p: None, timeout=120)
    assert final.state == "DONE", (job_id, final.error)
    x, y, z = (np.array(VEC[o], dtype=object) for o in NODES)
    dot = int(np.sum(x * y * (z + k))) + k
    products = int(np.sum(x * y)) * (k + 1)
    assert (await cluster.fetch(job_id, "dot", READERS[k % 2], timeout=30)).value == dot
    assert (await cluster.fetch(job_id, "products", READERS[(k + 1) % 2], timeout=30)).value == products
    return job_id


def test_expected_values_stay_within_the_field() -> None:
    """Guard for the plaintext checks: every expected result is far from the field's signed range."""
    x, y, z = (np.array(VEC[o], dtype=object) for o in NODES)
    assert abs(int(np.sum(np.abs(x * y * (z + 20))))) < (1 << 59)


@pytest.mark.timeout(240)
async def test_fifty_concurrent_jobs_all_finish_correctly(cluster: Cluster) -> None:
    started = time.monotonic()
    async with cluster.local_coordinator(poll_interval_s=0.1) as (sched, addr):
        jobs = [*(total_job(cluster, TOTALS[k % len(TOTALS)]) for k in range(25)),
                *(vote_job(cluster, k) for k in range(10)),
                *(mul_job(cluster, sched, addr, k) for k in MUL_JOBS)]
        assert len(jobs) == 50
        done = await asyncio.wait_for(asyncio.gather(*jobs), 180)
    took = time.monotonic() - started
    assert len(set(done)) == 50
    print(f"50 concurrent jobs finished and verified in {took:.1f}s")
    assert took < 90, took   # ~20-40 s on 2 cores; generous for a loaded machine
    for org in NODES:   # every job is DONE on every node, and nothing else is pending there
        states = cluster.stored_jobs(org)
        assert all(states[j] == "DONE" for j in done), org
        assert not [j for j, s in states.items() if s != "DONE"], (org, states)
    cluster.assert_alive()
