"""The `dp:` block of a scenario (docs/privacy.md): what is protected, how much, and how the
builder turns it into OP_NOISE ops and the DpRelease of each output.

Sensitivity follows from the unit, the relation and the contribution bound, never from the data:
* a total over organizations' figures (unit organization): each contribution is CLIPPED INSIDE
  MPC to `clip: [lo, hi]` (comparisons + products, `clip` below), because an input-only party's
  figure is not range-checked by anyone but its own node, and the declared input range is the
  data's, not the bound. Add-remove: max(|lo|, |hi|) * length; replace-one: (hi - lo) * length.
  The count of contributors is public (the parties are named), so an average is the noisy total
  divided by that public count, post-processing.
* a vote tally (unit client): each valid ballot adds one 1 (approval: up to k ones) and ballots
  are validated inside MPC; add-remove changes one count by 1 (approval: k counts), replace-one
  moves a vote, 2. Under add-remove the number of ballots is itself private, so the invalid
  count is noised too; under replace-one the number of ballots is public (the client list is).
* a vote winner: report-noisy-max with one-sided geometric noise of scale Delta/epsilon for
  add-remove (counts move in one direction) and 2 Delta/epsilon for replace-one (McKenna-Sheldon,
  Ding et al.; mpcnode/protocols/noise.py), sampled in MPC; the first maximum wins ties.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

from pydantic import Field, field_validator

from parley.v1 import circuit_pb2 as cpb

from ..dp import accounting
from .builder import Arr, CircuitBuilder
from .common import MAX_ABS, Strict


class DpSpec(Strict):
    unit: Literal["organization", "record", "client"]
    relation: Literal["add-remove", "replace-one"] = "add-remove"
    epsilon: str = Field(description="exact decimal or fraction, e.g. '1' or '0.5'")
    delta: str = ""
    noise: Literal["distributed", "mpc"] = "distributed"
    min_live: int = Field(default=0, ge=0, description="distributed noise: fewest live compute nodes (0: all)")
    clip: tuple[int, int] | None = Field(default=None, description="a total: each contribution clipped to [lo, hi] in MPC")

    @field_validator("epsilon")
    @classmethod
    def _epsilon(cls, v: str) -> str:
        e = accounting.parse_exact(v, "epsilon")          # ValueError: one line naming the text
        if not 0 < e <= 20:
            raise ValueError("must be above 0 and at most 20")
        return v

    @field_validator("delta")
    @classmethod
    def _delta(cls, v: str) -> str:
        if v and not 0 < accounting.parse_exact(v, "delta") < 1:
            raise ValueError("must lie strictly between 0 and 1")
        return v

    @field_validator("clip")
    @classmethod
    def _clip(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and v[0] > v[1]:
            raise ValueError(f"lower bound {v[0]} is above upper bound {v[1]}")
        if v is not None and max(abs(v[0]), abs(v[1])) > MAX_ABS:
            raise ValueError("bounds must lie within +-(2^59 - 1)")
        return v

    @property
    def eps(self) -> Fraction:
        return accounting.parse_exact(self.epsilon)


def clip(b: CircuitBuilder, x: Arr, lo: int, hi: int, bit_length: int) -> Arr:
    """x clipped to [lo, hi] elementwise, inside MPC: both comparisons in one batch (same bit
    length), then x + [x < lo](lo - x) + [hi < x](hi - x) in one products round (the two
    indicators exclude each other since lo <= hi)."""
    below = b.lt(x, b.add(b.sub(x, x), lo), bit_length)
    above = b.lt(b.add(b.sub(x, x), hi), x, bit_length)
    lo_c = b.mul(below, b.sub(b.scale(x, -1), -lo))      # below * (lo - x)
    hi_c = b.mul(above, b.sub(b.scale(x, -1), -hi))
    return b.add(b.add(x, lo_c), hi_c)


def noise_op(b: CircuitBuilder, x: Arr, noise: cpb.DpNoise) -> Arr:
    name = b._name("noise_")
    op = b.c.ops.add(out=name, kind=cpb.OP_NOISE, args=[x.name])
    op.noise.CopyFrom(noise)
    return Arr(b, name)


def make_noise(spec: DpSpec, mechanism: str, scale: Fraction, compute: int, t: int,
               source: str | None = None) -> cpb.DpNoise:
    """The noise op's parameters. Distributed noise always states min_live (default: every compute
    node), so the calibration the nodes sample with is in the document, never a node's default."""
    src = source or spec.noise
    min_live = 0
    if src == "distributed":
        min_live = spec.min_live or compute
        if not t < min_live <= compute:
            raise ValueError(f"dp.min_live: {min_live} must exceed the threshold t={t} (a coalition of t nodes "
                             f"subtracts its own noise) and be at most the {compute} compute nodes")
    return cpb.DpNoise(mechanism=mechanism, source=src, scale=_text(scale), min_live=min_live)


def release(spec: DpSpec, mechanism: str, scale: Fraction, sensitivity: int,
            post_processing: bool = False, noise: cpb.DpNoise | None = None, count: int = 1,
            compute: int = 3) -> cpb.DpRelease:
    """The output's DpRelease. Its delta is the implementation's own (`impl_delta`): the pure
    mechanisms are epsilon-DP for exact noise, and the samplers are exact up to a stated
    total-variation distance; a scenario's dp.delta is the most it accepts."""
    delta = ""
    if noise is not None:
        d = impl_delta(noise, count, spec.eps, compute)
        if spec.delta and d > accounting.parse_exact(spec.delta):
            raise ValueError(f"dp.delta: the noise's own delta (up to {_pow2_text(d)}) exceeds {spec.delta}")
        delta = _pow2_text(d)
    return cpb.DpRelease(unit=spec.unit, relation=spec.relation, epsilon=spec.epsilon, delta=delta,
                         rho=_text(accounting.rho_of_pure(spec.eps)), sensitivity=sensitivity,
                         mechanism=mechanism, scale=_text(scale),
                         std=f"{accounting.std_of(mechanism, scale):.6g}", post_processing=post_processing)


def impl_delta(noise: cpb.DpNoise, count: int, eps: Fraction, compute: int) -> Fraction:
    """The delta `count` noise values add to an epsilon-DP guarantee: their total-variation distance
    from exact noise times (1 + e^epsilon) (e^epsilon bounded by 3^ceil(epsilon)). From shared bits:
    dpnoise's MpcPlan.delta per value (the coins' 40-bit precision and the K-digit truncation);
    distributed: accounting.truncation_tv over at most `compute` live nodes."""
    from ..protocols import noise as noise_protocol      # here: protocols import engines, builders need not
    scale = accounting.parse_exact(noise.scale, "noise scale")
    if noise.source == "mpc":
        return noise_protocol.mpc_plan(scale).delta(noise.mechanism, eps) * count
    return accounting.truncation_tv(compute, count) * (1 + Fraction(3) ** math.ceil(eps))


def _pow2_text(d: Fraction) -> str:
    """The least 2^-k >= d, as the exact string "1/2^k" written out ("1/1099511627776")."""
    if d <= 0:
        return "0"
    k = 0
    while Fraction(1, 1 << (k + 1)) >= d:
        k += 1
    return f"1/{1 << k}"


def laplace_for(spec: DpSpec, sensitivity: int) -> Fraction:
    return accounting.laplace_scale(spec.eps, sensitivity)


def rnm_scale(spec: DpSpec, sensitivity: int) -> Fraction:
    """Report-noisy-max's one-sided geometric scale: Delta/eps when every score moves the same
    way under the relation (add-remove of one ballot), 2 Delta/eps otherwise."""
    factor = 1 if spec.relation == "add-remove" else 2
    return factor * Fraction(sensitivity) / spec.eps


def total_sensitivity(spec: DpSpec, length: int) -> int:
    lo, hi = spec.clip
    per = max(abs(lo), abs(hi)) if spec.relation == "add-remove" else hi - lo
    return max(per * length, 1)


def _text(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def bits_for(bound: int) -> int:
    return max(int(bound).bit_length(), 1) + 1


def interval_text(rel: cpb.DpRelease) -> str:
    w = accounting.interval95(rel.mechanism, rel.scale)
    return f"std {float(rel.std):.4g}, 95% of the time within +-{w:.4g}" if rel.std else ""


def noise_bound(noise: cpb.DpNoise) -> tuple[int, int]:
    """The interval the noise of an OP_NOISE op lies in, for the range analysis.

    * source "mpc": a HARD bound. The in-MPC geometric has K binary digits (noise.mpc_plan), so
      G <= 2^K - 1: discrete Laplace G1 - G2 in [-(2^K - 1), 2^K - 1], one-sided geometric in
      [0, 2^K - 1].
    * source "distributed": the Polya parts are unbounded, so this is a STATED TAIL BOUND. The sum
      of the live nodes' parts is NB(L/h, q) - NB(L/h, q), each NB dominated by a sum of at most
      MAX_LIVE geometrics of P(G >= g) = q^g; if each is below g = ceil(scale (64 ln 2 + ln
      MAX_LIVE)) the noise is below MAX_LIVE * g, which fails with probability at most
      2 MAX_LIVE * MAX_LIVE * 2^-64 / MAX_LIVE = 2^-57 per value; a failure can only make the
      released value wrap (wrong, not less private)."""
    from ..protocols import noise as noise_protocol      # here: protocols import engines, builders need not
    scale = accounting.parse_exact(noise.scale, "noise scale")
    if noise.source == "mpc":
        top = (1 << noise_protocol.mpc_plan(scale).k) - 1
        return (0, top) if noise.mechanism == "one-sided-geometric" else (-top, top)
    g = math.ceil(float(scale) * (64 * math.log(2) + math.log(MAX_LIVE))) + 1
    return (-MAX_LIVE * g, MAX_LIVE * g)


MAX_LIVE = 128     # the most compute nodes the distributed tail bound above is stated for
