"""Operator side: submit a scenario to the coordinator and follow the job until it ends."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import grpc

from mpcnode.transport.tls import TlsMaterial, secure_channel
from parley.v1 import coordinator_pb2 as cop
from parley.v1 import coordinator_pb2_grpc as copg


class JobFailed(RuntimeError):
    pass


async def submit(address: str, tls: TlsMaterial, scenario_path: Path, job_id: str = "") -> tuple[str, bool]:
    async with secure_channel(address, "coordinator", tls) as ch:
        reply = await copg.CoordinatorStub(ch).Submit(
            cop.SubmitRequest(scenario_yaml=scenario_path.read_text(), scenario_path=str(scenario_path), job_id=job_id),
            timeout=30, wait_for_ready=True)
    return reply.job_id, reply.created


async def close_inputs(address: str, tls: TlsMaterial, job_id: str) -> None:
    async with secure_channel(address, "coordinator", tls) as ch:
        await copg.CoordinatorStub(ch).CloseInputs(cop.CloseRequest(job_id=job_id), timeout=30, wait_for_ready=True)


async def watch(address: str, tls: TlsMaterial, job_id: str, on_progress: Callable[[cop.JobProgress], None],
                timeout: float = 3600) -> cop.JobProgress:
    """Follow the job; returns the final progress, raises JobFailed with the reason on failure."""
    last = None
    async with secure_channel(address, "coordinator", tls) as ch:
        # wait_for_ready: a connection attempt that fails under load is retried within the deadline
        async for p in copg.CoordinatorStub(ch).Watch(cop.WatchRequest(job_id=job_id), timeout=timeout,
                                                      wait_for_ready=True):
            on_progress(p)
            last = p
    if last is None:
        raise JobFailed(f"job {job_id}: no progress received")
    if last.state != "DONE":
        raise JobFailed(f"job {job_id} failed: {last.error or last.state}")
    return last


def progress_printer(stream=sys.stderr) -> Callable[[cop.JobProgress], None]:
    """One line per change: state, rounds done, elapsed time (rich renders it when on a terminal)."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(file=stream, highlight=False)
    seen: list[tuple] = []

    def show(p: cop.JobProgress) -> None:
        key = (p.state, p.rounds_done, p.inputs_received, p.rows_agreed)
        if seen and seen[-1] == key:
            return
        seen.append(key)
        extra = f", {p.inputs_received} client inputs" if p.inputs_received else ""
        if p.rows_agreed and p.rows_withheld:
            extra += " (rows agreed; counts withheld by the nodes: the DP outputs protect participation)"
        elif p.rows_agreed:
            extra += f" ({p.rows_accepted} counted, {len(p.excluded)} excluded)"
        # job ids and errors come from the operator and the nodes: never read them as rich markup
        console.print(f"[bold]{escape(p.job_id)}[/bold] {p.state.lower()}: {p.rounds_done} rounds{extra}, "
                      f"{p.elapsed_s:.2f}s" + (f" - {escape(p.error)}" if p.error else ""), soft_wrap=True)
        if p.rows_agreed and (not seen[:-1] or not seen[-2][3]):    # once, when the rows were agreed
            for line in excluded_lines(p):
                console.print(escape(line), soft_wrap=True)
    return show


def excluded_lines(p: cop.JobProgress) -> list[str]:
    """One line per client row the nodes excluded: credential, input and why (never a value)."""
    return [f"  excluded {e.credential} ({e.input}): {e.reason}" for e in p.excluded]


def rpc_error_text(exc: grpc.aio.AioRpcError) -> str:
    return exc.details() or exc.code().name
