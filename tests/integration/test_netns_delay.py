"""Three nodes in separate network namespaces with 20 ms one-way delay on every link (a delaying
relay built by tests/netns.py; this kernel has no netem). The coordinator and recipient run in a
fourth namespace. Results must be correct and a job's time close to rounds x the one-way delay:
messages stream without a per-message acknowledgement, so a round waits one way, not a round trip.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from coordinator.processes import MALLOC_ENV  # noqa: E402
from mpcnode.certs import ensure  # noqa: E402
from mpcnode.computation.spec import Computation  # noqa: E402
from tests.integration.netns_driver import chain_circuit  # noqa: E402
from tests.netns import DelayedNetwork, skip_reason  # noqa: E402

pytestmark = pytest.mark.skipif(skip_reason() is not None,
                                reason=f"netns delay test needs network namespaces: {skip_reason()}")

ONE_WAY_MS = 20.0
RTT_S = 2 * ONE_WAY_MS / 1000
PARTIES = ["delay-a", "delay-b", "delay-c"]
DEPTH = 6
LENGTH = 2000


def test_three_nodes_across_20ms_links(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    ensure(certs, PARTIES + ["coordinator", "delay-recipient"], nodes=PARTIES, loopback=True)
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, LENGTH)
    y = rng.integers(0, 4, LENGTH)
    np.savez(tmp_path / "a.npz", x=x)
    np.savez(tmp_path / "b.npz", y=y)
    ports = {o: 7101 + i for i, o in enumerate(PARTIES)}
    env = {**os.environ, **MALLOC_ENV, "PYTHONPATH": str(REPO)}
    with DelayedNetwork(4, ONE_WAY_MS) as net:
        targets = {o: net.target(i, ports[o]) for i, o in enumerate(PARTIES)}
        procs = []
        for i, org in enumerate(PARTIES):
            cfg = {
                "organization": org, "listen": f"0.0.0.0:{ports[org]}",
                "tls": {"ca": str(certs / "ca.pem"), "cert": str(certs / f"{org}.pem"), "key": str(certs / f"{org}.key")},
                "peers": {o: t for o, t in targets.items() if o != org},
                "data_dir": str(tmp_path / org),
                "inputs": {"netns-chain": str(tmp_path / ("a.npz" if i == 0 else "b.npz"))} if i < 2 else {},
                # every node approves exactly the two chains the driver runs (warm-up and measured)
                "policy": {"approvals": [{"fingerprint": Computation(chain_circuit(PARTIES, LENGTH, d, "delay-recipient"),
                                                                     tuple(PARTIES), 1).fingerprint()}
                                         for d in (1, DEPTH)]},
            }
            path = tmp_path / f"{org}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            procs.append(net.popen(i, [sys.executable, "-m", "mpcnode", "--config", str(path)], cwd=REPO, env=env,
                                   stdout=open(tmp_path / f"{org}.log", "wb"), stderr=subprocess.STDOUT))
        drv = tmp_path / "driver.json"
        drv.write_text(json.dumps({"certs": str(certs), "parties": PARTIES, "addresses": targets,
                                   "workdir": str(tmp_path), "depth": DEPTH, "length": LENGTH,
                                   "recipient": "delay-recipient"}))
        run = net.run(3, [sys.executable, str(REPO / "tests/integration/netns_driver.py"), str(drv)], timeout=180,
                      cwd=REPO, env=env, capture_output=True)
        assert run.returncode == 0, run.stderr.decode()[-3000:]
        warm, job = json.loads(run.stdout.decode().strip().splitlines()[-1])
    want = int((x * y * x ** (DEPTH - 1)).sum())
    assert job["result"] == want
    assert warm["result"] == int((x * y).sum())
    rounds = max(job["rounds"])
    assert rounds == DEPTH + 2  # the key round, one input round, then one round per product level
    elapsed = max(job["elapsed"])
    # each round waits for the peers' messages (one way) and for nothing else: no delivery acks (with
    # them, and with unary RPCs before the Link streams, a round cost a full RTT and more)
    assert rounds * ONE_WAY_MS / 1000 * 0.9 <= elapsed < rounds * RTT_S * 0.9, (elapsed, rounds)
