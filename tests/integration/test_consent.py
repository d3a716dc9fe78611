"""Consent on content, attacked by a dishonest coordinator (5 real node processes, mutual TLS).

The coordinator is trusted only to schedule. These tests play it dishonest: with its own certificate
they call NodeControl.Prepare/Start/CloseInputs directly with JobSpecs built from
`Computation.job_spec(...)` and then edited, and they also take the honest path through the
coordinator process with scenario files an operator modified. Every attack must be refused before
any input is shared:

1. another computation under an approved scenario name (kind, contributors, recipients, threshold,
   parties, dropout rule, dataset, range) is refused by every node that did not approve it;
2. an altered circuit that claims an approved fingerprint is refused with a fingerprint mismatch;
3. a job id replayed with new recipients (after it finished, and while prepared) is refused;
4. a split view (two approved computations, or two live sets, under one job id) fails in the
   agreement round, before any node deals a share;
5. an input client sends nothing unless every node shows the computation it was told to expect, and
   a live set the coordinator pre-fills in Prepare is not shown to clients as the nodes' own;
6. approvals run out (max_runs), expire, and the min_threshold / min_contributors floors hold;
7. a refused node input never leaves its node: canary values (decimal and field encodings) and the
   input file's path appear nowhere the coordinator, the operator or another node can see.

What "nothing shared" means here, as far as it can be observed from outside: the refusing node
holds no job (Status NOT_FOUND, no row in its store) and wrote a `refused` audit event; no node
holds an output of the job or ever ran it past the session's first round (the key round that
carries the agreement digest; input dealing is the round after it); clients' shares were never
received (JobStatus.inputs_received == 0).
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import sqlite3
import struct
import sys
import uuid
import zipfile
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from coordinator import processes
from coordinator.client import JobFailed, close_inputs, submit as coordinator_submit, watch as coordinator_watch
from mpcnode import field as F
from mpcnode.audit import read_audit
from mpcnode.client import SubmitError, submit as client_submit
from mpcnode.computation.scenario import parse_scenario
from mpcnode.computation.spec import Computation
from mpcnode.recipient import FetchError, fetch as recipient_fetch
from mpcnode.transport.tls import secure_channel
from parley.v1 import circuit_pb2 as cpb
from parley.v1 import coordinator_pb2 as cop
from parley.v1 import node_pb2, node_pb2_grpc
from tests.integration.cluster import REPO, Cluster, run_sync

FOUR = ["alice", "bob", "carlos", "david"]
FIVE = [*FOUR, "erin"]
THREE = FOUR[:3]
BIDDERS = ["bidder-1", "bidder-2", "bidder-3"]
JOB_TIMEOUT = 30.0

CANARY = 7_314_159_265_358
CANARY_TEXT = "canary-Zx81"
CANARY_FLOAT = CANARY + 0.25


# ---- the computations ------------------------------------------------------------------------------

def _total(name: str, parties: list[str], recipients: list[str], **extra: object) -> dict:
    sc = {"name": name, "kind": "total", "parties": list(parties), "recipients": list(recipients),
          "protocol": "shamir", "input": {"name": "amount", "range": [0, 1_000_000]}, "timeout_s": JOB_TIMEOUT}
    sc.update(extra)
    return sc


def _variant(base: dict, **changes: object) -> dict:
    sc = copy.deepcopy(base)
    sc.update(changes)
    return sc


RAISE = {"name": "raise-average", "kind": "average", "parties": FOUR, "recipients": FOUR,
         "description": "Average yearly raise (USD) of Alice, Bob, Carlos and David",
         "input": {"name": "raise_usd", "range": [0, 1_000_000]}, "timeout_s": JOB_TIMEOUT}
BREACH = {"name": "breach-total", "kind": "total", "parties": FIVE, "recipients": FIVE,   # t = 2 by default
          "description": "Total data-breach loss (USD) of five companies",
          "input": {"name": "loss_usd", "range": [0, 10 ** 12]}, "timeout_s": JOB_TIMEOUT}
FIVE_SUM = _total("five-sum", FIVE, ["alice"], contributors=THREE)                  # erin, david: compute only
FIVE_STRICT = _total("five-sum-strict", FIVE, ["alice"], contributors=THREE, dropouts="none")
AUCTION = {"name": "sealed-bid", "kind": "auction", "parties": THREE, "recipients": ["alice"], "protocol": "shamir",
           "auction": {"type": "second-price", "bit_length": 20, "min_bid": 0, "max_bid": 1_000_000},
           "bidders": BIDDERS, "timeout_s": JOB_TIMEOUT}
RESERVED = _variant(AUCTION, name="reserved-bid",   # carlos inputs a secret reserve and wants >= 3 contributors
                    auction={**AUCTION["auction"], "type": "first-price", "reserve": {"secret_from": "carlos"}})
LIMITED = _total("limited-sum", THREE, THREE)      # alice allows one run
EXPIRED = _total("expired-sum", THREE, THREE)      # bob's approval expired in 2020

# approved by fingerprint only, by the organizations named in APPROVE
RAISE_TO_COORDINATOR = _variant(RAISE, recipients=[*FOUR, "coordinator"])            # all four (replay tests)
RAISE_BOB_TO_ALICE = _variant(RAISE, contributors=["bob"], recipients=["alice"])      # alice, the accomplice
SPLIT_A = _total("split-view", THREE, ["alice"],
                 input={"name": "raise_usd", "range": [0, 1_000_000], "dataset": "raise-average"})
SPLIT_B = _variant(SPLIT_A, recipients=["carlos"])
AUCTION_TO_COORDINATOR = _variant(AUCTION, recipients=["alice", "coordinator"])      # all three nodes
BREACH_T1 = _variant(BREACH, threshold=1, description="Total data-breach loss, at t = 1")  # all five; erin: t >= 2
RAISE_PAIR = _total("raise-pair", FOUR, ["alice"], contributors=["alice", "david"],   # all four; david: >= 3
                    input={"name": "raise_usd", "range": [0, 1_000_000], "dataset": "raise-average"})

# refusal paths of a node input; carlos is the victim. (what carlos's file holds, phrases the public reason
# must contain). Values None are written after Cluster.create (raw text, .npz, a deleted file).
CANARY_CASES: dict[str, tuple[object, tuple[str, ...]]] = {
    "range": (CANARY, ("input amount", "outside the declared range [0, 1000000000000]")),
    "negative": (-CANARY, ("input amount", "outside the declared range [0, 1000000000000]")),
    "string": (CANARY_TEXT, ("input amount", "expected integers")),
    "float": (CANARY_FLOAT, ("input amount", "expected integers")),
    "length": ([CANARY, CANARY_TEXT], ("input amount", "expected 1 value(s)")),
    "missing": ({"amuont": CANARY, "note": CANARY_TEXT}, ("input amount", "missing from dataset 'canary-missing'")),
    "notmap": (None, ("dataset 'canary-notmap'", "expected a mapping")),
    "yaml": (None, ("dataset 'canary-yaml'", "not valid YAML")),
    "nofile": (None, ("dataset 'canary-nofile'", "cannot be read")),
    "npz-float": (None, ("input amount", "expected integers")),
    "npz-range": (None, ("input amount", "outside the declared range [0, 1000000000000]")),
    "npz-shape": (None, ("input amount", "expected 1 value(s)")),
    "npz-corrupt": (None, ("dataset 'canary-npz-corrupt'", "not a readable .npz archive")),
    "npz-member": (None, ("dataset 'canary-npz-member'", "not a readable .npz archive")),
}
CANARY_SCENARIOS = {case: _total(f"canary-{case}", THREE, ["alice"], input={"name": "amount", "range": [0, 10 ** 12]})
                    for case in CANARY_CASES}

SCENARIOS = [RAISE, BREACH, FIVE_SUM, FIVE_STRICT, AUCTION, RESERVED, LIMITED, EXPIRED, *CANARY_SCENARIOS.values()]
RAISES = {"alice": 5_000, "bob": 7_000, "carlos": 3_000, "david": 1_000}
INPUTS: dict[str, dict[str, object]] = {
    "raise-average": dict(RAISES),
    "breach-total": {"alice": 10, "bob": 20, "carlos": 30, "david": 40, "erin": 50},
    "five-sum": {"alice": 1, "bob": 2, "carlos": 3},
    "five-sum-strict": {"alice": 1, "bob": 2, "carlos": 3},
    "limited-sum": {"alice": 11, "bob": 22, "carlos": 33},
    "reserved-bid": {"carlos": {"reserve": 400}},
    "expired-sum": {"alice": 11, "bob": 22, "carlos": 33},
}
for _case, (_value, _) in CANARY_CASES.items():
    INPUTS[f"canary-{_case}"] = {"alice": 1, "bob": 2, "carlos": 0 if _value is None else _value}


def _scenario(sc: dict):
    return parse_scenario(copy.deepcopy(sc), Path(f"{sc['name']}.yaml"))


def _computation(sc: dict) -> Computation:
    return _scenario(sc).computation()


def fp(sc: dict) -> str:
    return _computation(sc).fingerprint()


APPROVE = {
    "alice": [fp(RAISE_TO_COORDINATOR), fp(RAISE_BOB_TO_ALICE), fp(SPLIT_A), fp(AUCTION_TO_COORDINATOR),
              fp(BREACH_T1), fp(RAISE_PAIR)],
    "bob": [fp(RAISE_TO_COORDINATOR), fp(SPLIT_A), fp(AUCTION_TO_COORDINATOR), fp(BREACH_T1), fp(RAISE_PAIR)],
    "carlos": [fp(RAISE_TO_COORDINATOR), fp(SPLIT_B), fp(AUCTION_TO_COORDINATOR), fp(BREACH_T1), fp(RAISE_PAIR)],
    "david": [fp(RAISE_TO_COORDINATOR), fp(BREACH_T1), fp(RAISE_PAIR)],
    "erin": [fp(BREACH_T1)],
}
POLICY = {"erin": {"min_threshold": 2}, "david": {"min_contributors": 3}, "carlos": {"min_contributors": 3}}


# dataset -> the input file carlos's config names for it (filled by the cluster fixture)
VICTIM_FILES: dict[str, Path] = {}


# ---- the cluster ----------------------------------------------------------------------------------

def _patch_node_config(c: Cluster, org: str, edit) -> None:
    path = c.deployment.node_configs[org]
    cfg = yaml.safe_load(path.read_text())
    edit(cfg)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _approval_of(cfg: dict, scenario: str) -> dict:
    return next(a for a in cfg["policy"]["approvals"] if str(a.get("scenario_file", "")).endswith(f"/{scenario}.yaml"))


def _write_victim_files(c: Cluster) -> dict[str, Path]:
    """The victim's (carlos's) input file of every canary case, after Cluster.create wrote placeholders;
    .npz cases are pointed to from carlos's config. Returns dataset -> the file carlos's config names."""
    files = {f"canary-{case}": c.input_file(f"canary-{case}", "carlos") for case in CANARY_CASES}
    files["canary-notmap"].write_text(f"- {CANARY}\n- {CANARY_TEXT}\n")
    files["canary-yaml"].write_text(f"amount: [{CANARY}, {CANARY_TEXT}\nnote: {CANARY_TEXT}\n")
    files["canary-nofile"].unlink()
    arrays = {"npz-float": np.array([CANARY_FLOAT]), "npz-range": np.array([CANARY], dtype=np.int64),
              "npz-shape": np.array([CANARY, CANARY], dtype=np.int64)}
    for case, arr in arrays.items():
        yaml_file = files[f"canary-{case}"]
        npz = yaml_file.with_suffix(".npz")
        np.savez(npz, amount=arr)
        yaml_file.unlink()
        files[f"canary-{case}"] = npz
    corrupt = files["canary-npz-corrupt"].with_suffix(".npz")
    corrupt.write_bytes(b"PK\x03\x04" + f"{CANARY_TEXT} {CANARY} ".encode() * 20)
    member = files["canary-npz-member"].with_suffix(".npz")
    with zipfile.ZipFile(member, "w") as z:
        z.writestr("amount.npy", f"{CANARY_TEXT} {CANARY} not an npy array".encode())
    for case, npz in (("npz-corrupt", corrupt), ("npz-member", member)):
        files[f"canary-{case}"].unlink()
        files[f"canary-{case}"] = npz

    def point_to_npz(cfg: dict) -> None:
        for dataset, path in files.items():
            if path.suffix == ".npz":
                cfg["inputs"][dataset] = str(path)
        assert cfg["inputs"]["canary-nofile"] == str(files["canary-nofile"])   # configured, but gone
    _patch_node_config(c, "carlos", point_to_npz)
    return files


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = Cluster.create(tmp_path_factory.mktemp("consent"), SCENARIOS, INPUTS, approve=APPROVE,
                       policy_overrides=POLICY)
    _patch_node_config(c, "alice", lambda cfg: _approval_of(cfg, "limited-sum").update(max_runs=1))
    _patch_node_config(c, "bob", lambda cfg: _approval_of(cfg, "expired-sum").update(expires="2020-01-01T00:00:00Z"))
    VICTIM_FILES.update(_write_victim_files(c))
    with c.running():
        yield c
    for name, proc in c.procs.items():
        assert proc.returncode in (0, -15), f"{name} exited with {proc.returncode}:\n{c.log_tail(name)}"


# ---- a dishonest coordinator: the coordinator's certificate, driving the nodes itself ---------------

class Rogue:
    """NodeControl (and InputIntake.JobInfo) called directly with the coordinator's certificate."""

    def __init__(self, c: Cluster):
        self.c = c
        self.tls = c.tls("coordinator")
        self.channels: dict[str, grpc.aio.Channel] = {}

    async def __aenter__(self) -> "Rogue":
        self.channels = {o: secure_channel(a, o, self.tls) for o, a in self.c.deployment.addresses.items()}
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(ch.close() for ch in self.channels.values()))

    def ctl(self, org: str) -> node_pb2_grpc.NodeControlStub:
        return node_pb2_grpc.NodeControlStub(self.channels[org])

    async def prepare(self, orgs: list[str], spec: node_pb2.JobSpec) -> dict[str, node_pb2.PrepareReply]:
        replies = await asyncio.gather(*(self.ctl(o).Prepare(spec, timeout=15) for o in orgs))
        return dict(zip(orgs, replies))

    async def call(self, org: str, method: str, job_id: str, live: list[str] | None = None):
        """The reply, or the AioRpcError the node answered with."""
        try:
            return await getattr(self.ctl(org), method)(node_pb2.JobRef(job_id=job_id, live=live or []), timeout=15)
        except grpc.aio.AioRpcError as exc:
            return exc

    async def start(self, orgs: list[str], job_id: str, live: list[str] | None = None) -> dict[str, object]:
        return dict(zip(orgs, await asyncio.gather(*(self.call(o, "Start", job_id, live) for o in orgs))))

    async def status(self, org: str, job_id: str):
        return await self.call(org, "Status", job_id)

    async def commit(self, orgs: list[str], job_id: str) -> None:
        """What the coordinator sends once it recorded a job DONE; nodes release outputs only then."""
        await asyncio.gather(*(self.call(o, "Commit", job_id) for o in orgs))

    async def abort(self, orgs: list[str], job_id: str) -> None:
        await asyncio.gather(*(self.call(o, "Abort", job_id) for o in orgs))

    async def job_info(self, org: str, job_id: str) -> node_pb2.PublicJob:
        stub = node_pb2_grpc.InputIntakeStub(self.channels[org])
        return await stub.JobInfo(node_pb2.JobRef(job_id=job_id), timeout=15)

    async def wait_until(self, orgs: list[str], job_id: str, states: set[int], timeout: float = 20.0) -> dict:
        """Poll Status until every org's job is in one of `states`; returns {org: JobStatus}."""
        async with asyncio.timeout(timeout):
            while True:
                got = {o: await self.status(o, job_id) for o in orgs}
                if all(isinstance(s, node_pb2.JobStatus) and s.state in states for s in got.values()):
                    return got
                await asyncio.sleep(0.05)


def _job_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def _spec(sc: dict, job_id: str) -> node_pb2.JobSpec:
    return _computation(sc).job_spec(job_id, JOB_TIMEOUT)


# ---- what must hold after an attack ------------------------------------------------------------------

def _events(c: Cluster, org: str, job_id: str) -> list[tuple[str, str]]:
    return [(e.event, e.detail) for e in read_audit(c.data_dir(org) / "shares.sqlite3", job_id)]


def _audited(c: Cluster, org: str, job_id: str) -> list[tuple[str, str]]:
    """(event, fingerprint) of each audit event of the job."""
    return [(e.event, e.fingerprint) for e in read_audit(c.data_dir(org) / "shares.sqlite3", job_id)]


async def assert_refused_and_nothing_shared(c: Cluster, job_id: str, refusers: list[str], parties: list[str],
                                            reason: str | None = None) -> None:
    """Each refuser holds no job (Status NOT_FOUND, no row in its store) and audited a `refused` event
    (naming `reason` if given); no party ever started the job or holds an output of it."""
    async with Rogue(c) as rogue:
        for org in parties:
            st = await rogue.status(org, job_id)
            events = _events(c, org, job_id)
            if org in refusers:
                assert isinstance(st, grpc.aio.AioRpcError) and st.code() == grpc.StatusCode.NOT_FOUND, (org, st)
                assert job_id not in c.stored_jobs(org), org
                refused = [d for e, d in events if e == "refused"]
                assert refused, f"{org} has no 'refused' audit event for {job_id}: {events}"
                if reason is not None:
                    assert any(reason in d for d in refused), (org, refused, reason)
            elif isinstance(st, node_pb2.JobStatus):
                assert st.state in (node_pb2.JOB_STATE_PREPARED, node_pb2.JOB_STATE_FAILED), (org, st)
                assert st.rounds_done == 0 and st.bytes_sent == 0, (org, st)
            assert "started" not in [e for e, _ in events], (org, events)
            assert c.stored_jobs(org).get(job_id) not in ("RUNNING", "DONE"), org
            assert c.stored_outputs(org, job_id) == 0, org


async def watch_all(c: Cluster, job_id: str) -> list[cop.JobProgress]:
    """Every JobProgress the operator's Watch stream shows, to the end of the job."""
    seen: list[cop.JobProgress] = []
    async with asyncio.timeout(JOB_TIMEOUT + 15):
        try:
            await coordinator_watch(c.deployment.coordinator_address, c.tls("operator"), job_id, seen.append,
                                    timeout=JOB_TIMEOUT + 10)
        except JobFailed:
            pass
    assert seen, job_id
    return seen


async def operator_submits(c: Cluster, sc: dict, job_id: str | None = None) -> str:
    """The honest path: an operator submits a (modified) scenario file to the coordinator process."""
    job_id = job_id or _job_id(sc["name"] + "-op")
    path = c.root / "operator" / job_id / f"{sc['name']}.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(sc, sort_keys=False))
    got, created = await coordinator_submit(c.deployment.coordinator_address, c.tls("operator"), path, job_id)
    assert got == job_id and created
    return job_id


async def refused_everywhere(c: Cluster, sc: dict, refusers: list[str] | None = None) -> None:
    """`sc` (approved by no party, or by the parties not in `refusers`) through both doors: submitted by an
    operator to the coordinator process, and prepared and started directly by the dishonest coordinator."""
    parties = list(sc["parties"])
    refusers = refusers or parties
    accomplices = [p for p in parties if p not in refusers]
    reason = f"has not approved computation {fp(sc)[:16]}..."
    # the coordinator process: the job fails at Prepare, naming every refuser
    job = await operator_submits(c, sc)
    final = (await watch_all(c, job))[-1]
    assert final.state == "FAILED" and final.rounds_done == 0, final
    for org in refusers:
        assert f"{org} refused: {org} {reason}" in final.error, final.error
    for org in accomplices:
        assert f"{org} refused" not in final.error, final.error
    await assert_refused_and_nothing_shared(c, job, refusers, parties, reason)
    # the dishonest coordinator: Prepare everywhere, then Start everywhere regardless of the refusals
    job = _job_id(sc["name"] + "-rogue")
    async with Rogue(c) as rogue:
        replies = await rogue.prepare(parties, _spec(sc, job))
        for org in parties:
            assert replies[org].accepted == (org in accomplices), (org, replies[org])
            if org in refusers:
                assert replies[org].reason.startswith(f"{org} {reason}"), replies[org].reason
        started = await rogue.start(parties, job, parties)
        for org in refusers:
            assert isinstance(started[org], grpc.aio.AioRpcError), (org, started[org])
            assert started[org].code() == grpc.StatusCode.NOT_FOUND
        if accomplices:
            # an accomplice that runs anyway finds no peer for the key round: it fails there, nothing dealt
            done = await rogue.wait_until(accomplices, job, {node_pb2.JOB_STATE_FAILED, node_pb2.JOB_STATE_DONE})
            for org, st in done.items():
                assert st.state == node_pb2.JOB_STATE_FAILED and st.rounds_done <= 1, (org, st)
        await rogue.abort(parties, job)
    for org in parties:
        assert c.stored_outputs(org, job) == 0
        if org in refusers:
            assert job not in c.stored_jobs(org)
            assert any(e == "refused" for e, _ in _events(c, org, job)), org


# ---- positive controls -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def honest_raise(cluster: Cluster) -> str:
    """raise-average run by the coordinator process as approved (its id is replayed in test 3)."""
    async def run() -> str:
        job = await cluster.submit("raise-average", _job_id("raise-average-honest"))
        final = await cluster.watch(job)
        assert final.state == "DONE", final.error
        return job
    return run_sync(run())


async def test_honest_raise_average_completes(cluster: Cluster, honest_raise: str) -> None:
    """Positive control: the approved computation, scheduled honestly, runs and opens the plaintext answer
    to its recipients only."""
    for org in FOUR:
        assert (await cluster.fetch(honest_raise, "total", org)).value == sum(RAISES.values())
        assert (await cluster.fetch(honest_raise, "average", org)).value == sum(RAISES.values()) / 4
    with pytest.raises(FetchError, match="is not a recipient"):
        await cluster.fetch(honest_raise, "total", "coordinator")


async def test_honest_auction_with_clients_completes(cluster: Cluster) -> None:
    """Positive control for test 5: clients given the published fingerprint submit, and the seller-side
    recipient gets [sold, winner, price] of the second-price auction."""
    job = await cluster.submit("sealed-bid")
    for org in THREE:
        await cluster.wait_running(org, job)
    for bidder, bid in zip(BIDDERS, (300, 900, 500)):
        await client_submit(job, "bids", [bid], cluster.nodes_of("sealed-bid"), cluster.tls(bidder),
                            cluster.fingerprint("sealed-bid"))
    for org in THREE:
        assert (await cluster.node_status(org, job)).inputs_received == 3
    await close_inputs(cluster.deployment.coordinator_address, cluster.tls("operator"), job)
    final = await cluster.watch(job)
    assert final.state == "DONE", final.error
    # the raw winner index is the winner's place in the agreed (hash) row order: check the rendered result
    assert (await cluster.fetch(job, "result", "alice")).value == {"sold": True, "winner": BIDDERS[1], "price": 500}


# ---- 1. another computation under an approved scenario name ----------------------------------------

async def test_other_kind_total_instead_of_average_is_refused(cluster: Cluster) -> None:
    """raise-average submitted as kind total (no average output): a different document, approved by nobody;
    every party refuses at Prepare."""
    await refused_everywhere(cluster, _variant(RAISE, kind="total"))


async def test_raise_average_with_one_contributor_and_one_recipient_is_refused_by_the_victim(cluster: Cluster) -> None:
    """The raise-average attack: "raise-average" with Bob as the only contributor and Alice as the only
    recipient would open Bob's raise to Alice. Alice approved it (the accomplice); Bob, Carlos and David
    did not: Bob refuses at Prepare, and Alice, started anyway, cannot get past the first round."""
    await refused_everywhere(cluster, RAISE_BOB_TO_ALICE, refusers=["bob", "carlos", "david"])


async def test_other_recipients_are_refused(cluster: Cluster) -> None:
    """raise-average whose result also goes to erin, who is not one of the four: refused by all four."""
    await refused_everywhere(cluster, _variant(RAISE, recipients=[*FOUR, "erin"]))


async def test_lower_threshold_is_refused(cluster: Cluster) -> None:
    """breach-total at t = 1 where t = 2 was approved on five parties (two colluding nodes could then
    reconstruct every company's loss): refused by all five."""
    await refused_everywhere(cluster, _variant(BREACH, threshold=1))


async def test_parties_in_another_order_are_refused(cluster: Cluster) -> None:
    """raise-average with alice and bob swapped in the party order (other Shamir points): refused."""
    await refused_everywhere(cluster, _variant(RAISE, parties=["bob", "alice", "carlos", "david"]))


async def test_a_replaced_party_is_refused(cluster: Cluster) -> None:
    """raise-average with david replaced by erin as compute party: refused by every party of the job."""
    await refused_everywhere(cluster, _variant(RAISE, parties=["alice", "bob", "carlos", "erin"],
                                               recipients=["alice", "bob", "carlos", "erin"]))


async def test_another_dropout_rule_is_refused_and_the_approved_rule_holds(cluster: Cluster) -> None:
    """five-sum-strict was approved with dropouts "none". The same computation with "within-threshold" is
    refused; and the approved one, started by the dishonest coordinator with only three live parties, is
    refused at Start: it never runs."""
    await refused_everywhere(cluster, _variant(FIVE_STRICT, dropouts="within-threshold"))
    job = _job_id("five-sum-strict-fewer")
    async with Rogue(cluster) as rogue:
        replies = await rogue.prepare(FIVE, _spec(FIVE_STRICT, job))
        assert all(r.accepted for r in replies.values()), replies
        started = await rogue.start(THREE, job, THREE)
        for org, st in started.items():
            assert isinstance(st, grpc.aio.AioRpcError) and st.code() == grpc.StatusCode.INVALID_ARGUMENT, (org, st)
            assert "approved to run with all its parties only" in st.details()
            assert (await rogue.status(org, job)).state == node_pb2.JOB_STATE_PREPARED
        await rogue.abort(FIVE, job)
    await assert_refused_and_nothing_shared(cluster, job, [], FIVE)


async def test_another_dataset_is_refused(cluster: Cluster) -> None:
    """raise-average reading each party's breach-total dataset instead of its raise: refused by all four."""
    await refused_everywhere(cluster, _variant(RAISE, input={"name": "raise_usd", "range": [0, 1_000_000],
                                                             "dataset": "breach-total"}))


async def test_a_wider_input_range_is_refused(cluster: Cluster) -> None:
    """raise-average with the input range widened (a wider range admits values the approvers excluded)."""
    await refused_everywhere(cluster, _variant(RAISE, input={"name": "raise_usd", "range": [0, 10 ** 12]}))


async def test_an_unapproved_range_is_no_oracle_on_a_value(cluster: Cluster) -> None:
    """Probing alice's raise (5000) with unapproved ranges that exclude it ([0, 4999]) and include it
    ([0, 5001]): consent is checked before any input is read, so both refusals are the same rule and say
    nothing about the value."""
    reasons = []
    async with Rogue(cluster) as rogue:
        for hi in (4_999, 5_001):
            sc = _variant(RAISE, input={"name": "raise_usd", "range": [0, hi]})
            reply = (await rogue.prepare(["alice"], _spec(sc, _job_id(f"probe-{hi}"))))["alice"]
            assert not reply.accepted
            reasons.append(reply.reason.replace(fp(sc)[:16], "<fingerprint>"))
    assert reasons[0] == reasons[1] and "has not approved computation <fingerprint>" in reasons[0], reasons


# ---- 2. an altered circuit that claims an approved fingerprint ----------------------------------------

def _extra_output(spec: node_pb2.JobSpec) -> None:
    spec.circuit.outputs.add(name="leak", value="raise_usd@bob", recipients=["coordinator"])


def _sum_bob_only(spec: node_pb2.JobSpec) -> None:
    total = spec.circuit.ops[-1]                 # sum(concat(raise_usd@alice, ...)): make it sum(raise_usd@bob)
    assert total.kind == cpb.OP_SUM and len(total.args) == 1
    total.args[0] = "raise_usd@bob"


def _swap_parties(spec: node_pb2.JobSpec) -> None:
    spec.parties[0], spec.parties[1] = spec.parties[1], spec.parties[0]


EDITS = {
    "extra-output-to-coordinator": (RAISE, _extra_output),
    "recipient-added": (RAISE, lambda s: s.circuit.outputs[0].recipients.append("coordinator")),
    "divisor-changed": (RAISE, lambda s: setattr(s.circuit.outputs[1], "public_divisor", 1)),
    "range-widened": (RAISE, lambda s: setattr(s.circuit.inputs[1], "hi", 1 << 58)),
    "dataset-changed": (RAISE, lambda s: setattr(s.circuit.inputs[1], "dataset", "breach-total")),
    "sum-over-bob-only": (RAISE, _sum_bob_only),
    "description-changed": (RAISE, lambda s: setattr(s.circuit, "description", "harmless")),
    "parties-swapped": (RAISE, _swap_parties),
    "threshold-lowered": (BREACH, lambda s: setattr(s, "threshold", 1)),
    "dropouts-changed": (FIVE_STRICT, lambda s: setattr(s, "dropouts", "within-threshold")),
    "another-approved-circuit": (RAISE, lambda s: s.circuit.CopyFrom(_spec(RAISE_TO_COORDINATOR, "x").circuit)),
}


@pytest.mark.parametrize("edit", list(EDITS))
async def test_altered_circuit_claiming_the_approved_fingerprint_is_refused(cluster: Cluster, edit: str) -> None:
    """The dishonest coordinator sends the approved fingerprint with an edited JobSpec (an extra output to
    itself, another recipient, divisor, range, dataset, op, description, party order, threshold, dropout
    rule, or another computation's circuit): every party recomputes the fingerprint and refuses with a
    fingerprint mismatch; Start then finds no job anywhere."""
    base, change = EDITS[edit]
    parties = list(base["parties"])
    approved = fp(base)
    job = _job_id(f"altered-{edit}")
    spec = _spec(base, job)
    change(spec)
    assert spec.fingerprint == approved
    assert Computation.of_job(spec).fingerprint() != approved, "the edit must change the computation"
    async with Rogue(cluster) as rogue:
        replies = await rogue.prepare(parties, spec)
        for org, r in replies.items():
            assert not r.accepted, (org, edit)
            assert r.reason.startswith("fingerprint mismatch: the computation sent hashes to "), r.reason
            assert f"the job claims {approved[:16]}..." in r.reason, r.reason
        started = await rogue.start(parties, job)
        assert all(isinstance(s, grpc.aio.AioRpcError) and s.code() == grpc.StatusCode.NOT_FOUND
                   for s in started.values()), started
    await assert_refused_and_nothing_shared(cluster, job, parties, parties, "fingerprint mismatch")


async def test_unsupported_protocol_is_refused(cluster: Cluster) -> None:
    """The approved computation sent with another protocol engine name: refused (not a known engine),
    nothing prepared."""
    job = _job_id("protocol")
    spec = _spec(RAISE, job)
    spec.protocol = "spdz2k"
    async with Rogue(cluster) as rogue:
        replies = await rogue.prepare(FOUR, spec)
    for org, r in replies.items():
        assert not r.accepted and "'spdz2k' is not supported" in r.reason, (org, r)
    await assert_refused_and_nothing_shared(cluster, job, FOUR, FOUR)


async def test_a_circuit_that_could_wrap_is_refused_in_prepare(cluster: Cluster) -> None:
    """The approved average's total (four raises of up to 10^6: at most 4e6) squared is at most
    1.6e13, fine; squared again it could reach 2.56e26, past the field's signed range.
    Every node's Prepare refuses it by the wrap check (computation/ranges.py), naming the op, before
    its approvals are even consulted; the same job under replicated3 is refused for its 4 parties."""
    job = _job_id("wrap")
    spec = _spec(RAISE, job)
    total = spec.circuit.outputs[0].value
    spec.circuit.ops.add(out="sq", kind=cpb.OP_MUL, args=[total, total])
    spec.circuit.ops.add(out="sq2", kind=cpb.OP_MUL, args=["sq", "sq"])
    spec.circuit.outputs[0].value = "sq2"
    spec.fingerprint = Computation.of_job(spec).fingerprint()
    async with Rogue(cluster) as rogue:
        replies = await rogue.prepare(FOUR, spec)
    for org, r in replies.items():
        assert not r.accepted and r.reason.startswith(f"op {len(spec.circuit.ops) - 1} (sq2, mul): its value could "
                                                      "reach about 2^87, outside the shamir"), (org, r)
    await assert_refused_and_nothing_shared(cluster, job, FOUR, FOUR)
    job = _job_id("rep3-four")
    spec = _spec(RAISE, job)
    spec.protocol, spec.dropouts = "replicated3", "none"
    async with Rogue(cluster) as rogue:
        replies = await rogue.prepare(FOUR, spec)
    for org, r in replies.items():
        assert not r.accepted and r.reason == ("protocol: replicated3 runs with exactly 3 compute parties, this "
                                               "computation has 4"), (org, r)
    await assert_refused_and_nothing_shared(cluster, job, FOUR, FOUR)


# ---- 3. job ids replayed -------------------------------------------------------------------------------

def _stored_spec(c: Cluster, org: str, job_id: str) -> node_pb2.JobSpec:
    with contextlib.closing(sqlite3.connect(c.data_dir(org) / "shares.sqlite3", timeout=10)) as db:
        row = db.execute("SELECT spec FROM jobs WHERE job_id=?", (job_id,)).fetchone()
    assert row is not None, (org, job_id)
    return node_pb2.JobSpec.FromString(row[0])


async def test_finished_job_id_replayed_with_new_recipients_is_refused(cluster: Cluster, honest_raise: str) -> None:
    """After raise-average finished, the dishonest coordinator prepares the same job id with the coordinator
    added as a recipient, a computation every party approved (so only the reused id stops it): refused
    everywhere. Sent again claiming the old fingerprint over the new circuit: refused too, the job stays
    DONE with its own spec, and the coordinator still cannot fetch its output."""
    job = honest_raise
    new = _spec(RAISE_TO_COORDINATOR, job)
    async with Rogue(cluster) as rogue:
        replies = await rogue.prepare(FOUR, new)
        for org, r in replies.items():
            assert not r.accepted and f"job id {job} is already used for another circuit" in r.reason, (org, r)
            assert ("refused", fp(RAISE_TO_COORDINATOR)) in _audited(cluster, org, job), org
        forged = _spec(RAISE_TO_COORDINATOR, job)
        forged.fingerprint = fp(RAISE)
        for org, r in (await rogue.prepare(FOUR, forged)).items():   # the old fingerprint over another circuit
            assert not r.accepted and "already used for another circuit" in r.reason, (org, r)
        await rogue.start(FOUR, job)
        for org in FOUR:
            st = await rogue.status(org, job)
            assert st.state == node_pb2.JOB_STATE_DONE, (org, st)
            stored = _stored_spec(cluster, org, job)
            assert stored.fingerprint == fp(RAISE)
            assert all("coordinator" not in o.recipients for o in stored.circuit.outputs)
            assert cluster.stored_jobs(org)[job] == "DONE"
    with pytest.raises(FetchError, match="is not a recipient"):
        await cluster.fetch(job, "total", "coordinator")
    assert (await cluster.fetch(job, "average", "alice")).value == sum(RAISES.values()) / 4


async def test_prepared_job_id_replayed_with_new_recipients_is_refused(cluster: Cluster) -> None:
    """While raise-average is prepared (not started), the same id with the coordinator added as recipient
    is refused everywhere; the nodes still show and then run the approved computation, whose output only
    its recipients can fetch."""
    job = _job_id("raise-average-prepared")
    nodes = cluster.nodes_of("raise-average")
    async with Rogue(cluster) as rogue:
        assert all(r.accepted for r in (await rogue.prepare(FOUR, _spec(RAISE, job))).values())
        replies = await rogue.prepare(FOUR, _spec(RAISE_TO_COORDINATOR, job))
        for org, r in replies.items():
            assert not r.accepted and f"job id {job} is already used for another circuit" in r.reason, (org, r)
            assert ("refused", fp(RAISE_TO_COORDINATOR)) in _audited(cluster, org, job), org
        for org in FOUR:
            info = await rogue.job_info(org, job)
            assert info.spec == _computation(RAISE).canonical() and info.fingerprint == fp(RAISE)
        await rogue.start(FOUR, job, FOUR)
        await rogue.wait_until(FOUR, job, {node_pb2.JOB_STATE_DONE})
        await rogue.commit(FOUR, job)
    result = await recipient_fetch(job, "average", nodes, cluster.tls("alice"))
    assert result.value == sum(RAISES.values()) / 4
    with pytest.raises(FetchError, match="is not a recipient"):
        await recipient_fetch(job, "total", nodes, cluster.tls("coordinator"))


# ---- 4. split views -----------------------------------------------------------------------------------

AGREEMENT = "run a different computation or live set"


async def _stopped_in_key_round(rogue: Rogue, job: str, orgs: list[str], detector: str) -> None:
    """`detector` fails the job on the agreement; every other node stopped in the same first round
    too: on the mismatch, on a refused key message, or, when a peer stopped before its own key
    message left, still waiting in that round (until the abort a coordinator sends on a failure).
    Nobody got past the key round, so no input was dealt."""
    final = await rogue.wait_until([detector], job, {node_pb2.JOB_STATE_FAILED, node_pb2.JOB_STATE_DONE})
    assert final[detector].state == node_pb2.JOB_STATE_FAILED and AGREEMENT in final[detector].error, final
    for org in orgs:
        st = await rogue.status(org, job)
        assert st.rounds_done <= 1, (org, st)
        if st.state == node_pb2.JOB_STATE_FAILED:
            # the mismatch itself, or the key round failing because a peer already stopped
            # ("could not deliver round 'keys'", "X refused round 'keys'", "round 'keys' waiting for X")
            assert AGREEMENT in st.error or "round 'keys'" in st.error, (org, st)
        else:
            assert st.state == node_pb2.JOB_STATE_RUNNING, (org, st)


async def test_split_view_two_approved_computations_under_one_job_id_fail_before_sharing(cluster: Cluster) -> None:
    """Alice and Bob get computation A (result to alice; they approved it), Carlos gets computation B
    (result to carlos; he approved it), under one job id. Every Prepare is accepted; after Start the
    agreement in the first round fails on every node, before any input is dealt; nobody stores an output."""
    job = _job_id("split-view")
    async with Rogue(cluster) as rogue:
        a, b = await asyncio.gather(rogue.prepare(["alice", "bob"], _spec(SPLIT_A, job)),
                                    rogue.prepare(["carlos"], _spec(SPLIT_B, job)))
        assert all(r.accepted for r in [*a.values(), *b.values()]), (a, b)
        await rogue.start(THREE, job, THREE)
        # carlos hears two digests unlike his own: he always detects it (alice and bob usually too)
        await _stopped_in_key_round(rogue, job, THREE, "carlos")
        await rogue.abort(THREE, job)
    for org in THREE:
        assert cluster.stored_outputs(org, job) == 0
        assert cluster.stored_jobs(org)[job] == "FAILED"
    assert any(e == "failed" and AGREEMENT in d for e, d in _events(cluster, "carlos", job))
    # the two views were real: each node kept the computation it was sent
    assert _stored_spec(cluster, "alice", job).fingerprint == fp(SPLIT_A)
    assert _stored_spec(cluster, "carlos", job).fingerprint == fp(SPLIT_B)


async def test_split_view_different_live_sets_fail_before_sharing(cluster: Cluster) -> None:
    """five-sum, prepared identically on all five, started with live set {all five} on four nodes and
    {alice, bob, carlos, david} on david: david (who hears from alice, bob and carlos) fails the
    agreement. The others stop in the same first round: on the mismatch, because a peer that already
    stopped refuses their key message, or, when david stopped before its own key messages left, still
    waiting in that round until the abort a coordinator sends on seeing a failure. After the abort
    nobody ran past the first round (no input dealt) or stores an output."""
    job = _job_id("five-sum-live-split")
    async with Rogue(cluster) as rogue:
        assert all(r.accepted for r in (await rogue.prepare(FIVE, _spec(FIVE_SUM, job))).values())
        others = ["alice", "bob", "carlos", "erin"]
        await asyncio.gather(rogue.start(others, job, FIVE), rogue.start(["david"], job, FOUR))
        await _stopped_in_key_round(rogue, job, FIVE, "david")
        await rogue.abort(FIVE, job)
        for org in FIVE:
            st = await rogue.status(org, job)
            assert st.state == node_pb2.JOB_STATE_FAILED and st.rounds_done <= 1, (org, st)
    for org in FIVE:
        assert cluster.stored_outputs(org, job) == 0


# ---- 5. what input clients are shown -----------------------------------------------------------------

async def _inputs_received(rogue: Rogue, job: str, orgs: list[str]) -> dict[str, int]:
    return {o: (await rogue.status(o, job)).inputs_received for o in orgs}


async def test_client_refuses_a_job_other_than_the_published_one(cluster: Cluster) -> None:
    """The operator submits a sealed-bid variant that also opens the result to the coordinator, and the three
    nodes approved it; a bidder told the published sealed-bid fingerprint refuses to send anything."""
    job = await operator_submits(cluster, AUCTION_TO_COORDINATOR)
    for org in THREE:
        await cluster.wait_running(org, job)
    with pytest.raises(SubmitError, match="not the computation you were given"):
        await client_submit(job, "bids", [700], cluster.nodes_of("sealed-bid"), cluster.tls("bidder-1"),
                            fp(AUCTION))
    async with Rogue(cluster) as rogue:
        assert await _inputs_received(rogue, job, THREE) == {o: 0 for o in THREE}
        await rogue.abort(THREE, job)
    assert (await watch_all(cluster, job))[-1].state == "FAILED"
    for org in THREE:
        assert cluster.stored_outputs(org, job) == 0


async def test_client_refuses_when_nodes_show_different_documents(cluster: Cluster) -> None:
    """The dishonest coordinator prepares sealed-bid on alice and bob and the coordinator-recipient variant on
    carlos (each approved where sent) under one id and starts them: a bidder expecting either fingerprint
    refuses, no node receives a share, and once inputs close the agreement fails the job everywhere."""
    job = _job_id("sealed-bid-split")
    nodes = cluster.nodes_of("sealed-bid")
    async with Rogue(cluster) as rogue:
        a, b = await asyncio.gather(rogue.prepare(["alice", "bob"], _spec(AUCTION, job)),
                                    rogue.prepare(["carlos"], _spec(AUCTION_TO_COORDINATOR, job)))
        assert all(r.accepted for r in [*a.values(), *b.values()]), (a, b)
        await rogue.start(THREE, job, THREE)
        for expected in (fp(AUCTION), fp(AUCTION_TO_COORDINATOR)):
            with pytest.raises(SubmitError, match="the nodes show different computations"):
                await client_submit(job, "bids", [700], nodes, cluster.tls("bidder-2"), expected)
        assert await _inputs_received(rogue, job, THREE) == {o: 0 for o in THREE}
        await asyncio.gather(*(rogue.call(o, "CloseInputs", job, THREE) for o in THREE))
        await _stopped_in_key_round(rogue, job, THREE, "carlos")
        await rogue.abort(THREE, job)
    for org in THREE:
        assert cluster.stored_outputs(org, job) == 0


async def test_client_refuses_when_a_party_does_not_show_the_job(cluster: Cluster) -> None:
    """sealed-bid prepared on alice and bob only: carlos, a compute party, does not know the job, so the
    bidder cannot check what carlos runs and sends nothing."""
    job = _job_id("sealed-bid-partial")
    async with Rogue(cluster) as rogue:
        assert all(r.accepted for r in (await rogue.prepare(["alice", "bob"], _spec(AUCTION, job))).values())
        with pytest.raises(SubmitError, match="did not answer"):
            await client_submit(job, "bids", [700], cluster.nodes_of("sealed-bid"), cluster.tls("bidder-3"),
                                fp(AUCTION))
        assert await _inputs_received(rogue, job, ["alice", "bob"]) == {"alice": 0, "bob": 0}
        await rogue.abort(["alice", "bob"], job)


async def test_prepare_cannot_choose_the_live_set_clients_are_shown(cluster: Cluster) -> None:
    """JobSpec.live is "set by the node at Start". The dishonest coordinator pre-fills it in Prepare with
    {alice, bob}: were it accepted, nodes would show that claim to input clients before Start, a bidder
    would send its shares to alice and bob only, and its bid would silently not count (a node without
    the share drops the row). Must hold: every node refuses such a Prepare, so no client ever sees it."""
    job = _job_id("sealed-bid-live")
    spec = _spec(AUCTION, job)
    spec.live.extend(["alice", "bob"])
    async with Rogue(cluster) as rogue:
        replies = await rogue.prepare(THREE, spec)
        for org, r in replies.items():
            assert not r.accepted and "live parties are set at Start" in r.reason, (org, r)
        with pytest.raises(SubmitError):
            await client_submit(job, "bids", [700], cluster.nodes_of("sealed-bid"), cluster.tls("bidder-1"),
                                fp(AUCTION))
    for org in THREE:
        assert job not in cluster.stored_jobs(org)


# ---- 6. limits of an approval ------------------------------------------------------------------------

async def test_max_runs_exhausted_is_refused(cluster: Cluster) -> None:
    """alice approved limited-sum for one run: the first run completes (plaintext 66), the second is refused
    by alice through the coordinator, and by the dishonest coordinator's direct Prepare too."""
    first = (await cluster.run("limited-sum")).job_id
    assert (await cluster.fetch(first, "total", "bob")).value == 66
    final = await cluster.run("limited-sum", expect="FAILED")
    rule = f"alice's approval of computation {fp(LIMITED)[:16]}... allows 1 run(s), all used"
    assert f"alice refused: {rule}" in final.error, final.error
    await assert_refused_and_nothing_shared(cluster, final.job_id, ["alice"], THREE, rule)
    job = _job_id("limited-sum-rogue")
    async with Rogue(cluster) as rogue:
        assert (await rogue.prepare(["alice"], _spec(LIMITED, job)))["alice"].reason == rule
    await assert_refused_and_nothing_shared(cluster, job, ["alice"], ["alice"], rule)


async def test_expired_approval_is_refused(cluster: Cluster) -> None:
    """bob's approval of expired-sum expired in 2020: refused, nothing shared."""
    final = await cluster.run("expired-sum", expect="FAILED")
    rule = f"bob's approval of computation {fp(EXPIRED)[:16]}... expired at 2020-01-01T00:00:00Z"
    assert f"bob refused: {rule}" in final.error, final.error
    await assert_refused_and_nothing_shared(cluster, final.job_id, ["bob"], THREE, rule)


async def _floor_refuses(c: Cluster, sc: dict, victim: str, rule: str) -> None:
    parties = list(sc["parties"])
    others = [p for p in parties if p != victim]
    final = (await watch_all(c, await operator_submits(c, sc)))[-1]
    assert final.state == "FAILED" and f"{victim} refused: {rule}" in final.error, final.error
    await assert_refused_and_nothing_shared(c, final.job_id, [victim], parties, rule)
    job = _job_id(sc["name"] + "-floor")
    async with Rogue(c) as rogue:
        replies = await rogue.prepare(parties, _spec(sc, job))
        assert not replies[victim].accepted and rule in replies[victim].reason, replies[victim]
        assert all(replies[o].accepted for o in others), replies
        # the others cannot run without the victim: it owns an input
        started = await rogue.start(others, job, others)
        for org, st in started.items():
            assert isinstance(st, grpc.aio.AioRpcError) and st.code() == grpc.StatusCode.INVALID_ARGUMENT, (org, st)
            assert f"cannot run without input owners {victim}" in st.details()
        await rogue.abort(parties, job)
    await assert_refused_and_nothing_shared(c, job, [victim], parties, rule)


async def test_min_threshold_floor_refuses_an_approved_computation(cluster: Cluster) -> None:
    """breach-total at t = 1 is approved by fingerprint on all five, but erin's policy says t >= 2: erin refuses,
    and the others cannot run it without erin's input."""
    await _floor_refuses(cluster, BREACH_T1, "erin", "erin's policy requires threshold t >= 2, the job has t = 1")


async def test_min_contributors_floor_refuses_an_approved_computation(cluster: Cluster) -> None:
    """raise-pair (alice and david's raises summed for alice) is approved by fingerprint on all four, but david
    requires 3 contributors behind any output his data feeds: david refuses, alice learns nothing."""
    await _floor_refuses(cluster, RAISE_PAIR, "david",
                         "david's policy requires at least 3 contributors behind every output its data feeds; "
                         "output 'total' has 2")


# ---- 7. canaries: a refused node input never leaves its node ---------------------------------------

P = F.P


def _needles(c: Cluster) -> dict[str, bytes]:
    """The canaries in every form they could travel in: decimal, hex, float text, field elements (v mod p
    and p - v, 8-byte little-endian), raw int64/float64, the canary string, and the victim's file paths."""
    out: dict[str, bytes] = {
        "decimal": str(CANARY).encode(), "hex": f"{CANARY:x}".encode(), "float-text": b"7.314159",
        "string": CANARY_TEXT.encode(), "string-utf16": CANARY_TEXT.encode("utf-16-le"),
        "field(v)": (CANARY % P).to_bytes(8, "little"), "field(p-v)": (-CANARY % P).to_bytes(8, "little"),
        "int64-be": struct.pack(">q", CANARY), "float64": struct.pack("<d", CANARY_FLOAT),
        "float64-int": struct.pack("<d", float(CANARY)),
    }
    for dataset, path in VICTIM_FILES.items():
        out[f"path:{dataset}"] = str(path).encode()
    out["basename"] = b"carlos.yaml"
    out["basename-npz"] = b"carlos.npz"
    return out


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def _store_files(directory: Path, stem: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob(stem + "*")) if p.is_file()}


def _haystacks(c: Cluster, replies: dict[str, str]) -> dict[str, bytes]:
    """Everything the coordinator stores and prints, every reply it got, the other nodes' logs and stores,
    and every node's audit log (the victim's included)."""
    hay: dict[str, bytes] = {f"reply:{k}": v.encode() for k, v in replies.items()}
    db = Path(yaml.safe_load(c.deployment.coordinator_config.read_text())["database"])
    for name, data in _store_files(db.parent, db.name).items():
        hay[f"coordinator-db:{name}"] = data
    hay["coordinator-log"] = _read(c.log("coordinator"))
    for org in c.orgs:
        for name, data in _store_files(c.data_dir(org), "shares.sqlite3").items():
            hay[f"{org}-store:{name}"] = data          # the victim's too: it holds its audit log
        hay[f"{org}-audit"] = "\n".join(" ".join(e) for e in _all_events(c, org)).encode()
        if org != "carlos":
            hay[f"{org}-log"] = _read(c.log(org))
    return hay


def _all_events(c: Cluster, org: str) -> list[tuple[str, str, str]]:
    return [(e.event, e.job_id, e.detail) for e in read_audit(c.data_dir(org) / "shares.sqlite3")]


def _leaks(c: Cluster, replies: dict[str, str]) -> list[str]:
    needles = _needles(c)
    return [f"{n} in {h}" for h, data in _haystacks(c, replies).items() for n, needle in needles.items()
            if needle in data]


async def _operator_cli(c: Cluster, scenario: str, job_id: str) -> tuple[int, str]:
    """`python -m coordinator submit` as an operator runs it; (exit code, everything it printed)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "coordinator", "submit", str(c.scenarios[scenario][0]), "--coordinator",
        c.deployment.coordinator_address, "--certs", str(c.certs), "--identity", "operator", "--job-id", job_id,
        "--timeout", str(JOB_TIMEOUT), cwd=REPO, env=processes.child_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), JOB_TIMEOUT + 20)
    return proc.returncode or 0, out.decode(errors="replace")


CLI_CASES = {"range", "npz-member"}


@pytest.mark.parametrize("case", list(CANARY_CASES))
async def test_refused_node_input_never_leaves_its_node(cluster: Cluster, case: str) -> None:
    """carlos's input for canary-<case> breaks a rule (out of range, wrong type, wrong length, missing field,
    not a mapping, invalid YAML, file missing, .npz of floats / out of range / wrong shape / corrupt). The job
    fails at Prepare with a reason naming the input (or dataset) and the rule, and neither the canary
    value (decimal, field encodings) nor the file's path reaches the coordinator (database, log, replies),
    the operator (submit output, Watch), the other nodes (logs, stores) or any audit log."""
    scenario = f"canary-{case}"
    phrases = CANARY_CASES[case][1]
    replies: dict[str, str] = {}
    job = _job_id(scenario)
    if case in CLI_CASES:
        code, printed = await _operator_cli(cluster, scenario, job)
        assert code == 1, printed
        replies["operator-cli"] = printed
        progress = await watch_all(cluster, job)
    else:
        await cluster.submit(scenario, job)
        progress = await watch_all(cluster, job)
    final = progress[-1]
    assert final.state == "FAILED", final
    error = final.error
    assert error.startswith("carlos refused: ") and all(p in error for p in phrases), error
    replies.update({f"watch[{i}]": p.error for i, p in enumerate(progress)})
    async with Rogue(cluster) as rogue:
        for org in THREE:
            st = await rogue.status(org, job)
            replies[f"status:{org}"] = st.details() if isinstance(st, grpc.aio.AioRpcError) else st.error
        # the dishonest coordinator asks the victim directly, and tries to start it anyway
        direct = _job_id(scenario + "-rogue")
        reply = (await rogue.prepare(["carlos"], _spec(CANARY_SCENARIOS[case], direct)))["carlos"]
        assert not reply.accepted and all(p in reply.reason for p in phrases), reply
        replies["prepare-reason"] = reply.reason
        started = await rogue.call("carlos", "Start", direct, THREE)
        assert isinstance(started, grpc.aio.AioRpcError) and started.code() == grpc.StatusCode.NOT_FOUND
        replies["start-details"] = started.details()
    await assert_refused_and_nothing_shared(cluster, job, ["carlos"], THREE, error.removeprefix("carlos refused: "))
    hay = _haystacks(cluster, replies)
    coordinator_db = b"".join(v for k, v in hay.items() if k.startswith("coordinator-db:"))
    assert job.encode() in coordinator_db and error.encode() in coordinator_db   # we search where it stores
    assert any(e == "refused" and job == j for e, j, _ in _all_events(cluster, "carlos"))
    leaks = _leaks(cluster, replies)
    assert not leaks, f"canary or victim path visible outside the victim: {leaks}"


def test_canary_search_finds_what_the_victim_logs(cluster: Cluster) -> None:
    """Control for the search above: the victim's own log (which may hold the detail) shows the out-of-range
    value, the canary string and its input file's path, so the same search would have found a leak."""
    log = _read(cluster.log("carlos"))
    needles = _needles(cluster)
    assert needles["decimal"] in log and needles["string"] in log
    assert needles["path:canary-range"] in log
    assert needles["field(v)"] not in log            # text log: binary encodings only in stores, if anywhere


def test_the_nodes_survived(cluster: Cluster) -> None:
    """No attack above crashed a node or the coordinator."""
    cluster.assert_alive()


async def _reserved_auction(cluster: Cluster, bids: dict[str, int]) -> cop.JobProgress:
    job = await cluster.submit("reserved-bid")
    for org in THREE:
        await cluster.wait_running(org, job)
    for bidder, bid in bids.items():
        await client_submit(job, "bids", [bid], cluster.nodes_of("reserved-bid"), cluster.tls(bidder),
                            cluster.fingerprint("reserved-bid"))
    await close_inputs(cluster.deployment.coordinator_address, cluster.tls("operator"), job)
    return await cluster.watch(job)


async def test_min_contributors_counts_the_clients_who_actually_submitted(cluster: Cluster) -> None:
    """carlos feeds a secret reserve into an auction listing three bidders (4 contributors on paper) and
    wants at least 3. The coordinator closes input after ONE bid: the winner and price would reveal that
    bid next to carlos's reserve. Must hold: the job stops after the nodes agreed on the rows and before
    the circuit runs, naming the rule and the count; nothing is stored or released. With two bids it runs."""
    final = await _reserved_auction(cluster, {"bidder-1": 900})
    assert final.state == "FAILED", final
    assert ("carlos's policy requires at least 3 contributors behind every output its data feeds; "
            "output 'result' has 2 once client input closed") in final.error, final.error
    for org in THREE:
        assert cluster.stored_outputs(org, final.job_id) == 0
    final = await _reserved_auction(cluster, {"bidder-2": 900, "bidder-3": 500})
    assert final.state == "DONE", final.error
    assert (await cluster.fetch(final.job_id, "result", "alice")).value == {"sold": True, "winner": "bidder-2",
                                                                            "price": 900}
