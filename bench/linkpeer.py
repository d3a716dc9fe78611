"""A node that speaks only the Link protocol, for measuring the links without any MPC compute.

    python -m bench.linkpeer --certs DIR --me NAME --addresses JSON --plan JSON --out FILE

Serves PeerExchange.Link with the real transport (PeerLinks, GrpcExchange, Mailbox, mutual TLS
with the identity NAME from DIR) and runs synthetic jobs against the other processes started
with the same addresses and plan, then writes one JSON object with the timing of every round to FILE.

Plan: {"jobs": [{"job": id, "kind": "chain" | "bulk", "rounds": n, "bytes": b, "start_after_s": s,
                 "pairs": [[i, j], ...]}], "round_timeout_s": t}
* chain: a chain of dependent rounds with one 8-byte element per message, in the pattern of a
  Shamir multiplication with n = 3, t = 1 (party i sends to i-1 and waits for i+1);
* bulk: each round, party i sends `bytes` to party j for every [i, j] in `pairs` (default: every
  ordered pair) and waits for what it is sent.
A job starts `start_after_s` after every peer answered a first exchange (a barrier round); its
data is made before that, so making it does not hold up the other jobs.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import grpc
import numpy as np

from mpcnode import field
from mpcnode.errors import NotFound
from mpcnode.transport.mailbox import Mailbox
from mpcnode.transport.peers import GrpcExchange, PeerLinks
from mpcnode.transport.servicers import PeerExchange, add_service
from mpcnode.transport.tls import TlsMaterial, message_options
from parley.v1 import node_pb2


class Inbox:
    def __init__(self, parties: list[str], me: int, jobs: list[str], max_pending_bytes: int):
        self.boxes = {j: Mailbox(j, parties, me, max_pending_bytes) for j in jobs}
        self.failures: list[str] = []

    def mailbox(self, peer: str, job_id: str) -> Mailbox:
        if job_id not in self.boxes:
            raise NotFound(f"job {job_id} is not active here")
        return self.boxes[job_id]

    def peer_lost(self, peer: str, job_id: str, detail: str) -> None:
        self.boxes[job_id].peer_lost(peer, detail)

    def job_failed(self, job_id: str, exc: Exception) -> None:
        self.failures.append(str(exc))
        self.boxes[job_id].fail(exc)


class LinksOnly:
    """What the PeerExchange servicer needs of a node: its links."""

    def __init__(self, links: PeerLinks):
        self.links = links


def bulk_data(spec: dict) -> np.ndarray | None:
    return field.asfield(np.arange(spec["bytes"] // 8, dtype=np.int64)) if spec["kind"] == "bulk" else None


async def run_job(ex: GrpcExchange, spec: dict, data: np.ndarray | None, ready_at: float) -> dict:
    await asyncio.sleep(max(0.0, ready_at + spec.get("start_after_s", 0.0) - time.monotonic()))
    n, me = ex.n, ex.party
    rounds = []
    if spec["kind"] == "chain":
        x = np.zeros(1, dtype=np.uint64)
        for r in range(spec["rounds"]):
            t = time.monotonic()
            got = await ex.round(f"c{r}", {(me - 1) % n: x}, [(me + 1) % n])
            x = got[(me + 1) % n]
            rounds.append((t, time.monotonic()))
    else:
        pairs = spec.get("pairs") or [[i, j] for i in range(n) for j in range(n) if i != j]
        to = [j for i, j in pairs if i == me]
        expect = [i for i, j in pairs if j == me]
        for r in range(spec["rounds"]):
            t = time.monotonic()
            await ex.round(f"b{r}", {j: data for j in to}, expect)
            rounds.append((t, time.monotonic()))
    return {"job": spec["job"], "kind": spec["kind"], "rounds": rounds}


async def main_async(args: argparse.Namespace) -> dict:
    addresses: dict[str, str] = json.loads(args.addresses)
    plan = json.loads(args.plan)
    parties = sorted(addresses)
    me = parties.index(args.me)
    tls = TlsMaterial.for_identity(Path(args.certs), args.me)
    links = PeerLinks(args.me, {p: a for p, a in addresses.items() if p != args.me}, tls, args.max_mb,
                      connect_timeout_s=30.0)
    jobs = [j["job"] for j in plan["jobs"]]
    inbox = Inbox(parties, me, ["barrier", *jobs], 4 * links.max_message_bytes)
    links.inbox = inbox
    server = grpc.aio.server(options=message_options(args.max_mb))
    add_service(server, node_pb2, "PeerExchange", PeerExchange(LinksOnly(links)))
    if not server.add_secure_port(addresses[args.me], tls.server_credentials()):
        raise SystemExit(f"cannot bind {addresses[args.me]}")
    await server.start()
    timeout = plan.get("round_timeout_s", 60.0)
    try:
        data = {s["job"]: bulk_data(s) for s in plan["jobs"]}
        # a barrier: every party has its server up and its links open before the clock starts
        barrier = GrpcExchange("barrier", parties, me, links, inbox.boxes["barrier"], timeout)
        others = [j for j in range(len(parties)) if j != me]
        await barrier.round("ready", {j: np.zeros(1, dtype=np.uint64) for j in others}, others)
        ready_at = time.monotonic()
        cpu0 = time.process_time()
        threads0 = _thread_cpu()
        exchanges = {j: GrpcExchange(j, parties, me, links, inbox.boxes[j], timeout) for j in jobs}
        results = await asyncio.gather(*(run_job(exchanges[s["job"]], s, data[s["job"]], ready_at)
                                         for s in plan["jobs"]))
        cpu = time.process_time() - cpu0   # all threads of this process (gRPC's poller included)
        threads = {k: round(v - threads0.get(k, 0.0), 3) for k, v in _thread_cpu().items()}
        await barrier.round("done", {j: np.zeros(1, dtype=np.uint64) for j in others}, others)
        return {"me": args.me, "jobs": results, "failures": inbox.failures, "cpu_s": cpu, "threads_cpu_s": threads,
                "wall_s": time.monotonic() - ready_at}
    finally:
        await links.close()
        await server.stop(grace=0.5)


PARTIES = ["link-a", "link-b", "link-c"]


def _thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process (Linux /proc), to tell the event loop from gRPC's threads."""
    import os

    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        key = "loop" if int(tid) == os.getpid() else name
        out[key] = out.get(key, 0.0) + (int(parts[11]) + int(parts[12])) / tick
    return out


def run_cluster(workdir: Path, plan: dict, timeout_s: float = 120.0, max_mb: int = 256) -> list[dict]:
    """Start one linkpeer process per party, wait for all of them, return their reports."""
    import subprocess

    from coordinator.deploy import free_ports
    from coordinator.processes import REPO, child_env
    from mpcnode.certs import ensure

    certs = workdir / "certs"
    ensure(certs, PARTIES, nodes=PARTIES, loopback=True)
    addresses = {p: f"127.0.0.1:{port}" for p, port in zip(PARTIES, free_ports(len(PARTIES)))}
    procs = [subprocess.Popen([sys.executable, "-m", "bench.linkpeer", "--certs", str(certs), "--me", p,
                               "--addresses", json.dumps(addresses), "--plan", json.dumps(plan),
                               "--max-mb", str(max_mb), "--out", str(workdir / f"{p}.json")],
                              cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL,
                              stderr=open(workdir / f"{p}.log", "wb"), start_new_session=True)
             for p in PARTIES]
    reports = []
    try:
        for p, proc in zip(PARTIES, procs):
            proc.wait(timeout=timeout_s)
            if proc.returncode != 0:
                raise RuntimeError(f"linkpeer {p} exited with {proc.returncode}: "
                                   f"{(workdir / f'{p}.log').read_text(errors='replace')[-3000:]}")
            reports.append(json.loads((workdir / f"{p}.json").read_text()))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return reports


def chain_ms_per_round(rounds: int = 2000) -> float:
    """Median milliseconds per round of a chain of dependent 8-byte rounds over the links alone."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="parley-links-") as tmp:
        reports = run_cluster(Path(tmp), {"jobs": [{"job": "chain", "kind": "chain", "rounds": rounds}]})
    per = sorted(e - s for r in reports for j in r["jobs"] for s, e in j["rounds"][rounds // 10:])
    return per[len(per) // 2] * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.linkpeer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--certs", required=True)
    parser.add_argument("--me", required=True)
    parser.add_argument("--addresses", required=True, help='JSON {"identity": "host:port", ...}, this node included')
    parser.add_argument("--plan", required=True, help="JSON plan (see the module docstring)")
    parser.add_argument("--max-mb", type=int, default=256)
    parser.add_argument("--out", required=True, help="where to write the JSON report")
    args = parser.parse_args(argv)
    report = asyncio.run(main_async(args))
    Path(args.out).write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
