"""kind: total / average. Each contributing compute party inputs its own figure(s) from a local
dataset; recipients get the sum, and for `average` also the sum over a public divisor."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from parley.v1 import circuit_pb2 as cpb

from .builder import CircuitBuilder
from .common import MAX_ABS, Common, InputSpec


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
        dataset = self.input.dataset or self.name
        parts = [b.input(f"{self.input.name}@{o}", o, self.input.length, lo, hi, key=self.input.name,
                         dataset=dataset) for o in owners]
        total = b.sum(b.concat(parts)) if len(parts) > 1 else b.sum(parts[0])
        b.output("total", total, self.recipients, description=f"sum of {self.input.name} over {len(owners)} parties")
        if self.kind == "average":
            b.output("average", total, self.recipients, public_divisor=len(owners) * self.input.length,
                     description=f"average of {self.input.name} over {len(owners)} parties")
        return b.build()
