"""`make soak`, second part (python -m tests.soak_clients): an auction and a vote with 100,000
input clients each, through the real stack.

Each client has its own certificate and submits once over fresh TLS channels to the 3 node
processes, from client processes separate from the nodes (bench/intake.py, the same code the
intake benchmark runs); the job then runs, the recipient fetches the result, and it is compared
with the plaintext answer (the tally of every ballot; the highest bidder and the second-highest bid).
The rate is reported per tenth of the clients, so a cost that grows as the job fills shows as
falling tenths.

Output, one line per kind, machine-readable:
  SOAK_CLIENTS kind=<vote|auction> clients=<N> per_s=<overall> first_per_s=<first tenth>
               last_per_s=<last tenth> min_tenth_per_s=<slowest tenth> errors=<n>
               close_to_result_s=<the MPC on N client rows, closing inputs to the result> result=<ok|wrong>
Exit status 1 if a submission failed or a result differs from the plaintext answer.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import intake  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak_clients", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100_000, help="clients per job (default: %(default)s)")
    parser.add_argument("--kinds", nargs="*", choices=intake.KINDS, default=list(intake.KINDS),
                        help="which jobs to run (default: both)")
    parser.add_argument("--procs", type=int, default=3, help="client processes (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="clients in flight per client process (default: %(default)s)")
    args = parser.parse_args(argv)
    failed = False
    for kind in args.kinds:
        t0 = time.perf_counter()
        try:
            f = asyncio.run(intake.run_intake(args.clients, args.procs, args.concurrency, kind=kind))
            result = "ok" if not f.errors else "unchecked"
        except RuntimeError as exc:          # the result differs from the plaintext answer
            print(f"# {exc}", flush=True)
            failed = True
            print(f"SOAK_CLIENTS kind={kind} clients={args.clients} result=wrong", flush=True)
            continue
        failed |= bool(f.errors)
        if f.errors:
            print(f"# {kind}: {f.errors} submissions failed, first: {f.first_error}", flush=True)
        print(f"# {kind}: {f.count} clients in {f.seconds:.0f}s of intake ({time.perf_counter() - t0:.0f}s with "
              f"certificates and setup); per tenth: " + " ".join(f"{r:.0f}" for r in f.windows) + " /s", flush=True)
        print(f"SOAK_CLIENTS kind={kind} clients={f.count} per_s={f.per_s:.1f} first_per_s={f.windows[0]:.1f} "
              f"last_per_s={f.windows[-1]:.1f} min_tenth_per_s={min(f.windows):.1f} errors={f.errors} "
              f"close_to_result_s={f.after_close_s:.2f} result={result}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
