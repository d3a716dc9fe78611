"""A Link stream opened by hand with some identity's certificate: what a peer node, or a hostile
holder of a peer's certificate, can send to a node (mpcnode/transport/frames.py has the format).

    async with HandLink(address, "east", cluster.tls("north")) as link:
        answer = await link.send(job_id, "L1/prod", "north", "east", values)
        assert answer.ok

Every message asks for an ACK, so each gets exactly one answer: ACK (delivered, or an identical
copy ignored: `duplicate`) or REFUSED with a status code and a detail. Keep a link open for as
long as its messages matter: a node treats a stream that ends as a broken link, and the jobs it
carried stop waiting for that sender's messages that had not arrived.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
import numpy as np

from mpcnode.transport import frames
from mpcnode.transport.outbound import LINK_METHOD
from mpcnode.transport.tls import TlsMaterial, secure_channel
from parley.v1 import node_pb2

ANSWER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Answer:
    kind: str                 # "ack", "duplicate", "refused", or "closed" (the stream ended)
    code: grpc.StatusCode
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == "ack"


def _code(value: int) -> grpc.StatusCode:
    return next(c for c in grpc.StatusCode if c.value[0] == value)


class HandLink:
    def __init__(self, address: str, target: str, tls: TlsMaterial, max_mb: int = 256):
        self.address, self.target, self.tls, self.max_mb = address, target, tls, max_mb
        self.hello: node_pb2.LinkNotice | None = None

    async def __aenter__(self) -> "HandLink":
        self.channel = secure_channel(self.address, self.target, self.tls, self.max_mb)
        self.call = self.channel.stream_stream(LINK_METHOD, request_serializer=None,
                                               response_deserializer=node_pb2.LinkNotice.FromString)()
        try:
            self.hello = await asyncio.wait_for(self.call.read(), ANSWER_TIMEOUT_S)   # raises AioRpcError if refused
        except BaseException:
            await self.channel.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.call.cancel()
        await self.channel.close()

    async def send(self, job_id: str, round_label: str, sender: str, receiver: str, values=(1, 2), *,
                   payload: bytes | None = None, shape: list[int] | None = None, total: int | None = None,
                   chunk_bytes: int = frames.CHUNK_BYTES) -> Answer:
        """One message, in chunks of `chunk_bytes` if it is larger; returns the node's answer."""
        data = np.asarray(values, dtype="<u8")
        body = data.tobytes() if payload is None else payload
        shape = list(data.shape) if shape is None else shape
        total = len(body) if total is None else total
        pieces = [(off, body[off:off + chunk_bytes]) for off in range(0, max(len(body), 1), chunk_bytes)]
        for k, (off, piece) in enumerate(pieces):
            header = node_pb2.LinkHeader(job_id=job_id, round=round_label, sender=sender, receiver=receiver,
                                         total=total, offset=off, want_ack=k == len(pieces) - 1)
            if off == 0:
                header.shape.extend(shape)
            await self.call.write(frames.encode(header, piece))
        return await self.answer()

    async def send_raw(self, raw: bytes) -> Answer:
        await self.call.write(raw)
        return await self.answer()

    async def answer(self) -> Answer:
        """The next ACK or REFUSED notice (credit notices are skipped), or how the stream ended."""
        try:
            while True:
                n = await asyncio.wait_for(self.call.read(), ANSWER_TIMEOUT_S)
                if n is grpc.aio.EOF:
                    return Answer("closed", grpc.StatusCode.OK)
                if n.kind == node_pb2.NOTICE_KIND_ACK:
                    return Answer("duplicate" if n.duplicate else "ack", grpc.StatusCode.OK)
                if n.kind == node_pb2.NOTICE_KIND_REFUSED:
                    return Answer("refused", _code(n.code), n.detail)
        except grpc.aio.AioRpcError as exc:
            return Answer("closed", exc.code(), exc.details() or "")
