"""Runs inside a network namespace for test_netns_delay: waits for the nodes, schedules a
circuit of known depth with the coordinator's own scheduler, fetches the result as the
recipient, and prints one JSON line with the result and the nodes' own timings.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from coordinator import processes  # noqa: E402
from mpcnode.computation.builder import CircuitBuilder  # noqa: E402
from coordinator.config import CoordinatorConfig  # noqa: E402
from coordinator.jobplan import JobPlan  # noqa: E402
from coordinator.scheduler import Scheduler  # noqa: E402
from mpcnode.recipient import fetch  # noqa: E402
from mpcnode.transport.tls import TlsMaterial, secure_channel  # noqa: E402
from parley.v1 import node_pb2, node_pb2_grpc  # noqa: E402


def chain_circuit(parties: list[str], length: int, depth: int, recipient: str):
    """x (from party 0) times y (from party 1), then `depth - 1` more products with x: depth rounds."""
    b = CircuitBuilder("netns-chain")
    x = b.input("x", parties[0], length, 0, 3)
    y = b.input("y", parties[1], length, 0, 3)
    z = x * y
    for _ in range(depth - 1):
        z = z * x
    b.output("total", b.sum(z), [recipient])
    return b.build()


async def main(cfg_path: str) -> None:
    cfg = json.loads(Path(cfg_path).read_text())
    certs = Path(cfg["certs"])
    parties, addresses = cfg["parties"], cfg["addresses"]
    operator = TlsMaterial.for_identity(certs, "coordinator")
    await asyncio.gather(*(processes.wait_node_ready(o, addresses[o], operator, None, timeout=60) for o in parties))
    sched = Scheduler(CoordinatorConfig(listen="127.0.0.1:0", tls={"ca": certs / "ca.pem",
                                                                    "cert": certs / "coordinator.pem",
                                                                    "key": certs / "coordinator.key"},
                                        nodes=addresses, database=Path(cfg["workdir"]) / "coord.sqlite3",
                                        poll_interval_s=0.02), operator)
    out = []
    try:
        for k, depth in enumerate([1, cfg["depth"]]):  # the first job opens every channel (warm-up)
            circuit = chain_circuit(parties, cfg["length"], depth, cfg["recipient"])
            job_id = f"chain-{k}"
            sched.submit_plan(job_id, JobPlan("netns-chain", circuit, parties, 1, 120))
            live = sched.live[job_id]
            while live.state not in ("DONE", "FAILED"):
                await live.changed.wait()
            if live.state == "FAILED":
                raise RuntimeError(live.error)
            res = await fetch(job_id, "total", addresses, TlsMaterial.for_identity(certs, cfg["recipient"]))
            statuses = []
            for o in parties:
                async with secure_channel(addresses[o], o, operator) as ch:
                    statuses.append(await node_pb2_grpc.NodeControlStub(ch).Status(node_pb2.JobRef(job_id=job_id),
                                                                                   timeout=30))
            out.append({"depth": depth, "result": res.values[0], "elapsed": [s.elapsed_s for s in statuses],
                        "rounds": [s.rounds_done for s in statuses]})
    finally:
        await sched.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
