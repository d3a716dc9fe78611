"""The Link wire format and the receiving end of a stream, without I/O (mpcnode/transport/frames.py,
inbound.py): frames round-trip through protobuf in both directions, hostile bytes are refused
rather than raised, chunks are reassembled in order, checked as they arrive, and counted for the
sender's window; a refused chunked message is dropped whole, without a notice per chunk."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mpcnode import field as F
from mpcnode.errors import NotFound
from mpcnode.transport import frames
from mpcnode.transport.inbound import InboundStream
from mpcnode.transport.mailbox import Mailbox
from parley.v1 import node_pb2

PARTIES = ["north", "east", "south"]


def header(**kw) -> node_pb2.LinkHeader:
    base = dict(job_id="job-1", round="L1/prod", sender="north", receiver="east")
    base.update(kw)
    return node_pb2.LinkHeader(**base)


def test_encoding_is_a_protobuf_linkframe_and_decoding_takes_any_field_order() -> None:
    h = header(shape=[2], total=16, want_ack=True)
    data = np.array([5, 7], dtype="<u8").tobytes()
    raw = frames.encode(h, data)
    parsed = node_pb2.LinkFrame.FromString(raw)
    assert parsed.header == h and parsed.data == data
    fast = frames.decode(raw)
    assert fast.header == h and bytes(fast.data) == data and fast.single
    # another encoder may put data first: the slow path parses it the same
    other = node_pb2.LinkFrame(data=data).SerializeToString() + node_pb2.LinkFrame(header=h).SerializeToString()
    slow = frames.decode(other)
    assert slow.header == h and bytes(slow.data) == data


@pytest.mark.parametrize("raw", [b"", b"\x0a", b"\x0a\x05abc", b"\x12\x02ab", b"\xff" * 20, b"\x0a" + b"\xff" * 11])
def test_hostile_bytes_are_a_frame_error(raw: bytes) -> None:
    with pytest.raises(frames.FrameError):
        frames.decode(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_frame_error(raw: bytes) -> None:
    try:
        frames.decode(raw)
    except frames.FrameError:
        pass


def test_chunks_are_views_at_element_boundaries() -> None:
    payload = frames.payload_of(np.arange(100_000, dtype=np.uint64))
    pieces = frames.chunks(payload)
    assert [off for off, _ in pieces] == list(range(0, 800_000, frames.CHUNK_BYTES))
    assert all(len(p) % 8 == 0 for _, p in pieces)
    assert b"".join(bytes(p) for _, p in pieces) == bytes(payload)


class _Inbox:
    def __init__(self) -> None:
        self.box = Mailbox("job-1", PARTIES, 1, max_pending_bytes=1 << 24)
        self.lost: list[tuple[str, str]] = []

    def mailbox(self, peer: str, job_id: str) -> Mailbox:
        if job_id != "job-1":
            raise NotFound(f"job {job_id} is not active on east")
        return self.box

    def peer_lost(self, peer: str, job_id: str, detail: str) -> None:
        self.lost.append((peer, job_id))

    def job_failed(self, job_id: str, exc: Exception) -> None:
        raise AssertionError("not used by the receiving end")


def _frames_of(values: np.ndarray, chunk: int, label: str = "L1/prod", **kw) -> list[bytes]:
    body = values.astype("<u8").tobytes()
    out = []
    for off in range(0, len(body), chunk):
        h = header(round=label, total=len(body), offset=off, want_ack=off + chunk >= len(body), **kw)
        if off == 0:
            h.shape.extend(values.shape)
        out.append(frames.encode(h, body[off:off + chunk]))
    return out


def _kinds(notices: list[node_pb2.LinkNotice]) -> list[int]:
    return [n.kind for n in notices]


async def test_a_chunked_message_is_assembled_counted_and_delivered_once() -> None:
    inbox = _Inbox()
    stream = InboundStream("north", "east", inbox, 1 << 24)
    values = F.asfield(np.arange(3000, dtype=np.int64))
    notices = [n for raw in _frames_of(values, 8000) for n in stream.on_frame(raw)]
    assert _kinds(notices) == [node_pb2.NOTICE_KIND_CREDIT] * 2 + [node_pb2.NOTICE_KIND_ACK]
    assert notices[-1].consumed == 24_000 and not notices[-1].duplicate
    got = await inbox.box.take("L1/prod", [0], 1.0)
    assert got[0].tolist() == values.tolist()
    # the same message again, cut differently: acknowledged as an identical copy
    again = [n for raw in _frames_of(values, 16_000) for n in stream.on_frame(raw)]
    assert again[-1].kind == node_pb2.NOTICE_KIND_ACK and again[-1].duplicate
    stream.end("the stream ended")
    assert inbox.lost == [("north", "job-1")]


def test_a_refused_chunked_message_is_dropped_whole_with_one_notice() -> None:
    inbox = _Inbox()
    stream = InboundStream("north", "east", inbox, 1 << 24)
    values = F.asfield(np.arange(3000, dtype=np.int64))
    values[1500] = F.P                                   # out of range, in the second chunk
    notices = [n for raw in _frames_of(values, 8000) for n in stream.on_frame(raw)]
    assert _kinds(notices) == [node_pb2.NOTICE_KIND_CREDIT, node_pb2.NOTICE_KIND_REFUSED, node_pb2.NOTICE_KIND_CREDIT]
    refused = notices[1]
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "element out of field range" in refused.detail
    assert refused.job_id == "job-1" and refused.round == "L1/prod"
    assert notices[-1].consumed == 24_000              # skipped bytes still return window credit
    # a message for an unknown job is refused at its first chunk, its other chunks skipped quietly
    notices = [n for raw in _frames_of(values, 8000, job_id="other") for n in stream.on_frame(raw)]
    assert _kinds(notices)[0] == node_pb2.NOTICE_KIND_REFUSED and "job other is not active" in notices[0].detail
    assert node_pb2.NOTICE_KIND_REFUSED not in _kinds(notices[1:])
    assert stream.jobs == {"job-1"}


def test_every_frame_is_checked_against_the_streams_identity() -> None:
    inbox = _Inbox()
    stream = InboundStream("north", "east", inbox, 1 << 24)
    raw = frames.encode(header(sender="south", shape=[1], total=8, want_ack=True), b"\x01" + b"\x00" * 7)
    (notice,) = stream.on_frame(raw)
    assert notice.kind == node_pb2.NOTICE_KIND_REFUSED
    assert notice.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert notice.detail == "caller north claims to be 'south'"
    assert stream.jobs == set()                          # nothing of the job was touched
