"""The coordinator's gRPC service (operator -> coordinator), thin over the Scheduler."""
from __future__ import annotations

import asyncio

import grpc

from mpcnode.configfile import ConfigError
from mpcnode.certs import CLIENT
from mpcnode.transport.tls import caller_identity, caller_role
from parley.v1 import coordinator_pb2 as cop
from parley.v1 import coordinator_pb2_grpc as copg

from .scheduler import TERMINAL, Scheduler


class CoordinatorService(copg.CoordinatorServicer):
    def __init__(self, scheduler: Scheduler):
        self.s = scheduler

    async def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        caller = caller_identity(context)
        if caller not in self.s.cfg.operators:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{caller!r} may not use the coordinator")
        if caller_role(context) != CLIENT:   # operators are people with client certificates, not nodes
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"{caller!r} has a {caller_role(context) or 'role-less'} certificate; "
                                "operators need a client certificate")

    async def Submit(self, request, context):
        await self._authorize(context)
        if len(request.job_id) > 128:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job id longer than 128 characters")
        try:
            job_id, created = self.s.submit(request.scenario_yaml, request.scenario_path or "<submitted>",
                                            request.job_id)
        except ConfigError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return cop.SubmitReply(job_id=job_id, created=created)

    async def Watch(self, request, context):
        await self._authorize(context)
        while True:
            snap = self.s.snapshot(request.job_id)
            if snap is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id}")
            yield snap
            if snap.state in TERMINAL:
                return
            live = self.s.live.get(request.job_id)
            if live is None:
                return
            try:
                await asyncio.wait_for(live.changed.wait(), 0.5)
            except asyncio.TimeoutError:
                pass

    async def CloseInputs(self, request, context):
        await self._authorize(context)
        try:
            self.s.request_close(request.job_id)
        except KeyError:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no active job {request.job_id}")
        return self.s.snapshot(request.job_id)
