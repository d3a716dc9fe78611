"""In-process timing of the replicated3 engine: all three parties in one process over the in-memory
exchange (no network, no serialization), so the figures are the engine's compute only, summed
over the three parties. `python -m bench.replicated3_inprocess [--lt N] [--mul N] [--reps R]`.

Prints wall time and process CPU time per operation (CPU time is the better figure on a shared
machine) and the exchange's rounds and bytes per party."""
from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

from mpcnode import replicated
from mpcnode.engines import Replicated3Engine
from mpcnode.exchange import MemoryNetwork


async def _measure(engines, name: str, make, reps: int) -> dict:
    walls, cpus = [], []
    before = [(e.exchange.stats.rounds, e.exchange.stats.bytes_sent) for e in engines]
    result = None
    for rep in range(reps):
        w, c = time.perf_counter(), time.process_time()
        result = await asyncio.gather(*(make(e, f"{name}{rep}") for e in engines))
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    after = [(e.exchange.stats.rounds, e.exchange.stats.bytes_sent) for e in engines]
    return {"wall_s": min(walls), "cpu_s": min(cpus), "rounds": (after[0][0] - before[0][0]) // reps,
            "bytes_per_party": [(a[1] - b[1]) // reps for a, b in zip(after, before)], "result": result}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lt", type=int, default=100_000)
    ap.add_argument("--mul", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    a = rng.integers(-(1 << 32) + 1, 1 << 32, args.lt)
    b = rng.integers(-(1 << 32) + 1, 1 << 32, args.lt)
    x = rng.integers(-(1 << 63), (1 << 63) - 1, args.mul)
    y = rng.integers(-(1 << 63), (1 << 63) - 1, args.mul)
    A, B = replicated.share(replicated.encode(a)), replicated.share(replicated.encode(b))
    X, Y = replicated.share(replicated.encode(x)), replicated.share(replicated.encode(y))
    net = MemoryNetwork(3, timeout_s=600)
    engines = [Replicated3Engine(net.exchange(i), 1) for i in range(3)]

    async def run() -> None:
        await asyncio.gather(*(e.establish() for e in engines))
        lt = await _measure(engines, "lt", lambda e, l: e.less_than(l, A[e.party], B[e.party], 32), args.reps)
        got = replicated.to_signed(replicated.reconstruct_checked(dict(enumerate(lt.pop("result")))))
        if not np.array_equal(got, (a < b).astype(np.int64)):
            raise RuntimeError("less_than gave a wrong bit")
        mul = await _measure(engines, "mul", lambda e, l: e.mul(l, X[e.party], Y[e.party]), args.reps)
        got = replicated.reconstruct_checked(dict(enumerate(mul.pop("result"))))
        if not np.array_equal(got, replicated.encode(x) * replicated.encode(y)):
            raise RuntimeError("mul gave a wrong product")
        print(f"less_than, {args.lt} values, bit_length 32: {lt}")
        print(f"mul, {args.mul} values: {mul}")

    asyncio.run(run())


if __name__ == "__main__":
    main()
