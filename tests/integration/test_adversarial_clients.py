"""Whatever the clients send, on both engines: a vote and an auction where a random part of the
population lies (values out of range by small and by huge amounts, the upper half of the plaintext
domain, shares that do not fit together, rows of the wrong length, second and late submissions)
and one node drops a client's share it had stored. The result equals the plaintext answer over the
rows that count, every lie is excluded (with its reason) or refused at the door, and the honest
rows all count.

Complements tests/integration/test_client_checks.py (one liar of each kind, receipts, status)
with random mixes; the liars build their shares by hand and call InputIntake.SubmitShare.
"""
from __future__ import annotations

import contextlib
import sqlite3

import grpc
import numpy as np
import pytest

from coordinator.client import close_inputs
from mpcnode import field, replicated, shamir
from mpcnode.client import submit as client_submit
from mpcnode.transport import serde
from mpcnode.transport.tls import secure_channel
from parley.v1 import node_pb2, node_pb2_grpc
from tests.integration.cluster import Cluster

PARTIES = ["registrar", "observer", "archive"]
VOTERS = [f"citizen-{i:02d}" for i in range(1, 31)]
BIDDERS = [f"firm-{i:02d}" for i in range(1, 25)]
OPTIONS = ["oak", "elm", "fir", "yew"]
MAX_BID = 50_000

SCENARIOS = [
    {"name": "poll", "kind": "vote", "parties": PARTIES, "vote": {"options": OPTIONS, "output": "tally"},
     "voters": VOTERS, "recipients": ["clerk"], "timeout_s": 90},
    {"name": "tender", "kind": "auction", "parties": PARTIES,
     "auction": {"type": "second-price", "bit_length": 20, "min_bid": 0, "max_bid": MAX_BID},
     "bidders": BIDDERS, "recipients": ["clerk"], "timeout_s": 90},
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, protocol: str):
    c = Cluster.create(tmp_path_factory.mktemp(f"adversarial-{protocol}"), SCENARIOS, protocol=protocol)
    with c.running():
        yield c


def domain_word(protocol: str, value: int) -> int:
    """`value` as a raw word of the engine's plaintext domain (any integer, no range check)."""
    return value % field.P if protocol == "shamir" else value % 2 ** 64


def raw_shares(protocol: str, words: list[int]) -> list[np.ndarray]:
    row = np.array(words, dtype=np.uint64)
    if protocol == "shamir":
        return list(shamir.share(row, 3, 1))
    return list(replicated.share(row))


async def send_by_hand(cluster: Cluster, scenario: str, job_id: str, client: str, input_name: str,
                       shares: list[np.ndarray]) -> None:
    nodes = cluster.nodes_of(scenario)
    for org, share in zip(PARTIES, shares):
        payload, shape = serde.encode(share)
        async with secure_channel(nodes[org], org, cluster.tls(client)) as ch:
            await node_pb2_grpc.InputIntakeStub(ch).SubmitShare(
                node_pb2.ClientShare(job_id=job_id, input=input_name, share=payload, shape=shape), timeout=10)


async def refused(coro) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    return err.value.code()


def huge(protocol: str, rng: np.random.Generator) -> int:
    """A value far outside any range: the upper half of the domain, or a random large word."""
    top = field.P if protocol == "shamir" else 2 ** 64
    candidates = [(top - 1) // 2 + int(rng.integers(1, 1000)), top - 1 - int(rng.integers(0, 1000)),
                  int(rng.integers(2, 2 ** 40)) * 2 ** 20]
    return candidates[int(rng.integers(0, len(candidates)))]   # exact ints: no float rounding


def drop_stored_share(cluster: Cluster, org: str, job_id: str, client: str) -> None:
    """Play a node that 'loses' a share it acknowledged: delete it from its store before close."""
    with contextlib.closing(sqlite3.connect(cluster.data_dir(org) / "shares.sqlite3", timeout=10)) as db:
        assert db.execute("DELETE FROM client_shares WHERE job_id=? AND client=?", (job_id, client)).rowcount == 1
        db.commit()


async def open_job(cluster: Cluster, scenario: str) -> tuple[str, dict[str, str], str]:
    """A new job of `scenario`, running and open for input: (job id, node addresses, fingerprint)."""
    job_id = await cluster.submit(scenario)
    await cluster.wait_running("registrar", job_id)
    return job_id, cluster.nodes_of(scenario), cluster.fingerprint(scenario)


async def close_and_watch(cluster: Cluster, job_id: str):
    await close_inputs(cluster.deployment.coordinator_address, cluster.tls("operator"), job_id)
    final = await cluster.watch(job_id)
    assert final.state == "DONE", final.error
    return final


@pytest.mark.parametrize("seed", [11, 12])
async def test_a_vote_stays_correct_whatever_the_voters_send(cluster, protocol: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    job_id, nodes, fp = await open_job(cluster, "poll")
    k = len(OPTIONS)
    kinds = rng.permutation(["honest"] * 14 + ["spoiled"] * 3 + ["small"] * 3 + ["huge"] * 3
                            + ["inconsistent"] * 3 + ["wrong-length"] * 2 + ["dropped"] * 2)
    counted: dict[str, list[int]] = {}
    expect_excluded: dict[str, str] = {}
    for voter, kind in zip(VOTERS, kinds):
        row = [0] * k
        row[int(rng.integers(0, k))] = 1
        if kind in ("honest", "dropped"):
            await client_submit(job_id, "ballots", row, nodes, cluster.tls(voter), fp)
            if kind == "honest":
                counted[voter] = row
            else:
                expect_excluded[voter] = "not held by archive"
        elif kind == "spoiled":          # in range, but not exactly one 1: counted as invalid
            row = [1, 1, 0, 0] if rng.integers(0, 2) else [0, 0, 0, 0]
            await send_by_hand(cluster, "poll", job_id, voter, "ballots",
                               raw_shares(protocol, [domain_word(protocol, v) for v in row]))
            counted[voter] = row
        elif kind in ("small", "huge"):   # some entry outside [0, 1]
            bad = int(rng.choice([2, -1, 3])) if kind == "small" else huge(protocol, rng)
            row[int(rng.integers(0, k))] = bad
            await send_by_hand(cluster, "poll", job_id, voter, "ballots",
                               raw_shares(protocol, [domain_word(protocol, v) for v in row]))
            expect_excluded[voter] = "out of range"
        elif kind == "inconsistent":      # a valid ballot whose shares do not fit together
            shares = raw_shares(protocol, row)
            shares[int(rng.integers(0, 3))][int(rng.integers(0, k))] += np.uint64(int(rng.integers(1, 1000)))
            await send_by_hand(cluster, "poll", job_id, voter, "ballots", shares)
            expect_excluded[voter] = "inconsistent shares"
        else:                             # wrong length: refused at the door, nothing stored
            code = await refused(send_by_hand(cluster, "poll", job_id, voter, "ballots",
                                              raw_shares(protocol, row + [0])))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
    # a second submission never replaces the first
    first_honest = next(v for v, kd in zip(VOTERS, kinds) if kd == "honest")
    assert await refused(send_by_hand(cluster, "poll", job_id, first_honest, "ballots",
                                      raw_shares(protocol, [1, 1, 1, 1]))) == grpc.StatusCode.ALREADY_EXISTS
    for voter, kind in zip(VOTERS, kinds):
        if kind == "dropped":
            drop_stored_share(cluster, "archive", job_id, voter)
    final = await close_and_watch(cluster, job_id)
    late = next(v for v, kd in zip(VOTERS, kinds) if kd == "wrong-length")
    assert await refused(send_by_hand(cluster, "poll", job_id, late, "ballots",
                                      raw_shares(protocol, [1, 0, 0, 0]))) == grpc.StatusCode.FAILED_PRECONDITION

    assert {e.credential: e.reason for e in final.excluded} == expect_excluded
    assert final.rows_accepted == len(counted)
    valid = [r for r in counted.values() if sum(r) == 1]
    plain = {o: sum(r[i] for r in valid) for i, o in enumerate(OPTIONS)}
    res = await cluster.fetch(job_id, "tally", "clerk")
    assert res.checked and res.value == {**plain, "invalid": len(counted) - len(valid)}


@pytest.mark.parametrize("seed", [21, 22])
async def test_an_auction_stays_correct_whatever_the_bidders_send(cluster, protocol: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    job_id, nodes, fp = await open_job(cluster, "tender")
    kinds = rng.permutation(["honest"] * 12 + ["above"] * 3 + ["below"] * 2 + ["huge"] * 3
                            + ["inconsistent"] * 3 + ["dropped"])
    counted: dict[str, int] = {}
    expect_excluded: dict[str, str] = {}
    for bidder, kind in zip(BIDDERS, kinds):
        bid = int(rng.integers(0, MAX_BID + 1))
        if kind in ("honest", "dropped"):
            await client_submit(job_id, "bids", [bid], nodes, cluster.tls(bidder), fp)
            if kind == "honest":
                counted[bidder] = bid
            else:
                expect_excluded[bidder] = "not held by observer"
            continue
        if kind == "inconsistent":       # would win if it counted
            shares = raw_shares(protocol, [MAX_BID])
            shares[int(rng.integers(0, 3))][0] += np.uint64(int(rng.integers(1, 1000)))
            await send_by_hand(cluster, "tender", job_id, bidder, "bids", shares)
            expect_excluded[bidder] = "inconsistent shares"
            continue
        value = {"above": MAX_BID + int(rng.integers(1, 10 ** 6)), "below": -int(rng.integers(1, 10 ** 6)),
                 "huge": huge(protocol, rng)}[kind]
        await send_by_hand(cluster, "tender", job_id, bidder, "bids", raw_shares(protocol, [domain_word(protocol,
                                                                                                        value)]))
        expect_excluded[bidder] = "out of range"
    for bidder, kind in zip(BIDDERS, kinds):
        if kind == "dropped":
            drop_stored_share(cluster, "observer", job_id, bidder)
    final = await close_and_watch(cluster, job_id)
    assert {e.credential: e.reason for e in final.excluded} == expect_excluded
    ranked = sorted(counted.values(), reverse=True)
    res = await cluster.fetch(job_id, "result", "clerk")
    assert res.checked and res.value["sold"] and res.value["price"] == ranked[1]
    # the winner is a bidder with the top bid (ties: any of them, by the row order)
    assert counted[res.value["winner"]] == ranked[0]
