"""Fields every scenario kind shares, and the step from a scenario to a Computation."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from parley.v1 import circuit_pb2 as cpb

from ..certs import NAME_RULE, valid_identity
from ..shamir import default_threshold
from .protocol import default_dropouts, default_protocol, protocol_problem
from .spec import DROPOUT_RULES, PROTOCOLS, Computation

MAX_ABS = (1 << 59) - 1
DATASET_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_names(v: list[str] | None) -> list[str] | None:
    if v is None:   # `compute:` left empty means its default, all parties (a traceback before)
        return v
    for name in v:
        if not valid_identity(name):
            raise ValueError(f"{name!r} is not a valid identity ({NAME_RULE})")
    if len(set(v)) != len(v):
        raise ValueError("a name is listed twice")
    return v


class InputSpec(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")
    length: int = Field(default=1, ge=1, le=10_000_000)
    range: tuple[int, int]
    dataset: str | None = Field(default=None, pattern=DATASET_PATTERN,
                                description="the local dataset each contributor feeds (default: the scenario name)")

    @field_validator("range")
    @classmethod
    def _range(cls, v: tuple[int, int]) -> tuple[int, int]:
        lo, hi = v
        if lo > hi:
            raise ValueError(f"lower bound {lo} is above upper bound {hi}")
        if max(abs(lo), abs(hi)) > MAX_ABS:
            raise ValueError("bounds must lie within +-(2^59 - 1)")
        return v


class ClientRange(Strict):
    """A population of input clients named by a prefix and a count (prefix001 ... prefixN), so a
    scenario can list a million voters or bidders in two fields; the computation document pins the
    expanded list by its content hash."""
    prefix: str = Field(pattern=r"^[a-z][a-z0-9-]{0,40}$")
    count: int = Field(ge=1, le=10_000_000)

    def names(self) -> list[str]:
        width = max(3, len(str(self.count)))
        return [f"{self.prefix}{i:0{width}d}" for i in range(1, self.count + 1)]


def client_names(clients: "list[str] | ClientRange") -> list[str]:
    return clients.names() if isinstance(clients, ClientRange) else check_names(list(clients)) or []


def client_rules(clients: "list[str] | ClientRange") -> list[str]:
    """The node policy `input_clients` entries that accept exactly this population's names (a
    range as 'prefix*', so a policy need not list a million voters)."""
    return [f"{clients.prefix}*"] if isinstance(clients, ClientRange) else sorted(set(clients))


class Common(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = ""
    parties: list[str] = Field(min_length=3, description="the organizations taking part, in party order")
    compute: list[str] | None = Field(default=None, description="the compute nodes, a subset of parties in party "
                                      "order (default: all parties); the others are input-only")
    threshold: int | None = Field(default=None, ge=1)
    recipients: list[str] = Field(min_length=1)
    protocol: str | None = Field(default=None, description="engine; default: computation/protocol.py default_protocol")
    dropouts: Literal[DROPOUT_RULES] | None = None  # type: ignore[valid-type]  # default: by protocol
    timeout_s: float = Field(default=300.0, gt=0, le=86400)
    input_window_s: float = Field(default=0.0, ge=0, le=86400,
                                  description="client inputs close this long after the job starts (0: when closed)")

    _p = field_validator("parties", "recipients", "compute")(check_names)

    @model_validator(mode="after")
    def _compute(self) -> "Common":
        if self.compute is None:
            return self
        stray = [c for c in self.compute if c not in self.parties]
        if stray:
            raise ValueError(f"compute: {stray[0]!r} is not one of the parties")
        if self.compute != [p for p in self.parties if p in self.compute]:
            raise ValueError(f"compute: must list the compute nodes in party order "
                             f"({', '.join(p for p in self.parties if p in self.compute)})")
        if len(self.compute) < 3:
            raise ValueError(f"compute: {len(self.compute)} compute nodes, at least 3 are needed")
        if self.threshold is not None and not 2 * self.threshold < len(self.compute):
            raise ValueError(f"compute: {len(self.compute)} compute nodes cannot run threshold t={self.threshold} "
                             f"(needs 2t < {len(self.compute)})")
        return self

    @model_validator(mode="after")
    def _threshold(self) -> "Common":
        if self.threshold is not None and not 2 * self.threshold < len(self.compute_parties):
            raise ValueError(f"threshold: t={self.threshold} needs 2t < {len(self.compute_parties)} parties")
        return self

    @model_validator(mode="after")
    def _protocol(self) -> "Common":
        name = self.protocol_name
        problem = protocol_problem(name, len(self.compute_parties), self.t, self.dropout_rule)
        if problem:
            raise ValueError(problem)
        if name not in PROTOCOLS:
            how = "" if self.protocol is not None else f" (the default for {len(self.compute_parties)} compute parties)"
            hint = "" if self.protocol is not None else "; to run Shamir, state protocol: shamir"
            raise ValueError(f"protocol: {name!r}{how} is not supported (supported: {', '.join(PROTOCOLS)}){hint}")
        return self

    @property
    def protocol_name(self) -> str:
        """The protocol the computation runs under: as stated, else the default rule."""
        return self.protocol if self.protocol is not None else default_protocol(len(self.compute_parties))

    @property
    def dropout_rule(self) -> str:
        return self.dropouts if self.dropouts is not None else default_dropouts(self.protocol_name)

    @property
    def compute_parties(self) -> list[str]:
        """The compute nodes, in party order: they hold the shares; t and the honest majority are theirs."""
        return list(self.compute) if self.compute is not None else list(self.parties)

    @property
    def input_parties(self) -> list[str]:
        """Parties that only contribute node inputs (shared to the compute nodes) and hold no shares."""
        return [p for p in self.parties if p not in self.compute_parties]

    @property
    def t(self) -> int:
        return self.threshold if self.threshold is not None else default_threshold(len(self.compute_parties))

    def identities(self) -> set[str]:
        return set(self.parties) | set(self.recipients)

    def input_client_rules(self) -> list[str]:
        """policy.input_clients entries a party's node needs to accept this scenario's clients."""
        return []

    def build(self) -> cpb.Circuit:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    def computation(self) -> Computation:
        """Everything that decides what can leak, in the form nodes approve and fingerprint."""
        circuit = self.build()
        circuit.description = self.description.strip()
        return Computation(circuit=circuit, parties=tuple(self.compute_parties), threshold=self.t,
                           protocol=self.protocol_name, dropouts=self.dropout_rule,
                           input_parties=tuple(self.input_parties))
