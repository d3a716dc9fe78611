"""The exact DP samplers (mpcnode/dp/samplers.py) and the zCDP accounting (mpcnode/dp/accounting.py).

(a) deterministic: the coin structure of each sampler, evaluated with exact rationals, against the
target pmf; (b) statistical: >= 10^5 samples per sampler, chi-square with the fixed decision rule
of tests/unit/dp_stats.py (false-alarm rate ~1e-6 per test); (c) the distributed calibration."""
from __future__ import annotations

import itertools
import math
import time
from decimal import Decimal, localcontext
from fractions import Fraction as F

import numpy as np
import pytest

from mpcnode import randomness as R
from mpcnode.dp import accounting as A
from mpcnode.dp import samplers as S
from parley.v1 import circuit_pb2 as cpb
from tests.unit import dp_stats as st

N = 100_000


# ---- (a) deterministic: implemented pmfs from the rational coins --------------------------------

@pytest.mark.parametrize("gamma", [F(0), F(1, 3), F(1), F(7, 5)])
def test_bernoulli_exp_structure_is_exp(gamma) -> None:
    """Algorithm 1 on gamma in [0, 1]: P(final K = k) = gamma^(k-1)/(k-1)! (1 - gamma/k) from its
    coins Bernoulli(gamma/K); P(K odd), summed exactly to k = 40, is within gamma^40/40! of
    exp(-gamma) (the rest of the series). gamma > 1 multiplies by exact exp(-1) factors."""
    whole = max(math.ceil(gamma) - 1, 0)
    g = gamma - whole
    p, reach = F(0), F(1)
    for k in range(1, 41):
        stop = reach * (1 - g / k)
        if k % 2:
            p += stop
        reach *= g / k
    with localcontext() as ctx:
        ctx.prec = 50
        target = (-Decimal(g.numerator) / Decimal(g.denominator)).exp()
        assert abs(Decimal(p.numerator) / Decimal(p.denominator) - target) <= Decimal(reach.numerator) / reach.denominator + Decimal(10) ** -45


def test_poisson_acceptance_gives_poisson_exactly() -> None:
    """poisson_exp: proposal (lam/2)^k (1 - lam/2), acceptance coins Bernoulli(1/2) at k = 0 and
    Bernoulli(2/j), j = 3..k: the accepted pmf is proportional to lam^k / k!, exactly."""
    lam = F(3, 4)
    acc = [F(1, 2)] + [math.prod((F(2, j) for j in range(3, k + 1)), start=F(1)) for k in range(1, 40)]
    w = [(1 - lam / 2) * (lam / 2) ** k * acc[k] for k in range(40)]
    ratio = [w[k] / (lam ** k / math.factorial(k)) for k in range(40)]
    assert len(set(ratio)) == 1 and all(a <= 1 for a in acc)


def test_polya_blocks_cover_the_tail() -> None:
    for scale in [F(1, 3), F(1), F(5, 2), F(100), F(1000, 7)]:
        J = S.polya_blocks(scale)
        assert F(1 << J) >= 45 * scale > F(1 << (J - 1)) or J == 1
        # q^(2^J) <= 2^-64 with q = e^(-1/scale): 2^J/scale >= 45 > 64 ln 2
        assert F(1 << J) / scale >= 45 and 45 > 64 * math.log(2)


# ---- (b) statistical: >= 10^5 samples, chi-square, false alarm ~1e-6 ------------------------------

def test_random_below_and_rational_coins() -> None:
    x = R.random_below(7, 7 * 20000)
    assert st.chi2_z(x, lambda k: 1 / 7 if 0 <= k < 7 else 0.0, 0, 6) < st.Z_ALARM
    b = R.bernoulli_rational(np.array([0, 3, 5]), np.array([4, 4, 5]))
    assert b.tolist()[0] is False and b.tolist()[2] is True
    with pytest.raises(ValueError):
        R.random_below(0, 3)


@pytest.mark.parametrize("gamma", [F(1, 3), F(1), F(5, 2)])
def test_bernoulli_exp_frequency(gamma) -> None:
    b = S.bernoulli_exp(gamma.numerator, gamma.denominator, N)
    p = math.exp(-gamma)
    z = (b.sum() - N * p) / math.sqrt(N * p * (1 - p))
    assert abs(z) < 5.3              # two-sided p ~ 1.2e-7


@pytest.mark.parametrize("scale", [F(1), F(5, 2), F(20)])
def test_discrete_laplace(scale) -> None:
    w = int(4 * scale) + 4
    assert st.chi2_z(S.discrete_laplace(scale, N), st.dlap_pmf(float(scale)), -w, w) < st.Z_ALARM


@pytest.mark.parametrize("sigma2", [F(1, 2), F(10), F(1000, 3)])
def test_discrete_gaussian(sigma2) -> None:
    w = int(3 * math.sqrt(sigma2)) + 1
    assert st.chi2_z(S.discrete_gaussian(sigma2, N), st.dgauss_pmf(float(sigma2)), -w, w) < st.Z_ALARM


@pytest.mark.parametrize("scale", [F(1, 2), F(3)])
def test_one_sided_geometric(scale) -> None:
    assert st.chi2_z(S.one_sided_geometric(scale, N), st.geo_pmf(float(scale)), 0, int(6 * scale) + 3) < st.Z_ALARM


@pytest.mark.parametrize("lam,g", [(F(1), F(0)), (F(3, 2), F(1, 2)), (F(1, 3), F(2))])
def test_poisson(lam, g) -> None:
    mean = float(lam) * math.exp(-g)
    x = S.poisson_exp(lam, g.numerator, g.denominator, N)
    assert st.chi2_z(x, st.poisson_pmf(mean), 0, 4) < st.Z_ALARM


@pytest.mark.parametrize("r,scale", [(F(1), F(2)), (F(1, 2), F(1)), (F(1, 3), F(7, 2))])
def test_polya(r, scale) -> None:
    x = S.polya(r, scale, N)
    assert st.chi2_z(x, st.nb_pmf(float(r), float(scale)), 0, int(5 * scale) + 2) < st.Z_ALARM


def test_polya_parts_sum_to_discrete_laplace() -> None:
    """Three parts polya_difference(1/3, s) sum to discrete_laplace(s): the distributed identity."""
    x = sum(S.polya_difference(F(1, 3), F(2), N) for _ in range(3))
    assert st.chi2_z(x, st.dlap_pmf(2.0), -10, 10) < st.Z_ALARM


def test_sampler_speed() -> None:
    """The distributed histogram needs 10^4 samples per node per job well under 0.1 s."""
    S.polya_difference(F(1, 2), F(1), 10_000)
    t0 = time.perf_counter()
    S.polya_difference(F(1, 2), F(1), 10_000)
    S.discrete_laplace(F(1), 10_000)
    assert time.perf_counter() - t0 < 0.5          # generous: 2 cores shared with other jobs


# ---- accounting ------------------------------------------------------------------------------------

def test_accounting_exact() -> None:
    assert A.rho_of_pure("1") == F(1, 2) and A.rho_of_pure("0.2") == F(1, 50)
    assert A.laplace_scale("0.5", 2) == 4 and A.gaussian_sigma2("1/2", 3) == 9
    assert abs(A.eps_delta_of_rho(0.5, 1e-6) - (0.5 + 2 * math.sqrt(0.5 * math.log(1e6)))) < 1e-12
    q = math.exp(-1)
    assert abs(A.std_of("discrete-laplace", 1) - math.sqrt(2 * q) / (1 - q)) < 1e-12
    w = A.interval95("discrete-laplace", 1)
    assert 2 * q ** (w + 1) / (1 + q) <= 0.05 < 2 * q ** w / (1 + q)
    c = cpb.Circuit()
    c.outputs.add(dp=cpb.DpRelease(epsilon="1", mechanism="discrete-laplace"))
    c.outputs.add(dp=cpb.DpRelease(rho="0.25", mechanism="discrete-gaussian"))
    c.outputs.add(dp=cpb.DpRelease(epsilon="1", post_processing=True))
    c.outputs.add()                                                       # not DP: no charge
    c.outputs.add(dp=cpb.DpRelease(mechanism="discrete-gaussian", sensitivity=2, scale="8"))
    assert A.job_rho(c) == 0.5 + 0.25 + 0.25


@pytest.mark.parametrize("live,min_live,t", [(3, 3, 1), (5, 4, 2), (7, 5, 3), (4, 3, 1)])
def test_every_coalition_leaves_the_full_noise(live, min_live, t) -> None:
    """(c) For every coalition of t of the live nodes (and every smaller live set down to
    min_live), the others' parts alone sum to NB(H/h) - NB(H/h) with H/h >= 1: discrete Laplace of
    the target scale plus independent noise."""
    for n_live in range(min_live, live + 1):
        p = A.distributed_share("discrete-laplace", "2", min_live, n_live, t=t)
        for coalition in itertools.combinations(range(n_live), t):
            honest = n_live - len(coalition)
            assert honest * p["r"] >= 1 and p["scale"] == 2
    with pytest.raises(ValueError, match="refusing"):
        A.distributed_share("discrete-laplace", "2", min_live, min_live - 1, t=t)
    with pytest.raises(ValueError, match="honest"):
        A.distributed_share("discrete-laplace", "2", t, live, t=t)
