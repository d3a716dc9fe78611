"""Fixed point end to end: real node processes over mutual TLS, replicated3 with its 128-bit ring.

One circuit built with the builder (approved by fingerprint, scheduled by the coordinator's own
Scheduler in this process, as tests/integration/test_load.py does for code-built circuits): three
organizations' real-valued inputs, read by each node from an .npz of float64 and encoded there;
a product, an average, a division and a sigmoid, each opened to a recipient that prints decimals,
compared with float64 within the documented bounds (docs/protocols.md "Fixed-point numbers").
A second job takes real-valued rows from light input clients (`mpcnode.client.submit` with
decimals: encoded and range-checked by the client, shared in Z_2^64, checked by the nodes and
lifted into the 128-bit ring); a client value outside the declared range is refused locally.
"""
from __future__ import annotations

import numpy as np
import pytest

from coordinator.client import watch as coordinator_watch
from mpcnode.client import SubmitError, submit as client_submit
from coordinator.jobplan import JobPlan
from mpcnode.computation.builder import CircuitBuilder
from mpcnode.protocols import fixedpoint
from tests.integration.cluster import Cluster

NODES = ["oak", "pine", "elm"]
READER = "fx-reader"
SCENARIO = "fxp-total"        # a scenario only so that the cluster knows the nodes (job ids start with it)
NAME = "fxp-e2e"
F = 16
N = 64

_rng = np.random.default_rng(1313)


def _grid(v: np.ndarray) -> np.ndarray:
    return np.rint(v * (1 << F)) / (1 << F)


X = _grid(_rng.uniform(-50, 50, N))
Y = _grid(_rng.uniform(0.25, 4, N))
Z = _grid(_rng.uniform(-50, 50, N))
X[0], Y[0], Z[0] = -50.0, 0.25, 50.0       # the declared bounds are valid inputs
X[1], Y[1], Z[1] = 50.0, 4.0, -50.0
Z[2:6] = [1e-5, -1e-5, 9.0, -9.0]          # sigmoid near 0 and beyond its clipping points
DATA = {"oak": {"x": X}, "pine": {"y": Y}, "elm": {"z": Z}}
CLIENTS = ["fx-c1", "fx-c2", "fx-c3"]
ROWS = {"fx-c1": [1.25, -4.5], "fx-c2": [0.1, 3.0], "fx-c3": [-0.333, 5.0]}


def circuit():
    b = CircuitBuilder(NAME)
    x = b.fixed_input("x", "oak", N, -50.0, 50.0, F)
    y = b.fixed_input("y", "pine", N, 0.25, 4.0, F)
    z = b.fixed_input("z", "elm", N, -50.0, 50.0, F)
    b.output("prod", x * y, [READER])
    b.output("avg", (x + z).sum() * (1 / (2 * N)), [READER])
    b.output("ratio", z / y, [READER])
    b.output("sig", b.sigmoid(z), [READER])
    return b.build("replicated3")


def plan() -> JobPlan:
    return JobPlan(NAME, circuit(), NODES, 1, 120, protocol="replicated3", dropouts="none")


def client_plan() -> JobPlan:
    b = CircuitBuilder("fxp-clients")
    w = b.fixed_client_input("w", CLIENTS, 2, -5.0, 5.0, F)
    b.output("half_total", w.sum() * 0.5, [READER])
    return JobPlan("fxp-clients", b.build("replicated3"), NODES, 1, 120, protocol="replicated3", dropouts="none")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fxp").resolve()
    (root / "npz").mkdir()
    node_cfg = {}
    for o in NODES:
        np.savez(root / "npz" / f"{o}.npz", **DATA[o])
        node_cfg[o] = {"inputs": {NAME: str(root / "npz" / f"{o}.npz")}}
    scenario = {"name": SCENARIO, "kind": "total", "parties": NODES, "protocol": "replicated3",
                "recipients": [READER], "input": {"name": "amount", "range": [0, 10]}, "timeout_s": 60}
    c = Cluster.create(root, [scenario], {SCENARIO: {o: 1 for o in NODES}}, node_overrides=node_cfg,
                       approve={o: [plan().computation.fingerprint(), client_plan().computation.fingerprint()]
                                for o in NODES},
                       extra_identities=CLIENTS, policy_overrides={o: {"input_clients": ["*"]} for o in NODES})
    with c.running():
        yield c


@pytest.mark.timeout(180)
async def test_fixed_point_circuit_matches_float64(cluster: Cluster) -> None:
    assert circuit().ring_bits == 128
    job_id = f"{SCENARIO}-fx-1"
    async with cluster.local_coordinator(poll_interval_s=0.05) as (sched, addr):
        sched.submit_plan(job_id, plan())
        final = await coordinator_watch(addr, cluster.tls("operator"), job_id, lambda p: None, timeout=150)
    assert final.state == "DONE", (job_id, final.error)

    async def got(output: str) -> np.ndarray:
        res = await cluster.fetch(job_id, output, READER, timeout=30)
        value = res.value if isinstance(res.value, list) else [res.value]
        assert all(isinstance(v, (int, float)) for v in value)          # decimals, not encodings
        assert np.array_equal(np.array(res.values) / (1 << F), np.array(value, dtype=np.float64))
        return np.array(value, dtype=np.float64)

    ulp2 = 2.0 ** -15
    assert np.abs(await got("prod") - X * Y).max() <= ulp2
    assert np.abs(await got("avg") - (X + Z).sum() / (2 * N)).max() <= ulp2
    # z * (1/y): the reciprocal's relative 2^-12 on y in [0.25, 4], scaled by |z|, plus the product's
    ratio = await got("ratio")
    assert np.all(np.abs(ratio - Z / Y) <= np.abs(Z) / Y * 2.0 ** -12 + 2 * ulp2)
    sig = await got("sig")
    assert np.abs(sig - 0.5 * (1 + np.tanh(Z / 2))).max() <= fixedpoint.SIG_ERROR


@pytest.mark.timeout(180)
async def test_clients_submit_decimals_into_a_wide_job(cluster: Cluster) -> None:
    job_id = f"{SCENARIO}-fx-clients"
    p = client_plan()
    fp = p.computation.fingerprint()
    nodes = {o: cluster.deployment.addresses[o] for o in NODES}
    async with cluster.local_coordinator(poll_interval_s=0.05) as (sched, addr):
        sched.submit_plan(job_id, p)
        for o in NODES:
            await cluster.wait_running(o, job_id)
        with pytest.raises(SubmitError, match=r"^input: w\[0\]: value 5.5 encodes to 360448, outside "
                                              r"\[-327680, 327680\], the declared range \[-5, 5\] with 16 fractional bits$"):
            await client_submit(job_id, "w", [5.5, 0.0], nodes, cluster.tls("fx-c1"), fp, timeout=30)
        for c in CLIENTS:
            await client_submit(job_id, "w", ROWS[c], nodes, cluster.tls(c), fp, timeout=30)
        sched.request_close(job_id)
        final = await coordinator_watch(addr, cluster.tls("operator"), job_id, lambda p: None, timeout=150)
    assert final.state == "DONE", (job_id, final.error)
    res = await cluster.fetch(job_id, "half_total", READER, timeout=30)
    encoded = sum(round(v * (1 << F)) for row in ROWS.values() for v in row)   # each client's rounding
    assert abs(res.value - encoded / (1 << F) * 0.5) < 2.0 ** -15
    assert abs(res.value - sum(sum(r) for r in ROWS.values()) / 2) < 2.0 ** -15 + 6 * 2.0 ** -17
