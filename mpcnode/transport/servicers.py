"""Thin async servicers: identity from the certificate, call the domain, map errors to status codes."""
from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Awaitable, Callable

import grpc

from parley.v1 import node_pb2, node_pb2_grpc

from ..certs import CLIENT, COORDINATOR, NODE
from ..node import Conflict, Denied, Node, NotFound
from .inbound import one_line as _one_line
from .peers import ProtocolViolation
from .tls import caller_identity, caller_role

log = logging.getLogger("parley.rpc")

# Domain errors -> gRPC status, in one place.
_STATUS = [
    (Denied, grpc.StatusCode.PERMISSION_DENIED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (ProtocolViolation, grpc.StatusCode.INVALID_ARGUMENT),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
]


def rpc(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Awaitable[Any]]]:
    """An RPC callable only with a certificate of one of `roles` (certs.ROLES; none: any role),
    checked before the handler judges the name: a client's certificate named like a node or a
    coordinator acts as neither."""
    return functools.partial(_rpc, frozenset(roles))


def _rpc(roles: frozenset[str], handler: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        caller = caller_identity(context)
        if roles and caller is not None and caller_role(context) not in roles:
            detail = (f"{caller!r} has a {caller_role(context) or 'role-less'} certificate; {handler.__name__} "
                      f"needs a {' or '.join(sorted(roles))} certificate")
            log.info("%s from %s refused: %s", handler.__name__, caller, detail)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, detail)
        try:
            result = handler(self, caller, request)
            return await result if inspect.isawaitable(result) else result
        except tuple(e for e, _ in _STATUS) as exc:
            code = next(c for e, c in _STATUS if isinstance(exc, e))
            if isinstance(exc, Conflict) and "already submitted" in str(exc):
                code = grpc.StatusCode.ALREADY_EXISTS
            detail = _one_line(str(exc))
            log.info("%s from %s refused: %s", handler.__name__, caller, detail)
            await context.abort(code, detail)
    return wrapper


class NodeControl(node_pb2_grpc.NodeControlServicer):
    def __init__(self, node: Node):
        self.node = node

    @rpc()
    def Health(self, caller, request):
        if caller is None:
            raise Denied("no client certificate")
        return node_pb2.HealthReply(organization=self.node.org, party_count=len(self.node.cfg.peers) + 1)

    @rpc(COORDINATOR)
    def Prepare(self, caller, request):
        return self.node.prepare(caller, request)

    @rpc(COORDINATOR)
    def Start(self, caller, request):
        return self.node.start(caller, request.job_id, list(request.live))

    @rpc(COORDINATOR)
    def Status(self, caller, request):
        return self.node.wait_status(caller, request.job_id, request.wait_s)

    @rpc(COORDINATOR)
    def CloseInputs(self, caller, request):
        return self.node.close_inputs(caller, request.job_id, list(request.live))

    @rpc(COORDINATOR)
    def Commit(self, caller, request):
        return self.node.commit(caller, request.job_id)

    @rpc(COORDINATOR)
    def Abort(self, caller, request):
        return self.node.abort(caller, request.job_id)


class PeerExchange(node_pb2_grpc.PeerExchangeServicer):
    """Link streams are served by the node's links (peers.py): they bind the stream to the caller's
    certificate and judge every frame on their own, so that a refused frame does not end the stream."""

    def __init__(self, node: Node):
        self.node = node

    async def Link(self, request_iterator, context):
        await self.node.links.serve(request_iterator, context)


# Outputs go to whoever the job names as recipient (an organization, the coordinator or a
# client), and JobInfo to any client that checks the job: any role, the node judges the name.
class ResultRelease(node_pb2_grpc.ResultReleaseServicer):
    def __init__(self, node: Node):
        self.node = node

    @rpc()
    def FetchOutput(self, caller, request):
        return self.node.fetch_output(caller, request)


class ModelControl(node_pb2_grpc.ModelControlServicer):
    def __init__(self, node: Node):
        self.node = node

    @rpc(NODE)
    def DeleteModel(self, caller, request):
        return node_pb2.ModelDeleted(model_id=request.model_id,
                                     erased=self.node.models.delete(caller, request.model_id))

    @rpc(NODE)
    def Usage(self, caller, request):
        return self.node.models.usage(caller, request.model_id)


class InputIntake(node_pb2_grpc.InputIntakeServicer):
    def __init__(self, node: Node):
        self.node = node

    @rpc(CLIENT, NODE)   # NODE: an input-only party's node shares its own input
    def SubmitShare(self, caller, request):
        return self.node.submit_client_share(caller, request)

    @rpc()
    def JobInfo(self, caller, request):
        return self.node.job_info(caller, request.job_id)

    @rpc(CLIENT, NODE)   # whoever may submit may ask about its own submission
    def SubmissionStatus(self, caller, request):
        return self.node.submission_status(caller, request)


class Malformed:
    """A request body that does not decode as the method's message type."""

    def __init__(self, type_name: str, exc: Exception):
        self.problem = f"malformed {type_name}: {exc}"


def add_service(server: grpc.aio.Server, pb2_module: Any, service: str, servicer: Any) -> None:
    """Register `servicer` for `service` (as the generated add_*_to_server does), except that a
    request body that does not decode is refused with INVALID_ARGUMENT and one log line, instead of
    grpc's UNKNOWN "Unexpected DecodeError" and a traceback in the log for every such request."""
    desc = pb2_module.DESCRIPTOR.services_by_name[service]
    handlers = {}
    for method in desc.methods:
        request_type = getattr(pb2_module, method.input_type.name)
        reply_type = getattr(pb2_module, method.output_type.name)
        behavior = getattr(servicer, method.name)
        if method.client_streaming:
            # Link: frames arrive as raw bytes, parsed one by one by the stream's handler (frames.py)
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                behavior, request_deserializer=None, response_serializer=reply_type.SerializeToString)
            continue
        make = grpc.unary_stream_rpc_method_handler if method.server_streaming else grpc.unary_unary_rpc_method_handler
        handlers[method.name] = make(_refusing_malformed(behavior, method.server_streaming, service, method.name),
                                     request_deserializer=_lenient(request_type),
                                     response_serializer=reply_type.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(desc.full_name, handlers),))


def _lenient(request_type: Any) -> Callable[[bytes], Any]:
    def parse(raw: bytes) -> Any:
        try:
            return request_type.FromString(raw)
        except Exception as exc:  # DecodeError, and whatever else a hostile body makes the parser raise
            return Malformed(request_type.DESCRIPTOR.name, exc)
    return parse


def _refusing_malformed(behavior: Callable[..., Any], streaming: bool, service: str, name: str) -> Callable[..., Any]:
    async def refuse(request: Malformed, context: grpc.aio.ServicerContext) -> None:
        detail = _one_line(request.problem)
        log.info("%s.%s from %s refused: %s", service, name, caller_identity(context), detail)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, detail)

    if streaming:
        async def stream(request: Any, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
            if isinstance(request, Malformed):
                await refuse(request, context)
            async for reply in behavior(request, context):
                yield reply
        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            await refuse(request, context)
        return await behavior(request, context)
    return unary


def add_all(server: grpc.aio.Server, node: Node) -> None:
    add_service(server, node_pb2, "NodeControl", NodeControl(node))
    add_service(server, node_pb2, "PeerExchange", PeerExchange(node))
    add_service(server, node_pb2, "ResultRelease", ResultRelease(node))
    add_service(server, node_pb2, "InputIntake", InputIntake(node))
    add_service(server, node_pb2, "ModelControl", ModelControl(node))
