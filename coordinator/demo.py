"""`make demo`: a whole deployment on localhost, every scenario run, each recipient's result printed.

Nodes and the coordinator run as separate processes. Input clients and recipients act here with
their own certificates: clients share their values themselves, recipients fetch shares from the
nodes and reconstruct; the coordinator only schedules.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

from mpcnode.client import SubmitError, submit as client_submit
from mpcnode.configfile import ConfigError, read_yaml
from mpcnode.recipient import fetch
from mpcnode.transport.tls import TlsMaterial
from parley.v1 import coordinator_pb2 as cop
from parley.v1 import coordinator_pb2_grpc as copg

from . import processes
from .client import close_inputs, progress_printer, submit, watch
from .deploy import Deployment, write_deployment
from mpcnode.computation.scenario import AnyScenario, load_scenario


async def wait_running(address: str, tls: TlsMaterial, job_id: str, timeout: float = 60.0) -> None:
    from mpcnode.transport.tls import secure_channel

    async with secure_channel(address, "coordinator", tls) as ch:
        async for p in copg.CoordinatorStub(ch).Watch(cop.WatchRequest(job_id=job_id), timeout=timeout):
            if p.state == "RUNNING":
                return
            if p.state in ("DONE", "FAILED"):
                raise RuntimeError(f"job {job_id} {p.state.lower()} before inputs opened: {p.error}")


def client_inputs(path: Path, sc: AnyScenario) -> dict[str, list[int]]:
    """Demo values for input clients, kept next to the scenario: inputs/<name>/clients.yaml."""
    f = path.parent / "inputs" / sc.name / "clients.yaml"
    data = read_yaml(f)
    if not isinstance(data, dict):
        raise ConfigError(f, "(top level)", "expected client -> value(s)")
    return {str(k): (v if isinstance(v, list) else [v]) for k, v in data.items()}


async def submit_clients(dep: Deployment, sc: AnyScenario, input_name: str, values: dict[str, list[int]],
                         job_id: str, concurrency: int = 32) -> None:
    """Each client checks the job against the fingerprint published with the scenario (here: computed
    from the scenario file, as an organizer's web page would show it) before it sends a share."""
    nodes = {o: dep.addresses[o] for o in sc.parties}
    expected = sc.computation().fingerprint()
    gate = asyncio.Semaphore(concurrency)

    async def one(client: str, vals: list[int]) -> None:
        tls = TlsMaterial.for_identity(dep.certs, client)
        async with gate:
            try:
                await client_submit(job_id, input_name, vals, nodes, tls, expected)
            except SubmitError as exc:
                print(f"note: {client}'s input fails the client-side check ({exc}); submitting it anyway, "
                      "as a misbehaving client would, to show validation inside MPC", file=sys.stderr)
                await client_submit(job_id, input_name, vals, nodes, tls, expected, skip_local_check=True)

    await asyncio.gather(*(one(c, v) for c, v in values.items()))


async def run_scenario(dep: Deployment, path: Path, sc: AnyScenario, operator: TlsMaterial) -> list[dict]:
    job_id, _ = await submit(dep.coordinator_address, operator, path)
    circuit = sc.build()
    client_decls = [d for d in circuit.inputs if d.clients]
    if client_decls:
        await wait_running(dep.coordinator_address, operator, job_id)
        await submit_clients(dep, sc, client_decls[0].name, client_inputs(path, sc), job_id)
        await close_inputs(dep.coordinator_address, operator, job_id)
    await watch(dep.coordinator_address, operator, job_id, progress_printer())
    nodes = {o: dep.addresses[o] for o in sc.parties}
    lines = []
    for recipient in sc.recipients:
        tls = TlsMaterial.for_identity(dep.certs, recipient)
        results = {o.name: (await fetch(job_id, o.name, nodes, tls)).value for o in circuit.outputs}
        value = next(iter(results.values())) if len(results) == 1 else results
        lines.append({"scenario": sc.name, "recipient": recipient, "result": value})
    return lines


async def run_demo(scenario_dir: Path, certs: Path, workdir: Path, only: list[str] | None) -> int:
    scenarios = [(p, load_scenario(p)) for p in sorted(scenario_dir.glob("*.yaml"))]
    if only:
        scenarios = [(p, s) for p, s in scenarios if s.name in only]
    if not scenarios:
        print(f"error: no scenarios in {scenario_dir}", file=sys.stderr)
        return 2
    shutil.rmtree(workdir, ignore_errors=True)
    dep = write_deployment(workdir, certs, scenarios)
    operator = TlsMaterial.for_identity(certs, "operator")
    procs = []
    try:
        for org, cfg in dep.node_configs.items():
            procs.append((org, processes.start_node(cfg, workdir / "logs" / f"{org}.log")))
        await asyncio.gather(*(processes.wait_node_ready(org, dep.addresses[org], operator, proc,
                                                         log=workdir / "logs" / f"{org}.log") for org, proc in procs))
        coord = processes.start_coordinator(dep.coordinator_config, workdir / "logs" / "coordinator.log")
        procs.append(("coordinator", coord))
        await processes.wait_coordinator_ready(dep.coordinator_address, operator, coord,
                                               log=workdir / "logs" / "coordinator.log")
        print(f"started {len(dep.node_configs)} nodes and the coordinator; logs in {workdir / 'logs'}", file=sys.stderr)
        lines: list[dict] = []
        failures = 0
        for path, sc in scenarios:
            print(f"--- {sc.name}: {sc.description.strip().splitlines()[0] if sc.description else sc.kind} "
                  f"(computation {sc.computation().fingerprint()[:16]}...)", file=sys.stderr)
            try:
                lines += await run_scenario(dep, path, sc, operator)
            except Exception as exc:  # report and go on with the other scenarios
                failures += 1
                print(f"error: scenario {sc.name} failed: {exc}", file=sys.stderr)
        for line in lines:
            print(json.dumps(line))
        return 1 if failures else 0
    finally:
        for _, proc in reversed(procs):
            processes.stop(proc)
