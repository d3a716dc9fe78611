"""`make demo`: a whole deployment on localhost, every scenario run, each recipient's result printed.

Nodes and the coordinator run as separate processes. Input clients and recipients act here with
their own certificates: clients share their values themselves, recipients fetch shares from the
nodes and reconstruct; the coordinator only schedules.

`demo --serve` starts the same deployment (the same policies: each node approves the scenario
files it is a party of) but runs nothing: it writes <workdir>/deployment.json, prints the commands
to submit, join as an input client, fetch and audit, and keeps running until SIGINT or SIGTERM.
"""
from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mpcnode.client import SubmitError, submit as client_submit
from mpcnode.configfile import ConfigError, read_yaml
from mpcnode.recipient import fetch
from mpcnode.transport.tls import TlsMaterial
from parley.v1 import coordinator_pb2 as cop
from parley.v1 import coordinator_pb2_grpc as copg

from . import processes
from .demomodel import train_demo_model
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
    nodes = {o: dep.addresses[o] for o in sc.compute_parties}
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


async def run_prediction(dep: Deployment, path: Path, sc: AnyScenario, operator: TlsMaterial) -> list[dict]:
    """A `predict` scenario: the querier's client shares the rows of inputs/<name>/queries.csv
    (its carried `patient` column names them), the organizer closes the input once it has, and
    the querier alone gets the predictions."""
    from mpcnode.predictclient import predict
    job_id, _ = await submit(dep.coordinator_address, operator, path)
    await wait_running(dep.coordinator_address, operator, job_id)
    nodes = {o: dep.addresses[o] for o in sc.compute_parties}
    submitted = asyncio.Event()
    task = asyncio.create_task(predict(job_id, path.parent / "inputs" / sc.name / "queries.csv", None, nodes,
                                       TlsMaterial.for_identity(dep.certs, sc.querier),
                                       sc.computation().fingerprint(), carry=["patient"], submitted=submitted))
    done, _ = await asyncio.wait([task, asyncio.create_task(submitted.wait())], return_when=asyncio.FIRST_COMPLETED)
    if task not in done:
        await close_inputs(dep.coordinator_address, operator, job_id)
    got = await task
    rows = list(zip(*(np.asarray(c).tolist() for c in got.columns.values())))
    result = {str(r[0]): (round(r[1], 4) if isinstance(r[1], float) else r[1]) for r in rows}
    return [{"scenario": sc.name, "recipient": sc.querier, "result": result}]


async def run_scenario(dep: Deployment, path: Path, sc: AnyScenario, operator: TlsMaterial) -> list[dict]:
    if sc.kind == "predict":
        return await run_prediction(dep, path, sc, operator)
    job_id, _ = await submit(dep.coordinator_address, operator, path)
    circuit = sc.build()
    client_decls = [d for d in circuit.inputs if d.clients]
    if client_decls:
        await wait_running(dep.coordinator_address, operator, job_id)
        await submit_clients(dep, sc, client_decls[0].name, client_inputs(path, sc), job_id)
        await close_inputs(dep.coordinator_address, operator, job_id)
    await watch(dep.coordinator_address, operator, job_id, progress_printer())
    nodes = {o: dep.addresses[o] for o in sc.compute_parties}
    if circuit.keep:    # a `model` job opens nothing: each compute node now keeps its share
        return [{"scenario": sc.name, "result": f"model {k.model_id} kept at {', '.join(sc.compute_parties)}; "
                 f"grants: {', '.join(f'{g.querier} {g.queries} queries' for g in k.grants) or 'none'}"}
                for k in circuit.keep]
    lines = []
    for recipient in sc.recipients:
        tls = TlsMaterial.for_identity(dep.certs, recipient)
        fetched = {o.name: await fetch(job_id, o.name, nodes, tls) for o in circuit.outputs}
        results = {name: r.value for name, r in fetched.items()}
        value = next(iter(results.values())) if len(results) == 1 else results
        line = {"scenario": sc.name, "recipient": recipient, "result": value}
        # a DP result is printed with its epsilon and expected error (docs/privacy.md)
        dp = {name: {k: r.dp[k] for k in ("epsilon", "mechanism", "std", "interval95") if k in r.dp}
              for name, r in fetched.items() if r.dp}
        if dp:
            line["dp"] = next(iter(dp.values())) if len(dp) == 1 else dp
        lines.append(line)
    return lines


async def run_demo(scenario_dir: Path, certs: Path, workdir: Path, only: list[str] | None,
                   serve: bool = False) -> int:
    scenarios = [(p, load_scenario(p)) for p in sorted(scenario_dir.glob("*.yaml"))]
    if only:
        scenarios = [(p, s) for p, s in scenarios if s.name in only]
    if not scenarios:
        print(f"error: no scenarios in {scenario_dir}", file=sys.stderr)
        return 2
    shutil.rmtree(workdir, ignore_errors=True)
    # each model owner's file, trained now (coordinator/demomodel.py): it never enters the repository
    models = {sc.name: train_demo_model(workdir.resolve() / "models" / sc.owner / f"{sc.name}.json")
              for _, sc in scenarios if sc.kind == "model"}
    dep = write_deployment(workdir, certs, scenarios, model_files=models)
    operator = TlsMaterial.for_identity(certs, "operator")
    procs: list[tuple[str, subprocess.Popen]] = []
    # The children run in sessions of their own (processes.py), so a Ctrl-C on the terminal reaches
    # only this process, and a SIGTERM would end it without running any `finally`: both signals
    # cancel this task instead, and the `finally` below stops every process it started.
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        for org, cfg in dep.node_configs.items():
            procs.append((org, processes.start_node(cfg, dep.workdir / "logs" / f"{org}.log")))
        await asyncio.gather(*(processes.wait_node_ready(org, dep.addresses[org], operator, proc,
                                                         log=dep.workdir / "logs" / f"{org}.log")
                               for org, proc in procs))
        coord = processes.start_coordinator(dep.coordinator_config, dep.workdir / "logs" / "coordinator.log")
        procs.append(("coordinator", coord))
        await processes.wait_coordinator_ready(dep.coordinator_address, operator, coord,
                                               log=dep.workdir / "logs" / "coordinator.log")
        print(f"started {len(dep.node_configs)} nodes and the coordinator; logs in {dep.workdir / 'logs'}",
              file=sys.stderr)
        if serve:
            return await serve_deployment(dep, scenarios, procs)
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
    except asyncio.CancelledError:
        print("interrupted: stopping the nodes and the coordinator", file=sys.stderr)
        return 130
    finally:
        stop_all([proc for _, proc in procs])
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def stop_all(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    """SIGTERM every process first and then wait for them, so they shut down side by side rather
    than one after another; whatever is still running after `grace` seconds is killed."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # its own process group (start_new_session)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for proc in running:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            processes.kill(proc)


async def serve_deployment(dep: Deployment, scenarios: list[tuple[Path, AnyScenario]],
                           procs: list[tuple[str, subprocess.Popen]]) -> int:
    """Publish the running deployment in deployment.json, print how to use it, and keep it up until
    SIGINT/SIGTERM cancels this task (exit 0), or until a node or the coordinator exits by itself
    (exit 1: the deployment is no longer whole)."""
    info = dep.workdir / "deployment.json"
    tmp = info.with_suffix(".tmp")
    # written once everything answers, and atomically: a reader that sees the file can use it
    tmp.write_text(json.dumps({"coordinator": dep.coordinator_address, "nodes": dep.addresses,
                               "certs": str(dep.certs)}, indent=2) + "\n")
    tmp.replace(info)
    try:
        print("\n".join(serve_instructions(dep, scenarios, info)), file=sys.stderr, flush=True)
        try:
            while True:
                dead = [(name, p.returncode) for name, p in procs if p.poll() is not None]
                if dead:
                    print("error: " + ", ".join(f"{name} exited with code {code}" for name, code in dead)
                          + f"; see {dep.workdir / 'logs'}; stopping the rest", file=sys.stderr)
                    return 1
                await asyncio.sleep(1.0)  # a liveness check, not a readiness wait
        except asyncio.CancelledError:
            print("stopping the nodes and the coordinator", file=sys.stderr)
            return 0
    finally:
        info.unlink(missing_ok=True)  # its presence means "running": never leave stale addresses behind


def _arg(path: Path | str) -> str:
    """A path for a command line to copy: relative to the current directory when under it. Not
    resolved: a venv's python is a symlink that only works under its own name."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return shlex.quote(absolute if relative.startswith("..") else relative)


def serve_instructions(dep: Deployment, scenarios: list[tuple[Path, AnyScenario]], info: Path) -> list[str]:
    """Commands to copy, filled in with this deployment's addresses, scenarios and fingerprints."""
    py = _arg(sys.executable)
    certs = _arg(dep.certs)
    coord = f"--coordinator {dep.coordinator_address} --certs {certs}"

    def nodes_of(sc: AnyScenario) -> str:
        return ",".join(f"{o}={dep.addresses[o]}" for o in sc.compute_parties)

    lines = [f"Parley is serving on localhost (deployment {_arg(info)}); it runs no job by itself.",
             "Each node approves exactly the scenario files it is a party of (fingerprint: sha256 of the computation):"]
    width = max(len(sc.name) for _, sc in scenarios)
    lines += [f"  {sc.name.ljust(width)}  {sc.computation().fingerprint()}  {_arg(path)}" for path, sc in scenarios]
    first_path, _ = scenarios[0]
    lines += ["", "What a scenario computes, in plain words, and its fingerprint:",
              f"  {py} -m coordinator plan {_arg(first_path)} --certs {certs}"]
    node_run = next(((p, sc) for p, sc in scenarios
                     if not any(d.clients for d in sc.build().inputs) and sc.build().outputs), None)
    if node_run is not None:
        path, sc = node_run
        job = f"{sc.name}-1"
        outputs = [o.name for o in sc.build().outputs]
        output = outputs[-1]  # an average scenario's last output is the average
        lines += ["", "Run a job on the nodes' own inputs (waits until it is done; any job id of yours):",
                  f"  {py} -m coordinator submit {_arg(path)} {coord} --job-id {job}",
                  f"Fetch an output ({', '.join(outputs)}) as a recipient ({', '.join(sc.recipients)}), "
                  "from the nodes themselves:",
                  f"  {py} -m mpcnode.recipient --job {job} --output {output} --nodes {nodes_of(sc)} "
                  f"--certs {certs} --identity {sc.recipients[0]}"]
    client_run = next(((p, sc) for p, sc in scenarios
                       if any(d.clients for d in sc.build().inputs) and sc.kind != "predict"), None)
    if client_run is not None:
        path, sc = client_run
        job = f"{sc.name}-1"
        decl = next(d for d in sc.build().inputs if d.clients)
        try:
            client, values = next(iter(client_inputs(path, sc).items()))
        except (ConfigError, StopIteration):
            client, values = decl.clients[0], [decl.lo] * decl.length
        lines += ["", "Input clients: submit the job with an input window in one terminal, ...",
                  f"  {py} -m coordinator submit {_arg(path)} {coord} --job-id {job} --close-inputs-after 120",
                  "... and while it is open, each client (who checks the fingerprint it was given) in another:",
                  f"  {py} -m mpcnode.client submit --job {job} --input {decl.name} "
                  f"--values {','.join(str(v) for v in values)} --nodes {nodes_of(sc)} --certs {certs} "
                  f"--identity {client} --fingerprint {sc.computation().fingerprint()}"]
    predict_run = next(((p, sc) for p, sc in scenarios if sc.kind == "predict"), None)
    if predict_run is not None:
        path, sc = predict_run
        job = f"{sc.name}-1"
        model = next((mp for mp, m in scenarios if m.kind == "model" and m.name == sc.model_scenario().name), None)
        lines += ["", "Private prediction: keep the model at the nodes once, then open a prediction job ..."]
        if model is not None:
            lines.append(f"  {py} -m coordinator submit {_arg(model)} {coord} --job-id {sc.model_scenario().name}-1")
        lines += [f"  {py} -m coordinator submit {_arg(path)} {coord} --job-id {job} --close-inputs-after 120",
                  f"... and, while it is open, the querier {sc.querier} shares its table and gets the predictions:",
                  f"  {py} -m mpcnode.client predict --job {job} --input "
                  f"{_arg(path.parent / 'inputs' / sc.name / 'queries.csv')} --output scores.csv --carry patient "
                  f"--nodes {nodes_of(sc)} --certs {certs} --identity {sc.querier} "
                  f"--fingerprint {sc.computation().fingerprint()}"]
    org = sorted(dep.node_configs)[0]
    lines += ["", "What a node's data was used for (read-only; works while the node runs):",
              f"  {py} -m mpcnode audit --config {_arg(dep.node_configs[org])}",
              "", "Stop everything with Ctrl-C (SIGINT) or SIGTERM."]
    return lines
