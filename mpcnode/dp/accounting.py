"""Privacy accounting in one currency, zero-concentrated DP (rho-zCDP), exact where it can be.

Bun and Steinke, "Concentrated Differential Privacy: Simplifications, Extensions, and Lower
Bounds" (TCC 2016):
* an epsilon-DP mechanism is (epsilon^2 / 2)-zCDP (their Proposition 1.4): `rho_of_pure`;
* rho-zCDP composes by adding the rhos (Lemma 1.7): `job_rho` sums a circuit's releases;
* rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP for every delta > 0
  (Proposition 1.3): `eps_delta_of_rho`;
* adding N(0, sigma^2) to a sensitivity-Delta value is Delta^2/(2 sigma^2)-zCDP (Proposition
  1.6); the discrete Gaussian with the same sigma^2 meets the same rho (Canonne, Kamath, Steinke,
  NeurIPS 2020, Theorem 4): `gaussian_sigma2`.

Parameters are `Fraction`s (exact decimal strings in the protos: "1", "0.5", "3/2"); only the
conversion back to (epsilon, delta), standard deviations and intervals are floats (they are
displayed, never sampled from).

Scales (DpNoise.scale / DpRelease.scale):
* "discrete-laplace": t, P(z) proportional to exp(-|z|/t); epsilon-DP for sensitivity Delta
  when t = Delta / epsilon (`laplace_scale`).
* "discrete-gaussian": sigma^2 (the variance parameter, NOT sigma), P(z) proportional to
  exp(-z^2/(2 sigma^2)).
* "one-sided-geometric": t, P(g) proportional to exp(-g/t) on g >= 0 (report-noisy-max).
"""
from __future__ import annotations

import math
from fractions import Fraction

from parley.v1 import circuit_pb2 as cpb

from . import samplers

MECHANISMS = ("discrete-laplace", "discrete-gaussian", "one-sided-geometric")


def parse_exact(text, what: str = "value") -> Fraction:
    """An exact decimal or fraction string ("1", "0.25", "3/2") or a number -> Fraction."""
    try:
        return Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{what}: {text!r} is not an exact decimal or fraction") from None


def rho_of_pure(epsilon) -> Fraction:
    """rho = epsilon^2 / 2: the zCDP of an epsilon-DP mechanism (Bun-Steinke TCC 2016, Prop. 1.4)."""
    e = parse_exact(epsilon, "epsilon")
    if e < 0:
        raise ValueError("epsilon must be >= 0")
    return e * e / 2


def eps_delta_of_rho(rho, delta) -> float:
    """The epsilon of the (epsilon, delta)-DP that rho-zCDP implies: rho + 2 sqrt(rho ln(1/delta))
    (Bun-Steinke TCC 2016, Prop. 1.3)."""
    r, d = float(parse_exact(rho, "rho")), float(parse_exact(delta, "delta"))
    if r < 0 or not 0 < d < 1:
        raise ValueError("need rho >= 0 and 0 < delta < 1")
    return r + 2 * math.sqrt(r * math.log(1 / d))


def laplace_scale(epsilon, sensitivity) -> Fraction:
    """t = sensitivity / epsilon: discrete Laplace with P(z) proportional to exp(-|z|/t) is
    epsilon-DP for a value of that L1 sensitivity."""
    e, s = parse_exact(epsilon, "epsilon"), parse_exact(sensitivity, "sensitivity")
    if e <= 0 or s <= 0:
        raise ValueError("epsilon and sensitivity must be positive")
    return s / e


def gaussian_sigma2(rho, sensitivity) -> Fraction:
    """sigma^2 = sensitivity^2 / (2 rho): discrete Gaussian noise that is rho-zCDP (CKS20 Thm 4)."""
    r, s = parse_exact(rho, "rho"), parse_exact(sensitivity, "sensitivity")
    if r <= 0 or s <= 0:
        raise ValueError("rho and sensitivity must be positive")
    return s * s / (2 * r)


def _gaussian_mass(sigma2: float):
    """(support, unnormalized pmf) of the discrete Gaussian, summed to where terms vanish."""
    w = int(math.ceil(12 * math.sqrt(sigma2))) + 2
    xs = range(-w, w + 1)
    return xs, [math.exp(-x * x / (2 * sigma2)) for x in xs]


def std_of(mechanism: str, scale) -> float:
    """The noise's standard deviation. Discrete Laplace: sqrt(2q)/(1-q), q = e^(-1/t); one-sided
    geometric: sqrt(q)/(1-q); discrete Gaussian: from its pmf (it is slightly below sigma)."""
    s = float(parse_exact(scale, "scale"))
    if mechanism == "discrete-laplace":
        q = math.exp(-1 / s)
        return math.sqrt(2 * q) / (1 - q)
    if mechanism == "one-sided-geometric":
        q = math.exp(-1 / s)
        return math.sqrt(q) / (1 - q)
    if mechanism == "discrete-gaussian":
        xs, m = _gaussian_mass(s)
        return math.sqrt(sum(x * x * p for x, p in zip(xs, m)) / sum(m))
    raise ValueError(f"unknown mechanism {mechanism!r} (known: {', '.join(MECHANISMS)})")


def interval95(mechanism: str, scale) -> float:
    """The half-width w of the smallest interval [-w, w] holding the noise with probability
    >= 0.95. Discrete Laplace, exactly from the pmf: P(|Z| > w) = 2 q^(w+1) / (1 + q)."""
    s = float(parse_exact(scale, "scale"))
    if mechanism == "discrete-laplace":
        q = math.exp(-1 / s)
        w = 0
        while 2 * q ** (w + 1) / (1 + q) > 0.05:
            w += 1
        return float(w)
    if mechanism == "one-sided-geometric":
        q = math.exp(-1 / s)                     # P(G > w) = q^(w+1)
        w = 0
        while q ** (w + 1) > 0.05:
            w += 1
        return float(w)
    if mechanism == "discrete-gaussian":
        xs, m = _gaussian_mass(s)
        total, mass, w = sum(m), m[len(m) // 2], 0
        while mass / total < 0.95:
            w += 1
            mass += 2 * math.exp(-w * w / (2 * s))
        return float(w)
    raise ValueError(f"unknown mechanism {mechanism!r} (known: {', '.join(MECHANISMS)})")


def release_rho(release: cpb.DpRelease) -> Fraction:
    """The zCDP charge of one DpRelease: 0 for post-processing; its `rho` when stated; else
    epsilon^2/2 for a pure-DP release (discrete Laplace, one-sided geometric, randomized response);
    else, for a discrete Gaussian, sensitivity^2 / (2 sigma^2) from its scale."""
    if release.post_processing:
        return Fraction(0)
    if release.rho:
        return parse_exact(release.rho, "rho")
    if release.mechanism == "discrete-gaussian":
        if not release.scale or not release.sensitivity:
            raise ValueError("a discrete-gaussian release needs rho, or sensitivity and scale")
        return Fraction(release.sensitivity) ** 2 / (2 * parse_exact(release.scale, "scale"))
    if release.epsilon:
        return rho_of_pure(release.epsilon)
    raise ValueError("a DP release states neither rho nor epsilon")


def job_rho(circuit: cpb.Circuit) -> float:
    """The zCDP of a whole circuit's releases: the sum over its DP outputs (composition)."""
    return float(sum((release_rho(o.dp) for o in circuit.outputs if o.HasField("dp")), Fraction(0)))


def distributed_share(mechanism: str, scale, min_live: int, live: int, *, t: int | None = None) -> dict:
    """What each of `live` nodes samples so that the noise of ANY min_live - t honest nodes alone
    is at least the target noise; ValueError with fewer live nodes than min_live.

    Calibration (discrete Laplace of scale s, q = exp(-1/s)): h = min_live - t >= 1 honest nodes
    are guaranteed (a coalition of t knows, and subtracts, its own noise). Each live node adds
    NB(1/h, q) - NB(1/h, q) (samplers.polya_difference). The honest nodes' sum is
    NB(H/h, q) - NB(H/h, q) with H >= h, which is a discrete Laplace(s) plus independent noise
    NB((H-h)/h, q) - NB((H-h)/h, q); adding independent noise is post-processing, so the released
    value is epsilon-DP whenever discrete Laplace(s) alone makes it so. Every node's sampler is
    within TV TRUNCATION_TV (2^-63) per sample of NB, so a release of m values over `live` nodes
    adds delta <= 2 * live * m * 2^-63 * (1 + e^epsilon) (`truncation_tv`).

    `t` (the engine's corruption threshold) defaults to min_live - 1: one honest node, each node
    adding the full noise (the most conservative case). Only discrete Laplace is offered
    distributed: the sum of discrete Gaussians is not a discrete Gaussian, and report-noisy-max's
    guarantee does not survive extra noise (noise.noisy_argmax uses source "mpc")."""
    if mechanism != "discrete-laplace":
        raise ValueError(f"distributed noise supports discrete-laplace only, not {mechanism!r} "
                         "(use source: mpc)")
    s = parse_exact(scale, "scale")
    if s <= 0:
        raise ValueError("scale must be positive")
    min_live, live = int(min_live), int(live)
    if min_live < 1:
        raise ValueError("min_live must be at least 1")
    if live < min_live:
        raise ValueError(f"distributed noise is calibrated for at least {min_live} live nodes, "
                         f"only {live} are live: refusing to run")
    t = min_live - 1 if t is None else int(t)
    h = min_live - t
    if h < 1:
        raise ValueError(f"min_live {min_live} with up to {t} colluding nodes leaves no honest node's "
                         "noise: raise min_live above t")
    return {"family": "polya-difference", "r": Fraction(1, h), "scale": s, "honest": h,
            "truncation_tv": samplers.TRUNCATION_TV}


def truncation_tv(live: int, count: int) -> Fraction:
    """Total-variation bound between the distributed noise of `count` values over `live` nodes
    and its exact target: each node's two polya samples per value are 2^-63 away each."""
    return 2 * int(live) * int(count) * samplers.TRUNCATION_TV
