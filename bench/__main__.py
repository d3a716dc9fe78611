"""make bench: Parley against MPyC (3 processes each, t = 1), side by side in one run.

Each workload prints a table row and ends with one machine-readable line:
BENCH name=<workload> parley_s=<s> mpyc_s=<s> speedup=<mpyc_s/parley_s> rounds=<n> bytes_per_node=<n>
"""
from __future__ import annotations

import argparse
import asyncio
import sys

from . import parley_bench

WORKLOADS = {
    # name: (size, parley runner)
    "sum": 1_000_000,
    "mul": 1_000_000,
}


def run_parley(name: str, size: int) -> parley_bench.Figures:
    # one small warm-up job first so both systems are measured with warm processes
    asyncio.run(parley_bench.run_arith(name, min(size, 1000)))
    return asyncio.run(parley_bench.run_arith(name, size))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(WORKLOADS), help="run only these workloads")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every workload size (e.g. 0.1 for a quick run)")
    parser.add_argument("--no-mpyc", action="store_true", help="skip the MPyC reference (no ratio printed)")
    args = parser.parse_args(argv)
    from .mpyc_runner import run_mpyc

    status = 0
    for name in args.only or list(WORKLOADS):
        size = max(10, int(WORKLOADS[name] * args.scale))
        figs = run_parley(name, size)
        mpyc_s = float("nan")
        if not args.no_mpyc:
            try:
                mpyc_s = float(run_mpyc(name, size)["seconds"])
            except Exception as exc:  # report, keep going with the other workloads
                print(f"# mpyc {name} failed: {exc}", file=sys.stderr)
                status = 1
        speedup = mpyc_s / figs.seconds
        print(f"# {name:<12} size={size:<9} parley {figs.seconds:8.3f}s  mpyc {mpyc_s:8.3f}s  "
              f"x{speedup:6.1f}  rounds={figs.rounds} bytes/node={figs.bytes_per_node}")
        print(f"BENCH name={name} parley_s={figs.seconds:.4f} mpyc_s={mpyc_s:.4f} speedup={speedup:.2f} "
              f"rounds={figs.rounds} bytes_per_node={figs.bytes_per_node}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
