"""The node's config file: identity, TLS material, peers, storage, input files and consent policy."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .certs import NAME_RULE, valid_identity
from .configfile import load_model


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _identity(v: str) -> str:
    if not valid_identity(v):
        raise ValueError(f"{v!r} is not a valid identity ({NAME_RULE})")
    return v


class TlsFiles(Strict):
    ca: Path
    cert: Path
    key: Path


class Policy(Strict):
    """What this organization consents to. An empty list allows nothing; ["*"] allows anything."""
    scenarios: list[str] = Field(default_factory=list, description="scenario names our input may feed")
    fingerprints: list[str] = Field(default_factory=list, description="circuit fingerprints our input may feed")
    recipients: list[str] = Field(default_factory=list, description="who may receive results computed from our data")
    coordinators: list[str] = Field(default_factory=lambda: ["coordinator"], description="who may schedule jobs")
    input_clients: list[str] = Field(default_factory=lambda: ["*"],
                                     description="client credentials we accept input shares from (jobs name them too)")

    def allows_scenario(self, scenario: str, fingerprint: str) -> bool:
        return "*" in self.scenarios or scenario in self.scenarios or fingerprint in self.fingerprints

    def disallowed_recipients(self, recipients: set[str]) -> list[str]:
        if "*" in self.recipients:
            return []
        return sorted(r for r in recipients if r not in self.recipients)


class NodeConfig(Strict):
    organization: str
    listen: str = Field(description="host:port to bind, e.g. 127.0.0.1:7001")
    tls: TlsFiles
    peers: dict[str, str] = Field(description="every other compute node: organization -> host:port")
    data_dir: Path
    inputs: dict[str, Path] = Field(default_factory=dict, description="scenario name -> local YAML file of our inputs")
    policy: Policy = Field(default_factory=Policy)
    rpc_timeout_s: float = Field(default=30.0, gt=0, description="deadline of one RPC")
    round_timeout_s: float = Field(default=60.0, gt=0, description="longest wait for a peer's message in one round")
    max_message_mb: int = Field(default=256, gt=0, le=2000)

    _check_org = field_validator("organization")(_identity)

    @field_validator("peers")
    @classmethod
    def _check_peers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, addr in v.items():
            _identity(name)
            if ":" not in addr:
                raise ValueError(f"peer {name}: address {addr!r} must be host:port")
        return v

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, v: str) -> str:
        host, _, port = v.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"{v!r} must be host:port")
        return v


def load_node_config(path: Path | str) -> NodeConfig:
    cfg = load_model(path, NodeConfig)
    base = Path(path).resolve().parent
    return cfg.model_copy(update={
        "tls": TlsFiles(ca=_rel(base, cfg.tls.ca), cert=_rel(base, cfg.tls.cert), key=_rel(base, cfg.tls.key)),
        "data_dir": _rel(base, cfg.data_dir),
        "inputs": {k: _rel(base, v) for k, v in cfg.inputs.items()},
    })


def _rel(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else (base / p)
