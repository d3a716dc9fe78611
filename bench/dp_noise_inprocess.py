"""In-process timing of the DP noise protocols (mpcnode/protocols/noise.py): all three parties in
one process over the in-memory exchange, so the wall time is the three parties' compute summed
(no network). `python -m bench.dp_noise_inprocess [--n N] [--scale S]` prints

BENCH name=dp_noise_mpc engine=replicated3 transport=memory parley_s=<s> n=<N> lambda=<L> delta=<d> bytes_per_party=<b>
BENCH name=dp_noise_distributed engine=replicated3 transport=memory parley_s=<s> n=<N> sampler_s=<s>

delta is the (epsilon = 1) delta one in-MPC noise value adds (noise.MpcPlan.delta); sampler_s is
one node's local Polya sampling for its part (min_live = 3, t = 1: r = 1/2). `measure` is the
function bench/ callers use."""
from __future__ import annotations

import argparse
import asyncio
import time
from fractions import Fraction

import numpy as np

from mpcnode import replicated
from mpcnode.dp import samplers
from mpcnode.engines import Replicated3Engine
from mpcnode.exchange import MemoryNetwork
from mpcnode.protocols import noise as Nz
from parley.v1 import circuit_pb2 as cpb


def measure(n: int = 10_000, scale: str = "10", source: str = "mpc", reps: int = 2) -> dict:
    """Best-of-`reps` wall seconds of add_noise on n values over three in-memory replicated3 parties."""
    x = replicated.share(replicated.encode(np.zeros(n, dtype=np.int64)))
    net = MemoryNetwork(3, timeout_s=600)
    engines = [Replicated3Engine(net.exchange(i), 1) for i in range(3)]
    noise = cpb.DpNoise(mechanism="discrete-laplace", source=source, scale=scale, min_live=3)
    walls, sent = [], []

    async def run():
        await asyncio.gather(*(e.establish() for e in engines))
        for rep in range(reps):
            w, b = time.perf_counter(), engines[0].exchange.stats.bytes_sent
            await asyncio.gather(*(Nz.add_noise(e, f"b{rep}", x[e.party], noise) for e in engines))
            walls.append(time.perf_counter() - w)
            sent.append(engines[0].exchange.stats.bytes_sent - b)
    asyncio.run(run())
    plan = Nz.mpc_plan(scale)
    return {"parley_s": min(walls), "n": n, "lambda": plan.lam,
            "delta": float(plan.delta("discrete-laplace", 1)), "bytes_per_party": sent[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--scale", default="10")
    args = ap.parse_args()
    m = measure(args.n, args.scale, "mpc")
    print(f"BENCH name=dp_noise_mpc engine=replicated3 transport=memory parley_s={m['parley_s']:.3f} "
          f"n={m['n']} lambda={m['lambda']} delta={m['delta']:.2e} bytes_per_party={m['bytes_per_party']}")
    d = measure(args.n, args.scale, "distributed")
    w = time.perf_counter()
    samplers.polya_difference(Fraction(1, 2), Fraction(args.scale), args.n)
    s = time.perf_counter() - w
    print(f"BENCH name=dp_noise_distributed engine=replicated3 transport=memory parley_s={d['parley_s']:.3f} "
          f"n={args.n} sampler_s={s:.3f}")


if __name__ == "__main__":
    main()
