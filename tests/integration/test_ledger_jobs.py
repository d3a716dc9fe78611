"""The privacy-budget ledger on real node processes (n = 3, t = 1; mpcnode/ledger.py).

ash's policy gives its dataset `ledger-total` a budget of ρ = 1/4, birch's a budget of ρ = 1; cedar
has none. Jobs are circuits built in code whose released output carries a DpRelease.

The released value is OP_NOISE (distributed discrete Laplace, every live node adds its part) of
the total, with the DpRelease dpcheck.py requires of it (scale >= sensitivity / epsilon, rho =
epsilon^2 / 2): the ledger charges that rho.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
import uuid
from fractions import Fraction

import pytest

from coordinator.client import JobFailed, watch as coordinator_watch
from coordinator.jobplan import JobPlan
from mpcnode.computation.builder import CircuitBuilder
from mpcnode.computation.dp import noise_op
from mpcnode.dp import accounting
from mpcnode.ledger import EXPIRED, RESERVED, SPENT
from mpcnode.transport.tls import secure_channel
from parley.v1 import circuit_pb2 as cpb, coordinator_pb2, node_pb2_grpc
from tests.integration.cluster import REPO, Cluster

THREE = ["ash", "birch", "cedar"]
READER = "reader"
DATASET = "ledger-total"
KEY = f"dataset:{DATASET}"
SCENARIO = {"name": DATASET, "kind": "total", "parties": THREE, "protocol": "shamir", "recipients": [READER],
            "input": {"name": "amount", "range": [-(10 ** 6), 10 ** 6]}, "timeout_s": 60}


def plan(name: str, epsilon: str | None, owners: tuple[str, ...] = ("ash", "birch"), levels: int = 0,
         width: int = 1) -> JobPlan:
    """The total of the owners' datasets (plus a chain of `levels` products of zeros, to keep the
    job busy), released to READER: with discrete Laplace noise for `epsilon` (charged ρ = ε²/2),
    or exact if epsilon is None."""
    b = CircuitBuilder(name)
    xs = [b.input(f"amount@{o}", o, 1, -(10 ** 6), 10 ** 6, key="amount", dataset=DATASET) for o in owners]
    z = b.repeat(b.scale(b.sub(xs[0], xs[0]), 0), width)
    for _ in range(levels):
        z = z * z
    total = b.dot(z, z)
    for x in xs:
        total = b.add(total, b.sum(x))
    if epsilon is None:
        b.output("total", total, [READER])
        return JobPlan(name, b.build(), THREE, 1, 60)
    eps = Fraction(epsilon)
    scale = accounting.laplace_scale(eps, 1)
    noised = noise_op(b, total, cpb.DpNoise(mechanism="discrete-laplace", source="distributed",
                                            scale=str(scale), min_live=3))
    b.output("total", noised, [READER])
    circuit = b.build()
    circuit.outputs[0].dp.CopyFrom(cpb.DpRelease(
        unit="organization", relation="add-remove", epsilon=epsilon, rho=str(accounting.rho_of_pure(eps)),
        sensitivity=1, mechanism="discrete-laplace", scale=str(scale)))
    return JobPlan(name, circuit, THREE, 1, 60)


# rho = eps^2 / 2: dp1 1/8, dp2 1/32, chain and birch 1/8
PLANS = {"dp1": plan("ledger-dp1", "0.5"), "dp2": plan("ledger-dp2", "0.25"), "exact": plan("ledger-exact", None),
         "chain": plan("ledger-chain", "0.5", ("birch",), levels=60, width=150_000),
         "birch": plan("ledger-birch", "0.5", ("birch",))}
BUDGETS = {"ash": "1/4", "birch": "1"}
TTL_S = 3.0   # birch's prepared_ttl_s: a job prepared there and never started expires after it


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = Cluster.create(tmp_path_factory.mktemp("ledger"), [SCENARIO], {DATASET: {"ash": 5, "birch": 7, "cedar": 9}},
                       approve={o: [p.computation.fingerprint() for p in PLANS.values()] for o in THREE},
                       policy_overrides={o: {"privacy_budget": {"datasets": {DATASET: {"rho": rho}}}}
                                         for o, rho in BUDGETS.items()},
                       node_overrides={o: {"round_timeout_s": 8.0, "rpc_timeout_s": 4.0,
                                           **({"prepared_ttl_s": TTL_S} if o == "birch" else {})} for o in THREE})
    with c.running():
        yield c


def ledger_cli(cluster: Cluster, *args: str, org: str = "ash") -> str:
    out = subprocess.run([sys.executable, "-m", "mpcnode", "ledger", "--config",
                          str(cluster.deployment.node_configs[org]), *args],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def balance(cluster: Cluster, org: str = "ash") -> dict:
    (row,) = [json.loads(line) for line in ledger_cli(cluster, "--json", org=org).splitlines()]
    return row


def charges(cluster: Cluster, job_id: str, org: str = "ash") -> dict[str, tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(cluster.data_dir(org) / "shares.sqlite3", timeout=10)) as db:
        return {k: (r, s) for k, r, s in db.execute("SELECT dataset, rho, state FROM privacy_charges WHERE job_id=?",
                                                    (job_id,))}


async def run_plan(cluster: Cluster, key: str, expect: str = "DONE") -> coordinator_pb2.JobProgress:
    job_id = f"{PLANS[key].name}-{uuid.uuid4().hex[:6]}"
    async with cluster.local_coordinator(rpc_timeout_s=4.0, poll_interval_s=0.05) as (sched, addr):
        sched.submit_plan(job_id, PLANS[key])
        seen: list[coordinator_pb2.JobProgress] = []
        if expect == "DONE":
            await coordinator_watch(addr, cluster.tls("operator"), job_id, seen.append, timeout=60)
        else:
            with pytest.raises(JobFailed):
                await coordinator_watch(addr, cluster.tls("operator"), job_id, seen.append, timeout=60)
    assert seen[-1].state == expect, seen[-1]
    return seen[-1]


def audit(cluster: Cluster, job_id: str) -> list[tuple[str, str]]:
    out = subprocess.run([sys.executable, "-m", "mpcnode", "audit", "--config",
                          str(cluster.deployment.node_configs["ash"]), "--job", job_id, "--json"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    return [(e["event"], e["detail"]) for e in map(json.loads, out.stdout.splitlines())]


async def test_budget_is_spent_then_an_over_budget_job_is_refused_at_prepare(cluster: Cluster) -> None:
    before = balance(cluster)
    assert (before["total_rho"], before["spent_rho"], before["reserved_rho"]) == ("1/4", "0", "0")
    done = await run_plan(cluster, "dp1")
    assert charges(cluster, done.job_id) == {KEY: ("1/8", SPENT)}
    assert balance(cluster)["remaining_rho"] == "1/8"
    # a second 1/8 fits exactly; then not even dp2's 1/32 does
    done2 = await run_plan(cluster, "dp1")
    assert charges(cluster, done2.job_id) == {KEY: ("1/8", SPENT)}
    refused = await run_plan(cluster, "dp2", expect="FAILED")
    assert f"privacy budget of {KEY} exhausted" in refused.error and "ash" in refused.error, refused.error
    assert charges(cluster, refused.job_id) == {}
    events = audit(cluster, refused.job_id)
    assert events and events[0][0] == "refused" and KEY in events[0][1], events
    after = balance(cluster)
    assert (after["spent_rho"], after["reserved_rho"], after["remaining_rho"]) == ("1/4", "0", "0")
    text = ledger_cli(cluster)
    assert text.splitlines()[1].split()[:5] == [KEY, "0.25", "0.25", "0", "0"], text


async def test_an_exact_release_of_a_budgeted_dataset_is_refused(cluster: Cluster) -> None:
    spec = PLANS["exact"].computation.job_spec(f"ledger-exact-{uuid.uuid4().hex[:6]}", 60)
    async with secure_channel(cluster.deployment.addresses["ash"], "ash", cluster.tls("coordinator")) as ch:
        reply = await node_pb2_grpc.NodeControlStub(ch).Prepare(spec, timeout=10)
    assert not reply.accepted
    assert reply.reason == f"ash has a privacy budget on {KEY}: output 'total' depends on it and is not " \
                           "differentially private", reply.reason
    assert audit(cluster, spec.job_id) == [("refused", reply.reason)]
    # cedar has no budget (and none of its data is read): its node accepts the same job
    async with secure_channel(cluster.deployment.addresses["cedar"], "cedar", cluster.tls("coordinator")) as ch:
        assert (await node_pb2_grpc.NodeControlStub(ch).Prepare(spec, timeout=10)).accepted



async def test_sigkill_mid_job_keeps_the_charge_spent(cluster: Cluster) -> None:
    """birch (the data owner) is SIGKILLed in the middle of a job that charged 1/8 of its budget.
    The charge was spent when the job started (in the transaction that marked it running), before
    any share of birch's data left it: the other nodes could have finished and released the job
    without birch, so neither the crash nor the restart gives it back. The job is marked failed on
    restart, what was spent before is untouched, and the next job is charged once."""
    async with asyncio.timeout(20):   # a refused job's reservation here is freed when the coordinator aborts it
        while (start := balance(cluster, "birch"))["reserved_rho"] != "0":
            await asyncio.sleep(0.2)
    job_id = f"ledger-chain-{uuid.uuid4().hex[:6]}"
    try:
        async with cluster.local_coordinator(rpc_timeout_s=4.0, poll_interval_s=0.05) as (sched, addr):
            sched.submit_plan(job_id, PLANS["chain"])
            live = sched.live[job_id]
            async with asyncio.timeout(40):
                while live.rounds_done < 4:
                    assert live.state not in ("DONE", "FAILED"), live.error
                    await live.changed.wait()
            assert charges(cluster, job_id, "birch") == {KEY: ("1/8", SPENT)}
            cluster.kill("birch")
            with pytest.raises(JobFailed):
                await coordinator_watch(addr, cluster.tls("operator"), job_id, lambda p: None, timeout=60)
        # birch is down: its ledger (read-only, from the dead node's files) shows the charge spent
        down = balance(cluster, "birch")
        assert Fraction(down["spent_rho"]) == Fraction(start["spent_rho"]) + Fraction(1, 8), down
        assert down["reserved_rho"] == "0"
        assert cluster.stored_job("birch", job_id)[0] == "RUNNING"
    finally:
        cluster.restart("birch")
    assert cluster.stored_job("birch", job_id)[0] == "FAILED"
    assert charges(cluster, job_id, "birch") == {KEY: ("1/8", SPENT)}
    after = balance(cluster, "birch")
    assert after["reserved_rho"] == "0"
    assert Fraction(after["spent_rho"]) == Fraction(start["spent_rho"]) + Fraction(1, 8)
    start = after
    done = await run_plan(cluster, "birch")
    assert charges(cluster, done.job_id, "birch") == {KEY: ("1/8", SPENT)}
    final = balance(cluster, "birch")
    assert Fraction(final["spent_rho"]) == Fraction(start["spent_rho"]) + Fraction(1, 8)
    assert Fraction(final["remaining_rho"]) == Fraction(start["remaining_rho"]) - Fraction(1, 8)


async def test_a_prepared_job_that_never_starts_frees_its_reservation(cluster: Cluster) -> None:
    before = balance(cluster, "birch")
    spec = PLANS["birch"].computation.job_spec(f"ledger-expire-{uuid.uuid4().hex[:6]}", 60)
    async with secure_channel(cluster.deployment.addresses["birch"], "birch", cluster.tls("coordinator")) as ch:
        assert (await node_pb2_grpc.NodeControlStub(ch).Prepare(spec, timeout=10)).accepted
    assert charges(cluster, spec.job_id, "birch") == {KEY: ("1/8", RESERVED)}
    assert Fraction(balance(cluster, "birch")["reserved_rho"]) == Fraction(before["reserved_rho"]) + Fraction(1, 8)
    async with asyncio.timeout(TTL_S + 15):
        while cluster.stored_job("birch", spec.job_id)[0] != "FAILED":
            await asyncio.sleep(0.2)
    assert charges(cluster, spec.job_id, "birch") == {KEY: ("1/8", EXPIRED)}
    after = balance(cluster, "birch")
    assert (after["spent_rho"], after["reserved_rho"]) == (before["spent_rho"], before["reserved_rho"])
