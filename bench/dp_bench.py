"""Differential-privacy benchmark lines over real node processes (3 nodes, docs/privacy.md):

BENCH name=dp_histogram engine=<e> parley_s=<s> node_s=<s> records=1000000 bins=10000 rounds=<n>
    10^6 records held by the three nodes (a third each) into 10^4 bins: each node bins its own
    records locally (plaintext, its own data; unit record, so one record moves one count by 1),
    secret-shares its histogram, the nodes add the three and add distributed discrete Laplace
    noise of scale 1/epsilon (epsilon 1) in one round; the 10^4 noisy counts are opened.
BENCH name=dp_winner engine=<e> parley_s=<s> node_s=<s> candidates=1000 rounds=<n>
    report-noisy-max over 1000 candidates' counts: one-sided geometric noise of scale 1 sampled in
    MPC from shared random bits, then the argmax tournament; only the index is opened.
BENCH name=dp_noise_mpc engine=replicated3 parley_s=<s> node_s=<s> n=10000 lambda=<L> delta=<d> rounds=<n>
    10^4 discrete Laplace values of scale 10 sampled inside MPC from shared random bits
    (protocols/noise.py: geometric digits as [r < T_k] for lambda-bit shared r), added to an input
    of zeros and opened; delta is what one value's implemented pmf adds at epsilon 1/10.
All check the result against the plaintext (histogram: every count within 25 of the exact one,
false alarm < 10^4 * 2 e^-26 = 1e-7; winner: a 60-vote lead, false alarm < 1000 e^-60; noise: the
sample mean within 6 standard errors of 0 and the sample variance within 15% of the discrete
Laplace's, false alarm below 1e-6)."""
from __future__ import annotations

import math
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from mpcnode.computation import dp as dpm
from mpcnode.computation.builder import CircuitBuilder
from parley.v1 import circuit_pb2 as cpb

from .parley_bench import RECIPIENT, Cluster, Figures, Setup, run_circuit


def histogram_circuit(parties: list[str], bins: int, records: int):
    b = CircuitBuilder("bench-dp-histogram")
    hs = [b.input(f"h{i}", p, bins, 0, records, key="h", dataset="bench-dp-histogram")
          for i, p in enumerate(parties)]
    total = hs[0]
    for h in hs[1:]:
        total = b.add(total, h)
    noise = cpb.DpNoise(mechanism="discrete-laplace", source="distributed", scale="1", min_live=len(parties))
    noisy = dpm.noise_op(b, total, noise)
    b.output("histogram", noisy, [RECIPIENT])
    b.c.outputs[-1].dp.CopyFrom(cpb.DpRelease(unit="record", relation="add-remove", epsilon="1", rho="1/2",
                                              sensitivity=1, mechanism="discrete-laplace", scale="1"))
    return b


async def run_histogram(setup: Setup, records: int = 1_000_000, bins: int = 10_000) -> Figures:
    rng = np.random.default_rng(5)
    parties = setup.parties
    with tempfile.TemporaryDirectory(prefix="parley-bench-dp-") as tmp:
        work = Path(tmp)
        exact = np.zeros(bins, dtype=np.int64)
        files = {}
        for i, p in enumerate(parties):
            recs = rng.integers(0, bins, records // len(parties) + (i < records % len(parties)))
            h = np.bincount(recs, minlength=bins).astype(np.int64)      # the node's own, local binning
            exact += h
            np.savez(work / f"{p}.npz", h=h)
            files[p] = {"bench-dp-histogram": work / f"{p}.npz"}
        async with Cluster(work, {}, setup=setup, party_inputs=files) as cluster:
            figs = await cluster.run("bench-dp-histogram", histogram_circuit(parties, bins, records).build(),
                                     "histogram")
        err = np.abs(np.asarray(figs.result) - exact)
        if err.max() > 25 or int(exact.sum()) != records:
            raise RuntimeError(f"dp_histogram: a count is {err.max()} away from the exact one")
        return figs


async def run_winner(setup: Setup, candidates: int = 1000) -> Figures:
    rng = np.random.default_rng(6)
    counts = rng.integers(0, 1000, candidates).astype(np.int64)
    lead = int(rng.integers(0, candidates))
    counts[lead] = counts.max() + 60
    b = CircuitBuilder("bench-dp-winner")
    x = b.input("counts", setup.parties[0], candidates, 0, 1 << 20)
    noise = cpb.DpNoise(mechanism="one-sided-geometric", source="mpc", scale="1")
    nhi = dpm.noise_bound(noise)[1]
    noisy = dpm.noise_op(b, x, noise)
    b.output("winner", b.argmax(noisy, dpm.bits_for((1 << 20) + nhi))[0], [RECIPIENT])
    b.c.outputs[-1].dp.CopyFrom(cpb.DpRelease(unit="client", relation="add-remove", epsilon="1", rho="1/2",
                                              sensitivity=1, mechanism="one-sided-geometric", scale="1"))
    figs = await run_circuit(b.build(), {"counts": counts}, "winner", setup)
    if figs.result != [lead]:
        raise RuntimeError(f"dp_winner: {figs.result} won, not the leader {lead}")
    return figs


NOISE_SCALE = "10"


async def run_noise_mpc(setup: Setup, n: int = 10_000) -> tuple[Figures, int, float]:
    """(figures, lambda, delta): n in-MPC discrete Laplace samples of scale NOISE_SCALE."""
    from mpcnode.protocols import noise as Nz
    b = CircuitBuilder("bench-dp-noise-mpc")
    x = b.input("zeros", setup.parties[0], n, 0, 0)
    noise = cpb.DpNoise(mechanism="discrete-laplace", source="mpc", scale=NOISE_SCALE)
    b.output("noisy", dpm.noise_op(b, x, noise), [RECIPIENT])
    eps = 1 / Fraction(NOISE_SCALE)
    b.c.outputs[-1].dp.CopyFrom(cpb.DpRelease(unit="record", relation="add-remove", epsilon=str(eps),
                                              rho=str(eps * eps / 2), sensitivity=1, mechanism="discrete-laplace",
                                              scale=NOISE_SCALE))
    figs = await run_circuit(b.build(), {"zeros": np.zeros(n, dtype=np.int64)}, "noisy", setup)
    got = np.asarray(figs.result, dtype=np.float64)
    q = math.exp(-1 / float(NOISE_SCALE))
    var = 2 * q / (1 - q) ** 2
    # 15% is about 6.7 standard errors of a sample variance at n = 10^4 (Laplace kurtosis 6:
    # relative error sqrt(5 / n)); a --scale'd smaller run keeps the same number of errors
    if abs(got.mean()) > 6 * math.sqrt(var / n) or abs(got.var() / var - 1) > 0.15 * max(1.0, math.sqrt(1e4 / n)):
        raise RuntimeError(f"dp_noise_mpc: mean {got.mean():.3f}, variance {got.var():.2f} (expected 0, {var:.2f})")
    plan = Nz.mpc_plan(NOISE_SCALE)
    return figs, plan.lam, float(plan.delta("discrete-laplace", eps))
