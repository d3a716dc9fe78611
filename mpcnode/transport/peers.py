"""Node-to-node links and the gRPC implementation of Exchange.

`PeerLinks` owns this node's Link streams (docs/architecture.md, "Link protocol"): one outbound
stream to each peer (outbound.py), and the inbound streams peers opened to this node
(inbound.py), each bound to the certificate it was opened with. `revoke` and `reload_tls` close
the streams whose certificate this node no longer accepts.

`GrpcExchange` is one job's Exchange over those links: a round queues its messages (no
per-message acknowledgement), then waits for the peers' messages in the job's Mailbox.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

import grpc
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from parley.v1 import node_pb2

from ..exchange import ProtocolViolation, TrafficStats, claim_label
from .errors import LinkLost, PeerRefused, PeerUnavailable
from .frames import MAX_LABEL
from .inbound import Inbox, InboundStream, hello, one_line
from .mailbox import Mailbox
from .outbound import OutboundLink
from ..certs import NODE
from .tls import TlsMaterial, caller_identity, caller_role, secure_channel

__all__ = ["GrpcExchange", "LinkLost", "Mailbox", "MAX_LABEL", "PeerLinks", "PeerRefused", "PeerUnavailable",
           "ProtocolViolation", "fingerprint"]

log = logging.getLogger("parley.links")

MAX_INBOUND_PER_PEER = 4   # an honest peer has one; a few more cover a reconnect before the old one is noticed


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _first_cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificates(pem)[0]


@dataclass(eq=False)
class _Binding:
    """An inbound stream and the certificate it was opened with."""
    peer: str
    cert: x509.Certificate
    fingerprint: str
    task: asyncio.Task
    close_reason: str = ""
    expiry: asyncio.TimerHandle | None = None


class PeerLinks:
    """This node's links with its peers, and its current view of their certificates."""

    def __init__(self, me: str, addresses: Mapping[str, str], tls: TlsMaterial, max_mb: int,
                 connect_timeout_s: float = 30.0):
        self.me = me
        self.addresses = dict(addresses)
        self.max_mb = max_mb
        self.max_message_bytes = max_mb * 1024 * 1024
        self.connect_timeout_s = connect_timeout_s
        self.inbox: Inbox | None = None    # set by the node: where inbound messages go
        self._tls = tls
        self._ca = _first_cert(tls.ca)
        # what this node's listener presents (HELLO tells senders): its credentials are fixed when
        # the server starts, so a reload of the TLS files changes this only after a restart
        self._own_fingerprint = fingerprint(_first_cert(tls.cert))
        self._revoked_ids: set[str] = set()
        self._revoked_fps: set[str] = set()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._out: dict[str, OutboundLink] = {}
        self._in: dict[str, list[_Binding]] = {}

    # ---- outbound -------------------------------------------------------------------------------
    def send(self, peer: str, job_id: str, label: str, arr: np.ndarray, deadline: float) -> asyncio.Future:
        """Queue one message; the future completes when it was handed to gRPC, or fails with
        PeerUnavailable (or PeerRefused) naming the peer."""
        link = self._out.get(peer)
        if link is None or peer in self._revoked_ids:
            why = ("no address configured" if peer not in self.addresses else
                   f"{peer}'s certificate is revoked on {self.me}" if peer in self._revoked_ids else "")
            if why:
                fut = asyncio.get_running_loop().create_future()
                fut.set_exception(PeerUnavailable(peer, job_id, label, why))
                return fut
            link = self._out[peer] = OutboundLink(self.me, peer, lambda: self._channel(peer), self.connect_timeout_s,
                                                  self._refused, self._server_revoked)
        return link.send(job_id, label, arr, deadline)

    async def write_now(self, peer: str, job_id: str, label: str, arr: np.ndarray) -> bool:
        """Write a small message from the caller's task if the link to `peer` is open and idle
        (see OutboundLink.write_now); False: use `send`."""
        link = self._out.get(peer)
        return link is not None and peer not in self._revoked_ids and await link.write_now(job_id, label, arr)

    def _channel(self, peer: str) -> grpc.aio.Channel:
        ch = self._channels.get(peer)
        if ch is None:
            ch = self._channels[peer] = secure_channel(self.addresses[peer], peer, self._tls, self.max_mb)
        return ch

    def _refused(self, peer: str, job_id: str, label: str, detail: str) -> None:
        if self.inbox is not None:
            self.inbox.job_failed(job_id, PeerRefused(peer, job_id, label, detail))

    def _server_revoked(self, fp: str) -> str:
        return f"the certificate {fp[:16]}... is revoked on {self.me}" if fp in self._revoked_fps else ""

    # ---- inbound --------------------------------------------------------------------------------
    async def serve(self, request_iterator, context: grpc.aio.ServicerContext) -> None:
        """The Link RPC: bind the stream to the caller's certificate, then hand every frame to an
        InboundStream and send back what it answers."""
        peer = caller_identity(context)
        if peer is None or peer not in self.addresses:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, one_line(f"{peer!r} is not a peer of {self.me}"))
        if caller_role(context) != NODE:   # a client's certificate named like a peer is not that peer
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                one_line(f"{peer!r} has a {caller_role(context) or 'role-less'} certificate; "
                                         "a Link needs a node certificate"))
        pem = (context.auth_context().get("x509_pem_cert") or [b""])[0]
        try:
            cert = _first_cert(pem)
        except ValueError:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no readable client certificate")
        why = self._refusal(peer, cert)
        if not why and len(self._in.get(peer, [])) >= MAX_INBOUND_PER_PEER:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{peer} already has {MAX_INBOUND_PER_PEER} links open to {self.me}")
        if why:
            log.info("link from %s refused: %s", peer, why)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)
        binding = _Binding(peer, cert, fingerprint(cert), asyncio.current_task())
        self._in.setdefault(peer, []).append(binding)
        # the stream is bound to this certificate: it closes when the certificate expires
        left = (cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)).total_seconds()
        binding.expiry = asyncio.get_running_loop().call_later(
            max(0.0, left), self._close_inbound, binding, f"{peer}'s certificate expired")
        stream = InboundStream(peer, self.me, self.inbox, self.max_message_bytes)
        detail = "the stream ended"
        try:
            await context.write(hello(self._own_fingerprint))
            async for raw in request_iterator:
                for notice in stream.on_frame(raw):
                    if notice.kind == node_pb2.NOTICE_KIND_REFUSED:
                        log.info("link from %s: refused round %r of job %s: %s", peer, notice.round[:80],
                                 notice.job_id[:80], notice.detail)
                    await context.write(notice)
        except asyncio.CancelledError:
            if not binding.close_reason:
                detail = "the stream was cancelled"
                raise
            # closed by this node (revocation, TLS reload, expiry): end it with that reason
            asyncio.current_task().uncancel()
            detail = binding.close_reason
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, one_line(binding.close_reason))
        finally:
            binding.expiry.cancel()
            self._in[peer].remove(binding)
            stream.end(f"the link from {peer} ended ({detail})")

    def _refusal(self, peer: str, cert: x509.Certificate) -> str:
        """Why this node no longer accepts `cert` for `peer` ('' if it does)."""
        if peer in self._revoked_ids:
            return f"{peer}'s certificate is revoked on {self.me}"
        if fingerprint(cert) in self._revoked_fps:
            return f"certificate {fingerprint(cert)[:16]}... of {peer} is revoked on {self.me}"
        try:
            cert.verify_directly_issued_by(self._ca)
        except Exception:   # ValueError, TypeError, InvalidSignature: not issued by the CA we trust now
            return f"{peer}'s certificate is not issued by the CA {self.me} trusts now"
        return ""

    def _close_inbound(self, binding: _Binding, reason: str) -> None:
        if not binding.close_reason and not binding.task.done():
            binding.close_reason = reason
            binding.task.cancel()

    # ---- certificate changes ------------------------------------------------------------------
    async def revoke(self, identity: str | None = None, fingerprint_hex: str | None = None) -> int:
        """Stop trusting a peer identity or one certificate: close the streams bound to it, in
        both directions, and refuse new ones. Returns the number of streams closed."""
        if identity:
            self._revoked_ids.add(identity)
        if fingerprint_hex:
            self._revoked_fps.add(fingerprint_hex.lower())
        return await self._recheck(f"revoked on {self.me}")

    async def reload_tls(self, tls: TlsMaterial) -> int:
        """This node's CA, certificate or key changed: streams opened with the old material, and
        inbound streams whose certificate the new CA did not issue, close; later messages open new
        streams with the new material. Returns the number of streams closed."""
        changed = tls != self._tls
        self._tls = tls
        self._ca = _first_cert(tls.ca)
        closed = 0
        if changed:
            for peer, link in self._out.items():
                closed += link.connected
                await link.reset(f"{self.me} reloaded its TLS material")
            # channels hold the old credentials: later streams use new ones
            old, self._channels = self._channels, {}
            for ch in old.values():
                await ch.close()
        return closed + await self._recheck("TLS material reloaded")

    async def _recheck(self, why: str) -> int:
        closed = 0
        for peer, link in self._out.items():
            if peer in self._revoked_ids or link.server_fingerprint in self._revoked_fps:
                closed += link.connected
                await link.reset(f"{peer}'s certificate is {why}")
        for bindings in self._in.values():
            for b in list(bindings):
                reason = self._refusal(b.peer, b.cert)
                if reason:
                    closed += 1
                    self._close_inbound(b, reason)
        await asyncio.sleep(0)   # let the closed streams' handlers run their cleanup
        return closed

    def connected(self, peer: str) -> bool:
        """Whether this node has an open stream to `peer` (tests, operators)."""
        link = self._out.get(peer)
        return link is not None and link.connected

    def inbound_fingerprints(self, peer: str) -> list[str]:
        """The certificates the open inbound streams from `peer` are bound to (tests, operators)."""
        return [b.fingerprint for b in self._in.get(peer, [])]

    async def close(self) -> None:
        for link in self._out.values():
            await link.close(f"{self.me} is shutting down")
        for bindings in self._in.values():
            for b in list(bindings):
                self._close_inbound(b, f"{self.me} is shutting down")
        for ch in self._channels.values():
            await ch.close()
        self._channels = {}


class GrpcExchange:
    """One job's Exchange over the node's links."""

    def __init__(self, job_id: str, parties: list[str], me: int, links: PeerLinks, mailbox: Mailbox,
                 round_timeout_s: float):
        self.job_id = job_id
        self.parties = parties
        self.party = me
        self.n = len(parties)
        self.links = links
        self.mailbox = mailbox
        self.round_timeout_s = round_timeout_s
        self.stats = TrafficStats()

    async def round(self, label: str, send: Mapping[int, np.ndarray], expect: Iterable[int]) -> dict[int, np.ndarray]:
        claim_label(self.stats, label)
        self.stats.rounds += 1
        self.mailbox.exchanging = True
        deadline = time.monotonic() + self.round_timeout_s
        sends = []
        for j, arr in send.items():
            self.stats.messages_sent += 1
            self.stats.bytes_sent += arr.size * 8
            # one small message (a multiplication with n = 3, an opening to one party): written
            # right here; several, or a large one, go through the links' fair writer
            if len(send) == 1 and await self.links.write_now(self.parties[j], self.job_id, label, arr):
                continue
            fut = self.links.send(self.parties[j], self.job_id, label, arr, deadline)
            fut.add_done_callback(self._sent)
            sends.append(fut)
        try:
            got = await self.mailbox.take(label, [i for i in expect if i != self.party], self.round_timeout_s)
            for fut in sends:
                if not fut.done():
                    # the peers' messages are here, ours are still being written (large ones):
                    # the caller may reuse its arrays only once they are
                    await fut
                fut.result()
        except BaseException:
            for fut in sends:
                fut.cancel()   # not yet written: dropped from the queue
            raise
        return got

    def _sent(self, fut: asyncio.Future) -> None:
        """A send that failed fails the job's waits at once, instead of leaving the round to its deadline."""
        if not fut.cancelled() and fut.exception() is not None:
            self.mailbox.fail(fut.exception())
