"""make bench: Parley against MPyC (3 processes each, t = 1), side by side in one run.

Each workload prints a comment row and ends with one machine-readable line:
BENCH name=<workload> engine=<shamir|replicated3> parties=<3|5> parley_s=<s> mpyc_s=<s> speedup=<mpyc_s/parley_s> rounds=<n> bytes_per_node=<n>
(every workload on every engine, 3 compute nodes; Shamir also on 5; MPyC always 3 parties),
and the input-client measurement prints BENCH name=submit engine=shamir per_s=<submissions/s> p99_ms=<ms>.
The round-latency measurement (a chain of 200 dependent products; parley_bench.run_latency) prints
BENCH name=latency engine=<e> ms_per_round=<ms> rounds=<n> per engine, then the same chain's pattern over the
node links alone, without MPC work (bench/linkpeer.py): BENCH name=link_latency engine=none ms_per_round=<ms> rounds=<n>.
The fixed cost of a job (an empty job, submission to the recipient's result; parley_bench.run_noop)
prints BENCH name=noop engine=<e> parley_s=<median s> min_s=<s> per engine.
Client intake at scale (bench/intake.py: N listed voters, each its own certificate on fresh channels,
from client processes separate from the nodes; rates per tenth of N) prints
BENCH name=intake engine=shamir clients=<N> per_s=<overall> first_per_s=<first tenth> last_per_s=<last tenth> p99_ms=<ms>,
and the vote on those N client ballots (validated inside MPC, as a real election's are), from closing
the inputs to the recipient's result: BENCH name=vote_clients engine=shamir ballots=<N> parley_s=<s>.
Fixed point (bench/fixedpoint.py; replicated3 with its 128-bit ring, 3 node processes, no MPyC line):
BENCH name=fxp_mul n=<n> parley_s=<s> node_s=<s> max_abs_err=<e>, BENCH name=fxp_recip ... max_rel_err=<e>,
BENCH name=fxp_sigmoid n=<n> parley_s=<s> max_abs_err=<e> (errors against float64). These lines also print
node_s: the slowest node's own job time (from Start, input file read and sharing included, to its
outputs stored), without the scheduler's polling and the recipient's fetch and decoding.
Private prediction (bench/trees_nodes.py: three replicated3 node processes, the model kept by a
`model` job, the queries from an input client) prints BENCH name=xgb_share_model, BENCH
name=xgb_predict ... queries=1000 trees=100 depth=6 features=30 and BENCH name=xgb_predict_one
(docs/prediction.md); `python -m bench.trees_inprocess` gives the three parties' compute in one
process.
The DP lines (bench/dp_bench.py, docs/privacy.md): BENCH name=dp_histogram engine=<e> parley_s=<s> node_s=<s>
records=1000000 bins=10000 rounds=<n>, BENCH name=dp_winner engine=<e> parley_s=<s> node_s=<s> candidates=1000 rounds=<n>,
and BENCH name=dp_noise_mpc engine=replicated3 parley_s=<s> node_s=<s> n=10000 lambda=<L> delta=<d> rounds=<n>.

Parley's time runs from submitting the job to the recipient holding the reconstructed result
(input sharing, policy checks, computation and the result fetch included). MPyC's time is
its computation plus its input sharing, as measured inside party 0 (bench/mpyc_ref.py): the
reference is not charged for process start-up or for connecting.
"""
from __future__ import annotations

import argparse
import asyncio
import sys

from mpcnode.engines import ENGINES

from . import fixedpoint, intake, linkpeer, parley_bench, trees_nodes

# name -> size, as the issues ask
WORKLOADS = {
    "sum": 1_000_000,
    "mul": 1_000_000,
    "cmp": 100_000,
    "vickrey": 10_000,
    "vote_tally": 1_000_000,
    "vote_winner": 1_000_000,
    "referendum": 1_000_000,
}
SUBMISSIONS = 2_000
INTAKE_CLIENTS = 100_000      # the vote_clients line: 10^5 ballots from input clients
LATENCY_ROUNDS = 200
XGB_PREDICT = {"queries": 1000, "trees": 100, "depth": 6}     # issue 15's shape (30 features: breast_cancer)


def setups(engines: list[str]) -> list[parley_bench.Setup]:
    """Every engine of `engines` this node code runs, on 3 compute nodes; Shamir also on 5."""
    out = [parley_bench.Setup(e, 3) for e in engines if e in ENGINES]
    if "shamir" in engines:
        out.append(parley_bench.Setup("shamir", 5))
    return out


def run_parley(name: str, size: int, setup: parley_bench.Setup) -> parley_bench.Figures:
    runner = parley_bench.run_arith if name in ("sum", "mul") else parley_bench.run_secure
    asyncio.run(runner(name, min(size, 100), setup))   # warm-up: imports, caches
    return asyncio.run(runner(name, size, setup))


def run_dp(name: str, args: argparse.Namespace) -> int:
    """The DP lines (bench/dp_bench.py) on each engine, 3 nodes; --scale shrinks them."""
    from . import dp_bench
    status = 0
    for engine in args.engines:
        setup = parley_bench.Setup(engine, 3)
        try:
            if name == "dp_histogram":
                records, bins = max(1000, int(1_000_000 * args.scale)), max(10, int(10_000 * args.scale))
                asyncio.run(dp_bench.run_histogram(setup, 1000, 10))             # warm-up: imports, caches
                figs = asyncio.run(dp_bench.run_histogram(setup, records, bins))
                size = f"records={records} bins={bins}"
            elif name == "dp_noise_mpc":
                if engine != "replicated3":
                    continue       # the target is the replicated engine's; Shamir's generic coins are 10x slower
                n = max(100, int(10_000 * args.scale))
                asyncio.run(dp_bench.run_noise_mpc(setup, 100))
                figs, lam, delta = asyncio.run(dp_bench.run_noise_mpc(setup, n))
                size = f"n={n} lambda={lam} delta={delta:.2e}"
            else:
                candidates = max(10, int(1000 * args.scale))
                asyncio.run(dp_bench.run_winner(setup, 10))
                figs = asyncio.run(dp_bench.run_winner(setup, candidates))
                size = f"candidates={candidates}"
        except Exception as exc:
            print(f"# {name} {engine} failed: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"BENCH name={name} engine={engine} parley_s={figs.seconds:.4f} node_s={figs.node_s:.4f} {size} "
              f"rounds={figs.rounds}", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--only", nargs="*", choices=sorted(WORKLOADS) + sorted(fixedpoint.WORKLOADS)
                        + ["submit", "latency", "noop", "intake", "xgb_predict", "dp_histogram", "dp_winner", "dp_noise_mpc"],
                        help="run only these workloads")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size (e.g. 0.1 for a quick run)")
    parser.add_argument("--no-mpyc", action="store_true", help="skip the MPyC reference (no ratio printed)")
    parser.add_argument("--engines", nargs="*", choices=sorted(ENGINES), default=sorted(ENGINES),
                        help="engines to run the MPC workloads, noop and latency on (default: all; Shamir also "
                             "with 5 compute nodes)")
    parser.add_argument("--intake-clients", type=int, default=INTAKE_CLIENTS,
                        help=f"listed voters in the intake benchmark, each submitting once (default {INTAKE_CLIENTS}; "
                             "not scaled by --scale)")
    parser.add_argument("--intake-procs", type=int, default=3, help="client processes in the intake benchmark")
    parser.add_argument("--intake-concurrency", type=int, default=32,
                        help="clients in flight per client process in the intake benchmark")
    args = parser.parse_args(argv)
    from .mpyc_runner import run_mpyc

    status = 0
    names = args.only or [*WORKLOADS, *fixedpoint.WORKLOADS, "submit", "intake", "latency", "noop", "xgb_predict",
                          "dp_histogram", "dp_winner", "dp_noise_mpc"]
    for name in names:
        if name in ("dp_histogram", "dp_winner", "dp_noise_mpc"):
            status |= run_dp(name, args)
            continue
        if name in fixedpoint.WORKLOADS:
            size = max(10, int(fixedpoint.WORKLOADS[name] * args.scale))
            try:
                asyncio.run(fixedpoint.run_fixed(name, min(size, 100)))     # warm-up: imports, caches
                figs, err = asyncio.run(fixedpoint.run_fixed(name, size))
            except Exception as exc:
                print(f"# parley {name} replicated3 failed: {exc}", file=sys.stderr)
                status = 1
                continue
            kind = fixedpoint.ERROR_KIND[name]
            print(f"# {name:<12} size={size:<9} replicated3 (128-bit ring) n=3 parley {figs.seconds:8.3f}s  "
                  f"{kind}={err:.3g}  rounds={figs.rounds} bytes/node={figs.bytes_per_node}")
            print(f"BENCH name={name} n={size} parley_s={figs.seconds:.4f} node_s={figs.node_s:.4f} {kind}={err:.6g}",
                  flush=True)
            continue
        if name == "xgb_predict":
            queries = max(1, int(XGB_PREDICT["queries"] * args.scale))
            try:
                trees_nodes.print_lines(queries, XGB_PREDICT["trees"], XGB_PREDICT["depth"])
            except Exception as exc:
                print(f"# xgb_predict failed: {exc}", file=sys.stderr)
                status = 1
            continue
        if name == "intake":
            f = asyncio.run(intake.run_intake(args.intake_clients, args.intake_procs, args.intake_concurrency))
            print(f"# intake       {f.count} voters from {args.intake_procs} client processes x {args.intake_concurrency} "
                  f"in flight: {f.per_s:.0f}/s overall, p50 {f.p50_ms:.0f} ms, p99 {f.p99_ms:.0f} ms, "
                  f"{f.errors} errors{' (first: ' + f.first_error + ')' if f.errors else ''}")
            print("# intake       per tenth of N: " + " ".join(f"{r:.0f}" for r in f.windows) + " /s; "
                  f"node CPU s: {' '.join(f'{c:.0f}' for c in f.node_cpu_s)}, client CPU s: {f.client_cpu_s:.0f}, "
                  f"over {f.seconds:.0f} s (certificates: {f.cert_s:.0f} s, not counted)")
            print(f"BENCH name=intake engine=shamir clients={f.count} per_s={f.per_s:.1f} first_per_s={f.windows[0]:.1f} "
                  f"last_per_s={f.windows[-1]:.1f} p99_ms={f.p99_ms:.1f}", flush=True)
            print(f"BENCH name=vote_clients engine=shamir ballots={f.count} parley_s={f.after_close_s:.4f}", flush=True)
            status |= int(f.errors > 0)
            continue
        if name == "noop":
            for setup in setups(args.engines):
                if setup.n != 3:
                    continue
                median, fastest = asyncio.run(parley_bench.run_noop(setup=setup))
                print(f"# noop         {setup.protocol}: an empty job, submission to the recipient's result: "
                      f"{median * 1000:.1f} ms median, {fastest * 1000:.1f} ms fastest")
                print(f"BENCH name=noop engine={setup.protocol} parley_s={median:.4f} min_s={fastest:.4f}", flush=True)
            continue
        if name == "latency":
            for setup in setups(args.engines):
                if setup.n != 3:
                    continue
                ms, plain_ms, rounds = asyncio.run(parley_bench.run_latency(LATENCY_ROUNDS, setup=setup))
                print(f"# latency      {setup.protocol}: chain of {LATENCY_ROUNDS} dependent products: {ms:.3f} ms per "
                      f"round (marginal; {plain_ms:.3f} ms with the fixed part of the job spread over its {rounds} rounds)")
                print(f"BENCH name=latency engine={setup.protocol} ms_per_round={ms:.3f} rounds={rounds}", flush=True)
            link_rounds = 3000
            link_ms = linkpeer.chain_ms_per_round(link_rounds)
            print(f"# link_latency the same pattern over the links alone (8-byte messages, no MPC work): "
                  f"{link_ms:.3f} ms per round")
            print(f"BENCH name=link_latency engine=none ms_per_round={link_ms:.3f} rounds={link_rounds}", flush=True)
            continue
        if name == "submit":
            count = max(10, int(SUBMISSIONS * args.scale))
            per_s, p99_ms, _ = asyncio.run(parley_bench.run_submissions(count))
            print(f"# submit       {count} ballots from concurrent clients over mutual TLS: "
                  f"{per_s:.0f}/s, p99 {p99_ms:.0f} ms")
            print(f"BENCH name=submit engine=shamir per_s={per_s:.1f} p99_ms={p99_ms:.1f}", flush=True)
            continue
        size = max(10, int(WORKLOADS[name] * args.scale))
        mpyc_s = float("nan")
        if not args.no_mpyc:
            try:
                rec = run_mpyc(name, size)
                mpyc_s = float(rec["seconds"]) + float(rec.get("input_seconds", 0.0))
            except Exception as exc:  # report, keep going with the other workloads
                print(f"# mpyc {name} failed: {str(exc)[-500:]}", file=sys.stderr)
                status = 1
        for setup in setups(args.engines):
            try:
                figs = run_parley(name, size, setup)
            except Exception as exc:
                print(f"# parley {name} {setup.protocol} n={setup.n} failed: {exc}", file=sys.stderr)
                status = 1
                continue
            speedup = mpyc_s / figs.seconds
            print(f"# {name:<12} size={size:<9} {setup.protocol:<11} n={setup.n} parley {figs.seconds:8.3f}s  "
                  f"mpyc {mpyc_s:8.3f}s  x{speedup:6.1f}  rounds={figs.rounds} bytes/node={figs.bytes_per_node}")
            print(f"BENCH name={name} engine={setup.protocol} parties={setup.n} parley_s={figs.seconds:.4f} "
                  f"mpyc_s={mpyc_s:.4f} speedup={speedup:.2f} rounds={figs.rounds} bytes_per_node={figs.bytes_per_node}",
                  flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
