"""kind: total / average. Each contributing compute party inputs its own figure(s) from a local
dataset; recipients get the sum, and for `average` also the sum over a public divisor."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from parley.v1 import circuit_pb2 as cpb

from .builder import CircuitBuilder
from . import dp as dpm
from .common import MAX_ABS, Common, InputSpec


class TotalScenario(Common):
    kind: Literal["total", "average"]
    input: InputSpec
    contributors: list[str] | None = Field(default=None, description="parties that contribute input (default: all)")
    dp: dpm.DpSpec | None = Field(default=None, description="differential privacy (docs/privacy.md)")

    @model_validator(mode="after")
    def _dp(self) -> "TotalScenario":
        if self.dp is None:
            return self
        if self.dp.unit == "client":
            raise ValueError("dp.unit: a total's contributors are organizations (organization or record)")
        if self.dp.clip is None:
            raise ValueError("dp.clip: a DP total needs the contribution bound [lo, hi] each figure is clipped to")
        return self

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
        values = b.concat(parts) if len(parts) > 1 else parts[0]
        if self.dp is not None:
            return self._build_dp(b, values, len(owners), max(abs(lo), abs(hi)))
        total = b.sum(values)
        b.output("total", total, self.recipients, description=f"sum of {self.input.name} over {len(owners)} parties")
        if self.kind == "average":
            b.output("average", total, self.recipients, public_divisor=len(owners) * self.input.length,
                     description=f"average of {self.input.name} over {len(owners)} parties")
        return b.build()

    def _build_dp(self, b: CircuitBuilder, values, owners: int, bound: int) -> cpb.Circuit:
        """Each figure clipped to dp.clip inside MPC (an input-only party's figure is range-checked
        by nobody but its own node), summed, then discrete Laplace noise of scale sensitivity /
        epsilon. The number of contributors is public (the parties are named in the document), so
        the average is the noisy total over it: post-processing, charged nothing more."""
        dp = self.dp
        lo, hi = dp.clip
        clipped = dpm.clip(b, values, lo, hi, dpm.bits_for(max(bound, abs(lo), abs(hi))))
        per_unit = self.input.length if dp.unit == "organization" else 1
        sens = dpm.total_sensitivity(dp, per_unit)
        scale = dpm.laplace_for(dp, sens)
        mech = "discrete-laplace"
        noise = dpm.make_noise(dp, mech, scale, len(self.compute_parties), self.t)
        noisy = dpm.noise_op(b, b.sum(clipped), noise)
        what = f"{self.input.name} over {owners} parties, each clipped to [{lo}, {hi}]"
        b.output("total", noisy, self.recipients, description=f"noisy sum of {what}")
        b.c.outputs[-1].dp.CopyFrom(dpm.release(dp, mech, scale, sens, noise=noise,
                                                compute=len(self.compute_parties)))
        if self.kind == "average":
            b.output("average", noisy, self.recipients, public_divisor=owners * self.input.length,
                     description=f"noisy sum of {what}, over the public count {owners * self.input.length}")
            b.c.outputs[-1].dp.CopyFrom(dpm.release(dp, mech, scale, sens, post_processing=True, noise=noise,
                                                    compute=len(self.compute_parties)))
        return b.build()
