"""Exact integer noise samplers for differential privacy, from mpcnode/randomness.py only.

No floating point anywhere: every coin is an exact Bernoulli of a rational (randomness.
bernoulli_rational, rejection from uniform words) or an exact Bernoulli(exp(-gamma)) built from
such coins. Floating-point noise breaks DP (Mironov, CCS 2012).

Samplers (parameters are `Fraction`s; all return int64 arrays of `size` elements):

* `bernoulli_exp(num, den)`: Bernoulli(exp(-num/den)) elementwise. Canonne, Kamath, Steinke,
  "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020), Algorithm 1.
* `one_sided_geometric(scale, size)`: P(g) proportional to exp(-g/scale) on g = 0, 1, 2, ...
  (the first half of CKS20 Algorithm 2): report-noisy-max noise.
* `discrete_laplace(scale, size)`: P(z) proportional to exp(-|z|/scale) on the integers, CKS20
  Algorithm 2.
* `discrete_gaussian(sigma2, size)`: P(z) proportional to exp(-z^2/(2 sigma2)), CKS20 Algorithm 3.
* `poisson_exp(c, g_num, g_den, size)`: Poisson(c * exp(-g)) for rational c < 2: a geometric
  proposal with exact coins and a rational acceptance (see the function).
* `polya(r, scale, size)` / `polya_difference(r, scale, size)`: negative binomial NB(r, q) with
  q = exp(-1/scale) (failures before the first... r-th success, P(k) = C(k+r-1, k) (1-q)^r q^k),
  for rational r <= 1, and the difference of two. The distributed discrete Laplace: h independent
  polya_difference(1/h, scale) sum to exactly discrete_laplace(scale) (Goryczka, Xiong, Sunderam
  2013; NB is infinitely divisible and NB(1, q) - NB(1, q) is the discrete Laplace). Sampled as a
  compound Poisson: NB(r, q) = sum_k k * N_k with independent N_k ~ Poisson(r q^k / k) (the log of
  its generating function is r sum_k q^k (z^k - 1) / k), the N_k taken in doubling blocks
  [2^j, 2^(j+1)) from a dominating Poisson(r q^(2^j)) and thinned exactly; blocks stop at the
  first J with q^(2^(J+1)) <= 2^-64, so each polya sample is within total-variation distance
  TRUNCATION_TV = 2^-63 of NB(r, q) (counted in delta, accounting.distributed_share).

Vectorized: every rejection round is one numpy batch over all pending elements; the number of
rounds is random but small (each round accepts a constant fraction).
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from .. import randomness as R

TRUNCATION_TV = Fraction(1, 1 << 63)       # polya: TV distance per sample from the exact NB(r, q)
_EXP1_CHUNK = 4                            # exp(-1) coins per element per round (_all_exp1)
_MAX_DEN = 1 << 56                         # rational coins need den * K <= 2^62 (K: Algorithm 1's counter)


def _frac(x, what: str) -> Fraction:
    f = Fraction(x)
    if f <= 0:
        raise ValueError(f"{what} must be positive")
    if f.denominator > _MAX_DEN or f.numerator > _MAX_DEN:
        raise ValueError(f"{what}: numerator and denominator must be below 2^56")
    return f


def bernoulli_exp(num: np.ndarray | int, den: np.ndarray | int, size: int | None = None) -> np.ndarray:
    """Bernoulli(exp(-num/den)) (bool) elementwise, for integers num >= 0, 1 <= den <= 2^56.

    CKS20 Algorithm 1: for gamma in [0, 1], K = 1; while Bernoulli(gamma / K): K += 1; return
    [K odd] (P = sum_k (-gamma)^k / k! = exp(-gamma)). For gamma > 1: floor(gamma) independent
    Bernoulli(exp(-1)) and one Bernoulli(exp(-(gamma - floor gamma))) must all be 1 (an integer
    gamma >= 1 is split as (gamma - 1) + 1)."""
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    if size is not None:
        num, den = np.broadcast_to(num, (size,)), np.broadcast_to(den, (size,))
    num, den = (np.ascontiguousarray(a).reshape(-1) for a in np.broadcast_arrays(num, den))
    if num.size and (int(num.min()) < 0 or int(den.min()) < 1 or int(den.max()) > _MAX_DEN):
        raise ValueError("bernoulli_exp: need num >= 0 and 1 <= den <= 2^56")
    # gamma = whole + frac/den with frac/den in (0, 1] (gamma = 1 itself runs Algorithm 1 directly)
    whole = np.maximum((num + den - 1) // den - 1, 0)
    frac = num - whole * den
    # fractional part: the K counter of Algorithm 1, all elements at once
    k = np.ones(num.size, dtype=np.int64)
    live = np.arange(num.size)
    while live.size:
        a = R.bernoulli_rational(frac[live], den[live] * k[live])
        live = live[a]
        k[live] += 1
    out = (k & 1) == 1
    # integer part: floor(gamma) coins of Bernoulli(exp(-1)) must all come up 1
    live = np.flatnonzero(out & (whole > 0))
    out[live] = _all_exp1(whole[live])
    return out


def _geometric_exp1(size: int) -> np.ndarray:
    """V >= 0 with P(V = v) = (1 - e^-1) e^-v: count Bernoulli(exp(-1)) successes before a failure."""
    v = np.zeros(size, dtype=np.int64)
    live = np.arange(size)
    while live.size:
        live = live[bernoulli_exp(1, 1, live.size)]
        v[live] += 1
    return v


def _geometric_scaled(s: int, t: int, size: int) -> np.ndarray:
    """Y >= 0 with P(Y = y) proportional to exp(-y s / t): CKS20 Algorithm 2 before its sign step
    (X = U + t V is geometric of parameter exp(-1/t) when U ~ uniform{0..t-1} is kept with
    probability exp(-U/t); Y = floor(X / s))."""
    out = np.empty(size, dtype=np.int64)
    todo = np.arange(size)
    while todo.size:
        u = R.random_below(t, todo.size)
        keep = bernoulli_exp(u, t)
        u = u[keep]
        x = u + t * _geometric_exp1(u.size)
        out[todo[keep]] = x // s
        todo = todo[~keep]
    return out


def one_sided_geometric(scale, size: int) -> np.ndarray:
    """P(g) = (1 - q) q^g on g = 0, 1, ..., q = exp(-1/scale) (int64)."""
    f = _frac(scale, "scale")
    return _geometric_scaled(f.denominator, f.numerator, int(size))


def discrete_laplace(scale, size: int) -> np.ndarray:
    """P(z) = (1 - q)/(1 + q) q^|z| on the integers, q = exp(-1/scale): CKS20 Algorithm 2 (a
    one-sided geometric Y, a fair sign B, reject (B = 1, Y = 0) so that 0 is not counted twice)."""
    f = _frac(scale, "scale")
    size = int(size)
    out = np.empty(size, dtype=np.int64)
    todo = np.arange(size)
    while todo.size:
        y = _geometric_scaled(f.denominator, f.numerator, todo.size)
        b = R.random_below(2, todo.size)
        keep = ~((b == 1) & (y == 0))
        out[todo[keep]] = ((1 - 2 * b) * y)[keep]
        todo = todo[~keep]
    return out


def discrete_gaussian(sigma2, size: int) -> np.ndarray:
    """P(z) proportional to exp(-z^2 / (2 sigma2)) on the integers: CKS20 Algorithm 3. t =
    floor(sigma) + 1; Y ~ discrete_laplace(t); keep Y with probability
    exp(-(|Y| - sigma2/t)^2 / (2 sigma2)). With sigma2 = a/b the exponent is the rational
    (|Y| t b - a)^2 / (2 a b t^2), computed in Python integers (no overflow, no float)."""
    f = _frac(sigma2, "sigma2")
    a, b = f.numerator, f.denominator
    t = _isqrt_floor(f) + 1
    den = 2 * a * b * t * t
    if den > _MAX_DEN:
        raise ValueError("sigma2: too large or too fine a fraction for the exact int64 coins")
    size = int(size)
    out = np.empty(size, dtype=np.int64)
    todo = np.arange(size)
    while todo.size:
        y = discrete_laplace(t, todo.size)
        d = np.abs(y).astype(object) * (t * b) - a
        num = d * d
        whole = (num // den).astype(np.int64)
        rem = (num % den).astype(np.int64)
        # exp(-(whole + rem/den)) = exp(-rem/den) * exp(-1)^whole: both exact coins
        keep = bernoulli_exp(rem + 0, den) & _all_exp1(whole)
        out[todo[keep]] = y[keep]
        todo = todo[~keep]
    return out


def _all_exp1(whole: np.ndarray) -> np.ndarray:
    """[whole[i] independent Bernoulli(exp(-1)) coins all come up 1] (bool), elementwise. Up to
    _EXP1_CHUNK coins per element per round, all in one bernoulli_exp call: few rounds whatever
    the counts, and an element stops at its first chunk with a 0."""
    whole = np.asarray(whole, dtype=np.int64).reshape(-1)
    out = np.ones(whole.size, dtype=bool)
    left = whole.copy()
    live = np.flatnonzero(left > 0)
    while live.size:
        c = np.minimum(left[live], _EXP1_CHUNK)
        coins = bernoulli_exp(1, 1, int(c.sum()))
        starts = np.concatenate([[0], np.cumsum(c)[:-1]])
        ok = np.logical_and.reduceat(coins, starts)
        out[live[~ok]] = False
        left[live] -= c
        live = live[ok & (left[live] > 0)]
    return out


def _isqrt_floor(f: Fraction) -> int:
    from math import isqrt
    return isqrt(f.numerator // f.denominator)


def poisson_exp(c, g_num: int, g_den: int, size: int) -> np.ndarray:
    """Poisson(lam) with lam = c * exp(-g_num/g_den), rational 0 < c < 2, exactly.

    c <= 1/2 (polya's rates r <= 1/2): proposal K = the number of successes of the coin
    Bernoulli(c) AND Bernoulli(exp(-g)) (= Bernoulli(lam)) before its first failure,
    P(K = k) = (1 - lam) lam^k; accept with probability 1/k!, the product of the rational coins
    Bernoulli(1/j) for j = 2..k. The accepted K has P(k) proportional to lam^k/k!: Poisson(lam).
    Each round accepts with probability (1 - lam) e^lam >= e^(1/2)/2 > 0.82.

    1/2 < c < 2: the same with the coin Bernoulli(lam/2) and acceptance 2^(k-1)/k! (<= 1 for
    every k: 1/2, 1, 1, 2/3, 1/3, ...: Bernoulli(1/2) for k = 0 and Bernoulli(2/j) for j = 3..k);
    P(k) proportional to (lam/2)^k 2^(k-1)/k!, i.e. to lam^k/k!. Accepts with probability
    (1 - lam/2) e^lam / 2 >= 1/2."""
    c = Fraction(c)
    if not 0 < c < 2:
        raise ValueError("poisson_exp: need 0 < c < 2")
    small = c <= Fraction(1, 2)
    coin = c if small else c / 2
    size = int(size)
    # g_num may be one value or one per element (polya batches all its blocks in one call)
    g_all = np.broadcast_to(np.asarray(g_num, dtype=np.int64), (size,))
    out = np.empty(size, dtype=np.int64)
    todo = np.arange(size)
    while todo.size:
        k = np.zeros(todo.size, dtype=np.int64)
        live = np.arange(todo.size)
        while live.size:
            hit = R.bernoulli_rational(coin.numerator, coin.denominator, live.size)
            hit[hit] = bernoulli_exp(g_all[todo[live[hit]]], g_den)
            live = live[hit]
            k[live] += 1
        if small:                                      # accept with 1/k!: Bernoulli(1/j), j = 2..k
            acc, j, num = np.ones(k.size, dtype=bool), 2, 1
        else:                                          # 2^(k-1)/k!: 1/2 at k = 0, 2/j for j = 3..k
            acc, j, num = np.where(k == 0, R.random_below(2, k.size) == 0, True), 3, 2
        live = np.flatnonzero(acc & (k >= j))
        while live.size:
            ok = R.bernoulli_rational(num, j, live.size)
            acc[live[~ok]] = False
            live = live[ok]
            j += 1
            live = live[k[live] >= j]
        out[todo[acc]] = k[acc]
        todo = todo[~acc]
    return out


def polya_blocks(scale) -> int:
    """The number of doubling blocks polya() samples: the least J + 1 with
    q^(2^(J+1)) <= 2^-64, i.e. 2^(J+1) / scale >= 64 ln 2 (checked as >= 45 > 44.37)."""
    f = _frac(scale, "scale")
    j = 0
    while Fraction(1 << (j + 1)) < 45 * f:
        j += 1
    return j + 1


def polya(r, scale, size: int) -> np.ndarray:
    """NB(r, q), q = exp(-1/scale), rational 0 < r <= 1 (int64): P(k) = C(k+r-1, k) (1-q)^r q^k,
    mean r q / (1 - q). See the module docstring for the method and its 2^-63 truncation."""
    r = Fraction(r)
    if not 0 < r <= 1:
        raise ValueError("polya: need 0 < r <= 1")
    f = _frac(scale, "scale")
    size = int(size)
    if r == 1:                                   # NB(1, q) is the geometric: exact, and 10x faster
        return one_sided_geometric(f, size)
    a, b = f.numerator, f.denominator            # q^k = exp(-k b / a)
    # every block j (k in [2^j, 2^(j+1))) of every element in ONE batch: the rejection rounds'
    # cost is mostly per call. Dominating rate r q^lo / lo per point, lo points: Poisson(r q^lo)
    blocks = polya_blocks(f)
    lo = np.repeat(np.left_shift(1, np.arange(blocks, dtype=np.int64)), size)    # block-major
    m = poisson_exp(r, lo * b, a, blocks * size)
    owner = np.repeat(np.tile(np.arange(size), blocks), m)
    lo_ev = np.repeat(lo, m)
    k = lo_ev + R.random_below(lo_ev)
    # thin to the true rate r q^k / k: keep with (lo / k) q^(k - lo)
    keep = R.bernoulli_rational(lo_ev, k) & bernoulli_exp((k - lo_ev) * b, a)
    out = np.zeros(size, dtype=np.int64)
    np.add.at(out, owner[keep], k[keep])
    return out


def polya_difference(r, scale, size: int) -> np.ndarray:
    """NB(r, q) - NB(r, q): one node's share of distributed discrete Laplace noise."""
    # one batch of 2 size: the rejection rounds' cost is mostly per call, not per element
    both = polya(r, scale, 2 * int(size))
    return both[:int(size)] - both[int(size):]
