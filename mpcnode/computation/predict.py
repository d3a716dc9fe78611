"""kind: model and kind: predict (docs/prediction.md).

`model`: the owner's node reads its model file (an XGBoost JSON/UBJSON or LightGBM text model,
the dataset named here) and secret-shares it once; every compute node keeps its share under
`model_id` with the owner's grants (who may query, how many queries each). Nothing is opened.
The public shape is written in the scenario (`python -m mpcnode.trees MODEL` prints it), so that
the owner's approval pins it and every party knows it; the owner's node refuses a file of
another shape.

`predict`: a querier's queries (an input client's rows, or a compute party's own dataset) against
a kept model; the recipients (by default the querier alone) get the margins, the probabilities
or the class of every query. The model's id, owner and shape come from its `model` scenario file,
named relative to this one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from parley.v1 import circuit_pb2 as cpb

from ..trees.forest import KINDS, LIBRARIES
from ..trees.keys import KEY_INF, KEY_NAN
from .builder import CircuitBuilder
from .common import DATASET_PATTERN, Common, Strict
from .models import (MODEL_VALUE_BOUND, PREDICT_MODES, PROBABILITY_FRAC_BITS, PREDICT_CLASS, PREDICT_PROBABILITY,
                     query_count, shape_of)
from ..protocols.trees import ModelShape


class ShapeSpec(Strict):
    """A model's public shape, as `python -m mpcnode.trees MODEL` prints it."""
    trees: int = Field(ge=1)
    depth: int = Field(ge=1)
    features: int = Field(ge=1)
    classes: int = Field(default=1, ge=1)
    library: Literal[LIBRARIES]              # type: ignore[valid-type]
    kind: Literal[KINDS]                     # type: ignore[valid-type]
    tree_class: list[int] | None = Field(default=None, description="default: tree t adds to class t mod classes")
    fraction_bits: int = Field(default=32, ge=1, le=40)
    feature_names: list[str] = Field(default_factory=list)

    def tree_model(self) -> cpb.TreeModel:
        classes = self.tree_class if self.tree_class is not None else [t % self.classes for t in range(self.trees)]
        return cpb.TreeModel(trees=self.trees, depth=self.depth, features=self.features, classes=self.classes,
                             tree_class=classes, library=self.library, kind=self.kind,
                             fraction_bits=self.fraction_bits, feature_names=self.feature_names)


class ModelScenario(Common):
    kind: Literal["model"]
    owner: str = Field(description="the organization whose node holds the model file")
    dataset: str = Field(pattern=DATASET_PATTERN, description="the owner's dataset (in its node's inputs:) "
                                                              "naming the model file")
    model_id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    shape: ShapeSpec
    grants: dict[str, int] = Field(default_factory=dict, description="querier -> how many queries it may make in all")
    recipients: list[str] = Field(default_factory=list, description="none: a model job opens nothing")

    @model_validator(mode="after")
    def _owner(self) -> "ModelScenario":
        if self.owner not in self.parties:
            raise ValueError(f"owner: {self.owner!r} is not one of the parties")
        if self.recipients:
            raise ValueError("recipients: a model job opens nothing; name the queriers in grants")
        if any(n < 0 for n in self.grants.values()):
            raise ValueError("grants: a number of queries cannot be negative")
        return self

    def identities(self) -> set[str]:
        return super().identities() | set(self.grants)

    def build(self) -> cpb.Circuit:
        b = CircuitBuilder(self.name)
        model = self.shape.tree_model()
        b.c.inputs.add(name="model", owner=self.owner, length=shape_of(model).total, lo=-MODEL_VALUE_BOUND,
                       hi=MODEL_VALUE_BOUND, source=cpb.INPUT_SOURCE_NODE, key="model", dataset=self.dataset,
                       model=model)
        b.c.keep.add(model_id=self.model_id, value="model",
                     grants=[cpb.QueryGrant(querier=q, queries=n) for q, n in sorted(self.grants.items())])
        return b.build()


class PredictScenario(Common):
    kind: Literal["predict"]
    model: Path = Field(description="the model's `model` scenario file, relative to this file")
    querier: str = Field(description="who sends the queries: an input client's credential, or a compute party "
                                     "(its dataset `dataset`)")
    dataset: str | None = Field(default=None, pattern=DATASET_PATTERN,
                                description="a compute party querier's dataset holding `queries` (default: the scenario name)")
    queries: int = Field(ge=1, le=1_000_000, description="the most queries one job answers (fixes the circuit)")
    output: Literal["margin", "probability", "class"] = "margin"
    recipients: list[str] = Field(default_factory=list, description="default: the querier")
    base_dir: Path = Field(default=Path("."), exclude=True, description="set by the loader: this file's folder")

    @model_validator(mode="before")
    @classmethod
    def _recipients(cls, data: object) -> object:
        if isinstance(data, dict) and not data.get("recipients") and isinstance(data.get("querier"), str):
            return {**data, "recipients": [data["querier"]]}
        return data

    @model_validator(mode="after")
    def _querier(self) -> "PredictScenario":
        if self.querier in self.parties and self.querier not in self.compute_parties:
            raise ValueError("querier: an input-only party's queries are not range-checked inside MPC")
        return self

    def model_scenario(self) -> ModelScenario:
        from .scenario import load_scenario          # here: scenario imports this module
        path = self.model if self.model.is_absolute() else self.base_dir / self.model
        sc = load_scenario(path)
        if not isinstance(sc, ModelScenario):
            raise ValueError(f"model: {self.model} is a {sc.kind} scenario, not a model")
        return sc

    def identities(self) -> set[str]:
        return super().identities() | {self.querier}

    def input_client_rules(self) -> list[str]:
        return [] if self.querier in self.parties else [self.querier]

    def build(self) -> cpb.Circuit:
        ms = self.model_scenario()
        model = ms.shape.tree_model()
        shape: ModelShape = shape_of(model)
        mode = PREDICT_MODES[self.output]
        if mode == PREDICT_PROBABILITY and shape.kind == "regression":
            raise ValueError("output: a regression model has no probability (use margin)")
        b = CircuitBuilder(self.name)
        b.c.inputs.add(name="model", owner=ms.owner, length=shape.total, lo=-MODEL_VALUE_BOUND, hi=MODEL_VALUE_BOUND,
                       source=cpb.INPUT_SOURCE_MODEL, key=ms.model_id, model=model)
        length = self.queries * shape.features
        if self.querier in self.parties:
            b.c.inputs.add(name="queries", owner=self.querier, length=length, lo=-KEY_INF, hi=KEY_NAN,
                           source=cpb.INPUT_SOURCE_NODE, key="queries", dataset=self.dataset or self.name)
        else:
            b.client_input("queries", [self.querier], length, -KEY_INF, KEY_NAN)
        op = b.c.ops.add(out="predictions", kind=cpb.OP_PREDICT, args=["model", "queries"], ints=[mode])
        frac = {PREDICT_CLASS: 0, PREDICT_PROBABILITY: PROBABILITY_FRAC_BITS}.get(mode, shape.fraction_bits)
        description = json.dumps({"render": "predict", "model": ms.model_id, "output": self.output,
                                  "queries": query_count(b.c, op), "classes": shape.classes})
        b.c.outputs.add(name="predictions", value="predictions", recipients=self.recipients, frac_bits=frac,
                        description=description)
        return b.build()
