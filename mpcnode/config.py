"""The node's config file: identity, TLS material, peers, storage, input files and consent policy."""
from __future__ import annotations

from datetime import datetime
from fractions import Fraction
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

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


class Approval(Strict):
    """One computation this organization approved: pinned by its fingerprint, or by a scenario
    file the organization keeps locally (the node rebuilds the computation from it at start-up
    and pins the fingerprint it computes). docs/approving.md walks through reviewing one."""
    fingerprint: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$",
                                    description="sha256 of the canonical computation document")
    scenario_file: Path | None = Field(default=None, description="a scenario YAML file kept by this organization")
    expires: datetime | None = Field(default=None, description="no job is accepted after this time (ISO 8601)")
    max_runs: int | None = Field(default=None, ge=1, description="at most this many jobs may use this approval")
    note: str = Field(default="", max_length=500, description="free text for the audit log (who approved, why)")

    @model_validator(mode="after")
    def _one_source(self) -> "Approval":
        if (self.fingerprint is None) == (self.scenario_file is None):
            raise ValueError("give exactly one of fingerprint or scenario_file")
        if self.expires is not None and self.expires.tzinfo is None:
            raise ValueError("expires: give a time zone, e.g. 2027-01-31T00:00:00Z")
        return self


class Budget(Strict):
    """A total privacy budget, in ρ-zCDP, or as a pure ε (converted: ρ = ε²/2). Exact decimals:
    write them as strings or numbers; they are read as fractions, never rounded."""
    rho: str | float | None = Field(default=None, description="total ρ (zCDP) this key may ever spend")
    epsilon: str | float | None = Field(default=None, description="or a pure-DP total ε, converted to ρ = ε²/2")

    @model_validator(mode="after")
    def _one(self) -> "Budget":
        if (self.rho is None) == (self.epsilon is None):
            raise ValueError("give exactly one of rho or epsilon")
        try:
            value = Fraction(str(self.rho if self.rho is not None else self.epsilon))
        except (ValueError, ZeroDivisionError):
            raise ValueError("rho/epsilon must be a number, e.g. 0.5 or \"1/2\"") from None
        if value <= 0:
            raise ValueError("rho/epsilon must be positive")
        return self

    @property
    def rho_total(self) -> Fraction:
        if self.rho is not None:
            return Fraction(str(self.rho))
        eps = Fraction(str(self.epsilon))
        return eps * eps / 2


class PrivacyBudget(Strict):
    """Differential-privacy budgets this node enforces (mpcnode/ledger.py, docs/privacy-budget.md).
    Once a dataset has one, every job that reads it must release only DP outputs."""
    datasets: dict[str, Budget] = Field(default_factory=dict,
                                        description="dataset name (as in `inputs:`) -> its total budget")
    client_populations: Budget | None = Field(
        default=None, description="the budget of each client population (keyed by its list's content hash)")
    delta: float = Field(default=1e-9, gt=0, lt=1, description="δ at which `mpcnode ledger` shows ρ as (ε, δ)")


REMOVED_POLICY_FIELDS = {
    "scenarios": "approval by scenario name was removed: list approvals (fingerprint or scenario_file)",
    "fingerprints": "moved: list each as an approval, - fingerprint: <sha256>",
    "recipients": "recipients belong to each approved computation now; remove this field",
}


class Policy(Strict):
    """What this organization consents to. Nothing is allowed unless an approval names it."""
    approvals: list[Approval] = Field(default_factory=list, description="the computations our node may take part in")
    min_threshold: int = Field(default=1, ge=1, description="refuse jobs whose threshold t is lower")
    min_contributors: int = Field(default=1, ge=1,
                                  description="refuse jobs where an output fed by our data has fewer contributors")
    coordinators: list[str] = Field(default_factory=lambda: ["coordinator"], description="who may schedule jobs")
    input_clients: list[str] = Field(default_factory=list,
                                     description="client credentials we accept input shares from (jobs name them "
                                                 "too): names, or 'prefix*' for every name with that prefix ('*': "
                                                 "any client); none by default. A coordinator is never accepted")
    privacy_budget: PrivacyBudget = Field(default_factory=PrivacyBudget,
                                          description="DP budgets per dataset / client population")
    approve_any_computation_insecure: bool = Field(
        default=False, description="TESTS AND BENCHMARKS ONLY: accept any computation; never in production")

    # Fields of the old name-based policy: refused with a pointer to what replaced them.
    scenarios: object = Field(default=None, exclude=True)
    fingerprints: object = Field(default=None, exclude=True)
    recipients: object = Field(default=None, exclude=True)

    @field_validator("input_clients")
    @classmethod
    def _client_rules(cls, v: list[str]) -> list[str]:
        for rule in v:
            if not valid_identity(rule.removesuffix("*")) and rule != "*":
                raise ValueError(f"{rule!r} is neither a valid identity ({NAME_RULE}) nor one followed by '*'")
        return v

    @field_validator("scenarios", "fingerprints", "recipients", mode="before")
    @classmethod
    def _removed(cls, v: object, info: ValidationInfo) -> object:
        raise PydanticCustomError("removed_field", f"{REMOVED_POLICY_FIELDS[info.field_name]} (docs/approving.md)")


class NodeConfig(Strict):
    organization: str
    listen: str = Field(description="host:port to bind, e.g. 127.0.0.1:7001")
    tls: TlsFiles
    peers: dict[str, str] = Field(description="every other compute node: organization -> host:port")
    data_dir: Path
    inputs: dict[str, Path] = Field(default_factory=dict,
                                    description="dataset name -> local file of our inputs (YAML, or .npz)")
    policy: Policy = Field(default_factory=Policy)
    rpc_timeout_s: float = Field(default=30.0, gt=0, description="deadline of one RPC")
    round_timeout_s: float = Field(default=60.0, gt=0, description="longest wait for a peer's message in one round")
    max_message_mb: int = Field(default=256, gt=0, le=2000)
    prepared_ttl_s: float = Field(default=600.0, gt=0,
                                  description="a job prepared but not started this long expires (mpcnode/expiry.py)")

    _check_org = field_validator("organization")(_identity)

    @field_validator("peers")
    @classmethod
    def _check_peers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, addr in v.items():
            _identity(name)
            if ":" not in addr:
                raise ValueError(f"peer {name}: address {addr!r} must be host:port")
        return v

    @model_validator(mode="after")
    def _budgets_name_inputs(self) -> "NodeConfig":
        # a budget is keyed by the node's own dataset name: one that names no input would guard nothing
        for name in self.policy.privacy_budget.datasets:
            if name not in self.inputs:
                raise ValueError(f"policy.privacy_budget.datasets: {name!r} is not a dataset in inputs")
        return self

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
        "policy": cfg.policy.model_copy(update={"approvals": [
            a.model_copy(update={"scenario_file": _rel(base, a.scenario_file)}) if a.scenario_file else a
            for a in cfg.policy.approvals]}),
    })


def _rel(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else (base / p)
