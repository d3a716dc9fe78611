"""Differentially private noise on shared values, on any engine (engines/base.py).

`add_noise(engine, label, x, noise)` returns shares of x + Z, where no coalition of up to t
parties knows Z, in one of two ways (DpNoise.source):

* "distributed": every live party samples its own part with the exact samplers (mpcnode/dp/
  samplers.py, parameters from accounting.distributed_share) and secret-shares it; all parts are
  shared in ONE round (engine.share_inputs from every live party) and added. The honest parties'
  parts alone make a discrete Laplace of the requested scale (plus independent extra noise), so a
  coalition that subtracts its own parts still faces the full noise. Refused with fewer live
  parties than DpNoise.min_live. Cost: one input round of the value's size per party; local
  sampling (samplers.polya_difference).
* "mpc": the noise is sampled inside MPC from shared random bits, so nobody ever holds it. A
  geometric G on {0, ..., 2^K - 1} with P(G = g) proportional to q^g (q = exp(-1/scale)) has
  independent binary digits: digit k is 1 with probability p_k = q^(2^k) / (1 + q^(2^k)). Each
  digit is the shared bit [r < T_k] for r a shared uniform lambda-bit integer (lambda shared
  random bits) and the public threshold T_k = round(p_k 2^lambda); G = sum_k 2^k digit_k.
  Discrete Laplace = G1 - G2 (a difference of two i.i.d. geometrics is the discrete Laplace);
  one-sided geometric = G. K is the least with q^(2^K) <= 2^-lambda. The implemented pmf differs
  from the target by total variation eta <= sum_k |T_k/2^lambda - p_k| + q^(2^K) per geometric
  (computed in `mpc_plan` with 60-digit decimals; twice that for discrete Laplace); an epsilon-DP
  mechanism run on noise eta away in TV is (epsilon, m eta (1 + e^epsilon))-DP for m values.
  Cost per geometric: K lambda shared random bits and K comparisons of lambda-bit values, all in
  one batch (the rounds of one random_bits and one less_than, whatever m).

`noisy_argmax` is report-noisy-max with one-sided geometric noise, the discrete form of
permute-and-flip (McKenna and Sheldon, "Permute-and-Flip", NeurIPS 2020; Ding, Kifer, Neel et
al., "The permute-and-flip mechanism is identical to report-noisy-max with exponential noise",
2021; the geometric version: Ding et al., "Free Gap Information from the Differentially Private
Sparse Vector and Noisy Max Mechanisms", VLDB 2019). Tie rule: the FIRST maximum wins
(protocols/selection.py argmax_and_max). Its noise comes from MPC only: report-noisy-max's
guarantee is for exactly geometric noise, and distributed noise would add more.
"""
from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Callable

import numpy as np

from parley.v1 import circuit_pb2 as cpb

from ..dp import accounting, samplers
from ..engines.base import Engine, Share
from . import selection

LAMBDA = 40          # coin precision in bits (the shared uniform r of each biased digit)


def _sample_share(params: dict, size: int) -> np.ndarray:
    """This party's part of distributed noise (accounting.distributed_share's parameters)."""
    return samplers.polya_difference(params["r"], params["scale"], size)


def mpc_plan(scale, lam: int = LAMBDA) -> dict:
    """The public parameters of in-MPC geometric noise of `scale`: K digits, thresholds T_k,
    and eta, an upper bound (rounded up in the last decimal) on the total-variation distance of
    the implemented geometric from the exact one."""
    s = accounting.parse_exact(scale, "scale")
    if s <= 0:
        raise ValueError("scale must be positive")
    with localcontext() as ctx:
        ctx.prec = 60
        q = (Decimal(-s.denominator) / Decimal(s.numerator)).exp()
        two_lam = Decimal(2) ** lam
        floor_bound = Decimal(2) ** -lam
        k, qk, thresholds, err = 0, q, [], Decimal(0)
        while qk > floor_bound:                  # digit k: q^(2^k) still above 2^-lambda
            p = qk / (1 + qk)
            tk = int((p * two_lam + Decimal("0.5")).to_integral_value(rounding="ROUND_FLOOR"))
            thresholds.append(tk)
            err += abs(Decimal(tk) / two_lam - p)
            k, qk = k + 1, qk * qk
        eta = err + qk + Decimal(10) ** -55      # + the truncation q^(2^K), + decimal rounding slack
    return {"lambda": lam, "K": k, "thresholds": thresholds, "eta": Fraction(str(eta))}


async def mpc_geometric(engine: Engine, label: str, scale, count: int, lam: int = LAMBDA) -> Share:
    """Shares (count,) of independent geometrics G in {0..2^K-1}, P(G = g) proportional to
    exp(-g/scale), from shared random bits (see the module docstring)."""
    plan = mpc_plan(scale, lam)
    K, lam = plan["K"], plan["lambda"]
    if lam > engine.max_bit_length:
        raise ValueError(f"lambda {lam} exceeds the engine's comparison width {engine.max_bit_length}")
    if K + 1 > engine.max_bit_length:
        raise ValueError("scale too large for in-MPC noise on this engine")
    digits = count * K
    bits = await engine.random_bits(f"{label}/bits", digits * lam)
    bits = bits.reshape((digits, lam) + tuple(engine.share_shape))
    weights = engine.encode(np.left_shift(np.ones(lam, dtype=np.int64), np.arange(lam, dtype=np.int64)))
    r = engine.sum(engine.mul_const(bits, weights), axis=1)                       # (digits,)
    thr = np.tile(np.asarray(plan["thresholds"], dtype=np.int64), count)          # digit-major per sample
    dig = await engine.less_than(f"{label}/coin", r, engine.constant(engine.encode(thr)), lam)
    dig = dig.reshape((count, K) + tuple(engine.share_shape))
    pow2 = engine.encode(np.left_shift(np.ones(K, dtype=np.int64), np.arange(K, dtype=np.int64)))
    return engine.sum(engine.mul_const(dig, pow2), axis=1)


async def mpc_noise(engine: Engine, label: str, mechanism: str, scale, count: int, lam: int = LAMBDA) -> Share:
    """Shares (count,) of noise sampled inside MPC: discrete Laplace (G1 - G2) or one-sided
    geometric (G). Refuses the discrete Gaussian (no in-MPC sampler here)."""
    if mechanism == "discrete-laplace":
        g = await mpc_geometric(engine, label, scale, 2 * count, lam)
        return engine.sub(g[:count], g[count:])
    if mechanism == "one-sided-geometric":
        return await mpc_geometric(engine, label, scale, count, lam)
    raise ValueError(f"noise from shared bits supports discrete-laplace and one-sided-geometric, "
                     f"not {mechanism!r}")


async def add_noise(engine: Engine, label: str, x: Share, noise: cpb.DpNoise,
                    my_samples_fn: Callable[[dict, int], np.ndarray] | None = None) -> Share:
    """Shares of x + noise (any value shape). `my_samples_fn(params, count)`: this party's
    distributed part (default: the exact sampler; tests pass one to see their own part)."""
    shape = engine.value_shape(x)
    count = int(np.prod(shape, dtype=np.int64))
    scale = accounting.parse_exact(noise.scale, "noise scale")
    if noise.source == "distributed":
        live = len(engine.parties)
        min_live = int(noise.min_live) or engine.n          # unset: every party of the job
        params = accounting.distributed_share(noise.mechanism, scale, min_live, live, t=engine.t)
        mine = np.asarray((my_samples_fn or _sample_share)(params, count), dtype=np.int64).reshape(shape)
        parts = await engine.share_inputs(f"{label}/noise", {engine.party: engine.encode(mine)},
                                          {p: shape for p in engine.parties})
        out = x
        for p in engine.parties:
            out = engine.add(out, parts[p])
        return out
    if noise.source == "mpc":
        z = await mpc_noise(engine, f"{label}/mpc", noise.mechanism, scale, count)
        return engine.add(x, z.reshape(tuple(shape) + tuple(engine.share_shape)))
    raise ValueError(f"noise source must be 'distributed' or 'mpc', not {noise.source!r}")


async def noisy_argmax(engine: Engine, label: str, scores: Share, noise: cpb.DpNoise, bit_length: int) -> Share:
    """Shares (1,) of the index of the first maximum of scores + G, G i.i.d. one-sided geometric of
    noise.scale sampled in MPC. For scores of sensitivity Delta, scale 2 Delta / epsilon gives
    epsilon-DP (Delta / epsilon when every score moves the same way, e.g. counts), plus the
    delta of the coins' precision (mpc_plan's eta). `bit_length` bounds |scores|."""
    if noise.mechanism != "one-sided-geometric":
        raise ValueError("noisy_argmax takes one-sided-geometric noise (report-noisy-max)")
    if noise.source != "mpc":
        raise ValueError("noisy_argmax samples its noise in MPC (source: mpc): report-noisy-max's "
                         "guarantee does not hold with the extra noise of distributed parts")
    flat = engine.flatten(scores)
    plan = mpc_plan(noise.scale)
    bl = engine.check_bit_length(max(int(bit_length), plan["K"]) + 1)
    g = await mpc_geometric(engine, f"{label}/mpc", noise.scale, len(flat))
    idx, _ = await selection.argmax_and_max(engine, f"{label}/argmax", engine.add(flat, g), bl)
    return idx
