"""Writes a localhost deployment for a set of scenarios: one node config per organization and a
coordinator config, all using the certificates of one deployment CA. Used by `demo` and tests.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import yaml

from mpcnode.computation.scenario import AnyScenario


@dataclass(frozen=True)
class Deployment:
    workdir: Path
    certs: Path
    node_configs: dict[str, Path]
    addresses: dict[str, str]
    coordinator_config: Path
    coordinator_address: str


def free_ports(count: int) -> list[int]:
    """Ports the OS reports free right now (bound then released together, so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_deployment(workdir: Path, certs: Path, scenarios: list[tuple[Path, AnyScenario]],
                     input_root: Path | None = None, policy_overrides: dict[str, dict] | None = None,
                     node_overrides: dict[str, dict] | None = None,
                     approve: dict[str, list[str]] | None = None,
                     model_files: dict[str, Path] | None = None) -> Deployment:
    """Node configs for every compute party of the scenarios. Each organization approves exactly
    its scenarios, by naming the scenario files (the node rebuilds each computation and pins its
    fingerprint), plus any fingerprints in approve[org] (circuits built in code, for tests and
    benchmarks). Each node input dataset reads <input_root>/<scenario>/<org>.yaml; a `model`
    scenario's owner reads model_files[scenario name] (a model file, trained by the caller)."""
    orgs = sorted({p for _, sc in scenarios for p in sc.parties} | set(approve or {}))
    inputs: dict[str, dict[str, Path]] = {org: {} for org in orgs}
    policies: dict[str, dict] = {}
    for org in orgs:
        mine = [(path, sc) for path, sc in scenarios if org in sc.parties]
        for path, sc in mine:
            root = (input_root or path.parent / "inputs").resolve()
            f = root / sc.name / f"{org}.yaml"
            datasets = {d.dataset for d in sc.build().inputs if d.owner == org}
            if f.exists():
                inputs[org].update((ds, f) for ds in datasets)
            if sc.kind == "model" and sc.owner == org and sc.name in (model_files or {}):
                inputs[org][sc.dataset] = Path(model_files[sc.name]).resolve()
        # the input clients of the scenarios it approves (approvals by fingerprint, circuits built
        # in code for tests and benchmarks, take the clients of every scenario given)
        client_scenarios = [sc for _, sc in (scenarios if (approve or {}).get(org) else mine)]
        policies[org] = {"approvals": [{"scenario_file": str(path.resolve())} for path, _ in mine]
                         + [{"fingerprint": fp} for fp in (approve or {}).get(org, [])],
                         "input_clients": sorted({r for sc in client_scenarios for r in sc.input_client_rules()})}
        policies[org].update((policy_overrides or {}).get(org, {}))
    return write_nodes(workdir, certs, orgs, inputs, policies, node_overrides)


def write_nodes(workdir: Path, certs: Path, orgs: list[str], inputs: dict[str, dict[str, Path]],
                policies: dict[str, dict], node_overrides: dict[str, dict] | None = None) -> Deployment:
    workdir = workdir.resolve()
    certs = certs.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ports = free_ports(len(orgs) + 1)
    addresses = {org: f"127.0.0.1:{port}" for org, port in zip(orgs, ports)}
    node_configs = {}
    for org in orgs:
        cfg = {
            "organization": org,
            "listen": addresses[org],
            "tls": {"ca": str(certs / "ca.pem"), "cert": str(certs / f"{org}.pem"), "key": str(certs / f"{org}.key")},
            "peers": {o: a for o, a in addresses.items() if o != org},
            "data_dir": str(workdir / "nodes" / org),
            "inputs": {name: str(path) for name, path in inputs.get(org, {}).items()},
            "policy": {"coordinators": ["coordinator"], **policies.get(org, {})},
        }
        cfg.update((node_overrides or {}).get(org, {}))
        path = workdir / f"node-{org}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        node_configs[org] = path
    coord_addr = f"127.0.0.1:{ports[-1]}"
    coord = {
        "identity": "coordinator",
        "listen": coord_addr,
        "tls": {"ca": str(certs / "ca.pem"), "cert": str(certs / "coordinator.pem"),
                "key": str(certs / "coordinator.key")},
        "nodes": addresses,
        "operators": ["operator"],
        "database": str(workdir / "coordinator.sqlite3"),
    }
    coord_path = workdir / "coordinator.yaml"
    coord_path.write_text(yaml.safe_dump(coord, sort_keys=False))
    return Deployment(workdir, certs, node_configs, addresses, coord_path, coord_addr)
