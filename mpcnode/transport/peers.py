"""Node-to-node messages: per-job mailboxes and the gRPC implementation of Exchange.

Every message carries (job, round, sender, receiver). The sender is the caller's verified
certificate identity, the receiver must be this node, and each (round, sender) is accepted
at most once: a duplicate or replay is refused and never mixed into a computation.
"""
from __future__ import annotations

import asyncio
import time
from typing import Iterable, Mapping

import grpc
import numpy as np

from parley.v1 import node_pb2, node_pb2_grpc

from ..exchange import ExchangeTimeout, ProtocolViolation, TrafficStats
from . import serde
from .tls import TlsMaterial, secure_channel

MAX_LABEL = 200


class Mailbox:
    """Messages of one job addressed to this node, keyed by (round, sender index)."""

    def __init__(self, job_id: str, parties: list[str], me: int):
        self.job_id = job_id
        self.parties = parties
        self.me = me
        self._slots: dict[tuple[str, int], asyncio.Future] = {}
        self._delivered: set[tuple[str, int]] = set()
        self.closed_reason: str | None = None

    def _slot(self, key: tuple[str, int]) -> asyncio.Future:
        fut = self._slots.get(key)
        if fut is None:
            fut = self._slots[key] = asyncio.get_running_loop().create_future()
        return fut

    def deliver(self, round_label: str, sender: str, receiver: str, arr: np.ndarray) -> None:
        if self.closed_reason:
            raise ProtocolViolation(f"job {self.job_id} is no longer running ({self.closed_reason})")
        if receiver != self.parties[self.me]:
            raise ProtocolViolation(f"message addressed to {receiver!r}, this node is {self.parties[self.me]!r}")
        if sender not in self.parties or sender == self.parties[self.me]:
            raise ProtocolViolation(f"{sender!r} is not a peer in job {self.job_id}")
        if not round_label or len(round_label) > MAX_LABEL:
            raise ProtocolViolation("bad round label")
        key = (round_label, self.parties.index(sender))
        if key in self._delivered:
            raise ProtocolViolation(f"duplicate message for round {round_label!r} from {sender}")
        self._delivered.add(key)
        self._slot(key).set_result(arr)

    async def take(self, round_label: str, senders: list[int], timeout_s: float) -> dict[int, np.ndarray]:
        futs = [self._slot((round_label, i)) for i in senders]
        try:
            got = await asyncio.wait_for(asyncio.shield(asyncio.gather(*futs)), timeout_s)
        except asyncio.TimeoutError:
            missing = [self.parties[i] for i, f in zip(senders, futs) if not f.done()]
            raise ExchangeTimeout(self.job_id, round_label, missing) from None
        for i in senders:
            del self._slots[(round_label, i)]
        return dict(zip(senders, got))

    def close(self, reason: str) -> None:
        self.closed_reason = reason
        for fut in self._slots.values():
            if not fut.done():
                fut.cancel()
        self._slots.clear()


class PeerUnavailable(ConnectionError):
    def __init__(self, peer: str, job: str, label: str, detail: str):
        super().__init__(f"job {job}: could not deliver round {label!r} to {peer}: {detail}")
        self.peer = peer


class PeerLinks:
    """One mutually authenticated channel per peer organization, opened lazily."""

    def __init__(self, me: str, addresses: Mapping[str, str], tls: TlsMaterial, max_mb: int):
        self.me = me
        self.addresses = dict(addresses)
        self.tls = tls
        self.max_mb = max_mb
        self._stubs: dict[str, node_pb2_grpc.PeerExchangeStub] = {}
        self._channels: list[grpc.aio.Channel] = []

    def stub(self, peer: str) -> node_pb2_grpc.PeerExchangeStub:
        if peer not in self._stubs:
            if peer not in self.addresses:
                raise PeerUnavailable(peer, "-", "-", "no address configured")
            ch = secure_channel(self.addresses[peer], peer, self.tls, self.max_mb)
            self._channels.append(ch)
            self._stubs[peer] = node_pb2_grpc.PeerExchangeStub(ch)
        return self._stubs[peer]

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()


class GrpcExchange:
    """Exchange over PeerExchange.Deliver RPCs with deadlines and bounded retries."""

    def __init__(self, job_id: str, parties: list[str], me: int, links: PeerLinks, mailbox: Mailbox,
                 round_timeout_s: float, rpc_timeout_s: float):
        self.job_id = job_id
        self.parties = parties
        self.party = me
        self.n = len(parties)
        self.links = links
        self.mailbox = mailbox
        self.round_timeout_s = round_timeout_s
        self.rpc_timeout_s = rpc_timeout_s
        self.stats = TrafficStats()

    async def round(self, label: str, send: Mapping[int, np.ndarray], expect: Iterable[int]) -> dict[int, np.ndarray]:
        self.stats.rounds += 1
        expect = [i for i in expect if i != self.party]
        receive = asyncio.ensure_future(self.mailbox.take(label, expect, self.round_timeout_s))
        try:
            await asyncio.gather(*(self._send(j, label, arr) for j, arr in send.items()))
            return await receive
        except BaseException:
            receive.cancel()
            raise

    async def _send(self, j: int, label: str, arr: np.ndarray) -> None:
        payload, shape = serde.encode(arr)
        msg = node_pb2.PeerMessage(job_id=self.job_id, round=label, sender=self.parties[self.party],
                                   receiver=self.parties[j], payload=payload, shape=shape)
        peer = self.parties[j]
        deadline = time.monotonic() + self.round_timeout_s
        delay = 0.05
        while True:
            try:
                await self.links.stub(peer).Deliver(msg, timeout=min(self.rpc_timeout_s, max(0.1, deadline - time.monotonic())))
                break
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.ALREADY_EXISTS:
                    break  # an earlier attempt arrived; its ack was lost
                retriable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                if not retriable or time.monotonic() + delay >= deadline:
                    raise PeerUnavailable(peer, self.job_id, label, f"{code.name}: {exc.details()}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        self.stats.messages_sent += 1
        self.stats.bytes_sent += len(payload)
