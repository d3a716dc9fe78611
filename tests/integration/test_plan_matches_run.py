"""The plan's cost estimate against real node processes: for a total, an auction with client bids
(not every bidder submitting) and a vote with client ballots, the rounds and bytes the dry run
reports for each node equal what that node's exchange counted while it ran the job (JobStatus
rounds_done and bytes_sent).

The tolerance is zero, on purpose. The dry run is not a model: it runs the same function a node
runs (mpcnode/jobrun.py) on inputs of the same shapes, and every protocol's traffic depends on
shapes only. The two exchanges count alike: a round per `round` call, and payload bytes of the
uint64 arrays (the gRPC exchange counts the serialized payload, 8 bytes per element, which is
what the in-memory one counts as nbytes; protobuf framing and TLS are counted by neither). Any
difference means a node and the estimate have started to run different code.
"""
from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from coordinator.client import close_inputs
from mpcnode.client import submit as client_submit
from mpcnode.computation.cost import dry_run
from tests.integration.cluster import Cluster

log = logging.getLogger(__name__)

ORGS = ["ada", "ben", "cyd", "dee", "eve"]
BIDDERS = [f"bidder-{i:02d}" for i in range(1, 9)]
VOTERS = [f"v-{i:02d}" for i in range(1, 11)]
OPTIONS = ["oak", "elm", "ash"]

# different party counts, thresholds and orders, so that per-node differences (who deals to whom,
# who is a seeded receiver) show up in the counts
SCENARIOS = [
    {"name": "sum5", "kind": "total", "parties": ORGS, "threshold": 2, "recipients": ["ada"],
     "input": {"name": "amount", "length": 4, "range": [-(1 << 40), 1 << 40]}, "timeout_s": 60},
    {"name": "lot", "kind": "auction", "parties": ["cyd", "ada", "ben"], "protocol": "shamir", "recipients": ["seller"],
     "auction": {"type": "second-price", "bit_length": 40, "min_bid": 0, "max_bid": 10 ** 9,
                 "reserve": {"public": 1000}},
     "bidders": BIDDERS, "timeout_s": 60},
    {"name": "poll", "kind": "vote", "parties": ["eve", "dee", "ben", "cyd"], "threshold": 1, "recipients": ["dee"],
     "vote": {"options": OPTIONS, "output": "tally"}, "voters": VOTERS, "timeout_s": 60},
]
_rng = np.random.default_rng(20261126)
INPUTS = {"sum5": {o: _rng.integers(-(1 << 40), 1 << 40, 4).tolist() for o in ORGS}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster.create(tmp_path_factory.mktemp("plan"), SCENARIOS, inputs=INPUTS)
    with c.running():
        yield c


async def with_clients(cluster: Cluster, scenario: str, input_name: str, rows: dict[str, list[int]]) -> str:
    """Run a scenario whose input comes from clients: these clients submit, then inputs close."""
    job_id = await cluster.submit(scenario)
    nodes = cluster.nodes_of(scenario)
    await cluster.wait_running(next(iter(nodes)), job_id)
    await asyncio.gather(*(client_submit(job_id, input_name, row, nodes, cluster.tls(client),
                                         cluster.fingerprint(scenario)) for client, row in rows.items()))
    await close_inputs(cluster.deployment.coordinator_address, cluster.tls("operator"), job_id)
    final = await cluster.watch(job_id)
    assert final.state == "DONE", final.error
    return job_id


async def assert_estimate_matches(cluster: Cluster, scenario: str, job_id: str,
                                  client_rows: dict[str, int] | None = None) -> None:
    comp = cluster.scenarios[scenario][1].computation()
    est = await dry_run(comp, client_rows)
    real = {}
    for org in comp.parties:
        st = await cluster.node_status(org, job_id)
        real[org] = (st.rounds_done, st.bytes_sent)
    planned = {p.party: (p.rounds, p.bytes_sent) for p in est.parties}
    log.info("%s: planned (rounds, bytes) %s; measured %s", scenario, planned, real)
    assert planned == real


async def test_total_costs_what_the_plan_says(cluster) -> None:
    final = await cluster.run("sum5")
    await assert_estimate_matches(cluster, "sum5", final.job_id)


async def test_auction_with_some_bidders_absent_costs_what_the_plan_says(cluster) -> None:
    present = BIDDERS[1:7]   # 6 of the 8 listed bidders submit
    bids = {b: [int(_rng.integers(0, 10 ** 9))] for b in present}
    job_id = await with_clients(cluster, "lot", "bids", bids)
    await assert_estimate_matches(cluster, "lot", job_id, {"bids": len(present)})


async def test_vote_costs_what_the_plan_says(cluster) -> None:
    ballots = {v: np.eye(len(OPTIONS), dtype=np.int64)[_rng.integers(0, len(OPTIONS))].tolist() for v in VOTERS}
    job_id = await with_clients(cluster, "poll", "ballots", ballots)
    await assert_estimate_matches(cluster, "poll", job_id)
