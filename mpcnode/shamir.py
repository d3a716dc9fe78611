"""Shamir secret sharing over F_p on numpy arrays. No I/O.

Party i (0-based) holds the evaluation at x = i + 1 (`point(i)`). A degree-t sharing of
v is f(x) = v + c_1 x + ... + c_t x^t with uniform c_k: any t shares are independent
of v, any t + 1 determine it (Shamir 1979).
"""
from __future__ import annotations

from functools import lru_cache
from itertools import combinations
from typing import Sequence

import numpy as np

from . import field
from .randomness import random_field


def point(party: int) -> int:
    """The evaluation point of a 0-based party id."""
    return party + 1


def default_threshold(n: int) -> int:
    """The largest t with 2t < n: honest majority, and degree-2t products stay reconstructible."""
    if n < 3:
        raise ValueError(f"need at least 3 compute parties for an honest majority, got {n}")
    return (n - 1) // 2


@lru_cache(maxsize=None)
def vandermonde(n: int, degree: int) -> tuple[tuple[int, ...], ...]:
    """Row i is (x_i^0, ..., x_i^degree) mod p for x_i = point(i)."""
    return tuple(tuple(pow(point(i), k, field.P) for k in range(degree + 1)) for i in range(n))


def share_with(values: np.ndarray, coeffs: np.ndarray, n: int) -> np.ndarray:
    """Shares of `values` (shape S) given coefficients (shape (t, *S)): returns (n, *S)."""
    t = coeffs.shape[0]
    out = np.empty((n,) + values.shape, dtype=np.uint64)
    if t == 1:
        # f(x) = v + c x at x = 1, 2, ...: each share is the previous one plus c (additions only)
        acc = values
        for i in range(n):
            acc = field.add(acc, coeffs[0])
            out[i] = acc
        return out
    for i in range(n):
        # Horner: t multiplications by the small public point per party
        x = point(i)
        acc = coeffs[t - 1].copy() if t else values.copy()
        for k in range(t - 2, -2, -1):
            acc = field.add(field.mul_small(acc, x), coeffs[k] if k >= 0 else values)
        out[i] = acc
    return out


def share(values: np.ndarray, n: int, t: int) -> np.ndarray:
    """Fresh degree-t shares of canonical field elements `values`: returns shape (n, *values.shape)."""
    values = np.asarray(values, dtype=np.uint64)
    if not 0 <= t < n:
        raise ValueError(f"threshold t={t} must satisfy 0 <= t < n={n}")
    coeffs = random_field((t,) + values.shape)
    return share_with(values, coeffs, n)


@lru_cache(maxsize=None)
def interpolation_weights(xs: tuple[int, ...], x: int) -> tuple[int, ...]:
    """Weights w_i with f(x) = sum w_i f(xs[i]) for every polynomial of degree < len(xs)."""
    weights = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * (x - xj) % field.P
                den = den * (xi - xj) % field.P
        weights.append(num * field.inv_scalar(den) % field.P)
    return tuple(weights)


def lagrange_at_zero(parties: tuple[int, ...]) -> tuple[int, ...]:
    """Coefficients l_i with f(0) = sum l_i f(x_i) for every polynomial of degree < len(parties)."""
    return interpolation_weights(tuple(point(i) for i in parties), 0)


def lagrange_at(parties: tuple[int, ...], target: int) -> tuple[int, ...]:
    """Coefficients l_i with f(point(target)) = sum l_i f(x_i)."""
    return interpolation_weights(tuple(point(i) for i in parties), point(target))


def combine(shares: Sequence[np.ndarray], weights: Sequence[int]) -> np.ndarray:
    acc = field.mul_const(shares[0], weights[0])
    for s, w in zip(shares[1:], weights[1:]):
        acc = field.add(acc, field.mul_const(s, w))
    return acc


def reconstruct(shares: dict[int, np.ndarray]) -> np.ndarray:
    """The secret from shares keyed by party id (exactly degree + 1 of them are used, all given)."""
    parties = tuple(sorted(shares))
    return combine([shares[i] for i in parties], lagrange_at_zero(parties))


class InconsistentShares(ValueError):
    """The shares do not lie on one polynomial of the expected degree."""

    def __init__(self, message: str, culprits: tuple[int, ...]):
        super().__init__(message)
        self.culprits = culprits


def reconstruct_checked(shares: dict[int, np.ndarray], t: int) -> np.ndarray:
    """Reconstruct and verify that all shares lie on one polynomial of degree <= t.

    If they do not, find the parties whose shares disagree with the polynomial that the
    largest set of parties agrees on. The culprit is named only when that is unambiguous:
    with e wrong shares among m, that needs m >= t + 2e + 1 (e.g. 4 shares for t = 1).
    """
    parties = tuple(sorted(shares))
    if len(parties) < t + 1:
        raise ValueError(f"need at least t+1={t + 1} shares, got {len(parties)}")
    base = parties[: t + 1]
    if on_polynomial(shares, t).all():
        return reconstruct({i: shares[i] for i in base})
    best: list[tuple[int, tuple[int, ...]]] = []
    for subset in combinations(parties, t + 1):
        agreeing = tuple(j for j in parties if _agrees(shares, subset, j))
        best.append((len(agreeing), agreeing))
    best.sort(reverse=True)
    top_count, top_set = best[0]
    distinct_top = {s for c, s in best if c == top_count}
    if len(distinct_top) == 1 and top_count >= t + 1 + (len(parties) - top_count):
        culprits = tuple(j for j in parties if j not in top_set)
        raise InconsistentShares(f"shares of parties {list(culprits)} do not lie on the degree-{t} polynomial "
                                 f"the other {top_count} parties agree on", culprits)
    raise InconsistentShares(f"shares of parties {list(parties)} do not lie on one degree-{t} polynomial; "
                             f"too few shares to tell which party is wrong", ())


def _agrees(shares: dict[int, np.ndarray], subset: tuple[int, ...], j: int) -> bool:
    if j in subset:
        return True
    predicted = combine([shares[i] for i in subset], lagrange_at(subset, j))
    return bool(np.array_equal(predicted, shares[j]))


def on_polynomial(shares: dict[int, np.ndarray], t: int) -> np.ndarray:
    """Per element: do the shares (party id -> array, all the same shape) lie on one polynomial of
    degree <= t? Interpolating from the first t + 1 parties must reproduce every other party's
    share (the syndromes are zero). With t + 1 shares or fewer every element passes: any t + 1
    points lie on a degree-t polynomial, so nothing can be checked."""
    parties = tuple(sorted(shares))
    base = parties[: t + 1]
    ok = np.ones(np.shape(shares[parties[0]]), dtype=bool)
    for j in parties[t + 1:]:
        ok &= combine([shares[i] for i in base], lagrange_at(base, j)) == shares[j]
    return ok
