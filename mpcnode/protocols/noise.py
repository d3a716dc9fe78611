"""Differential-privacy noise on shared values, on any engine: add_noise and noisy_argmax.

Two sources (cpb.DpNoise.source):

* "distributed": every live party samples its part locally with the exact integer samplers
  (dp/samplers.py, parameters from dp/accounting.distributed_share) and the parties secret-share
  their parts in ONE round (engine.share_inputs from every live party); the noise is their sum.
  Discrete Laplace only: each of the live nodes adds a Polya difference NB(1/h, q) - NB(1/h, q),
  h = min_live - t, so any h honest nodes' parts alone sum to a discrete Laplace of the stated
  scale (plus independent extra noise), whatever the t colluding nodes know. Fewer live nodes
  than min_live (0: all n parties of the job): refused. delta of the sampler truncation: accounting.truncation_tv.

* "mpc": noise sampled INSIDE MPC from shared random bits; no party knows any of it. A
  geometric G with P(g) = (1 - q) q^g (q = exp(-1/scale)) has independent binary digits: bit k is
  1 with probability p_k = q^(2^k) / (1 + q^(2^k)). We draw K digits, each as [r < T_k] for a
  shared uniform LAMBDA-bit r (LAMBDA shared random bits) and the public threshold
  T_k = round(p_k 2^LAMBDA), and recombine G = sum_k 2^k bit_k (local). Discrete Laplace is
  G1 - G2 (independent); one-sided geometric (report-noisy-max) is G. K is the least with
  q^(2^K) <= 2^-LAMBDA, so the truncation costs about as much as the rounding of the thresholds.
  The implemented pmf is computed exactly from the T_k (implemented_geometric_pmf) and its
  total-variation distance from the target, tv, is bounded from above to 80 digits (mpc_plan);
  a noise of TV distance tv from an epsilon-DP one is (epsilon, tv (1 + e^epsilon))-DP per
  value. Cost per noise value: discrete Laplace 2 K coins, one-sided geometric K, all in one
  batch (engine.random_coins): replicated3 draws each coin's r as the low LAMBDA bits of a
  pseudo-random XOR-shared word and compares in binary (prefix_levels(LAMBDA) + 1 = 7 rounds,
  13 words, 104 bytes, per coin per party, measured); the base default (Shamir) draws LAMBDA shared random bits
  per coin and compares with less_than at LAMBDA + 1 bits (the rounds of one random_bits and one
  less_than, and LAMBDA times the random-bit traffic).

noisy_argmax: report-noisy-max with one-sided geometric noise, which is permute-and-flip
(McKenna and Sheldon, "Permute-and-Flip: A new mechanism for differentially private selection",
NeurIPS 2020; Ding, Kifer, Neel, Wang, Wang, "The Permute-and-Flip Mechanism is Identical to
Report-Noisy-Max with Exponential Noise", 2021) in its discrete form: scores plus independent
geometric noise, then protocols/selection.argmax_and_max. Tie rule: the FIRST maximum wins.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Callable

import numpy as np

from parley.v1 import circuit_pb2 as cpb

from ..dp import accounting, samplers
from ..engines.base import Engine, Share
from . import selection

LAMBDA = 48                  # bits of each threshold coin: |T_k/2^LAMBDA - p_k| <= 2^-(LAMBDA+1)
_DIGITS = 80                 # decimal precision of the target probabilities


@dataclass(frozen=True)
class MpcPlan:
    """The in-MPC sampler for one scale: K digits, thresholds T_k over 2^lam, and an upper bound
    `tv` on the total-variation distance of the implemented geometric from the target."""
    scale: Fraction
    lam: int
    k: int
    thresholds: tuple[int, ...]
    tv: Fraction

    def delta(self, mechanism: str, epsilon) -> Fraction:
        """The delta one noise value adds to an epsilon-DP guarantee: tv_noise (1 + e^epsilon),
        tv_noise = 2 tv for discrete Laplace (two independent geometrics), tv for the geometric;
        e^epsilon bounded above by the rational 3^ceil(epsilon)."""
        tvn = 2 * self.tv if mechanism == "discrete-laplace" else self.tv
        return tvn * (1 + Fraction(3) ** math.ceil(Fraction(epsilon)))


def _digits_for(scale: Fraction, lam: int) -> int:
    """The least K with q^(2^K) <= 2^-lam, i.e. 2^K >= lam ln2 scale (ln 2 < 0.6932)."""
    need = Fraction(6932, 10000) * lam * scale
    k = 0
    while (1 << k) < need:
        k += 1
    return max(k, 1)


def _q_pow(scale: Fraction, m: int) -> Decimal:
    """q^m = exp(-m / scale) to _DIGITS digits."""
    return (-(Decimal(m * scale.denominator) / Decimal(scale.numerator))).exp()


def mpc_plan(scale, lam: int = LAMBDA) -> MpcPlan:
    """Thresholds and the exact-arithmetic TV bound of the in-MPC geometric for this scale
    (computed once per (scale, lambda): the pmf has 2^K points)."""
    return _mpc_plan(accounting.parse_exact(scale, "scale"), int(lam))


@lru_cache(maxsize=64)
def _mpc_plan(s: Fraction, lam: int) -> MpcPlan:
    if s <= 0:
        raise ValueError("scale must be positive")
    if not 8 <= lam <= 58:
        raise ValueError("lambda must lie in 8..58 (comparisons of lambda + 1 bits)")
    k = _digits_for(s, lam)
    if k > 16:
        raise ValueError(f"scale {s} needs {k} geometric digits; at most 16 are supported")
    with localcontext() as ctx:
        ctx.prec = _DIGITS
        ts = []
        for j in range(k):
            a = _q_pow(s, 1 << j)
            p = a / (1 + a)
            ts.append(int((p * (1 << lam)).to_integral_value()))
        impl = implemented_geometric_pmf(ts, lam)
        # target (1 - q) q^g on g < 2^K, and its tail q^(2^K) beyond: TV = half the L1 distance
        q = _q_pow(s, 1)
        l1 = Decimal(0)
        tq = 1 - q
        for g, pg in enumerate(impl):
            l1 += abs(Decimal(pg.numerator) / Decimal(pg.denominator) - tq)
            tq *= q
        l1 += _q_pow(s, 1 << k)
        tv = Fraction(l1 / 2) + Fraction(1, 10 ** (_DIGITS - 10))     # slack for the rounding of the sum
    return MpcPlan(s, lam, k, tuple(ts), tv)


def implemented_geometric_pmf(thresholds, lam: int) -> list[Fraction]:
    """The exact pmf on 0..2^K-1 of sum_k 2^k [r_k < T_k] for independent uniform lam-bit r_k."""
    pmf = [Fraction(1)]
    for j, t in enumerate(thresholds):
        p = Fraction(int(t), 1 << lam)
        pmf = [x * (1 - p) for x in pmf] + [x * p for x in pmf]
        assert len(pmf) == 1 << (j + 1)
    return pmf


async def _mpc_geometric(engine: Engine, label: str, plan: MpcPlan, count: int) -> Share:
    """Shares (count,) of geometrics, all digits of all of them in one batch."""
    lam, k = plan.lam, plan.k
    t = np.tile(np.asarray(plan.thresholds, dtype=np.int64), count)
    coin = await engine.random_coins(f"{label}/coin", t, lam)                 # [r < T_k]
    coin = coin.reshape((count, k) + tuple(engine.share_shape))
    digits = engine.encode(np.left_shift(np.ones(k, dtype=np.int64), np.arange(k, dtype=np.int64)))
    return engine.sum(engine.mul_const(coin, digits), axis=1)


async def mpc_noise(engine: Engine, label: str, mechanism: str, scale, count: int,
                    lam: int = LAMBDA) -> Share:
    """Shares (count,) of noise sampled inside MPC (see the module docstring)."""
    if mechanism not in ("discrete-laplace", "one-sided-geometric"):
        raise ValueError(f"mpc noise supports discrete-laplace and one-sided-geometric, not {mechanism!r}")
    plan = mpc_plan(scale, lam)
    if plan.k + 2 > engine.max_bit_length:
        raise ValueError(f"scale {plan.scale} needs {plan.k + 2}-bit noise, above the engine's "
                         f"{engine.max_bit_length} bits")
    if lam + 1 > engine.max_bit_length:
        raise ValueError(f"lambda {lam} needs {lam + 1}-bit comparisons; {engine.name} allows "
                         f"{engine.max_bit_length}")
    if mechanism == "one-sided-geometric":
        return await _mpc_geometric(engine, label, plan, count)
    g = await _mpc_geometric(engine, label, plan, 2 * count)
    return engine.sub(g[:count], g[count:])


async def distributed_noise(engine: Engine, label: str, noise: cpb.DpNoise, count: int,
                            my_samples_fn: Callable[[dict, int], np.ndarray] | None = None) -> Share:
    """Shares (count,) of the sum of every live party's locally sampled part: one round.
    `my_samples_fn(params, count)` replaces this party's sampler (tests use it to check the
    coalition guarantee); by default samplers.polya_difference with distributed_share's r."""
    # min_live unset (0): every party of the job must be live (computation/dp.py's contract)
    params = accounting.distributed_share(noise.mechanism, noise.scale, int(noise.min_live) or engine.n,
                                          len(engine.parties), t=engine.t)
    if my_samples_fn is None:
        mine = samplers.polya_difference(params["r"], params["scale"], count)
    else:
        mine = np.asarray(my_samples_fn(params, count), dtype=np.int64).reshape(count)
    shares = await engine.share_inputs(label, {engine.party: engine.encode(mine)},
                                       {p: (count,) for p in engine.parties})
    total = shares[engine.parties[0]]
    for p in engine.parties[1:]:
        total = engine.add(total, shares[p])
    return total


async def add_noise(engine: Engine, label: str, x: Share, noise: cpb.DpNoise,
                    my_samples_fn: Callable[[dict, int], np.ndarray] | None = None) -> Share:
    """x plus DP noise of noise.mechanism and noise.scale, elementwise (any value shape)."""
    shape = engine.value_shape(x)
    count = int(np.prod(shape, dtype=np.int64))
    if noise.source == "distributed":
        z = await distributed_noise(engine, f"{label}/dist", noise, count, my_samples_fn)
    elif noise.source == "mpc":
        z = await mpc_noise(engine, f"{label}/mpc", noise.mechanism, noise.scale, count)
    else:
        raise ValueError(f"noise source must be 'distributed' or 'mpc', not {noise.source!r}")
    return engine.add(x, z.reshape(shape + tuple(engine.share_shape)))


async def noisy_argmax(engine: Engine, label: str, scores: Share, noise: cpb.DpNoise,
                       bit_length: int) -> Share:
    """Report-noisy-max: the index (shares, length 1) of the first maximum of scores plus
    independent one-sided geometric noise sampled in MPC (see the module docstring).
    `bit_length` bounds the scores (|score| < 2^bit_length); the comparisons use one more bit
    than the larger of it and the noise's K + 1."""
    if noise.mechanism != "one-sided-geometric" or noise.source not in ("", "mpc"):
        raise ValueError("noisy_argmax takes one-sided-geometric noise from source 'mpc'")
    flat = engine.flatten(scores)
    plan = mpc_plan(noise.scale)
    bl = max(int(bit_length), plan.k + 1) + 1
    if bl > engine.max_bit_length:
        raise ValueError(f"noisy scores need {bl} bits; {engine.name} allows {engine.max_bit_length}")
    z = await mpc_noise(engine, f"{label}/mpc", "one-sided-geometric", plan.scale, len(flat))
    idx, _ = await selection.argmax_and_max(engine, f"{label}/argmax", engine.add(flat, z), bl)
    return idx
