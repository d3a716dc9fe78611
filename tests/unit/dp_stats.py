"""Goodness-of-fit for the DP sampler tests, without scipy: Pearson's chi-square against an exact
target pmf, its tail by the Wilson-Hilferty normal approximation. Decision rule, fixed in advance:
fail when z > Z_ALARM = 4.75 (one-sided p ~ 1.0e-6 per test: the false-alarm rate)."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

Z_ALARM = 4.75


def chi2_z(samples: np.ndarray, pmf: Callable[[int], float], lo: int, hi: int) -> float:
    """Chi-square z-score of integer samples against pmf on bins lo..hi, with the two tails
    (< lo, > hi) pooled into one bin each; pick lo, hi so that every bin expects >= 5."""
    s = np.asarray(samples, dtype=np.int64)
    n = s.size
    probs = np.array([pmf(k) for k in range(lo, hi + 1)])
    below = sum(pmf(k) for k in range(lo - 4000, lo))
    above = max(0.0, 1.0 - probs.sum() - below)
    exp = np.concatenate([[below], probs, [above]]) * n
    inside = np.bincount(s[(s >= lo) & (s <= hi)] - lo, minlength=hi - lo + 1)
    obs = np.concatenate([[np.sum(s < lo)], inside, [np.sum(s > hi)]]).astype(float)
    # thin bins at either end join their inner neighbour until every bin expects >= 5 (a bin
    # with zero expected mass must hold no sample)
    obs, exp = list(obs), list(exp)
    for lo_end in (True, False):
        while len(exp) > 2 and exp[0 if lo_end else -1] < 5:
            i, j = (0, 1) if lo_end else (-1, -2)
            if exp[i] == 0:
                assert obs[i] == 0, "samples where the target has no mass"
            obs[j] += obs[i]
            exp[j] += exp[i]
            del obs[i], exp[i]
    obs, exp = np.array(obs), np.array(exp)
    assert exp.min() >= 5, "bins too thin for chi-square"
    x2 = float(((obs - exp) ** 2 / exp).sum())
    df = len(obs) - 1
    return ((x2 / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))


def dlap_pmf(scale: float) -> Callable[[int], float]:
    q = math.exp(-1 / scale)
    return lambda z: (1 - q) / (1 + q) * q ** abs(z)


def geo_pmf(scale: float) -> Callable[[int], float]:
    q = math.exp(-1 / scale)
    return lambda g: (1 - q) * q ** g if g >= 0 else 0.0


def nb_pmf(r: float, scale: float) -> Callable[[int], float]:
    q = math.exp(-1 / scale)
    return lambda k: math.exp(math.lgamma(k + r) - math.lgamma(r) - math.lgamma(k + 1)
                              + r * math.log1p(-q) + k * math.log(q)) if k >= 0 else 0.0


def dgauss_pmf(sigma2: float) -> Callable[[int], float]:
    w = int(12 * math.sqrt(sigma2)) + 2
    norm = sum(math.exp(-x * x / (2 * sigma2)) for x in range(-w, w + 1))
    return lambda z: math.exp(-z * z / (2 * sigma2)) / norm


def poisson_pmf(lam: float) -> Callable[[int], float]:
    return lambda k: math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1)) if k >= 0 else 0.0


def nb_difference_pmf(r: float, scale: float, width: int = 400) -> Callable[[int], float]:
    """pmf of NB(r, q) - NB(r, q) (by convolution of the two pmfs up to `width`)."""
    f = nb_pmf(r, scale)
    p = np.array([f(k) for k in range(width)])
    conv = np.correlate(p, p, mode="full")            # index i - (width - 1) = difference
    return lambda z: float(conv[z + width - 1]) if abs(z) < width else 0.0
