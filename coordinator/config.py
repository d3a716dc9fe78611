"""The coordinator's config file: identity, TLS, the nodes it schedules on, who may submit."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from mpcnode.config import TlsFiles, _rel
from mpcnode.configfile import load_model


class CoordinatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    identity: str = "coordinator"
    listen: str = Field(description="host:port of the coordinator service")
    tls: TlsFiles
    nodes: dict[str, str] = Field(description="organization -> host:port of its node")
    operators: list[str] = Field(default_factory=lambda: ["operator"], description="who may submit and watch jobs")
    database: Path = Field(description="SQLite file holding every job")
    rpc_timeout_s: float = Field(default=30.0, gt=0)
    prepare_timeout_s: float = Field(default=5.0, gt=0,
                                     description="how long Prepare waits for a node that is not reachable yet")
    poll_interval_s: float = Field(default=0.2, gt=0)
    status_wait_s: float = Field(default=1.0, ge=0, le=5,
                                 description="a running job's Status is held by the node until the job ends or this "
                                             "long: the coordinator learns of the end at once (0: plain polling)")


def load_coordinator_config(path: Path | str) -> CoordinatorConfig:
    cfg = load_model(path, CoordinatorConfig)
    base = Path(path).resolve().parent
    return cfg.model_copy(update={
        "tls": TlsFiles(ca=_rel(base, cfg.tls.ca), cert=_rel(base, cfg.tls.cert), key=_rel(base, cfg.tls.key)),
        "database": _rel(base, cfg.database)})
