"""Starting and stopping node and coordinator processes on localhost, with readiness by RPC."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from mpcnode.transport.tls import TlsMaterial, secure_channel
from parley.v1 import node_pb2, node_pb2_grpc

REPO = Path(__file__).resolve().parent.parent

# Bulk rounds allocate fresh multi-MB buffers; keeping them mapped avoids page-fault storms.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824",
              "MALLOC_TOP_PAD_": "67108864"}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(MALLOC_ENV)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def start_node(config: Path, log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "mpcnode", "--config", str(config)], cwd=REPO,
                                env=child_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def start_coordinator(config: Path, log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "coordinator", "serve", "--config", str(config)], cwd=REPO,
                                env=child_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


async def wait_node_ready(org: str, address: str, tls: TlsMaterial, proc: subprocess.Popen | None,
                          timeout: float = 30.0, log: Path | None = None) -> None:
    """Poll the node's Health RPC until it answers as `org`; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    async with secure_channel(address, org, tls) as ch:
        stub = node_pb2_grpc.NodeControlStub(ch)
        while True:
            if proc is not None and proc.poll() is not None:
                tail = log.read_text()[-2000:] if log and log.exists() else ""
                raise RuntimeError(f"node {org} exited with code {proc.returncode}:\n{tail}")
            try:
                reply = await stub.Health(node_pb2.HealthRequest(), timeout=2.0)
                if reply.organization != org:
                    raise RuntimeError(f"{address} answered as {reply.organization}, expected {org}")
                return
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"node {org} at {address} not ready after {timeout:g}s") from None
                await asyncio.sleep(0.1)


async def wait_coordinator_ready(address: str, tls: TlsMaterial, proc: subprocess.Popen, timeout: float = 30.0,
                                 log: Path | None = None) -> None:
    from parley.v1 import coordinator_pb2 as cop
    from parley.v1 import coordinator_pb2_grpc as copg

    deadline = time.monotonic() + timeout
    async with secure_channel(address, "coordinator", tls) as ch:
        stub = copg.CoordinatorStub(ch)
        while True:
            if proc.poll() is not None:
                tail = log.read_text()[-2000:] if log and log.exists() else ""
                raise RuntimeError(f"coordinator exited with code {proc.returncode}:\n{tail}")
            try:
                await stub.CloseInputs(cop.CloseRequest(job_id="-readiness-probe-"), timeout=2.0)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
                    return  # serving: it answered
                if time.monotonic() > deadline:
                    raise TimeoutError(f"coordinator at {address} not ready after {timeout:g}s") from None
                await asyncio.sleep(0.1)


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL: the process gets no chance to clean up (fault tests)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
