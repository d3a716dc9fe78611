"""The sending end of the Link stream to one peer: queue, fair chunk scheduler, window, failures.

* `send` queues a message and returns a future that completes once all of it was handed to
  gRPC (the caller's array must not change until then; no copy is taken). There is no
  per-message acknowledgement: the receiver answers only with refusals and window credit.
* Fairness: jobs take turns, one frame per turn (a message up to CHUNK_BYTES, or one chunk of a
  larger one), and the messages of one job take turns likewise. A small message therefore waits
  for at most one chunk per other active job on this side.
* Window: chunks of large messages are written only while fewer than WINDOW_BYTES of them are
  unconsumed by the receiver (its CREDIT notices), so the bytes queued in gRPC and TCP ahead of a
  small message stay bounded too. Single-frame messages do not wait for the window.
* Failures: a message not written by its deadline fails with PeerUnavailable naming the peer;
  when the stream breaks, every message not completely written fails the same way. Messages
  written before the break may be lost with it: the receiver then sees its inbound stream end and
  fails its own waits for them (inbound.py), and a dead receiver's inbound stream to us ends too,
  so nothing else is failed here. The next message opens a new stream.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import Callable

import grpc
import numpy as np

from parley.v1 import node_pb2

from . import frames
from .errors import PeerRefused, PeerUnavailable

log = logging.getLogger("parley.links")

LINK_METHOD = "/parley.v1.PeerExchange/Link"
WINDOW_BYTES = 4 * frames.CHUNK_BYTES
RETRY_PAUSE_S = 0.2   # after a refused or failed stream open, before the next attempt
_FATAL_OPEN = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNIMPLEMENTED,
               grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


@dataclass(eq=False)
class _Out:
    job_id: str
    label: str
    shape: list[int]
    pieces: list[tuple[int, memoryview]]
    total: int
    deadline: float
    future: asyncio.Future
    next: int = 0

    @property
    def chunked(self) -> bool:
        return len(self.pieces) > 1


class OutboundLink:
    def __init__(self, me: str, peer: str, channel: Callable[[], grpc.aio.Channel], connect_timeout_s: float,
                 on_refused: Callable[[str, str, str, str], None], revoked: Callable[[str], str]):
        self.me = me
        self.peer = peer
        self._channel = channel
        self.connect_timeout_s = connect_timeout_s
        self._on_refused = on_refused    # (peer, job_id, label, detail)
        self._revoked = revoked          # fingerprint -> reason it is revoked ('' if it is not)
        self._jobs: collections.OrderedDict[str, collections.deque[_Out]] = collections.OrderedDict()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._call: grpc.aio.StreamStreamCall | None = None
        self._writing = False        # a write is in flight (gRPC allows one at a time per stream)
        self._reader: asyncio.Task | None = None
        self._written = 0            # bytes of chunked messages written on the current stream
        self._consumed = 0           # ... of which the receiver reported consumed
        self._last_error = "no stream open yet"
        self.server_fingerprint = ""
        self.closed = False

    # ---- API -----------------------------------------------------------------------------------
    def send(self, job_id: str, label: str, arr: np.ndarray, deadline: float) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_exception(PeerUnavailable(self.peer, job_id, label, "this node is shutting down"))
            return fut
        payload = frames.payload_of(arr)
        out = _Out(job_id, label, list(arr.shape), frames.chunks(payload), len(payload), deadline, fut)
        queue = self._jobs.get(job_id)
        if queue is None:
            queue = self._jobs[job_id] = collections.deque()
        queue.append(out)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"link {self.me}->{self.peer}")
        return fut

    async def write_now(self, job_id: str, label: str, arr: np.ndarray) -> bool:
        """The latency path: when the stream is open and idle and the message fits one frame, the
        caller's own task writes it (no hand-over to the writer task, one event-loop turn less per
        round). False when it cannot, or when the stream turned out to be gone (nothing was written
        then): queue it with `send` instead, which opens a new stream."""
        call = self._call
        if call is None or self._writing or self._jobs or arr.size * 8 > frames.CHUNK_BYTES:
            return False
        payload = frames.payload_of(arr)
        header = node_pb2.LinkHeader(job_id=job_id, round=label, sender=self.me, receiver=self.peer,
                                     total=len(payload), shape=arr.shape)
        self._writing = True
        try:
            return await self._write(call, frames.encode(header, payload))
        finally:
            self._writing = False
            if self._jobs:
                self._wake.set()

    async def _write(self, call: grpc.aio.StreamStreamCall, frame: bytes) -> bool:
        """Write one frame; on failure mark the stream broken (if it is still the current one) and
        return False."""
        try:
            await call.write(frame)
            return True
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as exc:
            if call is self._call:
                self._broken(f"the stream failed ({_describe(exc)})")
            return False

    @property
    def connected(self) -> bool:
        return self._call is not None

    async def reset(self, reason: str) -> None:
        """Close the current stream (if any) as broken; later messages open a new one."""
        self._broken(reason)

    async def close(self, reason: str) -> None:
        self.closed = True
        self._broken(reason)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # ---- the writer ------------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self._write_loop()
        except Exception:   # a bug here must not leave messages waiting for a writer that is gone
            log.exception("link %s -> %s: writer failed", self.me, self.peer)
            self._broken("the sending side failed (details in this node's log)")
        finally:
            self._task = None

    async def _write_loop(self) -> None:
        while not self.closed:
            out = None if self._writing else self._pick()
            if out is None:
                await self._idle()
                continue
            if self._call is None:
                await self._connect()
                continue
            call = self._call
            offset, piece = out.pieces[out.next]
            header = node_pb2.LinkHeader(job_id=out.job_id, round=out.label, sender=self.me, receiver=self.peer,
                                         total=out.total, offset=offset)
            if offset == 0:
                header.shape.extend(out.shape)
            self._writing = True
            try:
                written = await self._write(call, frames.encode(header, piece))
            finally:
                self._writing = False
            if not written:
                continue
            if call is not self._call:
                continue   # the stream broke while this frame was written: the message failed with it
            if out.chunked:
                self._written += len(piece)
            out.next += 1
            if out.future.done():
                continue   # refused or given up while it was being written; already out of the queue
            if out.next == len(out.pieces):
                self._unqueue(out)
                out.future.set_result(None)
            else:
                queue = self._jobs.get(out.job_id)
                if queue is not None and len(queue) > 1 and queue[0] is out:
                    queue.rotate(-1)      # the job's other messages take turns with this one

    def _unqueue(self, out: _Out) -> None:
        queue = self._jobs.get(out.job_id)
        if queue is not None:
            try:
                queue.remove(out)
            except ValueError:
                pass
            if not queue:
                del self._jobs[out.job_id]

    def _pick(self) -> _Out | None:
        """The next message to write a frame of: jobs in turn, skipping finished futures (a round
        that gave up) and chunks the window does not allow yet."""
        window_open = self._written - self._consumed + frames.CHUNK_BYTES <= WINDOW_BYTES
        for job_id in list(self._jobs):
            queue = self._jobs[job_id]
            for out in list(queue):
                if out.future.done():
                    queue.remove(out)   # cancelled by its round; a started one is dropped by the receiver
                    continue
                if out.chunked and not window_open:
                    continue
                self._jobs.move_to_end(job_id)
                return out
            if not queue:
                del self._jobs[job_id]
        return None

    async def _idle(self) -> None:
        """Nothing can be written: wait for a new message or window credit, at most until the
        earliest deadline of a waiting message."""
        self._wake.clear()
        deadline = min((o.deadline for q in self._jobs.values() for o in q), default=None)
        if deadline is None:
            await self._wake.wait()
            return
        try:
            await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            self._expire(f"waited for window credit until the round's deadline ({self._last_error})")

    async def _connect(self) -> None:
        """Open a stream and wait for the receiver's HELLO, at most until the earliest deadline of a
        waiting message (gRPC reconnects the channel meanwhile); expire what cannot wait longer."""
        deadline = min((o.deadline for q in self._jobs.values() for o in q), default=time.monotonic())
        wait = min(self.connect_timeout_s, max(0.0, deadline - time.monotonic()))
        # no deadline on the stream itself: it lives as long as the link; every message on it has
        # one (its round's), and the wait for HELLO has one
        call = self._channel().stream_stream(LINK_METHOD, request_serializer=None,
                                             response_deserializer=node_pb2.LinkNotice.FromString)(wait_for_ready=True)
        try:
            hello = await asyncio.wait_for(call.read(), wait)
        except asyncio.CancelledError:
            call.cancel()
            raise
        except TimeoutError:
            call.cancel()
            self._last_error = f"no stream to {self.peer} within {wait:.1f}s"
            self._expire(self._last_error)
            return
        except grpc.aio.AioRpcError as exc:
            call.cancel()
            self._last_error = _describe(exc)
            if exc.code() in _FATAL_OPEN:
                self._fail_all(f"{self.peer} refused the link ({self._last_error})")
            else:
                self._expire(self._last_error)
                await asyncio.sleep(RETRY_PAUSE_S)
            return
        if hello is grpc.aio.EOF or hello.kind != node_pb2.NOTICE_KIND_HELLO:
            call.cancel()
            self._last_error = "the stream ended before the receiver's HELLO"
            self._expire(self._last_error)
            await asyncio.sleep(RETRY_PAUSE_S)
            return
        why = self._revoked(hello.fingerprint)
        if why:
            call.cancel()
            self._fail_all(why)
            return
        self._call, self.server_fingerprint = call, hello.fingerprint
        self._written = self._consumed = 0
        self._reader = asyncio.get_running_loop().create_task(self._read_notices(call))

    async def _read_notices(self, call: grpc.aio.StreamStreamCall) -> None:
        detail = "the receiver ended the stream"
        try:
            while True:
                n = await call.read()
                if n is grpc.aio.EOF:
                    break
                if call is not self._call:
                    return
                if n.consumed > self._consumed:
                    self._consumed = n.consumed
                    self._wake.set()
                if n.kind == node_pb2.NOTICE_KIND_REFUSED:
                    self._refused(n)
        except grpc.aio.AioRpcError as exc:
            detail = f"the stream failed ({_describe(exc)})"
        except asyncio.CancelledError:
            return
        if call is self._call:
            self._broken(detail)

    def _refused(self, n: node_pb2.LinkNotice) -> None:
        code = _code_name(n.code)
        detail = f"{code}: {n.detail}" if code else n.detail
        log.info("%s refused round %r of job %s: %s", self.peer, n.round, n.job_id, detail)
        queue = self._jobs.get(n.job_id)
        if queue is not None:
            for out in [o for o in queue if o.label == n.round]:
                queue.remove(out)
                if not out.future.done():
                    out.future.set_exception(PeerRefused(self.peer, n.job_id, n.round, detail))
        self._on_refused(self.peer, n.job_id, n.round, detail)

    # ---- failures --------------------------------------------------------------------------------
    def _broken(self, detail: str) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
            if self._reader is not None and self._reader is not asyncio.current_task():
                self._reader.cancel()
            self._reader = None
            self._last_error = detail
        self._written = self._consumed = 0
        self._fail_all(f"the link broke: {detail}")

    def _fail_all(self, detail: str) -> None:
        jobs, self._jobs = self._jobs, collections.OrderedDict()
        for queue in jobs.values():
            for out in queue:
                if not out.future.done():
                    out.future.set_exception(PeerUnavailable(self.peer, out.job_id, out.label, detail))

    def _expire(self, detail: str) -> None:
        now = time.monotonic()
        for job_id in list(self._jobs):
            queue = self._jobs[job_id]
            for out in [o for o in queue if o.deadline <= now]:
                queue.remove(out)
                if not out.future.done():
                    out.future.set_exception(PeerUnavailable(self.peer, out.job_id, out.label, detail))
            if not queue:
                del self._jobs[job_id]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, asyncio.InvalidStateError):
        return "it had already ended"
    return type(exc).__name__


def _code_name(value: int) -> str:
    return next((c.name for c in grpc.StatusCode if c.value[0] == value), "")
