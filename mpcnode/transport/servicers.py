"""Thin async servicers: identity from the certificate, call the domain, map errors to status codes."""
from __future__ import annotations

import functools
import logging
from typing import Any, Awaitable, Callable

import grpc

from parley.v1 import node_pb2, node_pb2_grpc

from ..node import Conflict, Denied, Node, NotFound
from .peers import ProtocolViolation
from .tls import caller_identity

log = logging.getLogger("parley.rpc")

# Domain errors -> gRPC status, in one place.
_STATUS = [
    (Denied, grpc.StatusCode.PERMISSION_DENIED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (ProtocolViolation, grpc.StatusCode.INVALID_ARGUMENT),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
]


def rpc(handler: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        caller = caller_identity(context)
        try:
            return handler(self, caller, request)
        except tuple(e for e, _ in _STATUS) as exc:
            code = next(c for e, c in _STATUS if isinstance(exc, e))
            if isinstance(exc, ProtocolViolation) and "duplicate" in str(exc):
                code = grpc.StatusCode.ALREADY_EXISTS
            if isinstance(exc, Conflict) and "already submitted" in str(exc):
                code = grpc.StatusCode.ALREADY_EXISTS
            log.info("%s from %s refused: %s", handler.__name__, caller, exc)
            await context.abort(code, str(exc))
    return wrapper


class NodeControl(node_pb2_grpc.NodeControlServicer):
    def __init__(self, node: Node):
        self.node = node

    @rpc
    def Health(self, caller, request):
        if caller is None:
            raise Denied("no client certificate")
        return node_pb2.HealthReply(organization=self.node.org, party_count=len(self.node.cfg.peers) + 1)

    @rpc
    def Prepare(self, caller, request):
        return self.node.prepare(caller, request)

    @rpc
    def Start(self, caller, request):
        return self.node.start(caller, request.job_id, list(request.live))

    @rpc
    def Status(self, caller, request):
        return self.node.status(caller, request.job_id)

    @rpc
    def CloseInputs(self, caller, request):
        return self.node.close_inputs(caller, request.job_id, list(request.live))

    @rpc
    def Abort(self, caller, request):
        return self.node.abort(caller, request.job_id)


class PeerExchange(node_pb2_grpc.PeerExchangeServicer):
    def __init__(self, node: Node):
        self.node = node

    @rpc
    def Deliver(self, caller, request):
        self.node.deliver(caller, request)
        return node_pb2.PeerAck()


class ResultRelease(node_pb2_grpc.ResultReleaseServicer):
    def __init__(self, node: Node):
        self.node = node

    @rpc
    def FetchOutput(self, caller, request):
        return self.node.fetch_output(caller, request)


class InputIntake(node_pb2_grpc.InputIntakeServicer):
    def __init__(self, node: Node):
        self.node = node

    @rpc
    def SubmitShare(self, caller, request):
        return self.node.submit_client_share(caller, request)

    @rpc
    def JobInfo(self, caller, request):
        return self.node.job_info(caller, request.job_id)


def add_all(server: grpc.aio.Server, node: Node) -> None:
    node_pb2_grpc.add_NodeControlServicer_to_server(NodeControl(node), server)
    node_pb2_grpc.add_PeerExchangeServicer_to_server(PeerExchange(node), server)
    node_pb2_grpc.add_ResultReleaseServicer_to_server(ResultRelease(node), server)
    node_pb2_grpc.add_InputIntakeServicer_to_server(InputIntake(node), server)
