"""Scenario YAML -> validated scenario model (one module per kind) -> circuit.

Scenario kinds:
  total    each compute party inputs its own figure(s); recipients get the sum       (total.py)
  average  like total; recipients get the sum and the sum divided by the number of parties
  auction  bidders submit sealed bids from input clients; first-price or second-price (auction.py)
  vote     voters submit one-hot (or approval) ballots; output: tally, winner, or referendum (vote.py)
  survey   respondents answer yes/no with randomized response; output: the estimate (survey.py)
  model    a model owner shares a tree model once; the compute nodes keep it (predict.py)
  predict  a querier's queries against a kept model; output: margins, probabilities or classes (predict.py)
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Union

import pydantic
from pydantic import BaseModel, Field

from ..circuit import validate
from ..configfile import ConfigError, from_validation_error, parse_yaml, read_yaml
from .auction import AuctionScenario
from .predict import ModelScenario, PredictScenario
from .survey import SurveyScenario
from .total import TotalScenario
from .vote import VoteScenario

Scenario = Annotated[Union[TotalScenario, AuctionScenario, VoteScenario, SurveyScenario, ModelScenario, PredictScenario],
                     Field(discriminator="kind")]


class ScenarioFile(BaseModel):
    scenario: Scenario


AnyScenario = Union[TotalScenario, AuctionScenario, VoteScenario, SurveyScenario, ModelScenario, PredictScenario]


def load_scenario(path: Path | str) -> AnyScenario:
    """Parse, validate and test-build a scenario file; any problem is one line: file, field, problem."""
    return parse_scenario(read_yaml(Path(path)), Path(path))


def parse_scenario_text(text: str, path: Path | str) -> AnyScenario:
    return parse_scenario(parse_yaml(text, path), Path(path))


def parse_scenario(data: object, path: Path) -> AnyScenario:
    if not isinstance(data, dict):
        raise ConfigError(path, "(top level)", "expected a mapping of fields")
    if "kind" not in data:
        raise ConfigError(path, "kind", "required field is missing (total, average, auction, vote, survey, model "
                                        "or predict)")
    if data.get("kind") == "predict":
        data = {**data, "base_dir": path.parent}   # its model file is named relative to this one
    try:
        sc = ScenarioFile.model_validate({"scenario": data}).scenario
    except pydantic.ValidationError as exc:
        err = from_validation_error(path, exc, ScenarioFile)
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
        validate(circuit, sc.compute_parties, sc.protocol_name, sc.input_parties)   # structure, then no value can wrap
    except ValueError as exc:
        msg = str(exc)
        field, _, problem = msg.partition(": ")
        raise ConfigError(path, field if problem else "(scenario)", problem or msg) from None
    return sc
