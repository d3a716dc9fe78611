"""Scenario YAML -> validated config -> circuit (via the builder).

Scenario kinds:
  total    each compute party inputs its own figure(s); recipients get the sum
  average  like total; recipients get the sum and the sum divided by the number of parties
  auction  bidders submit sealed bids from input clients; first-price or second-price (Vickrey)
  vote     voters submit one-hot (or approval) ballots; output: tally, winner, or referendum YES/NO
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mpcnode.certs import NAME_RULE, valid_identity
from mpcnode.circuit import validate
import pydantic

from mpcnode.configfile import ConfigError, from_validation_error, parse_yaml, read_yaml
from mpcnode.shamir import default_threshold
from parley.v1 import circuit_pb2 as cpb

from .builder import CircuitBuilder

MAX_ABS = (1 << 59) - 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _names(v: list[str]) -> list[str]:
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

    @field_validator("range")
    @classmethod
    def _range(cls, v: tuple[int, int]) -> tuple[int, int]:
        lo, hi = v
        if lo > hi:
            raise ValueError(f"lower bound {lo} is above upper bound {hi}")
        if max(abs(lo), abs(hi)) > MAX_ABS:
            raise ValueError("bounds must lie within +-(2^59 - 1)")
        return v


class Common(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = ""
    parties: list[str] = Field(min_length=3, description="compute nodes, in party order")
    threshold: int | None = Field(default=None, ge=1)
    recipients: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=300.0, gt=0, le=86400)
    input_window_s: float = Field(default=0.0, ge=0, le=86400,
                                  description="client inputs close this long after the job starts (0: when closed)")

    _p = field_validator("parties", "recipients")(_names)

    @model_validator(mode="after")
    def _threshold(self) -> "Common":
        if self.threshold is not None and not 2 * self.threshold < len(self.parties):
            raise ValueError(f"threshold: t={self.threshold} needs 2t < {len(self.parties)} parties")
        return self

    @property
    def t(self) -> int:
        return self.threshold if self.threshold is not None else default_threshold(len(self.parties))

    def identities(self) -> set[str]:
        return set(self.parties) | set(self.recipients)


class TotalScenario(Common):
    kind: Literal["total", "average"]
    input: InputSpec
    contributors: list[str] | None = Field(default=None, description="parties that contribute input (default: all)")

    @model_validator(mode="after")
    def _contributors(self) -> "TotalScenario":
        for c in self.contributors or []:
            if c not in self.parties:
                raise ValueError(f"contributors: {c!r} is not one of the parties")
        return self

    def build(self) -> cpb.Circuit:
        b = CircuitBuilder(self.name)
        lo, hi = self.input.range
        owners = self.contributors or self.parties
        if len(owners) * max(abs(lo), abs(hi)) * self.input.length > MAX_ABS:
            raise ValueError("input.range: the total of all inputs could exceed +-(2^59 - 1)")
        parts = [b.input(f"{self.input.name}@{o}", o, self.input.length, lo, hi, key=self.input.name) for o in owners]
        total = b.sum(b.concat(parts)) if len(parts) > 1 else b.sum(parts[0])
        b.output("total", total, self.recipients, description=f"sum of {self.input.name} over {len(owners)} parties")
        if self.kind == "average":
            b.output("average", total, self.recipients, public_divisor=len(owners) * self.input.length,
                     description=f"average of {self.input.name} over {len(owners)} parties")
        return b.build()


class ReserveSpec(Strict):
    public: int | None = None
    secret_from: str | None = Field(default=None, description="compute party whose node inputs a secret reserve")

    @model_validator(mode="after")
    def _one(self) -> "ReserveSpec":
        if (self.public is None) == (self.secret_from is None):
            raise ValueError("give exactly one of public or secret_from")
        return self


class AuctionSpec(Strict):
    type: Literal["first-price", "second-price"]
    bit_length: int = Field(default=48, ge=2, le=58)
    min_bid: int = 0
    max_bid: int | None = None
    reserve: ReserveSpec | None = None


class AuctionScenario(Common):
    kind: Literal["auction"]
    auction: AuctionSpec
    bidders: list[str] = Field(min_length=2)

    _b = field_validator("bidders")(_names)

    def identities(self) -> set[str]:
        return super().identities() | set(self.bidders)

    def build(self) -> cpb.Circuit:
        from .circuits import auction_circuit

        return auction_circuit(self)


class VoteSpec(Strict):
    options: list[str] = Field(min_length=2, max_length=64)
    approval: bool = False
    output: Literal["tally", "winner", "referendum"]

    @model_validator(mode="after")
    def _referendum(self) -> "VoteSpec":
        if self.output == "referendum" and len(self.options) != 2:
            raise ValueError("a referendum has exactly two options: YES first, then NO")
        return self


class VoterRange(Strict):
    prefix: str = Field(pattern=r"^[a-z][a-z0-9-]{0,40}$")
    count: int = Field(ge=1, le=10_000_000)

    def names(self) -> list[str]:
        width = max(3, len(str(self.count)))
        return [f"{self.prefix}{i:0{width}d}" for i in range(1, self.count + 1)]


class VoteScenario(Common):
    kind: Literal["vote"]
    vote: VoteSpec
    voters: list[str] | VoterRange

    @property
    def voter_names(self) -> list[str]:
        return self.voters.names() if isinstance(self.voters, VoterRange) else _names(list(self.voters))

    def identities(self) -> set[str]:
        return super().identities() | set(self.voter_names)

    def build(self) -> cpb.Circuit:
        from .circuits import vote_circuit

        return vote_circuit(self)


Scenario = Annotated[Union[TotalScenario, AuctionScenario, VoteScenario], Field(discriminator="kind")]


class ScenarioFile(BaseModel):
    scenario: Scenario


AnyScenario = Union[TotalScenario, AuctionScenario, VoteScenario]


def load_scenario(path: Path | str) -> AnyScenario:
    """Parse, validate and test-build a scenario file; any problem is one line: file, field, problem."""
    return parse_scenario(read_yaml(Path(path)), Path(path))


def parse_scenario_text(text: str, path: Path | str) -> AnyScenario:
    return parse_scenario(parse_yaml(text, path), Path(path))


def parse_scenario(data: object, path: Path) -> AnyScenario:
    if not isinstance(data, dict):
        raise ConfigError(path, "(top level)", "expected a mapping of fields")
    if "kind" not in data:
        raise ConfigError(path, "kind", "required field is missing (total, average, auction or vote)")
    try:
        sc = ScenarioFile.model_validate({"scenario": data}).scenario
    except pydantic.ValidationError as exc:
        err = from_validation_error(path, exc)
        parts = err.field.split(".")
        parts = parts[1:] if parts[0] == "scenario" else parts
        parts = parts[1:] if parts and parts[0] == data.get("kind") else parts  # the union tag pydantic adds
        field, problem = ".".join(parts), err.problem
        if not field:  # an unknown kind, or a check across fields whose message starts with its field
            head, sep, rest = problem.removeprefix("Value error, ").partition(": ")
            if exc.errors()[0]["type"] == "union_tag_invalid":
                field = "kind"
            elif sep and head.replace("_", "").replace(".", "").isalnum():
                field, problem = head, rest
            else:
                field = "(scenario)"
        raise ConfigError(path, field, problem) from None
    try:
        circuit = sc.build()
        validate(circuit, sc.parties)
    except ValueError as exc:
        msg = str(exc)
        field, _, problem = msg.partition(": ")
        raise ConfigError(path, field if problem else "(scenario)", problem or msg) from None
    return sc
