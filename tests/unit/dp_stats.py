"""Chi-square goodness of fit with a fixed decision rule, for the DP sampler tests.

Rule: bin the support so that every bin expects at least 20 samples (the two tails merged into
the end bins), and fail when the statistic exceeds the chi-square quantile of upper tail
FALSE_ALARM = 10^-6 at (bins - 1) degrees of freedom: a correct sampler fails one run in a
million, a wrong pmf of the kind these catch fails almost surely at 10^5 samples."""
from __future__ import annotations

import numpy as np
from scipy import stats

FALSE_ALARM = 1e-6


def chi_square_ok(samples: np.ndarray, pmf, lo: int, hi: int) -> tuple[bool, float, float]:
    """samples against pmf(k) on [lo, hi] (pmf must carry nearly all of its mass there; the mass
    outside is added to the end bins). Returns (passed, statistic, critical value)."""
    samples = np.asarray(samples, dtype=np.int64)
    n = len(samples)
    ks = np.arange(lo, hi + 1)
    p = np.array([float(pmf(int(k))) for k in ks])
    p[0] += max(0.0, 1.0 - p.sum()) / 2        # the tails beyond [lo, hi]
    p[-1] += max(0.0, 1.0 - p.sum())
    counts = np.bincount(np.clip(samples, lo, hi) - lo, minlength=len(ks)).astype(float)
    # merge from both ends until every bin expects >= 20
    exp_bins, obs_bins = [], []
    e = o = 0.0
    for pe, c in zip(p * n, counts):
        e += pe
        o += c
        if e >= 20:
            exp_bins.append(e)
            obs_bins.append(o)
            e = o = 0.0
    if e or o:
        exp_bins[-1] += e
        obs_bins[-1] += o
    ex, ob = np.array(exp_bins), np.array(obs_bins)
    stat = float(((ob - ex) ** 2 / ex).sum())
    crit = float(stats.chi2.isf(FALSE_ALARM, len(ex) - 1))
    return stat <= crit, stat, crit
