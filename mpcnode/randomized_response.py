"""Randomized response (Warner 1965) for surveys from input clients (docs/privacy.md).

Each client flips its own 0/1 answer with probability q = 1 / (1 + e^epsilon) BEFORE sharing it
(`randomize`, called by mpcnode/client.py submit when the job's document declares a
randomized-response output): whatever the nodes, the coordinator or the recipients later see,
one answer is epsilon-DP, since P(report r | answer a) / P(report r | answer 1 - a) <= e^epsilon.
The coins are exact: with p = e^-epsilon (epsilon rational, samplers.bernoulli_exp), a fair coin
C and an exact Bernoulli(p) coin B, "flip" when C = 1 and B = 1, "keep" when C = 0, retry
otherwise: P(flip) = (p/2) / (p/2 + 1/2) = p / (1 + p) = 1 / (1 + e^epsilon).

The nodes only add the reported bits inside MPC (the count c of reported 1s over n respondents;
n is public: the number of accepted rows). The unbiased estimate of the true count of 1s is
(c - n q) / (1 - 2q), an affine map of c with public coefficients; q is irrational, so it is applied
by the recipient to the opened c (post-processing: computing it inside MPC would reveal exactly
the same). Its 95% interval is +-1.96 sqrt(n q (1 - q)) / (1 - 2q) (the randomization's variance,
normal approximation, conservative only for n of a few dozen or more).

The nodes cannot check that a client flipped, nor enforce a per-person budget: a client that
answers several surveys spends its own epsilon each time, and only its own library limits that.
"""
from __future__ import annotations

import math

import numpy as np

from . import randomness as R
from .dp import accounting, samplers


def flip_probability(epsilon) -> float:
    return 1.0 / (1.0 + math.exp(float(accounting.parse_exact(epsilon, "epsilon"))))


def randomize(bits: np.ndarray, epsilon) -> np.ndarray:
    """Each 0/1 entry flipped with probability exactly 1 / (1 + e^epsilon)."""
    e = accounting.parse_exact(epsilon, "epsilon")
    if e <= 0:
        raise ValueError("epsilon must be positive")
    bits = np.asarray(bits, dtype=np.int64).reshape(-1)
    flip = np.zeros(bits.size, dtype=bool)
    pending = np.arange(bits.size)
    while pending.size:
        c = R.random_bits(pending.size).astype(bool)
        b = samplers.bernoulli_exp(e.numerator, e.denominator, pending.size)
        decided = ~c | b                         # keep (C = 0) or flip (C = 1, B = 1)
        flip[pending[decided & c]] = True
        pending = pending[~decided]
    return np.where(flip, 1 - bits, bits)


def estimate(count: int, n: int, epsilon) -> dict:
    """The unbiased estimate of the true number of 1s and its 95% interval (see the module)."""
    q = flip_probability(epsilon)
    est = (count - n * q) / (1 - 2 * q)
    half = 1.96 * math.sqrt(n * q * (1 - q)) / (1 - 2 * q)
    return {"reported_yes": count, "respondents": n, "estimate": round(est, 2),
            "interval95": [round(est - half, 2), round(est + half, 2)], "flip_probability": round(q, 6)}
