"""The receiving end of one Link stream, without I/O: frames in, deliveries and notices out.

The stream belongs to one peer, fixed when it opened (the identity of its TLS certificate). For
every frame it checks, in this order, and refuses with a notice naming the reason (the stream
itself stays open, so one bad message does not take other jobs' traffic down):
  sender == the stream's peer (PERMISSION_DENIED); the job is active here (NOT_FOUND); the
  envelope: receiver is this node, sender is a party of the job, label well-formed
  (INVALID_ARGUMENT); size within max_message_mb and the sender's buffer limit in the job
  (RESOURCE_EXHAUSTED); shape and length agree and every element is below p (INVALID_ARGUMENT);
  delivered once (an identical copy is acknowledged and ignored, a different one fails the job:
  ALREADY_EXISTS).
A refused chunked message is dropped as a whole: its later chunks are skipped without notices.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field as dc_field
from typing import Protocol

import grpc
import numpy as np

from parley.v1 import node_pb2

from .. import field
from ..errors import Denied, NotFound
from ..exchange import ProtocolViolation
from . import frames, serde
from .mailbox import SMALL_DIGEST_BYTES, BufferFull, ConflictingMessage, Mailbox, digest, hasher

MAX_PARTIALS = 64           # chunked messages in progress on one stream at once
MAX_DROPPING = 1024         # refused chunked messages whose remaining chunks are being skipped
MAX_DETAIL = 1000           # refusal details travel to the peer, in status details (trailing metadata,
                            # 8 KiB by default) and into logs: one bounded line

_HELLO, _ACK, _REFUSED, _CREDIT = (node_pb2.NOTICE_KIND_HELLO, node_pb2.NOTICE_KIND_ACK,
                                   node_pb2.NOTICE_KIND_REFUSED, node_pb2.NOTICE_KIND_CREDIT)


def one_line(text: str) -> str:
    """A refusal reason as one line of bounded length: a hostile request (a 10^6-character job id, a
    round label with newlines) must not forge log lines or exceed the caller's metadata limit."""
    text = " ".join(text.splitlines())
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + f"... ({len(text) - MAX_DETAIL} more characters)"


class Inbox(Protocol):
    """What the node provides to the links."""

    def mailbox(self, peer: str, job_id: str) -> Mailbox:
        """The mailbox of an active job that `peer` takes part in (raises Denied or NotFound)."""

    def peer_lost(self, peer: str, job_id: str, detail: str) -> None:
        """A stream from `peer` that carried the job's messages ended: those that have not arrived never will."""

    def job_failed(self, job_id: str, exc: Exception) -> None:
        """The job cannot go on: a peer refused one of its messages."""


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, detail: str):
        super().__init__(detail)
        self.code = code


class TooLarge(Exception):
    pass


# Domain errors -> the status code a refusal notice carries (as the servicers' table does for RPCs).
_CODES = [
    (Denied, grpc.StatusCode.PERMISSION_DENIED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (BufferFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (TooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ConflictingMessage, grpc.StatusCode.ALREADY_EXISTS),
    (ProtocolViolation, grpc.StatusCode.INVALID_ARGUMENT),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
]


def status_of(exc: BaseException) -> grpc.StatusCode:
    return next(c for e, c in _CODES if isinstance(exc, e))


@dataclass(eq=False)
class _Partial:
    """A chunked message being put together: its own buffer, filled in order."""
    mailbox: Mailbox
    sender: int
    header: node_pb2.LinkHeader
    buf: np.ndarray
    hasher: "hashlib._Hash"
    filled: int = 0


@dataclass
class InboundStream:
    peer: str
    me: str
    inbox: Inbox
    max_message_bytes: int
    consumed: int = 0                       # bytes of chunked frames read (returned as window credit)
    jobs: set[str] = dc_field(default_factory=set)   # jobs this stream carried frames for
    _partials: dict[tuple[str, str], _Partial] = dc_field(default_factory=dict)
    _dropping: dict[tuple[str, str], None] = dc_field(default_factory=dict)

    def on_frame(self, raw: bytes) -> list[node_pb2.LinkNotice]:
        """Handle one frame; returns the notices to send back (usually none)."""
        try:
            frame = frames.decode(raw)
        except frames.FrameError as exc:
            return [self._notice(_REFUSED, code=grpc.StatusCode.INVALID_ARGUMENT, detail=str(exc))]
        h = frame.header
        key = (h.job_id, h.round)
        chunked = not frame.single
        if chunked:
            self.consumed += len(frame.data)   # counted whatever becomes of it: the sender's window
        out: list[node_pb2.LinkNotice] = []
        try:
            if chunked and h.offset > 0:
                ack = self._continue(key, h, frame.data)
            else:
                ack = self._start(key, h, frame.data, chunked)
            if ack is not None:
                out.append(self._notice(_ACK, job=h.job_id, label=h.round, duplicate=not ack))
        except (Denied, NotFound, ProtocolViolation, ValueError, TooLarge) as exc:
            self._drop(key, chunked and h.offset + len(frame.data) < h.total)
            out.append(self._notice(_REFUSED, job=h.job_id, label=h.round, code=status_of(exc), detail=str(exc)))
        if chunked and not out:
            out.append(self._notice(_CREDIT))   # every notice carries `consumed`; this one only that
        return out

    def end(self, detail: str) -> None:
        """The stream is gone: partial messages are dropped, and every job it carried learns that
        the peer's messages that have not arrived never will."""
        for p in self._partials.values():
            p.mailbox.release(p.sender, p.header.total)
        self._partials.clear()
        for job_id in sorted(self.jobs):
            self.inbox.peer_lost(self.peer, job_id, detail)

    # ---- a message's first (or only) frame ----------------------------------------------------
    def _start(self, key: tuple[str, str], h: node_pb2.LinkHeader, data: memoryview, chunked: bool) -> bool | None:
        if h.sender != self.peer:
            raise Denied(f"caller {self.peer} claims to be {h.sender!r}")
        if key in self._partials:
            raise ProtocolViolation(f"round {h.round!r} started again before its last chunk")
        mailbox = self.inbox.mailbox(self.peer, h.job_id)
        self.jobs.add(h.job_id)
        sender = mailbox.sender_index(h.round, h.sender, h.receiver)
        if h.total > self.max_message_bytes:
            raise TooLarge(f"message of {h.total} bytes is over this node's limit of {self.max_message_bytes} "
                           "bytes (max_message_mb)")
        what = f"round {h.round} from {self.peer}"
        serde.check_shape(list(h.shape), h.total, what)
        if not chunked:
            arr = serde.decode(data, list(h.shape), what, mailbox.field_elements)
            delivered = mailbox.deliver(h.round, h.sender, h.receiver, arr, digest(h.shape, data))
            return delivered if h.want_ack else None
        if h.offset != 0 or not len(data) or len(data) % 8:
            raise ProtocolViolation(f"round {h.round!r}: bad first chunk ({len(data)} bytes at offset {h.offset})")
        self._dropping.pop(key, None)
        self._sweep()
        if len(self._partials) >= MAX_PARTIALS:
            raise BufferFull(f"{self.peer} has {MAX_PARTIALS} chunked messages in progress on one link")
        mailbox.reserve(sender, h.total)
        self._partials[key] = _Partial(mailbox, sender, h, np.empty(h.total // 8, dtype=np.uint64), hasher(h.shape))
        return self._add(key, self._partials[key], h, data)

    # ---- later chunks ------------------------------------------------------------------------
    def _continue(self, key: tuple[str, str], h: node_pb2.LinkHeader, data: memoryview) -> bool | None:
        p = self._partials.get(key)
        if p is None:
            if key in self._dropping:
                if h.offset + len(data) >= h.total:
                    del self._dropping[key]     # its last chunk: nothing more to skip
                return None
            raise ProtocolViolation(f"round {h.round!r}: a chunk at offset {h.offset} without its first chunk")
        if h.sender != self.peer:
            raise Denied(f"caller {self.peer} claims to be {h.sender!r}")
        return self._add(key, p, h, data)

    def _add(self, key: tuple[str, str], p: _Partial, h: node_pb2.LinkHeader, data: memoryview) -> bool | None:
        n = len(data)
        if h.total != p.header.total or h.offset != p.filled or n % 8 or p.filled + n > p.header.total:
            raise ProtocolViolation(f"round {h.round!r}: chunk of {n} bytes at offset {h.offset} does not continue "
                                    f"the {p.filled} of {p.header.total} bytes received")
        chunk = np.frombuffer(data, dtype="<u8")
        # range-check each chunk as it arrives, so the whole message never needs one long scan
        if p.mailbox.field_elements:
            field.check_canonical(chunk.astype(np.uint64, copy=False), f"round {h.round} from {self.peer}")
        p.buf[p.filled // 8:(p.filled + n) // 8] = chunk
        p.hasher.update(data)
        p.filled += n
        if p.filled < p.header.total:
            return None
        del self._partials[key]
        first = p.header
        arr = p.buf.reshape(tuple(first.shape))
        sha = digest(first.shape, p.buf.data) if first.total <= SMALL_DIGEST_BYTES else p.hasher.digest()
        delivered = p.mailbox.deliver(first.round, first.sender, first.receiver, arr, sha, reserved=True)
        return delivered if (first.want_ack or h.want_ack) else None

    # ---- refusals ------------------------------------------------------------------------------
    def _drop(self, key: tuple[str, str], more_to_come: bool) -> None:
        """Forget a refused message; skip its remaining chunks quietly."""
        p = self._partials.pop(key, None)
        if p is not None:
            p.mailbox.release(p.sender, p.header.total)
        if more_to_come:
            if len(self._dropping) >= MAX_DROPPING:
                self._dropping.pop(next(iter(self._dropping)))
            self._dropping[key] = None

    def _sweep(self) -> None:
        """Partial messages of jobs that ended here will never be delivered: free them."""
        for key in [k for k, p in self._partials.items() if p.mailbox.closed_reason]:
            self._partials.pop(key)

    def _notice(self, kind: int, job: str = "", label: str = "", code: grpc.StatusCode | None = None,
                detail: str = "", duplicate: bool = False) -> node_pb2.LinkNotice:
        return frames.notice(kind, self.consumed, one_line(job)[:200], one_line(label)[:300],
                             code.value[0] if code else 0, one_line(detail) if detail else "", duplicate)


def hello(fingerprint: str) -> node_pb2.LinkNotice:
    return frames.notice(_HELLO, 0, fingerprint=fingerprint)
