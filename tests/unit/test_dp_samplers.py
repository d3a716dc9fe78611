"""The exact DP samplers (mpcnode/dp/samplers.py) and the accounting (mpcnode/dp/accounting.py).

(a) deterministic: each sampler's IMPLEMENTED pmf, computed from its structure (the coin
probabilities the code uses, which are exact rationals or exact exp(-rational) coins) at 60
digits, equals the target pmf to 1e-40; the Polya truncation is within TRUNCATION_TV.
(b) statistical: 10^5 samples each, chi-square at false-alarm rate 10^-6 (tests/unit/dp_stats.py).
"""
from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction as F

import numpy as np
import pytest

from mpcnode import randomness as R
from mpcnode.dp import accounting as A
from mpcnode.dp import samplers as S
from parley.v1 import circuit_pb2 as cpb
from tests.unit.dp_stats import chi_square_ok

N = 100_000


def D(x) -> Decimal:
    x = F(x)
    return Decimal(x.numerator) / Decimal(x.denominator)


def dlap(scale):
    q = math.exp(-1 / float(scale))
    return lambda z: (1 - q) / (1 + q) * q ** abs(z)


def dgauss(sigma2):
    s = float(sigma2)
    w = int(12 * math.sqrt(s)) + 2
    norm = sum(math.exp(-x * x / (2 * s)) for x in range(-w, w + 1))
    return lambda z: math.exp(-z * z / (2 * s)) / norm


# ---- (a) implemented pmf against the target --------------------------------------------------

def test_bernoulli_exp_is_algorithm_1():
    """P[K odd] for Algorithm 1's counter (P[K > k] = gamma^k / k!, the code's coins
    Bernoulli(gamma / k)) is exp(-gamma); gamma > 1 splits into exp(-1) coins and the remainder."""
    with localcontext() as c:
        c.prec = 60
        for g in (F(0), F(1, 3), F(1), F(7, 5), F(5, 2)):
            whole = max(math.ceil(g) - 1, 0)
            frac = g - whole
            p_gt = [F(1)]
            for k in range(1, 60):
                p_gt.append(p_gt[-1] * frac / k)                 # P[K > k]
            odd = sum(p_gt[k - 1] - p_gt[k] for k in range(1, 60, 2))
            implemented = D(odd) * (-Decimal(1)).exp() ** whole
            assert abs(implemented - (-D(g)).exp()) < Decimal(10) ** -40


@pytest.mark.parametrize("scale", [F(1), F(3, 2), F(10), F(7, 3)])
def test_discrete_laplace_structure(scale):
    """Algorithm 2 as coded: U uniform below t kept with exp(-U/t), X = U + t V with V geometric
    of exp(-1), Y = floor(X / s), a fair sign, (B=1, Y=0) rejected; s/t = 1/scale."""
    t, s = scale.numerator, scale.denominator
    with localcontext() as c:
        c.prec = 60
        e1 = (-Decimal(1)).exp()
        pu = [(-Decimal(u) / t).exp() / t for u in range(t)]        # U accepted, unnormalized
        acc = sum(pu)
        top = 200 * t * s + 200
        py = {}
        for x in range(top):
            u, v = x % t, x // t
            p = pu[u] / acc * (1 - e1) * e1 ** v
            py[x // s] = py.get(x // s, Decimal(0)) + p
        keep = 1 - py[0] / 2
        q = (-Decimal(s) / t).exp()
        for z in range(-30, 31):
            impl = (py[abs(z)] / 2 if z else py[0] / 2) / keep
            target = (1 - q) / (1 + q) * q ** abs(z)
            assert abs(impl - target) < Decimal(10) ** -40


@pytest.mark.parametrize("sigma2", [F(1), F(7, 3), F(50)])
def test_discrete_gaussian_structure(sigma2):
    """Algorithm 3 as coded: Y discrete Laplace of t = floor(sigma) + 1, kept with
    exp(-(|Y| - sigma2/t)^2 / (2 sigma2)), is the discrete Gaussian."""
    t = math.isqrt(sigma2.numerator // sigma2.denominator) + 1
    with localcontext() as c:
        c.prec = 60
        q = (-Decimal(1) / t).exp()
        w = 40 * t
        zs = range(-w, w + 1)
        impl = [(1 - q) / (1 + q) * q ** abs(z) * (-(D(abs(z) - sigma2 / t) ** 2) / (2 * D(sigma2))).exp() for z in zs]
        tgt = [(-D(F(z * z) / (2 * sigma2))).exp() for z in zs]
        si, st = sum(impl), sum(tgt)
        for a, b in zip(impl, tgt):
            assert abs(a / si - b / st) < Decimal(10) ** -40


def test_poisson_structure():
    """poisson_exp: c <= 1/2, geometric proposal of lam accepted with 1/k!; else proposal of
    lam/2 accepted with 2^(k-1)/k!: both Poisson(lam)."""
    with localcontext() as c:
        c.prec = 60
        for cc, g in ((F(1), F(0)), (F(1, 2), F(3, 10)), (F(1, 3), F(0)), (F(3, 2), F(1))):
            lam = D(cc) * (-D(g)).exp()
            impl = []
            for k in range(80):
                if cc <= F(1, 2):
                    impl.append((1 - lam) * lam ** k / math.factorial(k))
                    continue
                acc = Decimal(1) / 2 if k == 0 else D(F(2) ** (k - 1) / math.factorial(k))
                impl.append((1 - lam / 2) * (lam / 2) ** k * acc)
            tot = sum(impl)
            for k in range(30):
                assert abs(impl[k] / tot - (-lam).exp() * lam ** k / math.factorial(k)) < Decimal(10) ** -40


@pytest.mark.parametrize("scale", [F(1, 2), F(1), F(10), F(1000)])
def test_polya_truncation_within_tv(scale):
    """The Poisson rates polya drops (k >= 2^J) sum to at most q^L / (L (1 - q)) <= 2^-63, which
    bounds the probability that the truncated compound Poisson differs from NB(r, q)."""
    blocks = S.polya_blocks(scale)
    lo = 1 << blocks
    with localcontext() as c:
        c.prec = 60
        q = (-1 / D(scale)).exp()
        dropped = q ** lo / (lo * (1 - q))
        assert dropped <= D(S.TRUNCATION_TV)


# ---- (b) statistical --------------------------------------------------------------------------

def test_random_below_and_rational_coins_uniform():
    x = R.random_below(7, N)
    ok, stat, crit = chi_square_ok(x, lambda k: 1 / 7, 0, 6)
    assert ok, (stat, crit)
    b = R.bernoulli_rational(3, 7, N)
    ok, stat, crit = chi_square_ok(b.astype(np.int64), lambda k: 3 / 7 if k else 4 / 7, 0, 1)
    assert ok, (stat, crit)
    mixed = R.random_below(np.array([1, 2, 1 << 62] * 10))
    assert mixed.min() >= 0 and (mixed[0::3] == 0).all() and (mixed[1::3] < 2).all()


@pytest.mark.parametrize("scale", [F(3, 2), F(10)])
def test_discrete_laplace_fits(scale):
    x = S.discrete_laplace(scale, N)
    assert x.dtype == np.int64
    ok, stat, crit = chi_square_ok(x, dlap(scale), -int(12 * scale) - 5, int(12 * scale) + 5)
    assert ok, (stat, crit)


@pytest.mark.parametrize("sigma2", [F(7, 3), F(50)])
def test_discrete_gaussian_fits(sigma2):
    x = S.discrete_gaussian(sigma2, N)
    w = int(6 * math.sqrt(sigma2)) + 2
    ok, stat, crit = chi_square_ok(x, dgauss(sigma2), -w, w)
    assert ok, (stat, crit)


def test_one_sided_geometric_fits():
    q = math.exp(-1 / 4)
    x = S.one_sided_geometric(F(4), N)
    ok, stat, crit = chi_square_ok(x, lambda g: (1 - q) * q ** g, 0, 60)
    assert ok, (stat, crit)


@pytest.mark.parametrize("c", [F(1, 2), F(3, 2)])
def test_poisson_fits(c):
    lam = float(c) * math.exp(-0.3)
    x = S.poisson_exp(c, 3, 10, N)
    ok, stat, crit = chi_square_ok(x, lambda k: math.exp(-lam) * lam ** k / math.factorial(k), 0, 12)
    assert ok, (stat, crit)


def test_polya_fits_negative_binomial():
    r, scale = F(1, 2), F(5)
    q = math.exp(-1 / 5)

    def nb(k):
        return math.exp(math.lgamma(k + 0.5) - math.lgamma(0.5) - math.lgamma(k + 1)) * (1 - q) ** 0.5 * q ** k
    x = S.polya(r, scale, N)
    ok, stat, crit = chi_square_ok(x, nb, 0, 80)
    assert ok, (stat, crit)


def test_two_polya_halves_sum_to_discrete_laplace():
    """The distributed calibration's identity: h = 2 parts NB(1/2) - NB(1/2) sum to DLap."""
    x = S.polya_difference(F(1, 2), F(5), N) + S.polya_difference(F(1, 2), F(5), N)
    ok, stat, crit = chi_square_ok(x, dlap(5), -70, 70)
    assert ok, (stat, crit)


def test_samplers_refuse_bad_parameters():
    with pytest.raises(ValueError):
        S.discrete_laplace(F(0), 3)
    with pytest.raises(ValueError):
        S.discrete_gaussian(F(-1), 3)
    with pytest.raises(ValueError):
        S.polya(F(3, 2), F(1), 3)


# ---- accounting --------------------------------------------------------------------------------

def test_accounting_exact_parameters():
    assert A.rho_of_pure("1") == F(1, 2) and A.rho_of_pure("0.1") == F(1, 200)
    assert A.laplace_scale("0.5", "2") == F(4)
    assert A.gaussian_sigma2("1/8", "1") == F(4)
    assert A.eps_delta_of_rho(F(1, 2), 1e-6) == pytest.approx(0.5 + 2 * math.sqrt(0.5 * math.log(1e6)))
    with pytest.raises(ValueError):
        A.laplace_scale("1.5.2", 1)


@pytest.mark.parametrize("scale", [F(1, 2), F(3), F(10)])
def test_std_and_interval_from_the_pmf(scale):
    q = math.exp(-1 / float(scale))
    pmf = dlap(scale)
    var = sum(z * z * pmf(z) for z in range(-2000, 2001))
    assert A.std_of("discrete-laplace", scale) == pytest.approx(math.sqrt(var), rel=1e-9)
    w = int(A.interval95("discrete-laplace", scale))
    inside = lambda w: sum(pmf(z) for z in range(-w, w + 1))
    assert inside(w) >= 0.95 and (w == 0 or inside(w - 1) < 0.95)
    g = int(A.interval95("one-sided-geometric", scale))
    assert 1 - q ** (g + 1) >= 0.95 and (g == 0 or 1 - q ** g < 0.95)
    wg = int(A.interval95("discrete-gaussian", scale))
    pg = dgauss(scale)
    assert sum(pg(z) for z in range(-wg, wg + 1)) >= 0.95


def test_release_and_job_rho():
    c = cpb.Circuit()
    o = c.outputs.add()
    o.dp.epsilon, o.dp.mechanism = "1", "discrete-laplace"
    o = c.outputs.add()
    o.dp.mechanism, o.dp.sensitivity, o.dp.scale = "discrete-gaussian", 1, "4"
    o = c.outputs.add()
    o.dp.epsilon, o.dp.post_processing = "3", True
    c.outputs.add()                                     # no dp
    assert [A.release_rho(x.dp) for x in c.outputs[:3]] == [F(1, 2), F(1, 8), 0]
    assert A.job_rho(c) == pytest.approx(0.625)
