"""Message integrity between nodes: every protocol message carries (job, round, sender, receiver)
and a node accepts it only when all four fit, once, with a well-formed in-field payload.

Part 1 drives the per-job Mailbox (mpcnode/transport/mailbox.py) and the in-memory network
directly: the once-only rule (an identical copy is ignored, a different one is a violation that
fails the job), replays, misaddressed messages, out-of-order rounds, buffer limits, a lost link,
closing. Part 2 sends hand-made frames over Link streams (tests/integration/handlink.py), with
the peers' real certificates, to a real node process that holds a job we prepared ourselves
(NodeControl.Prepare with the coordinator's certificate), and checks the answer to every frame.
The target node's message size limit is set to 1 MB (max_message_mb) so that the size check
can be exercised cheaply.
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
from mpcnode.computation.scenario import load_scenario
from mpcnode.protocols.agreement import job_digest
from mpcnode.exchange import ExchangeTimeout, MemoryNetwork
from mpcnode.transport import frames
from mpcnode.transport.errors import LinkLost
from mpcnode.transport.mailbox import MAX_PENDING_MESSAGES, BufferFull, ConflictingMessage
from mpcnode.transport.peers import MAX_LABEL, Mailbox, ProtocolViolation
from mpcnode.transport.tls import secure_channel
from parley.v1 import node_pb2, node_pb2_grpc
from tests.integration.cluster import Cluster
from tests.integration.handlink import Answer, HandLink

THREE = ["north", "east", "south"]
FOUR = ["north", "east", "south", "west"]


def arr(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


# ---- part 1: the mailbox --------------------------------------------------------------------------

def _box(me: int = 1, **kw) -> Mailbox:
    return Mailbox("job-1", THREE, me, **kw)   # this node is east (party 1)


async def test_mailbox_delivers_each_round_and_sender_once() -> None:
    box = _box()
    assert box.deliver("r1", "north", "east", arr(1, 2))
    assert box.deliver("r1", "south", "east", arr(3, 4))
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


async def test_mailbox_identical_copy_is_ignored_a_different_one_fails_the_job() -> None:
    violations: list[str] = []
    box = _box(on_violation=violations.append)
    assert box.deliver("r1", "north", "east", arr(1)) is True
    assert box.deliver("r1", "north", "east", arr(1)) is False      # a re-send: acknowledged and ignored
    assert not violations
    with pytest.raises(ConflictingMessage, match=r"protocol violation by north: round 'r1' sent twice"):
        box.deliver("r1", "north", "east", arr(999))
    assert violations == ["protocol violation by north: round 'r1' sent twice with different contents"]
    box.deliver("r1", "south", "east", arr(2))   # another sender, same round: its own slot
    got = await box.take("r1", [0, 2], 1.0)
    assert got[0].tolist() == [1] and got[2].tolist() == [2]   # the first message counts, only it


async def test_mailbox_same_values_in_another_shape_are_a_different_message() -> None:
    violations: list[str] = []
    box = _box(on_violation=violations.append)
    box.deliver("r1", "north", "east", arr(1, 2))
    with pytest.raises(ConflictingMessage):
        box.deliver("r1", "north", "east", arr(1, 2).reshape(2, 1))
    assert len(violations) == 1


async def test_mailbox_replay_after_the_round_was_consumed_is_ignored() -> None:
    box = _box()
    box.deliver("r1", "north", "east", arr(1))
    assert (await box.take("r1", [0], 1.0))[0].tolist() == [1]
    assert box.deliver("r1", "north", "east", arr(1)) is False
    # the replay did not leave anything behind for a later take of the same label
    with pytest.raises(ExchangeTimeout):
        await box.take("r1", [0], 0.05)
    with pytest.raises(ConflictingMessage):   # and a different payload under the used label is still a violation
        box.deliver("r1", "north", "east", arr(2))


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


async def test_mailbox_limits_what_a_sender_may_buffer_for_rounds_not_reached() -> None:
    box = _box(max_pending_bytes=64)
    for k in range(8):
        box.deliver(f"r{k}", "north", "east", arr(k))            # 8 x 8 bytes: at the limit
    with pytest.raises(BufferFull, match=r"north would have 72 bytes waiting here .* \(limit 64\)"):
        box.deliver("r8", "north", "east", arr(8))
    box.deliver("r8", "south", "east", arr(8))                   # the limit is per sender
    await box.take("r0", [0], 1.0)                               # taking frees room
    box.deliver("r8", "north", "east", arr(8))
    many = _box()
    for k in range(MAX_PENDING_MESSAGES):
        many.deliver(f"r{k}", "north", "east", arr(k))
    with pytest.raises(BufferFull, match=f"{MAX_PENDING_MESSAGES} messages waiting"):
        many.deliver("one-more", "north", "east", arr(0))


async def test_mailbox_lost_link_fails_waits_for_that_sender_only() -> None:
    box = _box()
    box.deliver("r1", "south", "east", arr(1))
    box.deliver("r2", "north", "east", arr(2))
    waiter = asyncio.ensure_future(box.take("r1", [0, 2], 30.0))
    await asyncio.sleep(0.01)
    box.peer_lost("north", "the stream was cancelled")
    with pytest.raises(LinkLost, match=r"job job-1: round 'r1' waiting for north: the stream was cancelled"):
        await asyncio.wait_for(waiter, 1.0)         # at once, not after the 30 s round timeout
    assert (await box.take("r2", [0], 1.0))[0].tolist() == [2]   # what did arrive from north is still there
    box.deliver("r3", "south", "east", arr(3))
    assert (await box.take("r3", [2], 1.0))[2].tolist() == [3]   # other senders are not concerned
    with pytest.raises(LinkLost):                                # a later wait for north fails at once
        await box.take("r4", [0], 30.0)


async def test_mailbox_failure_wakes_every_wait() -> None:
    box = _box()
    waiter = asyncio.ensure_future(box.take("r1", [2], 30.0))
    await asyncio.sleep(0.01)
    box.fail(ConnectionError("south refused round 'r0'"))
    with pytest.raises(ConnectionError, match="south refused"):
        await asyncio.wait_for(waiter, 1.0)
    with pytest.raises(ConnectionError, match="south refused"):
        await box.take("r2", [0], 30.0)


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
    {"name": "integ-total", "kind": "total", "parties": THREE, "protocol": "shamir", "recipients": ["north"],
     "input": {"name": "amount", "range": [0, 1000]}, "timeout_s": 60},
    {"name": "integ-four", "kind": "total", "parties": FOUR, "recipients": ["north"],   # makes west a peer
     "input": {"name": "amount", "range": [0, 1000]}, "timeout_s": 60},
]
INPUTS = {"integ-total": {"north": 1, "east": 2, "south": 3}, "integ-four": {o: 1 for o in FOUR}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = Cluster.create(tmp_path_factory.mktemp("integrity"), SCENARIOS, INPUTS,
                       node_overrides={"east": {"max_message_mb": 1}, "west": {"prepared_ttl_s": 2}},
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


OK = Answer("ack", grpc.StatusCode.OK)
DUP = Answer("duplicate", grpc.StatusCode.OK)


def _refused(answer: Answer, code: grpc.StatusCode, text: str) -> bool:
    return answer.kind == "refused" and answer.code == code and text in answer.detail


def _link(cluster: Cluster, identity: str, to: str = "east") -> HandLink:
    return HandLink(cluster.deployment.addresses[to], to, cluster.tls(identity))


async def test_envelope_checks_on_a_prepared_job(cluster: Cluster) -> None:
    job = await _prepared(cluster, ["east"])
    BAD, GONE = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    async with _link(cluster, "north") as north, _link(cluster, "south") as south, \
            _link(cluster, "west") as west:
        # a good message, then the same (job, round, sender) again byte for byte: acknowledged, ignored
        assert await north.send(job, "L1/prod", "north", "east") == OK
        assert await north.send(job, "L1/prod", "north", "east") == DUP
        # the same round from another sender, and the same sender in another round, are separate slots
        assert await south.send(job, "L1/prod", "south", "east") == OK
        assert await north.send(job, "L2/prod", "north", "east") == OK
        # misaddressed: a receiver other than the node that got it
        assert _refused(await north.send(job, "L3/prod", "north", "south"), BAD,
                        "addressed to 'south', this node is 'east'")
        # a configured peer that is not a party of this job
        assert _refused(await west.send(job, "L3/prod", "west", "east"), BAD, "'west' is not a peer in job")
        # a sender claiming another identity than its stream's certificate
        assert _refused(await north.send(job, "L3/prod", "south", "east"), grpc.StatusCode.PERMISSION_DENIED,
                        "caller north claims to be 'south'")
        # unknown job
        assert _refused(await north.send("no-such-job", "L1/prod", "north", "east"), GONE,
                        "job no-such-job is not active on east")
        # payload length that does not match the shape
        assert _refused(await north.send(job, "L4/prod", "north", "east", (1, 2, 3), shape=[2]), BAD,
                        "24 bytes do not hold shape [2]")
        assert _refused(await north.send(job, "L4/prod", "north", "east", payload=b"\x01" * 15, shape=[2]), BAD,
                        "do not hold shape")
        assert _refused(await north.send(job, "L4/prod", "north", "east", shape=[2**31, 2**31]), BAD,
                        "do not hold shape")
        answer = await north.send(job, "L4/prod", "north", "east", shape=[1] * 80 + [2])
        assert answer.kind == "refused" and answer.code == BAD, answer   # more dimensions than any array has
        # elements outside the field: p itself, and the largest uint64
        for bad in (F.P, 2**64 - 1):
            assert _refused(await north.send(job, "L4/prod", "north", "east", (1, bad)), BAD,
                            "element out of field range"), bad
        # bytes that are no frame at all: refused, and the stream stays usable
        assert _refused(await north.send_raw(b"\x0a\x05garbage"), BAD, "malformed")
        # none of the refused messages used up its slot: the well-formed message for L4 is accepted once
        assert await north.send(job, "L4/prod", "north", "east", (F.P - 1, 0)) == OK
        assert await north.send(job, "L4/prod", "north", "east", (F.P - 1, 0)) == DUP
        # a different message under a used label is a protocol violation: it fails the job on east
        assert _refused(await north.send(job, "L4/prod", "north", "east", (1, 1)), grpc.StatusCode.ALREADY_EXISTS,
                        "protocol violation by north: round 'L4/prod' sent twice with different contents")
        st = await cluster.node_status("east", job)
        assert st.state == node_pb2.JOB_STATE_FAILED
        assert st.error == "protocol violation by north: round 'L4/prod' sent twice with different contents"
        # after the job ended, nothing more is accepted for it
        assert _refused(await north.send(job, "L5/prod", "north", "east"), GONE, "is not active on east")
    cluster.assert_alive()


async def test_chunked_messages_are_checked_chunk_by_chunk(cluster: Cluster) -> None:
    job = await _prepared(cluster, ["east"])
    BAD = grpc.StatusCode.INVALID_ARGUMENT
    values = F.asfield(np.arange(40_000, dtype=np.int64))      # 320,000 bytes: two chunks of 256 KiB or less
    async with _link(cluster, "north") as north:
        # delivered whole, and only once (an identical re-send in chunks is ignored)
        assert await north.send(job, "L1/prod", "north", "east", values) == OK
        assert await north.send(job, "L1/prod", "north", "east", values, chunk_bytes=64_000) == DUP
        # an element out of range in the second chunk: the whole message is refused
        bad = values.copy()
        bad[-1] = F.P
        assert _refused(await north.send(job, "L2/prod", "north", "east", bad), BAD, "element out of field range")
        # chunks that do not follow each other: refused, the slot stays free
        body = values.astype("<u8").tobytes()
        header = node_pb2.LinkHeader(job_id=job, round="L2/prod", sender="north", receiver="east",
                                     total=len(body), offset=8000, want_ack=True)
        assert _refused(await north.send_raw(frames.encode(header, body[8000:16000])), BAD,
                        "a chunk at offset 8000 without its first chunk")
        assert await north.send(job, "L2/prod", "north", "east", values, chunk_bytes=100_000) == OK
        # a chunk boundary inside an element
        assert _refused(await north.send(job, "L3/prod", "north", "east", values, chunk_bytes=1001), BAD,
                        "bad first chunk")
        assert await north.send(job, "L3/prod", "north", "east", values, chunk_bytes=1000) == OK
    await _abort(cluster, job, ["east"])
    cluster.assert_alive()


async def test_message_over_the_size_limit_is_refused(cluster: Cluster) -> None:
    job = await _prepared(cluster, ["east"])
    big = np.zeros(1024 * 1024 // 8 + 16, dtype=np.uint64)      # a little over east's 1 MB limit
    async with _link(cluster, "north") as north, _link(cluster, "north", to="south") as north_south:
        assert _refused(await north.send(job, "L1/prod", "north", "east", big), grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"message of {big.nbytes} bytes is over this node's limit of 1048576 bytes")
        # just under the limit is fine, and the oversized attempt did not use up the slot
        small = np.zeros(1024 * 1024 // 8 - 64, dtype=np.uint64)
        assert await north.send(job, "L1/prod", "north", "east", small) == OK
        # what a peer may buffer for rounds this node has not reached: 2 messages of the largest size
        assert await north.send(job, "L2/prod", "north", "east", small) == OK
        assert _refused(await north.send(job, "L3/prod", "north", "east", small), grpc.StatusCode.RESOURCE_EXHAUSTED,
                        "bytes waiting here for rounds not reached yet")
        # a node without the small limit (south: default 256 MB) takes the same large message
        job_s = await _prepared(cluster, ["south"])
        assert await north_south.send(job_s, "L1/prod", "north", "south", big) == OK
    await _abort(cluster, job, ["east"])
    await _abort(cluster, job_s, ["south"])
    cluster.assert_alive()


async def test_replay_after_a_round_was_consumed_is_ignored(cluster: Cluster) -> None:
    """Start the job on south only and play north and east by hand: south consumes our "keys"
    messages (its first round), moves on to the input round, and then ignores identical replays of
    them; a replay with other contents is a protocol violation that fails the job."""
    job = await _prepared(cluster, THREE)   # north and east hold it too, so south's own sends succeed
    # the key round carries each lower party's key and everyone's digest of the job (agreement.py)
    digest = job_digest(job, _spec(job).fingerprint, THREE)
    keys = {o: np.concatenate([F.asfield(np.arange(4) + 10 * k), digest]) for k, o in enumerate(["north", "east"])}
    async with _link(cluster, "north", to="south") as north, _link(cluster, "east", to="south") as east:
        links = {"north": north, "east": east}
        st = await _control(cluster, "south", "Start", node_pb2.JobRef(job_id=job))
        assert st.state == node_pb2.JOB_STATE_RUNNING
        for org, key in keys.items():
            assert await links[org].send(job, "keys", org, "south", key) == OK
        async with asyncio.timeout(20):
            while (st := await cluster.node_status("south", job)).rounds_done < 2:   # past "keys"
                assert st.state == node_pb2.JOB_STATE_RUNNING, st.error
                await asyncio.sleep(0.05)
        for org, key in keys.items():
            assert await links[org].send(job, "keys", org, "south", key) == DUP
        st = await cluster.node_status("south", job)
        assert st.state == node_pb2.JOB_STATE_RUNNING, st.error   # the replays did not disturb the job
        other = keys["north"].copy()
        other[0] = (int(other[0]) + 1) % F.P
        assert _refused(await north.send(job, "keys", "north", "south", other), grpc.StatusCode.ALREADY_EXISTS,
                        "protocol violation by north")
        st = await cluster.node_status("south", job)
        assert st.state == node_pb2.JOB_STATE_FAILED and "protocol violation by north" in st.error, st
    await _abort(cluster, job, THREE)
    for org in THREE:
        assert cluster.stored_outputs(org, job) == 0


async def test_a_real_job_still_runs(cluster: Cluster) -> None:
    """Control: the limits above do not get in the way of honest traffic."""
    progress = await cluster.run("integ-total")
    assert (await cluster.fetch(progress.job_id, "total", "north")).value == 6
    cluster.assert_alive()


async def test_a_job_prepared_and_never_started_expires(cluster: Cluster) -> None:
    """west (prepared_ttl_s: 2) prepares an integ-four job that nobody starts: it accepts a
    peer's early message for it, then, two seconds later, fails the job as expired, refuses
    further messages for it (its mailbox is closed and emptied), and a late Start answers FAILED."""
    job = f"integ-ttl-{uuid.uuid4().hex[:8]}"
    spec = load_scenario(cluster.scenarios["integ-four"][0]).computation().job_spec(job, 60)
    reply = await _control(cluster, "west", "Prepare", spec)
    assert reply.accepted, reply.reason
    async with _link(cluster, "north", to="west") as north:
        assert await north.send(job, "L1/prod", "north", "west") == OK     # buffered for a round not reached
        await asyncio.sleep(3)
        status = await cluster.node_status("west", job)
        assert status.state == node_pb2.JOB_STATE_FAILED
        assert "prepared but not started within 2 s (prepared_ttl_s): expired" in status.error
        assert _refused(await north.send(job, "L2/prod", "north", "west"), grpc.StatusCode.NOT_FOUND,
                        f"job {job} is not active on west")
    late = await _control(cluster, "west", "Start", node_pb2.JobRef(job_id=job, live=FOUR))
    assert late.state == node_pb2.JOB_STATE_FAILED and "expired" in late.error
