"""Messages of one job addressed to this node, keyed by (round, sender), with their rules.

Invariants:
* each (round, sender) is delivered at most once. A byte-identical copy (same shape and
  payload, compared by SHA-256) is acknowledged and ignored; a different payload under a used
  label is a protocol violation that fails the job (`on_violation`), and is never mixed in;
* a sender may hold at most `max_pending_bytes` / MAX_PENDING_MESSAGES in this mailbox in
  messages not yet taken plus messages still arriving in chunks (a peer running ahead, or
  a hostile one, cannot make this node buffer without bound);
* every wait has a deadline and names the senders it still misses;
* a failure of the job (`fail`) or the loss of the link with a sender (`peer_lost`) wakes
  the waits it concerns at once, instead of leaving them to their deadline.
"""
from __future__ import annotations

import asyncio
import hashlib
from typing import Callable

import numpy as np

from ..exchange import ExchangeTimeout, ProtocolViolation
from .errors import LinkLost
from .frames import MAX_LABEL

MAX_PENDING_MESSAGES = 1024


class BufferFull(ProtocolViolation):
    """A sender has more bytes or messages waiting here than the limits allow."""


class ConflictingMessage(ProtocolViolation):
    """A second, different message under a (round, sender) that was already delivered."""


SMALL_DIGEST_BYTES = 64   # payloads up to this size are their own digest (cheaper than hashing)


def shape_prefix(shape) -> bytes:
    return ",".join(map(str, shape)).encode() + b"|"


def digest(shape, payload: bytes | memoryview) -> bytes:
    """What identifies a message's content for the once-only rule: shape and payload."""
    if len(payload) <= SMALL_DIGEST_BYTES:
        return b"=" + shape_prefix(shape) + bytes(payload)
    return hasher(shape, payload).digest()


def hasher(shape, payload: bytes | memoryview = b"") -> "hashlib._Hash":
    """SHA-256 over shape and payload, to be fed chunk by chunk (same result as `digest`)."""
    h = hashlib.sha256(shape_prefix(shape))
    h.update(payload)
    return h


class Mailbox:
    def __init__(self, job_id: str, parties: list[str], me: int, max_pending_bytes: int = 1 << 62,
                 on_violation: Callable[[str], None] | None = None, field_elements: bool = True):
        self.job_id = job_id
        # the job's values are elements of F_p (Shamir: each must be < p) or of Z_2^64 (any word)
        self.field_elements = field_elements
        self.parties = parties
        self.me = me
        self.max_pending_bytes = max_pending_bytes
        self.on_violation = on_violation or (lambda reason: None)
        self._index = {p: i for i, p in enumerate(parties)}
        self._arrived: dict[tuple[str, int], np.ndarray] = {}
        self._digests: dict[tuple[str, int], bytes] = {}
        self._takers: dict[tuple[str, int], list] = {}     # key -> [waiter future, keys still missing]
        self._pending_bytes = [0] * len(parties)           # per sender: arrived-not-taken + reserved
        self._pending_count = [0] * len(parties)
        self._lost: dict[int, str] = {}                    # sender -> why its link broke
        self._failure: BaseException | None = None
        self.exchanging = False    # set by the job's first round: from then on a lost link matters
        self.closed_reason: str | None = None

    # ---- checks shared by every way in ------------------------------------------------------
    def sender_index(self, round_label: str, sender: str, receiver: str) -> int:
        """The envelope checks, before any payload is looked at; returns the sender's index."""
        if self.closed_reason:
            raise ProtocolViolation(f"job {self.job_id} is no longer running ({self.closed_reason})")
        if receiver != self.parties[self.me]:
            raise ProtocolViolation(f"message addressed to {receiver!r}, this node is {self.parties[self.me]!r}")
        i = self._index.get(sender)
        if i is None or i == self.me:
            raise ProtocolViolation(f"{sender!r} is not a peer in job {self.job_id}")
        if not round_label or len(round_label) > MAX_LABEL:
            raise ProtocolViolation("bad round label")
        return i

    def reserve(self, sender: int, nbytes: int) -> None:
        """Count bytes that are about to arrive (or have) against the sender's buffer limit."""
        if self._pending_count[sender] + 1 > MAX_PENDING_MESSAGES:
            raise BufferFull(f"job {self.job_id}: {self.parties[sender]} has {MAX_PENDING_MESSAGES} messages "
                             "waiting here for rounds not reached yet")
        if self._pending_bytes[sender] + nbytes > self.max_pending_bytes:
            raise BufferFull(f"job {self.job_id}: {self.parties[sender]} would have "
                             f"{self._pending_bytes[sender] + nbytes} bytes waiting here for rounds not reached "
                             f"yet (limit {self.max_pending_bytes})")
        self._pending_bytes[sender] += nbytes
        self._pending_count[sender] += 1

    def release(self, sender: int, nbytes: int) -> None:
        # after close() the counters restart at zero; a late release must not go below
        self._pending_bytes[sender] = max(0, self._pending_bytes[sender] - nbytes)
        self._pending_count[sender] = max(0, self._pending_count[sender] - 1)

    # ---- delivery ---------------------------------------------------------------------------
    def deliver(self, round_label: str, sender: str, receiver: str, arr: np.ndarray,
                sha: bytes | None = None, reserved: bool = False) -> bool:
        """Accept one message. True: delivered; False: an identical copy of a delivered message,
        ignored. Raises ProtocolViolation (the message is refused and uses up nothing), or
        ConflictingMessage after failing the job. `reserved`: its bytes were reserved already."""
        i = self.sender_index(round_label, sender, receiver)
        key = (round_label, i)
        nbytes = arr.nbytes
        if sha is None:
            sha = digest(arr.shape, np.ascontiguousarray(arr, dtype="<u8").data.cast("B"))
        seen = self._digests.get(key)
        if seen is not None:
            if reserved:
                self.release(i, nbytes)
            if seen == sha:
                return False
            reason = f"protocol violation by {sender}: round {round_label!r} sent twice with different contents"
            self.on_violation(reason)
            raise ConflictingMessage(reason)
        if not reserved:
            self.reserve(i, nbytes)
        self._digests[key] = sha
        self._arrived[key] = arr
        taker = self._takers.pop(key, None)
        if taker is not None:
            taker[1] -= 1
            if taker[1] == 0 and not taker[0].done():
                taker[0].set_result(None)
        return True

    # ---- taking -----------------------------------------------------------------------------
    async def take(self, round_label: str, senders: list[int], timeout_s: float) -> dict[int, np.ndarray]:
        if self._failure is not None:
            raise self._failure
        keys = [(round_label, i) for i in senders]
        missing = [k for k in keys if k not in self._arrived]
        if missing:
            for k in missing:
                if k[1] in self._lost:
                    raise LinkLost(self.parties[k[1]], self.job_id, round_label, self._lost[k[1]])
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            taker = [waiter, len(missing)]
            for k in missing:
                self._takers[k] = taker
            # a timer rather than asyncio.timeout: no task cancellation on the hot path
            timer = loop.call_later(timeout_s, self._expire, waiter, round_label, missing)
            try:
                await waiter
            finally:
                timer.cancel()
                for k in missing:
                    if self._takers.get(k) is taker:
                        del self._takers[k]
        out = {}
        for k in keys:
            arr = self._arrived.pop(k)
            self.release(k[1], arr.nbytes)
            out[k[1]] = arr
        return out

    def _expire(self, waiter: asyncio.Future, round_label: str, keys: list[tuple[str, int]]) -> None:
        if not waiter.done():
            missing = [self.parties[i] for (_, i) in keys if (round_label, i) not in self._arrived]
            waiter.set_exception(ExchangeTimeout(self.job_id, round_label, missing))

    # ---- failures ---------------------------------------------------------------------------
    def fail(self, exc: BaseException) -> None:
        """The job cannot go on (a peer refused our message, a send failed): every wait, current
        or later, raises `exc`. The first failure wins."""
        if self._failure is not None:
            return
        self._failure = exc
        for taker in {id(t): t for t in self._takers.values()}.values():
            if not taker[0].done():
                taker[0].set_exception(exc)

    def peer_lost(self, sender: str, detail: str) -> None:
        """The link with `sender` broke: messages from it that have not arrived never will.
        Waits that need one raise LinkLost, now or when they start; what did arrive stays usable."""
        i = self._index.get(sender)
        if i is None or i == self.me or i in self._lost:
            return
        self._lost[i] = detail
        for (label, j), taker in list(self._takers.items()):
            if j == i and not taker[0].done():
                taker[0].set_exception(LinkLost(sender, self.job_id, label, detail))

    def close(self, reason: str) -> None:
        self.closed_reason = reason
        for taker in list(self._takers.values()):
            if not taker[0].done():
                taker[0].cancel()
        self._takers.clear()
        self._arrived.clear()
        self._pending_bytes = [0] * len(self.parties)
        self._pending_count = [0] * len(self.parties)
