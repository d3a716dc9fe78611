"""The noise protocols (mpcnode/protocols/noise.py) in-process over MemoryExchange, both engines.

(a) deterministic: the in-MPC geometric's thresholds and implemented pmf (exact rationals from
T_k / 2^lambda) against the target, with the TV bound the plan states;
(b) statistical: chi-square at false-alarm 10^-6 (tests/unit/dp_stats.py) on noise opened from
the protocol: 10^5 samples, except the in-MPC noise on Shamir (3*10^3 by default, about 15 s
per 10^4 there; PARLEY_DP_SLOW=1 runs 10^5);
(c) the coalition calibration: for every coalition of t nodes, the other nodes' noise alone.
"""
from __future__ import annotations

import itertools
import math
import os
from decimal import Decimal, localcontext
from fractions import Fraction as F

import numpy as np
import pytest

from mpcnode.dp import accounting as A
from mpcnode.protocols import noise as Nz
from parley.v1 import circuit_pb2 as cpb
from tests.conftest import ENGINES_UNDER_TEST
from tests.unit.dp_stats import chi_square_ok
from tests.unit.local_mpc import deal, mine, mpc

SLOW = os.environ.get("PARLEY_DP_SLOW") == "1"


def dlap(scale):
    q = math.exp(-1 / float(scale))
    return lambda z: (1 - q) / (1 + q) * q ** abs(z)


def opened_noise(engine: str, noise: cpb.DpNoise, count: int, fns=None):
    d = deal(np.zeros(count, dtype=np.int64), 3)

    async def body(e):
        fn = None if fns is None else fns.get(e.party)
        return await Nz.add_noise(e, "n", mine(e, d), noise, my_samples_fn=fn)
    out, _ = mpc(3, body, engine=engine)
    return out


# ---- (a) the in-MPC sampler's exact pmf ---------------------------------------------------------

@pytest.mark.parametrize("scale", [F(1, 2), F(1), F(10), F(100)])
def test_mpc_plan_thresholds_and_tv(scale):
    plan = Nz.mpc_plan(scale)
    lam = plan.lam
    with localcontext() as c:
        c.prec = 70
        q = (-Decimal(scale.denominator) / Decimal(scale.numerator)).exp()
        for k, t in enumerate(plan.thresholds):     # each T_k is p_k 2^lam rounded to nearest
            qk = q ** (1 << k)
            assert abs(Decimal(t) - qk / (1 + qk) * (1 << lam)) <= Decimal("0.5000001")
        assert q ** (1 << plan.k) <= Decimal(2) ** -lam        # the truncation point
        pmf = Nz.implemented_geometric_pmf(plan.thresholds, lam)
        assert sum(pmf) == 1 and len(pmf) == 1 << plan.k
        tv = (sum(abs(Decimal(p.numerator) / Decimal(p.denominator) - (1 - q) * q ** g) for g, p in enumerate(pmf))
              + q ** (1 << plan.k)) / 2
        assert tv <= Decimal(plan.tv.numerator) / Decimal(plan.tv.denominator)
    assert plan.tv < F(1, 1 << 40)
    assert plan.delta("discrete-laplace", 1) < F(1, 1 << 37)


def test_mpc_plan_refuses_bad_lambda():
    with pytest.raises(ValueError):
        Nz.mpc_plan(F(1), lam=70)


# ---- (b) statistics through the protocol --------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES_UNDER_TEST)
def test_mpc_discrete_laplace_fits(engine):
    count = 100_000 if SLOW or engine == "replicated3" else 3_000
    noise = cpb.DpNoise(mechanism="discrete-laplace", source="mpc", scale="3/2")
    out = opened_noise(engine, noise, count)
    ok, stat, crit = chi_square_ok(out, dlap(F(3, 2)), -25, 25)
    assert ok, (stat, crit)


def test_mpc_one_sided_geometric_fits():
    count = 100_000
    q = math.exp(-1 / 4)

    async def body(e):
        return await Nz.mpc_noise(e, "g", "one-sided-geometric", "4", count)
    out, _ = mpc(3, body, engine="replicated3")
    assert out.min() >= 0
    ok, stat, crit = chi_square_ok(out, lambda g: (1 - q) * q ** g, 0, 60)
    assert ok, (stat, crit)


def test_add_noise_keeps_the_value_and_shape():
    x = np.arange(12, dtype=np.int64).reshape(3, 4) * 1000
    d = deal(x, 3)
    noise = cpb.DpNoise(mechanism="discrete-laplace", source="mpc", scale="1/4")

    async def body(e):
        return await Nz.add_noise(e, "n", mine(e, d), noise)
    out, _ = mpc(3, body, engine="replicated3")
    assert out.shape == (3, 4) and np.abs(out - x).max() < 30


# ---- (c) distributed noise and the coalition calibration ------------------------------------------

def test_distributed_calibration_every_coalition():
    """For every n, t < n, min_live in t+1..n, live in min_live..n and every coalition of t live
    nodes: the honest nodes' Polya parts NB(r) - NB(r) sum to NB(R) - NB(R) with R >= 1, which is
    discrete Laplace(scale) plus independent noise (post-processing keeps epsilon-DP)."""
    for n in range(1, 8):
        for t in range(0, n):
            for min_live in range(t + 1, n + 1):
                for live in range(min_live, n + 1):
                    p = A.distributed_share("discrete-laplace", "2", min_live, live, t=t)
                    for coalition in itertools.combinations(range(live), t):
                        honest = live - len(coalition)
                        assert honest * p["r"] >= 1
                    assert (min_live - t) * p["r"] == 1          # the tight case is exactly DLap
                with pytest.raises(ValueError, match="only"):
                    A.distributed_share("discrete-laplace", "2", min_live, min_live - 1, t=t)
            if t:
                with pytest.raises(ValueError):
                    A.distributed_share("discrete-laplace", "2", t, n, t=t)    # no honest node left
    with pytest.raises(ValueError):
        A.distributed_share("discrete-gaussian", "2", 2, 3, t=1)


@pytest.mark.parametrize("engine", ENGINES_UNDER_TEST)
@pytest.mark.parametrize("coalition", [0, 1, 2])
def test_distributed_honest_parts_alone_are_discrete_laplace(engine, coalition):
    """Three live nodes, t = 1, min_live = 3 (h = 2, each part NB(1/2) - NB(1/2)); the colluding
    node subtracts its own part (here: adds none), and what the other two add alone fits DLap."""
    count = 100_000
    noise = cpb.DpNoise(mechanism="discrete-laplace", source="distributed", scale="5", min_live=3)
    seen = []

    def zero(params, n):
        seen.append(params)
        return np.zeros(n, dtype=np.int64)
    out = opened_noise(engine, noise, count, {coalition: zero})
    assert seen and seen[0]["r"] == F(1, 2)
    ok, stat, crit = chi_square_ok(out, dlap(5), -70, 70)
    assert ok, (stat, crit)


def test_distributed_min_live_unset_means_every_party():
    """min_live 0 (unset): all 3 parties, t = 1, so h = 2 and each part is NB(1/2) - NB(1/2)."""
    noise = cpb.DpNoise(mechanism="discrete-laplace", source="distributed", scale="5")
    seen = []

    def mine_fn(params, n):
        seen.append(params)
        return np.zeros(n, dtype=np.int64)
    out = opened_noise("replicated3", noise, 10, {0: mine_fn})
    assert seen[0]["r"] == F(1, 2) and seen[0]["honest"] == 2 and out.shape == (10,)


def test_distributed_refuses_too_few_live_nodes():
    noise = cpb.DpNoise(mechanism="discrete-laplace", source="distributed", scale="5", min_live=4)
    with pytest.raises(Exception, match="refusing"):
        opened_noise("replicated3", noise, 10)


# ---- report-noisy-max ---------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES_UNDER_TEST)
def test_noisy_argmax(engine):
    scores = np.array([3, 900, 5, 900, 2], dtype=np.int64)
    d = deal(scores, 3)
    noise = cpb.DpNoise(mechanism="one-sided-geometric", source="mpc", scale="2")

    async def body(e):
        return await Nz.noisy_argmax(e, "am", mine(e, d), noise, 12)
    out, _ = mpc(3, body, engine=engine)
    assert int(out.reshape(-1)[0]) in (1, 3)


def test_noisy_argmax_ties_and_refusals():
    """Zero-noise limit of the tie rule: with a tiny scale the noise is 0 with probability
    1 - e^-1000, and the first maximum wins."""
    d = deal(np.array([1, 7, 7, 0], dtype=np.int64), 3)
    noise = cpb.DpNoise(mechanism="one-sided-geometric", source="mpc", scale="1/1000")

    async def body(e):
        return await Nz.noisy_argmax(e, "am", mine(e, d), noise, 8)
    out, _ = mpc(3, body, engine="replicated3")
    assert int(out.reshape(-1)[0]) == 1
    bad = cpb.DpNoise(mechanism="discrete-laplace", source="distributed", scale="2")

    async def body2(e):
        return await Nz.noisy_argmax(e, "am", mine(e, d), bad, 8)
    with pytest.raises(Exception, match="one-sided-geometric"):
        mpc(3, body2, engine="replicated3")


@pytest.mark.parametrize("engine", ENGINES_UNDER_TEST)
def test_random_coins_thresholds(engine):
    """engine.random_coins: T = 0 never, T = 2^lam always, T/2^lam = 1/2 and 3/8 within 5 sigma
    over 5000 coins each (false alarm about 6e-7 per check)."""
    lam = 48
    t = np.array([0, 1 << lam, 1 << (lam - 1), 3 << (lam - 3)] * 5000)

    async def body(e):
        return await e.random_coins("c", t, lam)
    out, _ = mpc(3, body, engine=engine)
    freq = out.reshape(-1, 4).mean(axis=0)
    assert freq[0] == 0 and freq[1] == 1
    for f, p in ((freq[2], 0.5), (freq[3], 0.375)):
        assert abs(f - p) <= 5 * math.sqrt(p * (1 - p) / 5000)
