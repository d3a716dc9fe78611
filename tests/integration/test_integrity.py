"""Message integrity between nodes: every protocol message carries (job, round, sender, receiver)
and a node accepts it only when all four fit, once, with a well-formed in-field payload.

Part 1 drives the per-job Mailbox (mpcnode/transport/peers.py) and the in-memory network
directly: duplicates, replays, misaddressed messages, out-of-order rounds, closing.
Part 2 sends hand-made PeerExchange.Deliver calls, with the peers' real certificates, to a real
node process that holds a job we prepared ourselves (NodeControl.Prepare with the coordinator's
certificate), and checks the status code of every refusal. The target node's message size limit
is set to 1 MB (max_message_mb) so that the size check can be exercised cheaply.
"""
from __future__ import annotations

import asyncio
import uuid

import grpc
import numpy as np
import pytest

from mpcnode.computation.builder import CircuitBuilder
from mpcnode import field as F
from mpcnode.computation.spec import Computation
from mpcnode.protocols.agreement import job_digest
from mpcnode.exchange import ExchangeTimeout, MemoryNetwork
from mpcnode.transport.peers import MAX_LABEL, Mailbox, ProtocolViolation
from mpcnode.transport.tls import secure_channel
from parley.v1 import node_pb2, node_pb2_grpc
from tests.integration.cluster import Cluster

THREE = ["north", "east", "south"]
FOUR = ["north", "east", "south", "west"]


def arr(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


# ---- part 1: the mailbox --------------------------------------------------------------------------

def _box(me: int = 1) -> Mailbox:
    return Mailbox("job-1", THREE, me)   # this node is east (party 1)


async def test_mailbox_delivers_each_round_and_sender_once() -> None:
    box = _box()
    box.deliver("r1", "north", "east", arr(1, 2))
    box.deliver("r1", "south", "east", arr(3, 4))
    got = await box.take("r1", [0, 2], 1.0)
    assert set(got) == {0, 2}
    assert got[0].tolist() == [1, 2] and got[2].tolist() == [3, 4]


async def test_mailbox_take_waits_for_a_later_delivery() -> None:
    box = _box()
    waiter = asyncio.ensure_future(box.take("r1", [0], 5.0))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    box.deliver("r1", "north", "east", arr(7))
    assert (await waiter)[0].tolist() == [7]


async def test_mailbox_duplicate_is_refused_and_not_mixed_in() -> None:
    box = _box()
    box.deliver("r1", "north", "east", arr(1))
    with pytest.raises(ProtocolViolation, match=r"duplicate message for round 'r1' from north"):
        box.deliver("r1", "north", "east", arr(999))
    box.deliver("r1", "south", "east", arr(2))   # another sender, same round: fine
    got = await box.take("r1", [0, 2], 1.0)
    assert got[0].tolist() == [1] and got[2].tolist() == [2]   # the first message counts, only it


async def test_mailbox_replay_after_the_round_was_consumed_is_refused() -> None:
    box = _box()
    box.deliver("r1", "north", "east", arr(1))
    assert (await box.take("r1", [0], 1.0))[0].tolist() == [1]
    with pytest.raises(ProtocolViolation, match="duplicate"):
        box.deliver("r1", "north", "east", arr(1))
    # the replay did not leave anything behind for a later take of the same label
    with pytest.raises(ExchangeTimeout):
        await box.take("r1", [0], 0.05)


@pytest.mark.parametrize("sender,receiver,label,problem", [
    ("north", "south", "r1", r"addressed to 'south', this node is 'east'"),
    ("north", "North", "r1", r"addressed to 'North'"),
    ("west", "east", "r1", r"'west' is not a peer in job job-1"),
    ("east", "east", "r1", r"'east' is not a peer in job job-1"),      # a node never messages itself
    ("north", "east", "", "bad round label"),
    ("north", "east", "x" * (MAX_LABEL + 1), "bad round label"),
])
async def test_mailbox_refuses_misaddressed_and_malformed_envelopes(sender: str, receiver: str, label: str,
                                                                    problem: str) -> None:
    box = _box()
    with pytest.raises(ProtocolViolation, match=problem):
        box.deliver(label, sender, receiver, arr(1))
    # nothing was recorded: the legitimate message for that slot is still accepted
    box.deliver("r1", "north", "east", arr(5))
    assert (await box.take("r1", [0], 1.0))[0].tolist() == [5]


async def test_mailbox_buffers_a_later_round_and_uses_it_only_for_that_round() -> None:
    box = _box()
    box.deliver("L2/prod", "north", "east", arr(22))    # arrives before L1's message
    with pytest.raises(ExchangeTimeout) as info:
        await box.take("L1/prod", [0], 0.05)            # it does not satisfy the earlier round
    assert info.value.missing == ["north"]
    assert "round 'L1/prod' timed out waiting for north" in str(info.value)
    box.deliver("L1/prod", "north", "east", arr(11))
    assert (await box.take("L1/prod", [0], 1.0))[0].tolist() == [11]
    assert (await box.take("L2/prod", [0], 1.0))[0].tolist() == [22]


async def test_mailbox_timeout_names_only_the_missing_senders() -> None:
    box = _box()
    box.deliver("r1", "south", "east", arr(1))
    with pytest.raises(ExchangeTimeout) as info:
        await box.take("r1", [0, 2], 0.05)
    assert info.value.missing == ["north"]
    # what did arrive is kept: once north's message comes, the round completes
    box.deliver("r1", "north", "east", arr(2))
    got = await box.take("r1", [0, 2], 1.0)
    assert got[0].tolist() == [2] and got[2].tolist() == [1]


async def test_mailbox_close_wakes_waiters_and_refuses_later_messages() -> None:
    box = _box()
    waiter = asyncio.ensure_future(box.take("r1", [0, 2], 30.0))
    await asyncio.sleep(0.01)
    box.close("aborted by coordinator")
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiter, 1.0)   # promptly, not after the 30 s round timeout
    with pytest.raises(ProtocolViolation, match=r"no longer running \(aborted by coordinator\)"):
        box.deliver("r1", "north", "east", arr(1))


async def test_memory_network_keeps_rounds_apart_when_messages_arrive_early() -> None:
    net = MemoryNetwork(2, timeout_s=0.2)
    a, b = net.exchange(0), net.exchange(1)
    # party 1 runs ahead: it sends its round-2 message before party 0 has finished round 1
    await b.round("round-2-early", {0: arr(2)}, [])
    with pytest.raises(ExchangeTimeout, match="round-1"):
        await a.round("round-1", {}, [1])
    got1, got2 = await asyncio.gather(a.round("round-1b", {}, [1]), b.round("round-1b", {0: arr(1)}, []))
    assert got1[1].tolist() == [1] and got2 == {}
    assert (await a.round("round-2-early", {}, [1]))[1].tolist() == [2]
    with pytest.raises(ValueError, match="reused"):
        await a.round("round-1b", {}, [])


# ---- part 2: a real node ----------------------------------------------------------------------------

SCENARIOS = [
    {"name": "integ-total", "kind": "total", "parties": THREE, "recipients": ["north"],
     "input": {"name": "amount", "range": [0, 1000]}, "timeout_s": 60},
    {"name": "integ-four", "kind": "total", "parties": FOUR, "recipients": ["north"],   # makes west a peer
     "input": {"name": "amount", "range": [0, 1000]}, "timeout_s": 60},
]
INPUTS = {"integ-total": {"north": 1, "east": 2, "south": 3}, "integ-four": {o: 1 for o in FOUR}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = Cluster.create(tmp_path_factory.mktemp("integrity"), SCENARIOS, INPUTS,
                       node_overrides={"east": {"max_message_mb": 1}},
                       approve={o: [_spec("any").fingerprint] for o in THREE})   # the hand-played job
    with c.running():
        yield c


def _spec(job_id: str) -> node_pb2.JobSpec:
    b = CircuitBuilder("integ-total")
    parts = [b.input(f"amount@{o}", o, 1, 0, 1000, key="amount") for o in THREE]
    b.output("total", b.sum(b.concat(parts)), ["north"])
    return Computation(b.build(), tuple(THREE), 1).job_spec(job_id, 60)


async def _control(cluster: Cluster, org: str, method: str, request):
    async with secure_channel(cluster.deployment.addresses[org], org, cluster.tls("coordinator")) as ch:
        return await getattr(node_pb2_grpc.NodeControlStub(ch), method)(request, timeout=10)


async def _prepared(cluster: Cluster, orgs: list[str]) -> str:
    job_id = f"integ-{uuid.uuid4().hex[:8]}"
    for org in orgs:
        reply = await _control(cluster, org, "Prepare", _spec(job_id))
        assert reply.accepted, reply.reason
        assert (await cluster.node_status(org, job_id)).state == node_pb2.JOB_STATE_PREPARED
    return job_id


async def _abort(cluster: Cluster, job_id: str, orgs: list[str]) -> None:
    for org in orgs:
        st = await _control(cluster, org, "Abort", node_pb2.JobRef(job_id=job_id))
        assert st.state == node_pb2.JOB_STATE_FAILED


def _msg(job: str, round_: str, sender: str, receiver: str = "east", values=(1, 2),
         payload: bytes | None = None, shape: list[int] | None = None) -> node_pb2.PeerMessage:
    data = np.array(values, dtype="<u8")
    return node_pb2.PeerMessage(job_id=job, round=round_, sender=sender, receiver=receiver,
                                payload=data.tobytes() if payload is None else payload,
                                shape=list(data.shape) if shape is None else shape)


async def _deliver(cluster: Cluster, sender_cert: str, msg: node_pb2.PeerMessage, to: str = "east",
                   ) -> tuple[grpc.StatusCode, str]:
    async with secure_channel(cluster.deployment.addresses[to], to, cluster.tls(sender_cert)) as ch:
        try:
            await node_pb2_grpc.PeerExchangeStub(ch).Deliver(msg, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


async def test_envelope_checks_on_a_prepared_job(cluster: Cluster) -> None:
    job = await _prepared(cluster, ["east"])
    OK, DUP = grpc.StatusCode.OK, grpc.StatusCode.ALREADY_EXISTS
    BAD, GONE = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    # a good message, then the same (job, round, sender) again: refused, whatever its payload
    assert await _deliver(cluster, "north", _msg(job, "L1/prod", "north")) == (OK, "")
    code, why = await _deliver(cluster, "north", _msg(job, "L1/prod", "north", values=(9, 9)))
    assert code == DUP and "duplicate message for round 'L1/prod' from north" in why
    code, _ = await _deliver(cluster, "north", _msg(job, "L1/prod", "north"))   # an exact replay too
    assert code == DUP
    # the same round from another sender, and the same sender in another round, are separate slots
    assert (await _deliver(cluster, "south", _msg(job, "L1/prod", "south")))[0] == OK
    assert (await _deliver(cluster, "north", _msg(job, "L2/prod", "north")))[0] == OK
    # misaddressed: a receiver other than the node that got it
    code, why = await _deliver(cluster, "north", _msg(job, "L3/prod", "north", receiver="south"))
    assert code == BAD and "addressed to 'south', this node is 'east'" in why
    # a configured peer that is not a party of this job
    code, why = await _deliver(cluster, "west", _msg(job, "L3/prod", "west"))
    assert code == BAD and "'west' is not a peer in job" in why
    # a sender claiming another identity than its certificate
    code, why = await _deliver(cluster, "north", _msg(job, "L3/prod", "south"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "claims to be 'south'" in why
    # unknown job
    code, why = await _deliver(cluster, "north", _msg("no-such-job", "L1/prod", "north"))
    assert code == GONE and "job no-such-job is not active on east" in why
    # payload length that does not match the shape
    code, why = await _deliver(cluster, "north", _msg(job, "L4/prod", "north", values=(1, 2, 3), shape=[2]))
    assert code == BAD and "24 bytes do not hold shape [2]" in why
    code, why = await _deliver(cluster, "north", _msg(job, "L4/prod", "north", payload=b"\x01" * 15, shape=[2]))
    assert code == BAD and "do not hold shape" in why
    code, why = await _deliver(cluster, "north", _msg(job, "L4/prod", "north", shape=[2**31, 2**31]))
    assert code == BAD and "do not hold shape" in why
    code, why = await _deliver(cluster, "north", _msg(job, "L4/prod", "north", shape=[1] * 80 + [2]))
    assert code == BAD, (code, why)   # more dimensions than any array has
    # elements outside the field: p itself, and the largest uint64
    for bad in (F.P, 2**64 - 1):
        code, why = await _deliver(cluster, "north", _msg(job, "L4/prod", "north", values=(1, bad)))
        assert code == BAD and "element out of field range" in why, (bad, code, why)
    # none of the refused messages used up its slot: the well-formed message for L4 is accepted once
    assert (await _deliver(cluster, "north", _msg(job, "L4/prod", "north", values=(F.P - 1, 0))))[0] == OK
    assert (await _deliver(cluster, "north", _msg(job, "L4/prod", "north")))[0] == DUP
    # after the job ends, nothing more is accepted for it
    await _abort(cluster, job, ["east"])
    code, why = await _deliver(cluster, "north", _msg(job, "L5/prod", "north"))
    assert code == GONE and "is not active on east" in why
    cluster.assert_alive()


async def test_message_over_the_size_limit_is_refused(cluster: Cluster) -> None:
    job = await _prepared(cluster, ["east"])
    big = np.zeros(1024 * 1024 // 8 + 16, dtype=np.uint64)      # a little over east's 1 MB limit
    code, _ = await _deliver(cluster, "north", _msg(job, "L1/prod", "north", values=big))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # just under the limit is fine, and the oversized attempt did not use up the slot
    small = np.zeros(1024 * 1024 // 8 - 64, dtype=np.uint64)
    assert (await _deliver(cluster, "north", _msg(job, "L1/prod", "north", values=small)))[0] == grpc.StatusCode.OK
    # a node without the small limit (south: default 256 MB) takes the same large message
    job_s = await _prepared(cluster, ["south"])
    msg = _msg(job_s, "L1/prod", "north", receiver="south", values=big)
    assert (await _deliver(cluster, "north", msg, to="south"))[0] == grpc.StatusCode.OK
    await _abort(cluster, job, ["east"])
    await _abort(cluster, job_s, ["south"])
    cluster.assert_alive()


async def test_replay_after_a_round_was_consumed_is_refused(cluster: Cluster) -> None:
    """Start the job on south only and play north and east by hand: south consumes our "keys"
    messages (its first round), moves on to the input round, and then refuses a replay of them."""
    job = await _prepared(cluster, THREE)   # north and east hold it too, so south's own sends succeed
    st = await _control(cluster, "south", "Start", node_pb2.JobRef(job_id=job))
    assert st.state == node_pb2.JOB_STATE_RUNNING
    # the key round carries each lower party's key and everyone's digest of the job (agreement.py)
    digest = job_digest(job, _spec(job).fingerprint, THREE)
    keys = {o: np.concatenate([F.asfield(np.arange(4) + 10 * k), digest]) for k, o in enumerate(["north", "east"])}
    for org, key in keys.items():
        assert (await _deliver(cluster, org, _msg(job, "keys", org, receiver="south", values=key),
                               to="south"))[0] == grpc.StatusCode.OK
    async with asyncio.timeout(20):
        while (st := await cluster.node_status("south", job)).rounds_done < 2:   # past "keys"
            assert st.state == node_pb2.JOB_STATE_RUNNING, st.error
            await asyncio.sleep(0.05)
    for org, key in keys.items():
        code, why = await _deliver(cluster, org, _msg(job, "keys", org, receiver="south", values=key), to="south")
        assert code == grpc.StatusCode.ALREADY_EXISTS and "duplicate message for round 'keys'" in why
    st = await cluster.node_status("south", job)
    assert st.state == node_pb2.JOB_STATE_RUNNING, st.error   # the replay did not disturb the job
    await _abort(cluster, job, THREE)
    for org in THREE:
        assert cluster.stored_outputs(org, job) == 0


async def test_a_real_job_still_runs(cluster: Cluster) -> None:
    """Control: the limits above do not get in the way of honest traffic."""
    progress = await cluster.run("integ-total")
    assert (await cluster.fetch(progress.job_id, "total", "north")).value == 6
    cluster.assert_alive()

