"""Input-only organizations end to end: 6 real node processes and the coordinator over mutual TLS.

The shipped breach-loss scenario runs on 3 compute nodes (northwind-bank, contoso-insurance,
fabrikam-credit); the other 3 companies are input-only: their nodes consent in Prepare, range-check
their own figure, secret-share it to the compute nodes at Start with their node certificate, and
hold no share. What must hold:

1. the recipients get the plaintext total of all six inputs;
2. an input-only node that did not approve the computation refuses it in Prepare: the job fails
   naming it, no compute node ever received a share of its input, and it delivered nothing;
3. an input-only node whose input breaks its declared range refuses it the same way, without the value;
4. a compute node accepts a share of an input-only party's node input only from that owner, once: not
   from another input-only party, not from a compute party, not from a stranger;
5. an input-only node never holds a share: no input share, no output share, nothing to fetch, and it
   refuses any share sent to it;
6. an input-only node that is down makes the job fail cleanly naming it; compute nodes started without
   the input-only nodes fail naming the missing organizations, within their round timeout;
7. outputs go only to recipients, input-only or not.
"""
from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from mpcnode import sharing
from mpcnode.computation.scenario import load_scenario
from mpcnode.audit import read_audit
from mpcnode.recipient import FetchError
from mpcnode.transport import serde
from mpcnode.transport.tls import secure_channel
from parley.v1 import node_pb2, node_pb2_grpc
from tests.integration.cluster import REPO, Cluster

BREACH = REPO / "scenarios" / "breach-loss.yaml"
# the shipped breach-loss names its engine; a share sent by hand has that engine's shape
SHARE_SHAPE = sharing.share_shape(load_scenario(BREACH).protocol_name)
SIX = ["northwind-bank", "contoso-insurance", "fabrikam-credit", "tailspin-payments", "woodgrove-bank",
       "litware-lending"]
COMPUTE, INPUT_ONLY = SIX[:3], SIX[3:]
ROUND_TIMEOUT_S = 4.0


def _io(name: str, recipients: list[str], parties: list[str] = SIX) -> dict:
    return {"name": name, "kind": "total", "parties": parties, "compute": COMPUTE, "recipients": recipients,
            "input": {"name": "loss_usd", "range": [0, 10 ** 12]}, "timeout_s": 30}


UNAPPROVED = _io("io-unapproved", SIX)                                # woodgrove-bank does not approve it
OUT_OF_RANGE = _io("io-range", SIX)                                  # litware-lending's figure is too large
PRIVATE = _io("io-private", ["tailspin-payments"], SIX[:5])          # only one input-only party learns it

_rng = np.random.default_rng(20261126)
VALUES = {org: int(v) for org, v in zip(SIX, _rng.integers(0, 10 ** 12, size=6, endpoint=True))}
INPUTS = {
    "breach-loss": dict(VALUES),
    "io-unapproved": {org: 1000 + i for i, org in enumerate(SIX)},
    "io-range": {**{org: 5 for org in SIX}, "litware-lending": 10 ** 12 + 1},
    "io-private": {org: VALUES[org] for org in SIX[:5]},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("input-only").resolve()
    approved = [{"scenario_file": str(root / "scenarios" / f"{n}.yaml")} for n in ("breach-loss", "io-range", "io-private")]
    c = Cluster.create(root, [BREACH, UNAPPROVED, OUT_OF_RANGE, PRIVATE], INPUTS, extra_identities=["mallory"],
                       policy_overrides={"woodgrove-bank": {"approvals": approved}},
                       node_overrides={org: {"round_timeout_s": ROUND_TIMEOUT_S} for org in COMPUTE},
                       coordinator_overrides={"prepare_timeout_s": 2.0, "rpc_timeout_s": 5.0})
    with c.running():
        yield c


# ---- helpers ----------------------------------------------------------------------------------

def _store(c: Cluster, org: str, sql: str, args: tuple = ()) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(c.data_dir(org) / "shares.sqlite3", timeout=10)) as db:
        return db.execute(sql, args).fetchall()


def input_shares(c: Cluster, org: str, job_id: str) -> list[tuple[str, str]]:
    """(input, submitter) of every input share a node holds for the job."""
    return _store(c, org, "SELECT input, client FROM client_shares WHERE job_id=? ORDER BY input", (job_id,))


def events(c: Cluster, org: str, job_id: str) -> list[str]:
    return [e.event for e in read_audit(c.data_dir(org) / "shares.sqlite3", job_id)]


async def submit_share(c: Cluster, org: str, job_id: str, input_name: str, identity: str, length: int = 1,
                       shape: list[int] | None = None) -> grpc.StatusCode | int:
    """SubmitShare of a share of zeros to `org` as `identity`: the accepted count, or the refusal's code."""
    payload, enc_shape = serde.encode(np.zeros((length,) + SHARE_SHAPE, dtype=np.uint64))
    req = node_pb2.ClientShare(job_id=job_id, input=input_name, share=payload, shape=shape or enc_shape)
    async with secure_channel(c.deployment.addresses[org], org, c.tls(identity)) as ch:
        try:
            ack = await node_pb2_grpc.InputIntakeStub(ch).SubmitShare(req, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return ack.accepted_count


async def control(c: Cluster, org: str, method: str, request):
    async with secure_channel(c.deployment.addresses[org], org, c.tls("coordinator")) as ch:
        return await getattr(node_pb2_grpc.NodeControlStub(ch), method)(request, timeout=10)


def spec_of(c: Cluster, scenario: str, job_id: str, timeout_s: float = 30.0) -> node_pb2.JobSpec:
    return c.scenarios[scenario][1].computation().job_spec(job_id, timeout_s)


# ---- 1, 5, 7: the total, and who holds what ----------------------------------------------------

async def test_breach_loss_on_three_compute_nodes_gives_the_plaintext_total(cluster: Cluster) -> None:
    progress = await cluster.run("breach-loss")
    assert progress.rounds_done == 3   # keys, the compute nodes' inputs, agreement on the input-only inputs
    total = sum(VALUES.values())
    for recipient in SIX:
        result = await cluster.fetch(progress.job_id, "total", recipient)
        assert result.value == total
        assert result.nodes == sorted(COMPUTE)
    job = progress.job_id
    for org in COMPUTE:   # each compute node holds one share of each input-only party's input, from its owner
        assert input_shares(cluster, org, job) == sorted((f"loss_usd@{o}", o) for o in INPUT_ONLY)
        assert cluster.stored_job(org, job) == ("DONE", True)
    for org in INPUT_ONLY:   # 5: no share in, no share out; done means delivered
        assert input_shares(cluster, org, job) == []
        assert cluster.stored_outputs(org, job) == 0
        assert cluster.stored_job(org, job) == ("DONE", True)
        assert events(cluster, org, job)[:3] == ["accepted", "started", "delivered"]
        # a recipient asking an input-only node gets no share, and nobody can hand it one
        with pytest.raises(FetchError, match="no node returned a share"):
            await cluster.fetch(job, "total", org, nodes={org: cluster.deployment.addresses[org]})
        assert await submit_share(cluster, org, job, f"loss_usd@{org}", org) == grpc.StatusCode.PERMISSION_DENIED
        assert await submit_share(cluster, org, job, "loss_usd@northwind-bank", "northwind-bank") \
            == grpc.StatusCode.PERMISSION_DENIED


async def test_outputs_go_only_to_recipients(cluster: Cluster) -> None:
    progress = await cluster.run("io-private")
    total = sum(VALUES[o] for o in SIX[:5])
    assert (await cluster.fetch(progress.job_id, "total", "tailspin-payments")).value == total
    for outsider in ["woodgrove-bank", "northwind-bank", "coordinator", "mallory"]:
        with pytest.raises(FetchError, match="refused"):
            await cluster.fetch(progress.job_id, "total", outsider)
    assert "litware-lending" not in (await control(cluster, "northwind-bank", "Status",
                                                    node_pb2.JobRef(job_id=progress.job_id))).error


# ---- 2, 3: consent at an input-only node -------------------------------------------------------

async def test_an_input_only_node_that_did_not_approve_refuses_and_nothing_of_it_is_shared(cluster: Cluster) -> None:
    progress = await cluster.run("io-unapproved", expect="FAILED")
    assert "woodgrove-bank refused: woodgrove-bank has not approved computation" in progress.error
    job = progress.job_id
    assert events(cluster, "woodgrove-bank", job) == ["refused"]
    for org in COMPUTE:   # never started: no input-only party's share reached a compute node
        assert input_shares(cluster, org, job) == []
        assert "started" not in events(cluster, org, job)
    for org in ["tailspin-payments", "litware-lending"]:   # approved, but never told to deliver
        assert "delivered" not in events(cluster, org, job)


async def test_an_input_only_node_with_an_out_of_range_input_refuses_without_the_value(cluster: Cluster) -> None:
    progress = await cluster.run("io-range", expect="FAILED")
    assert ("litware-lending refused: input loss_usd: a value lies outside the declared range "
            "[0, 1000000000000]") in progress.error
    assert str(10 ** 12 + 1) not in progress.error
    for org in COMPUTE:
        assert input_shares(cluster, org, progress.job_id) == []


# ---- 4: who may submit a node input's share ----------------------------------------------------

async def test_a_compute_node_takes_an_input_only_share_only_from_its_owner(cluster: Cluster) -> None:
    job = f"breach-loss-direct-{uuid.uuid4().hex[:8]}"
    reply = await control(cluster, "northwind-bank", "Prepare", spec_of(cluster, "breach-loss", job))
    assert reply.accepted, reply.reason
    try:
        target = "loss_usd@woodgrove-bank"
        assert await submit_share(cluster, "northwind-bank", job, target, "tailspin-payments") \
            == grpc.StatusCode.PERMISSION_DENIED       # another input-only party
        assert await submit_share(cluster, "northwind-bank", job, target, "contoso-insurance") \
            == grpc.StatusCode.PERMISSION_DENIED       # a compute party
        assert await submit_share(cluster, "northwind-bank", job, target, "mallory") \
            == grpc.StatusCode.PERMISSION_DENIED       # a stranger with a certificate of this CA
        assert await submit_share(cluster, "northwind-bank", job, target, "operator") \
            == grpc.StatusCode.PERMISSION_DENIED
        # a compute party's input is dealt among the compute nodes, never submitted
        assert await submit_share(cluster, "northwind-bank", job, "loss_usd@contoso-insurance", "contoso-insurance") \
            == grpc.StatusCode.NOT_FOUND
        assert await submit_share(cluster, "northwind-bank", job, target, "woodgrove-bank", length=2) \
            == grpc.StatusCode.INVALID_ARGUMENT       # the wrong length, even from the owner
        assert input_shares(cluster, "northwind-bank", job) == []
        assert await submit_share(cluster, "northwind-bank", job, target, "woodgrove-bank") == 1
        assert await submit_share(cluster, "northwind-bank", job, target, "woodgrove-bank") \
            == grpc.StatusCode.ALREADY_EXISTS         # once
        assert input_shares(cluster, "northwind-bank", job) == [(target, "woodgrove-bank")]
    finally:
        await control(cluster, "northwind-bank", "Abort", node_pb2.JobRef(job_id=job))


# ---- 6: an input-only node that is down -------------------------------------------------------

async def test_an_input_only_node_that_is_down_fails_the_job_naming_it(cluster: Cluster) -> None:
    cluster.kill("litware-lending")
    try:
        started = time.monotonic()
        progress = await cluster.run("breach-loss", expect="FAILED")
        assert progress.error.startswith("litware-lending unreachable: "), progress.error
        assert progress.error.endswith("(cannot run without input-only party litware-lending "
                                       "(its input would be missing))")
        assert time.monotonic() - started < 20
        for org in COMPUTE:
            assert input_shares(cluster, org, progress.job_id) == []
    finally:
        cluster.restart("litware-lending")
    await cluster.run("breach-loss")   # and with it back, the job runs


async def test_compute_nodes_started_without_the_input_only_nodes_fail_naming_them(cluster: Cluster) -> None:
    """Started by a coordinator that never starts the input-only nodes (or whose Start they never got):
    each compute node waits for the missing input at most its round timeout, then fails naming them."""
    job = f"breach-loss-alone-{uuid.uuid4().hex[:8]}"
    spec = spec_of(cluster, "breach-loss", job)
    replies = await asyncio.gather(*(control(cluster, org, "Prepare", spec) for org in SIX))
    assert all(r.accepted for r in replies), replies
    started = time.monotonic()
    await asyncio.gather(*(control(cluster, org, "Start", node_pb2.JobRef(job_id=job, live=COMPUTE))
                           for org in COMPUTE))
    try:
        async with asyncio.timeout(ROUND_TIMEOUT_S + 15):
            while True:
                states = [await control(cluster, org, "Status", node_pb2.JobRef(job_id=job)) for org in COMPUTE]
                if all(s.state == node_pb2.JOB_STATE_FAILED for s in states):
                    break
                await asyncio.sleep(0.1)
        assert time.monotonic() - started >= ROUND_TIMEOUT_S * 0.9
        for org, st in zip(COMPUTE, states):
            assert st.error == (f"no input from input-only parties tailspin-payments, woodgrove-bank, "
                                f"litware-lending arrived at {org} within {ROUND_TIMEOUT_S:g}s"), st.error
            assert cluster.stored_outputs(org, job) == 0
    finally:
        await asyncio.gather(*(control(cluster, org, "Abort", node_pb2.JobRef(job_id=job)) for org in SIX),
                             return_exceptions=True)
