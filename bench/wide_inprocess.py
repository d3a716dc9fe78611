"""In-process timing of the wide replicated3 engine (Z_2^128, engines/replicated3_wide.py): all
three parties in one process over the in-memory exchange, so the figures are the engine's compute
only, summed over the three parties. `python -m bench.wide_inprocess [--mul N] [--norm N] [--reps R]`.

Prints, per operation, the best wall and process CPU time of R repetitions (after one warm-up:
a process's first call pays for fresh pages), rounds, bytes sent per party, and the largest error
of the result against exact integer math (a truncation errs by less than 2 units of the last
place; normalize must give x v in [2^(bits-1), 2^bits))."""
from __future__ import annotations

import argparse
import asyncio

import numpy as np

from mpcnode import ring128 as R
from mpcnode.engines import Replicated3WideEngine
from mpcnode.exchange import MemoryNetwork

from .replicated3_inprocess import _measure

F = 16          # fractional bits of the fixed-point products
BITS = 62       # normalize's operand bound


async def _timed(engines, name: str, make, reps: int) -> tuple[dict, list]:
    """One warm-up call (a process's first call pays for fresh pages), then the narrow engine's
    bench measurement (bench/replicated3_inprocess.py): (figures, the last repetition's results)."""
    await asyncio.gather(*(make(e, f"{name}-warm") for e in engines))
    figures = await _measure(engines, name, make, reps)
    result = figures.pop("result")
    figures["wall_s"], figures["cpu_s"] = round(figures["wall_s"], 3), round(figures["cpu_s"], 3)
    return figures, result


async def run(n_mul: int, n_norm: int, reps: int) -> None:
    net = MemoryNetwork(3, timeout_s=600)
    engines = [Replicated3WideEngine(net.exchange(i)) for i in range(3)]
    rng = np.random.default_rng(7)
    a = rng.integers(-(1 << 30), 1 << 30, n_mul)          # fixed-point operands, |a b| < 2^60
    b = rng.integers(-(1 << 30), 1 << 30, n_mul)
    x = rng.integers(1, 1 << BITS, n_norm)

    async def setup(e):
        await e.establish()
        vals = {0: e.encode(a), 1: e.encode(b), 2: e.encode(x)}
        return await e.share_inputs("in", {e.party: vals[e.party]}, {0: (n_mul,), 1: (n_mul,), 2: (n_norm,)})

    shares = dict(zip(engines, await asyncio.gather(*(setup(e) for e in engines))))

    async def opened(e, label, share):
        return await e.open(label, share, purpose="output")

    stats, res = await _timed(engines, "mt", lambda e, l: e.mul_trunc(l, shares[e][0], shares[e][1], F, 61), reps)
    got = R.to_int64((await asyncio.gather(*(opened(e, "o-mt", r) for e, r in zip(engines, res))))[0])
    exact = a.astype(object) * b.astype(object) / (1 << F)
    err = float(np.max(np.abs(got.astype(object) - exact)))
    print(f"mul_trunc n={n_mul} f={F}: {stats} max_err_ulp={err:.3f}")
    stats, res = await _timed(engines, "nz", lambda e, l: e.normalize(l, shares[e][2], BITS), reps)
    v = R.to_int64((await asyncio.gather(*(opened(e, "o-nz", r) for e, r in zip(engines, res))))[0])
    prod = x.astype(object) * v.astype(object)
    ok = bool(np.all((prod >= 1 << (BITS - 1)) & (prod < 1 << BITS)))
    print(f"normalize n={n_norm} bits={BITS}: {stats} all_in_range={ok}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mul", type=int, default=1_000_000, help="mul_trunc batch size (default 10^6)")
    ap.add_argument("--norm", type=int, default=100_000, help="normalize batch size (default 10^5)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions after one warm-up (default 3)")
    args = ap.parse_args()
    asyncio.run(run(args.mul, args.norm, args.reps))


if __name__ == "__main__":
    main()
