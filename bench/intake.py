"""Client intake at scale (issue 9, item 4): N listed clients of one job each submit their input
(a ballot of a vote, or a bid of a Vickrey auction, as the scenario kinds build them, with the
population named by prefix and count), each with its own certificate over fresh channels (submit() as a real client runs it: JobInfo to
every node, checks, then one SubmitShare per node), from client processes separate from the
3 node processes. Reports the rate per window of N/10 accepted submissions, so that a cost which
grows as the job fills shows as falling windows.

Setup (certificates for N identities, issued in parallel processes; node start; job preparation;
client processes loading their TLS material) is not counted: the clock starts when every client
process is ready and released at once, and stops when the last submission is acknowledged.
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mpcnode.certs import CLIENT, create_ca, ensure, issue, load_ca
from mpcnode.computation.auction import AuctionScenario
from mpcnode.computation.common import ClientRange, client_names
from mpcnode.computation.vote import VoteScenario

from .parley_bench import PARTIES, RECIPIENT, SHAMIR3, Cluster

JOB = "bench-intake"
OPTIONS = 5
KINDS = ("vote", "auction")
BID_MODULUS = 1_000_003        # a prime: bids (7919 i mod it) + 1 are distinct for i < it
BID_BITS = 20                  # every bid is below 2^20


def scenario(kind: str, count: int) -> VoteScenario | AuctionScenario:
    """The job: a 5-option tally over `count` voters, or a second-price auction among `count`
    bidders, the clients named by a prefix and a count as a scenario file would name them."""
    common = {"name": JOB, "parties": PARTIES, "recipients": [RECIPIENT], "timeout_s": 7200}
    if kind == "vote":
        return VoteScenario(kind="vote", vote={"options": [f"option-{j}" for j in range(OPTIONS)], "output": "tally"},
                            voters=ClientRange(prefix="voter-", count=count), **common)
    if kind == "auction":
        return AuctionScenario(kind="auction", auction={"type": "second-price", "bit_length": BID_BITS,
                                                        "max_bid": (1 << BID_BITS) - 1},
                               bidders=ClientRange(prefix="bidder-", count=count), **common)
    raise ValueError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")


def client_value(kind: str, i: int) -> list[int]:
    """What client i (0-based) submits: a one-hot ballot, or its bid."""
    if kind == "vote":
        return [int(j == i % OPTIONS) for j in range(OPTIONS)]
    return [(7919 * i) % BID_MODULUS + 1]


def input_name(kind: str) -> str:
    return "ballots" if kind == "vote" else "bids"


def check_result(kind: str, names: list[str], value: object) -> None:
    """The plaintext answer when every client submitted once; RuntimeError otherwise."""
    count = len(names)
    if kind == "vote":
        expect = {f"option-{j}": len(range(j, count, OPTIONS)) for j in range(OPTIONS)} | {"invalid": 0}
    else:
        bids = sorted((client_value(kind, i)[0], names[i]) for i in range(count))
        expect = {"sold": True, "winner": bids[-1][1], "price": bids[-2][0]}
    if value != expect:
        raise RuntimeError(f"intake {kind}: result {value} != plaintext {expect}")


def _issue_slice(out: str, names: list[str]) -> int:
    ca_cert, ca_key = load_ca(Path(out))
    for name in names:
        issue(Path(out), name, ca_cert, ca_key, role=CLIENT)   # voters and bidders: client certificates
    return len(names)


def issue_parallel(out: Path, names: list[str], procs: int) -> float:
    """Certificates for `names` under one CA, issued by `procs` processes; returns seconds taken."""
    t0 = time.perf_counter()
    if not (out / "ca.pem").exists():
        create_ca(out)
    todo = [n for n in names if not (out / f"{n}.pem").exists()]
    if todo:
        chunks = [todo[k::procs] for k in range(procs)]
        with mp.get_context("spawn").Pool(procs) as pool:
            pool.starmap(_issue_slice, [(str(out), c) for c in chunks if c])
    return time.perf_counter() - t0


def _client_proc(worker: int, kind: str, voters: list[tuple[str, int]], certs: str, addresses: dict[str, str],
                 expected: str, concurrency: int, ready, go, results) -> None:
    """One client process: its own asyncio loop, `concurrency` clients at a time, each a distinct
    identity on fresh channels. Sends back (completion wall-clock time, latency, error or '')."""
    from mpcnode.client import submit
    from mpcnode.transport.tls import TlsMaterial

    tls = {v: TlsMaterial.for_identity(Path(certs), v) for v, _ in voters}
    out: list[tuple[float, float, str]] = []

    async def main() -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(v: str, k: int) -> None:
            async with gate:
                t = time.perf_counter()
                err = ""
                try:
                    await submit(JOB, input_name(kind), client_value(kind, k), addresses, tls[v], expected,
                                 timeout=60.0)
                except Exception as exc:  # counted and reported, never retried
                    err = str(exc)[:200]
                out.append((time.time(), time.perf_counter() - t, err))

        await asyncio.gather(*(one(v, k) for v, k in voters))

    ready.put(worker)
    go.wait()
    asyncio.run(main())
    results.put((worker, out))


@dataclass
class IntakeFigures:
    kind: str
    count: int
    seconds: float
    per_s: float
    windows: list[float]          # submissions/s in each window of count/len(windows) completions
    p99_ms: float
    p50_ms: float
    errors: int
    cert_s: float
    node_cpu_s: list[float] = field(default_factory=list)
    after_close_s: float = 0.0    # closing the inputs to the recipient's result: the MPC on N client rows
    client_cpu_s: float = 0.0
    first_error: str = ""


def window_rates(t0: float, completions: list[float], windows: int) -> list[float]:
    """Submissions per second in each of `windows` consecutive runs of len/windows completions
    (sorted completion times; the first window starts at t0, each next one where the last ended)."""
    n = len(completions)
    if n < windows:
        return [float("nan")] * windows
    edges = [t0] + [completions[(n * (w + 1)) // windows - 1] for w in range(windows)]
    counts = [(n * (w + 1)) // windows - (n * w) // windows for w in range(windows)]
    return [c / max(edges[w + 1] - edges[w], 1e-9) for w, c in enumerate(counts)]


def _cpu_s(pid: int) -> float:
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def _children_cpu_s() -> float:
    t = os.times()
    return t.children_user + t.children_system


async def run_intake(count: int, procs: int = 3, concurrency: int = 32, windows: int = 10,
                     workdir: Path | None = None, on_running=None, kind: str = "vote") -> IntakeFigures:
    """`count` clients of a `kind` job, `procs` client processes with `concurrency` clients each in
    flight. on_running(node_pids) is called (if given) once the clients are released, e.g. to
    profile. Checks the result against the plaintext answer (RuntimeError if it differs) unless
    some submission failed (then the figures report the errors)."""
    sc = scenario(kind, count)
    circuit = sc.build()
    voters = client_names(sc.voters if kind == "vote" else sc.bidders)
    with tempfile.TemporaryDirectory(prefix="parley-intake-") as tmp:
        work = workdir or Path(tmp)
        certs = work / "certs"
        ensure(certs, PARTIES + ["coordinator", "operator", RECIPIENT], nodes=PARTIES, loopback=True)
        cert_s = issue_parallel(certs, voters, max(1, min(os.cpu_count() or 2, 4)))
        expected = SHAMIR3.plan(circuit, 7200).computation.fingerprint()
        figs: dict[str, IntakeFigures] = {}
        async with Cluster(work, {}, clients=voters, poll_interval_s=0.25) as cluster:
            node_pids = [p.pid for p in cluster.procs]

            async def submit_all(job_id: str) -> None:
                ctx = mp.get_context("spawn")
                children0 = _children_cpu_s()
                ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
                work_items = list(zip(voters, range(count)))
                workers = [ctx.Process(target=_client_proc,
                                       args=(w, kind, work_items[w::procs], str(certs), cluster.dep.addresses, expected,
                                             concurrency, ready, go, results), daemon=True)
                           for w in range(procs)]
                for p in workers:
                    p.start()
                loop = asyncio.get_running_loop()
                for _ in workers:
                    await loop.run_in_executor(None, ready.get)
                node_cpu0 = [_cpu_s(pid) for pid in node_pids]
                t0 = time.time()
                go.set()
                if on_running is not None:
                    on_running(node_pids)
                done: list[tuple[float, float, str]] = []
                for _ in workers:
                    _, out = await loop.run_in_executor(None, results.get)
                    done.extend(out)
                node_cpu = [_cpu_s(pid) - c0 for pid, c0 in zip(node_pids, node_cpu0)]
                for p in workers:
                    await loop.run_in_executor(None, p.join)
                client_cpu = _children_cpu_s() - children0   # the reaped client processes, setup included
                done.sort()
                ok = [d for d in done if not d[2]]
                t_end = done[-1][0]
                rates = window_rates(t0, [d[0] for d in ok], windows)
                lat = sorted(d[1] for d in ok) or [float("nan")]   # every submission refused: no latency
                figs["r"] = IntakeFigures(kind, count, t_end - t0, len(ok) / (t_end - t0), rates,
                                          lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000,
                                          lat[len(lat) // 2] * 1000, len(done) - len(ok), cert_s,
                                          node_cpu_s=node_cpu, client_cpu_s=client_cpu,
                                          first_error=next((d[2] for d in done if d[2]), ""))

            res = await cluster.run(JOB, circuit, circuit.outputs[0].name, before_close=submit_all, timeout_s=7200)
        fig = figs["r"]
        fig.after_close_s = res.after_close_s
        if not fig.errors:
            check_result(kind, voters, res.value)
        return fig
