"""Lying nodes and what a recipient accepts, on every engine under test, with real node processes:
a node that changes its output share, a node that is down, a node whose stored computation (an
output's description, the approved bidder list) was changed, are each detected and named; an
auction names its winner from the approved bidder list; and what a node releases for a
referendum, a tally or an auction says nothing about which clients took part.
(The same checks without nodes: tests/unit/test_recipient_checks.py.)
"""
from __future__ import annotations

import contextlib
import sqlite3

import grpc
import numpy as np
import pytest

from coordinator.client import close_inputs
from mpcnode import field as F
from mpcnode.client import submit as client_submit
from mpcnode.recipient import FetchError
from mpcnode.transport.tls import secure_channel
from parley.v1 import node_pb2, node_pb2_grpc
from tests.integration.cluster import Cluster, run_sync

PARTIES = ["ledger", "vault", "mint"]
FOUR = PARTIES + ["forge"]
BIDDERS = [f"oi-bidder-{i}" for i in range(1, 7)]
VOTERS = [f"oi-voter-{i}" for i in range(1, 7)]


def _auction(name: str) -> dict:
    return {"name": name, "kind": "auction", "parties": PARTIES,
            "auction": {"type": "second-price", "bit_length": 32, "min_bid": 0, "max_bid": 10 ** 6},
            "bidders": BIDDERS, "recipients": ["seller"], "timeout_s": 60}


def _vote(name: str, output: str, options: list[str], reveal: bool = False) -> dict:
    sc = {"name": name, "kind": "vote", "parties": PARTIES, "vote": {"options": options, "output": output},
          "voters": VOTERS, "recipients": ["seller"], "timeout_s": 60}
    if reveal:
        sc["reveal_participants"] = True
    return sc


SCENARIOS = [_auction("oi-auction"), _vote("oi-referendum", "referendum", ["yes", "no"]),
             _vote("oi-tally", "tally", ["red", "green", "blue"]),
             _vote("oi-turnout", "tally", ["red", "green", "blue"], reveal=True),
             # Shamir only (replicated3 runs on exactly three nodes): with n = 4, t = 1 a bad share is named
             {"name": "oi-four", "kind": "total", "parties": FOUR, "threshold": 1, "recipients": ["seller"],
              "input": {"name": "amount", "range": [0, 1000]}, "timeout_s": 60}]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, protocol: str):
    """One deployment per engine under test (tests/conftest.py ENGINES_UNDER_TEST)."""
    c = Cluster.create(tmp_path_factory.mktemp(f"integrity-{protocol}"), SCENARIOS,
                       {"oi-four": {org: 10 * (k + 1) for k, org in enumerate(FOUR)}}, protocol=protocol)
    with c.running():
        yield c


async def _run_clients(cluster: Cluster, scenario: str, input_name: str, rows: dict[str, list[int]]) -> str:
    """Submit `rows` one client after another, in the dict's order, and run the job to DONE."""
    job_id = await cluster.submit(scenario)
    nodes = cluster.nodes_of(scenario)
    await cluster.wait_running(PARTIES[0], job_id)
    for who, row in rows.items():
        await client_submit(job_id, input_name, row, nodes, cluster.tls(who), cluster.fingerprint(scenario))
    await close_inputs(cluster.deployment.coordinator_address, cluster.tls("operator"), job_id)
    final = await cluster.watch(job_id)
    assert final.state == "DONE", final.error
    return job_id


async def _raw_share(cluster: Cluster, org: str, job_id: str, output: str) -> node_pb2.OutputShare:
    async with secure_channel(cluster.deployment.addresses[org], org, cluster.tls("seller")) as ch:
        return await node_pb2_grpc.ResultReleaseStub(ch).FetchOutput(
            node_pb2.OutputRequest(job_id=job_id, output=output), timeout=15)


def _tamper(cluster: Cluster, protocol: str, org: str, job_id: str, output: str) -> None:
    """Change the node's stored output share by one, in its engine's arithmetic."""
    share = cluster.output_share(org, job_id, output)
    if protocol == "shamir":
        changed = F.add(share, F.asfield(np.ones(share.shape, dtype=np.int64)))
    else:
        changed = share + np.uint64(1)          # mod 2^64, both words the node holds
    cluster.set_output_share(org, job_id, output, changed)


@contextlib.contextmanager
def _stored_spec_changed(cluster: Cluster, org: str, job_id: str, change, refingerprint: bool = False):
    """Edit the JobSpec a node stored (as someone with its disk would), and put it back afterwards.
    refingerprint: also make the stored fingerprint match the changed computation."""
    from mpcnode.jobspec import recomputed_fingerprint

    path = cluster.data_dir(org) / "shares.sqlite3"
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        blob, fp = db.execute("SELECT spec, fingerprint FROM jobs WHERE job_id=?", (job_id,)).fetchone()
    spec = node_pb2.JobSpec.FromString(blob)
    change(spec)
    new_fp = recomputed_fingerprint(spec) if refingerprint else fp
    spec.fingerprint = new_fp
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db, db:
        db.execute("UPDATE jobs SET spec=?, fingerprint=? WHERE job_id=?",
                   (spec.SerializeToString(deterministic=True), new_fp, job_id))
    try:
        yield
    finally:
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as db, db:
            db.execute("UPDATE jobs SET spec=?, fingerprint=? WHERE job_id=?", (blob, fp, job_id))


# ---- the auction's winner ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def auction_job(cluster: Cluster) -> str:
    # bids arrive in reverse list order: the winner (oi-bidder-2) is row 4, but place 1 in the list
    bids = {b: [v] for b, v in zip(BIDDERS[::-1], [10, 20, 30, 40, 900, 50])}
    return run_sync(_run_clients(cluster, "oi-auction", "bids", bids))


async def test_the_winner_is_named_by_its_place_in_the_approved_list(cluster: Cluster, auction_job: str) -> None:
    res = await cluster.fetch(auction_job, "result", "seller")
    assert res.value == {"sold": True, "winner": "oi-bidder-2", "price": 50} and res.checked
    # opened: 1 + its index in the approved bidders (1), not 1 + its row (4, in arrival order)
    assert res.values == [1, BIDDERS.index("oi-bidder-2") + 1, 50]
    assert res.fingerprint == cluster.fingerprint("oi-auction")


async def test_a_changed_output_share_is_detected(cluster: Cluster, protocol: str, auction_job: str) -> None:
    victim = "vault"
    before = cluster.output_share(victim, auction_job, "result")
    _tamper(cluster, protocol, victim, auction_job, "result")
    try:
        with pytest.raises(FetchError) as err:
            await cluster.fetch(auction_job, "result", "seller")
        message = str(err.value)
        if protocol == "shamir":
            # n = 3, t = 1: three shares show the lie, but not whose it is (docs/security-model.md)
            assert f"output shares are inconsistent ({', '.join(sorted(PARTIES))})" in message, message
        else:
            # every component vault holds is also held by ledger (its first word) or mint (its second)
            assert "disagree on a value both hold" in message and victim in message, message
    finally:
        cluster.set_output_share(victim, auction_job, "result", before)
    assert (await cluster.fetch(auction_job, "result", "seller")).checked


async def test_a_changed_share_is_named_among_four_shamir_nodes(cluster: Cluster) -> None:
    cluster.needs("oi-four")
    job_id = (await cluster.run("oi-four")).job_id
    cluster.tamper_output_share("forge", job_id, "total", delta=7)
    with pytest.raises(FetchError, match=r"^output share from forge is inconsistent"):
        await cluster.fetch(job_id, "total", "seller")


async def test_a_node_down_fails_closed_unless_unchecked_is_accepted(cluster: Cluster, auction_job: str) -> None:
    cluster.stop("mint")
    try:
        with pytest.raises(FetchError) as err:
            await cluster.fetch(auction_job, "result", "seller")
        assert "missing: mint: UNAVAILABLE" in str(err.value), str(err.value)
        res = await cluster.fetch(auction_job, "result", "seller", accept_unchecked=True)
        assert res.value == {"sold": True, "winner": "oi-bidder-2", "price": 50}
        assert not res.checked and res.nodes == ["ledger", "vault"]
    finally:
        cluster.restart("mint")
    assert (await cluster.fetch(auction_job, "result", "seller")).checked


async def test_a_node_with_a_changed_description_is_named(cluster: Cluster, auction_job: str) -> None:
    def describe_otherwise(spec: node_pb2.JobSpec) -> None:
        spec.circuit.outputs[0].description = '{"render": "auction", "type": "first-price"}'

    with _stored_spec_changed(cluster, "ledger", auction_job, describe_otherwise):
        with pytest.raises(FetchError, match=r"^ledger sent a computation document that does not hash"):
            await cluster.fetch(auction_job, "result", "seller")
    # changed together with its fingerprint: it is the odd one out
    with _stored_spec_changed(cluster, "ledger", auction_job, describe_otherwise, refingerprint=True):
        with pytest.raises(FetchError, match=r"^ledger disagrees with the other answering nodes about the computation"):
            await cluster.fetch(auction_job, "result", "seller")


async def test_a_node_that_swaps_bidder_names_is_named(cluster: Cluster, auction_job: str) -> None:
    def swap(spec: node_pb2.JobSpec) -> None:
        clients = spec.circuit.inputs[0].clients
        clients[0], clients[1] = clients[1], clients[0]     # the winner, oi-bidder-2, becomes oi-bidder-1

    for refingerprint, message in [(False, "sent a computation document that does not hash"),
                                   (True, "disagrees with the other answering nodes")]:
        with _stored_spec_changed(cluster, "mint", auction_job, swap, refingerprint=refingerprint):
            with pytest.raises(FetchError, match=f"^mint {message}"):
                await cluster.fetch(auction_job, "result", "seller")
    assert (await cluster.fetch(auction_job, "result", "seller")).value["winner"] == "oi-bidder-2"


# ---- what an output share carries -------------------------------------------------------------------

def _identities_in(share: node_pb2.OutputShare, names: list[str]) -> list[str]:
    raw = share.SerializeToString()
    return [n for n in names if n.encode() in raw]


async def test_referendum_and_tally_shares_name_no_client(cluster: Cluster) -> None:
    ballots = {v: [1, 0] if k % 3 else [0, 1] for k, v in enumerate(VOTERS[:5])}     # oi-voter-6 abstains
    job_id = await _run_clients(cluster, "oi-referendum", "ballots", ballots)
    assert (await cluster.fetch(job_id, "referendum", "seller")).value == {"passed": True, "result": "YES"}
    rows = {v: [0, 0, 1] if k % 2 else [1, 0, 0] for k, v in enumerate(VOTERS[:4])}
    tally_job = await _run_clients(cluster, "oi-tally", "ballots", rows)
    res = await cluster.fetch(tally_job, "tally", "seller")
    assert res.value == {"red": 2, "green": 0, "blue": 2, "invalid": 0} and res.participants == []
    for job, output in ((job_id, "referendum"), (tally_job, "tally")):
        for org in PARTIES:
            share = await _raw_share(cluster, org, job, output)
            assert _identities_in(share, VOTERS) == [], (org, output)
            assert not share.tag_labels and not share.participants


async def test_an_auction_share_carries_the_approved_list_not_who_bid(cluster: Cluster, auction_job: str) -> None:
    # another run where only two bidders bid: everything but the share bytes is the same
    fewer = await _run_clients(cluster, "oi-auction", "bids", {"oi-bidder-5": [70], "oi-bidder-3": [60]})
    assert (await cluster.fetch(fewer, "result", "seller")).value == {"sold": True, "winner": "oi-bidder-5",
                                                                       "price": 60}
    for org in PARTIES:
        all_bid = await _raw_share(cluster, org, auction_job, "result")
        two_bid = await _raw_share(cluster, org, fewer, "result")
        assert list(all_bid.tag_labels) == BIDDERS and not all_bid.participants
        for share in (all_bid, two_bid):
            share.ClearField("share")
            share.ClearField("job_id")
        assert all_bid == two_bid, org


async def test_participants_only_where_the_scenario_asks(cluster: Cluster) -> None:
    rows = {v: [0, 1, 0] for v in (VOTERS[4], VOTERS[1], VOTERS[2])}    # arrival order differs from the list
    job_id = await _run_clients(cluster, "oi-turnout", "ballots", rows)
    res = await cluster.fetch(job_id, "tally", "seller")
    assert res.value == {"red": 0, "green": 3, "blue": 0, "invalid": 0}
    assert res.participants == [VOTERS[1], VOTERS[2], VOTERS[4]]        # in the approved list's order
    with contextlib.closing(sqlite3.connect(cluster.data_dir("vault") / "shares.sqlite3", timeout=10)) as db, db:
        db.execute("UPDATE outputs SET participants=? WHERE job_id=?", (VOTERS[1], job_id))
    with pytest.raises(FetchError, match="^vault disagrees with the other answering nodes about who took part"):
        await cluster.fetch(job_id, "tally", "seller")


async def test_a_recipient_that_is_not_one_is_still_refused(cluster: Cluster, auction_job: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async with secure_channel(cluster.deployment.addresses["ledger"], "ledger", cluster.tls("oi-bidder-1")) as ch:
            await node_pb2_grpc.ResultReleaseStub(ch).FetchOutput(
                node_pb2.OutputRequest(job_id=auction_job, output="result"), timeout=15)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
