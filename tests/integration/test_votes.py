"""Votes end to end with light input clients: random ballots, some invalid (sent by clients that
skip the library's local check), a duplicate refused, and the three output kinds against the
plaintext answer.
"""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from coordinator.client import close_inputs
from mpcnode.client import SubmitError, submit as client_submit
from tests.integration.cluster import Cluster

PARTIES = ["office", "council", "auditor"]
VOTERS = [f"v-{i:03d}" for i in range(1, 31)]
OPTIONS = ["red", "green", "blue", "white"]


def vote(name: str, output: str, options: list[str], approval: bool = False) -> dict:
    return {"name": name, "kind": "vote", "parties": PARTIES,
            "vote": {"options": options, "output": output, "approval": approval},
            "voters": VOTERS, "recipients": ["office"], "timeout_s": 60}


SCENARIOS = [vote("tally", "tally", OPTIONS), vote("winner", "winner", OPTIONS),
             vote("referendum", "referendum", ["yes", "no"]), vote("approval", "tally", OPTIONS, approval=True)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, protocol: str):
    """One deployment per engine under test (tests/conftest.py ENGINES_UNDER_TEST)."""
    c = Cluster.create(tmp_path_factory.mktemp(f"votes-{protocol}"), SCENARIOS, protocol=protocol)
    with c.running():
        yield c


def ballots(rng, k: int, invalid: int) -> dict[str, list[int]]:
    out = {}
    for v in VOTERS:
        row = [0] * k
        row[int(rng.integers(0, k))] = 1
        out[v] = row
    bad = [[0] * k, [1] * k, [2] + [0] * (k - 1), [-1, 1] + [1] * (k - 2)]
    for j, v in enumerate(rng.choice(VOTERS, size=invalid, replace=False)):
        out[str(v)] = bad[j % len(bad)]
    return out


def valid(row: list[int], approval: bool) -> bool:
    return all(x in (0, 1) for x in row) and (approval or sum(row) == 1)


async def run_vote(cluster: Cluster, scenario: str, cast: dict[str, list[int]]):
    job_id = await cluster.submit(scenario)
    nodes = cluster.nodes_of(scenario)
    await cluster.wait_running("office", job_id)

    async def one(voter: str, row: list[int]) -> None:
        try:
            await client_submit(job_id, "ballots", row, nodes, cluster.tls(voter), cluster.fingerprint(scenario))
        except SubmitError:   # the library refuses entries outside 0/1: play a misbehaving client
            await client_submit(job_id, "ballots", row, nodes, cluster.tls(voter), cluster.fingerprint(scenario),
                                skip_local_check=True)

    await asyncio.gather(*(one(v, r) for v, r in cast.items()))
    if VOTERS[0] in cast:
        with pytest.raises(SubmitError, match="ALREADY_EXISTS"):
            await client_submit(job_id, "ballots", cast[VOTERS[0]], nodes, cluster.tls(VOTERS[0]),
                                cluster.fingerprint(scenario))
    await close_inputs(cluster.deployment.coordinator_address, cluster.tls("operator"), job_id)
    final = await cluster.watch(job_id)
    assert final.state == "DONE", final.error
    output = {"tally": "tally", "approval": "tally", "winner": "winner", "referendum": "referendum"}[scenario]
    return (await cluster.fetch(job_id, output, "office")).value


@pytest.mark.parametrize("seed", [1, 2])
async def test_tally_and_approval_against_plaintext(cluster, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for scenario, approval in (("tally", False), ("approval", True)):
        cast = ballots(rng, len(OPTIONS), invalid=5)
        ok = [r for r in cast.values() if valid(r, approval)]
        want = {o: sum(r[j] for r in ok) for j, o in enumerate(OPTIONS)}
        # a ballot with an entry outside [0, 1] is excluded before the circuit (clientchecks.py);
        # a 0/1 ballot that breaks the exactly-one rule is counted invalid by the circuit
        want["invalid"] = sum(1 for r in cast.values() if all(x in (0, 1) for x in r)) - len(ok)
        assert await run_vote(cluster, scenario, cast) == want


async def test_winner_only_with_a_tie(cluster) -> None:
    cast = {v: [int(j == (i % 2)) for j in range(4)] for i, v in enumerate(VOTERS)}   # red 15, green 15
    assert await run_vote(cluster, "winner", cast) == {"winner": "red"}            # ties: earliest option


async def test_referendum_only_yes_or_no(cluster) -> None:
    half = {v: [1, 0] if i < 15 else [0, 1] for i, v in enumerate(VOTERS)}         # exactly half: passes
    assert await run_vote(cluster, "referendum", half) == {"passed": True, "result": "YES"}
    unanimous_no = {v: [0, 1] for v in VOTERS}
    unanimous_no[VOTERS[3]] = [1, 1]                                                # invalid, not counted
    assert await run_vote(cluster, "referendum", unanimous_no) == {"passed": False, "result": "NO"}


async def test_no_valid_ballots_has_no_winner_and_no_result(cluster) -> None:
    """No ballot at all, or only invalid ones: no winner (not the first option), a referendum that
    does not pass (2 * 0 >= 0 must not read as YES), a tally of zeros."""
    only_invalid = {VOTERS[0]: [1, 1, 0, 0], VOTERS[1]: [0, 0, 0, 0]}
    for cast in ({}, only_invalid):
        assert await run_vote(cluster, "winner", cast) == {"winner": None, "result": "no valid ballots"}
        assert await run_vote(cluster, "referendum", {v: r[:2] for v, r in cast.items()}) == \
            {"passed": False, "result": "no valid ballots"}
    assert await run_vote(cluster, "tally", only_invalid) == {**{o: 0 for o in OPTIONS}, "invalid": 2}
