"""Differential privacy end to end through real node processes (docs/privacy.md), on both
engines: a noisy total and average (contributions clipped inside MPC; distributed noise and noise
from shared bits), a noisy tally, a report-noisy-max winner; the DP fields in the document the
recipient checks; and nodes refusing a circuit whose noise does not back its DpRelease.

Every bound below is stated with its false-alarm rate (the chance the test fails with correct
code): each is below 10^-6 per assertion.
"""
from __future__ import annotations

import asyncio
import math
from fractions import Fraction

import pytest

from coordinator.client import JobFailed, close_inputs, watch
from coordinator.jobplan import JobPlan
from mpcnode.client import submit as client_submit
from tests.integration.cluster import Cluster

PARTIES = ["north", "south", "east"]
VOTERS = [f"dv-{i:03d}" for i in range(1, 31)]
OPTIONS = ["red", "green", "blue"]
FIGURES = {"north": 500, "south": 2_000_000, "east": 300}      # south's is clipped to 1000


def total(name: str, noise: str, kind: str = "total") -> dict:
    return {"name": name, "kind": kind, "parties": PARTIES, "input": {"name": "amount", "range": [0, 10 ** 9]},
            "dp": {"unit": "organization", "epsilon": "1", "noise": noise, "clip": [0, 1000]},
            "recipients": ["north"], "timeout_s": 90}


def vote(name: str, output: str) -> dict:
    return {"name": name, "kind": "vote", "parties": PARTIES, "vote": {"options": OPTIONS, "output": output},
            "voters": VOTERS, "dp": {"unit": "client", "epsilon": "1",
                                     "noise": "mpc" if output == "winner" else "distributed"},
            "recipients": ["north"], "timeout_s": 90}


SURVEY = {"name": "dp-survey", "kind": "survey", "question": "yes?", "parties": PARTIES, "respondents": VOTERS,
          "dp": {"unit": "client", "epsilon": "2"}, "recipients": ["north"], "timeout_s": 90}
SCENARIOS = [total("dp-average", "distributed", "average"), total("dp-total-mpc", "mpc"),
             vote("dp-tally", "tally"), vote("dp-winner", "winner"), SURVEY]
INPUTS = {s["name"]: FIGURES for s in SCENARIOS if s["kind"] in ("total", "average")}


def understated(cluster: Cluster, how: str) -> JobPlan:
    """dp-average's circuit with its noise scale cut 1000-fold: the release left as it was
    ("release"), or rewritten to the new scale with its epsilon kept ("both")."""
    _, sc = cluster.scenarios["dp-average"]
    comp = sc.computation()
    circuit = comp.circuit
    noise = next(op for op in circuit.ops if op.HasField("noise"))
    noise.noise.scale = "1"
    if how == "both":
        for o in circuit.outputs:
            o.dp.scale, o.dp.std = "1", ""
    return JobPlan("dp-average", circuit, list(comp.parties), comp.threshold, 60, protocol=comp.protocol,
                   dropouts=comp.dropouts)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, protocol: str):
    root = tmp_path_factory.mktemp(f"dp-{protocol}")
    c = Cluster.create(root, SCENARIOS, INPUTS, protocol=protocol)
    # the tampered circuits are approved by every node, so what refuses them is the DP check,
    # not consent
    approve = {o: [understated(c, how).computation.fingerprint() for how in ("release", "both")] for o in PARTIES}
    c = Cluster.create(tmp_path_factory.mktemp(f"dp2-{protocol}"), SCENARIOS, INPUTS, protocol=protocol,
                       approve=approve)
    with c.running():
        yield c


def laplace_bound(scale: float, p: float = 1e-7) -> int:
    """w with P(|Z| > w) <= p for discrete Laplace of this scale: 2 q^(w+1) / (1 + q) <= p."""
    return math.ceil(scale * math.log(2 / p))


async def test_noisy_total_and_average(cluster: Cluster) -> None:
    progress = await cluster.run("dp-average")
    res = await cluster.fetch(progress.job_id, "total", "north")
    clipped = 500 + 1000 + 300
    # scale 1000 (sensitivity 1000 / epsilon 1): |noise| <= 16119 but with probability 1e-7
    assert abs(res.value - clipped) <= laplace_bound(1000), res.value
    assert res.value != 500 + 2_000_000 + 300          # the clip happened inside MPC
    assert res.dp["epsilon"] == "1" and res.dp["mechanism"] == "discrete-laplace"
    assert res.dp["sensitivity"] == "1000" and res.dp["scale"] == "1000" and res.dp["rho"] == "1/2"
    assert 1400 < res.dp["std"] < 1420 and res.dp["interval95"] > 2000
    avg = await cluster.fetch(progress.job_id, "average", "north")
    assert Fraction(str(avg.value)) == Fraction(res.value, 3)   # post-processing of the same noisy total
    assert avg.dp["post_processing"] is True and avg.dp["std"] == pytest.approx(res.dp["std"] / 3)


async def test_noise_from_shared_bits(cluster: Cluster) -> None:
    progress = await cluster.run("dp-total-mpc")
    res = await cluster.fetch(progress.job_id, "total", "north")
    assert abs(res.value - 1800) <= laplace_bound(1000), res.value


async def cast(cluster: Cluster, scenario: str, rows: dict[str, list[int]], input_name: str = "ballots"):
    job_id = await cluster.submit(scenario)
    nodes = cluster.nodes_of(scenario)
    await cluster.wait_running("north", job_id)
    await asyncio.gather(*(client_submit(job_id, input_name, r, nodes, cluster.tls(v), cluster.fingerprint(scenario))
                           for v, r in rows.items()))
    await close_inputs(cluster.deployment.coordinator_address, cluster.tls("operator"), job_id)
    final = await cluster.watch(job_id)
    assert final.state == "DONE", final.error
    return job_id


def one_hot(i: int) -> list[int]:
    return [1 if j == i else 0 for j in range(len(OPTIONS))]


async def test_noisy_tally(cluster: Cluster) -> None:
    rows = {v: one_hot(i % 3) for i, v in enumerate(VOTERS)}          # 10 each, no invalid
    job_id = await cast(cluster, "dp-tally", rows)
    res = await cluster.fetch(job_id, "tally", "north")
    # scale 1 per count: |noise| <= 17 but with probability 1e-7 each (4 counts: 4e-7)
    for o in OPTIONS:
        assert abs(res.value[o] - 10) <= laplace_bound(1), res.value
    assert abs(res.value["invalid"]) <= laplace_bound(1)
    assert res.dp["unit"] == "client" and res.dp["sensitivity"] == "1"
    # add-remove protects whether a voter took part: no node tells the coordinator the exact
    # number of counted ballots, or who was excluded (they agreed on the rows among themselves)
    for org in PARTIES:
        st = await cluster.node_status(org, job_id)
        assert st.rows_withheld and st.rows_agreed
        assert (st.rows_accepted, list(st.excluded), st.inputs_received) == (0, [], 0)


async def test_noisy_winner(cluster: Cluster) -> None:
    rows = {v: one_hot(1 if i < 25 else 0) for i, v in enumerate(VOTERS)}    # green 25, red 5
    job_id = await cast(cluster, "dp-winner", rows)
    res = await cluster.fetch(job_id, "winner", "north")
    # red or blue wins only if one-sided geometric noise of scale 1 beats a gap of 20:
    # P(G >= 20) = e^-20 = 2e-9 per option
    assert res.value == {"winner": "green"}
    assert res.dp["mechanism"] == "one-sided-geometric" and res.dp["epsilon"] == "1"


@pytest.mark.parametrize("how", ["release", "both"])
async def test_nodes_refuse_understated_noise(cluster: Cluster, how: str, monkeypatch) -> None:
    """A coordinator that skips its own check (JobPlan.check) and sends a circuit whose noise is
    1000 times smaller than its DpRelease says, or whose release says so with the same epsilon:
    every node's Prepare refuses it, approved fingerprint or not."""
    monkeypatch.setattr(JobPlan, "check", lambda self: None)
    plan = understated(cluster, how)
    async with cluster.local_coordinator() as (sched, address):
        sched.submit_plan(f"understated-{how}", plan)
        with pytest.raises(JobFailed) as info:
            await watch(address, cluster.tls("operator"), f"understated-{how}", lambda p: None, timeout=60)
    assert "is below the" in str(info.value) or "but its noise op adds" in str(info.value), str(info.value)


async def test_randomized_response_survey(cluster: Cluster) -> None:
    """30 respondents, all answering yes; each client library flips with q = 1/(1+e^2) = 0.119
    before sharing. The reported count is Binomial(30, 1 - q): below 14 (17 or more flips) with probability
    < 1e-8 (binomial tail), so the estimate (c - 30 q)/(1 - 2q) lies within 20 of 30."""
    job_id = await cast(cluster, "dp-survey", {v: [1] for v in VOTERS}, "answer")
    res = await cluster.fetch(job_id, "survey", "north")
    assert res.value["respondents"] == 30 and 14 <= res.value["reported_yes"] <= 30, res.value
    assert abs(res.value["estimate"] - 30) <= 20
    lo, hi = res.value["interval95"]
    assert lo < res.value["estimate"] < hi and res.dp["mechanism"] == "randomized-response"
