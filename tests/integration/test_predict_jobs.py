"""Private prediction on real node processes (replicated3, three compute nodes; docs/prediction.md).

The model owner `hosp` keeps its XGBoost model file (trained here on scikit-learn's breast_cancer
data) as its dataset; a `model` job shares it once and every compute node keeps its share with the
grants of the job's document. `predict` jobs read the kept shares: the querier (an input client)
secret-shares its queries' keys and alone gets the margins, which equal the plaintext reference
exactly. Quotas, deletion by the owner only, and the refusals are checked at the nodes.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys

import grpc
import numpy as np
import pytest

from coordinator.client import close_inputs
from mpcnode.client import submit as client_submit
from mpcnode.recipient import FetchError
from mpcnode.transport.tls import secure_channel
from mpcnode.trees import evaluate, load_model
from mpcnode.trees.keys import query_keys
from parley.v1 import node_pb2, node_pb2_grpc
from tests.integration.cluster import REPO, Cluster

xgb = pytest.importorskip("xgboost")

ORGS = ["hosp", "lab", "auth"]
TREES, DEPTH, FEATURES, Q = 6, 3, 30, 8
GRANT = 2 * Q                     # two jobs' worth for `clinic`
NAMES = [f"x{i}" for i in range(FEATURES)]


def shape() -> dict:
    return {"trees": TREES, "depth": DEPTH, "features": FEATURES, "library": "xgboost", "kind": "binary",
            "feature_names": NAMES}


MODEL = {"name": "tm-model", "kind": "model", "parties": ORGS, "protocol": "replicated3", "owner": "hosp",
         "dataset": "tm", "model_id": "tm-v1", "shape": shape(), "grants": {"clinic": GRANT, "nosy": 0},
         "timeout_s": 60}
# a second model id kept only to be deleted
DOOMED = {**MODEL, "name": "tm-doomed", "model_id": "tm-doomed-v1"}


def predict_scenario(name: str, querier: str, model: str = "tm-model") -> dict:
    return {"name": name, "kind": "predict", "parties": ORGS, "protocol": "replicated3", "model": f"{model}.yaml",
            "querier": querier, "queries": Q, "output": "margin", "timeout_s": 60}


SCENARIOS = [MODEL, DOOMED, predict_scenario("tm-predict", "clinic"), predict_scenario("tm-nosy", "nosy"),
             {**predict_scenario("tm-probability", "clinic"), "output": "probability"},
             {**predict_scenario("tm-class", "clinic"), "output": "class"},
             predict_scenario("tm-stranger", "stranger"), predict_scenario("tm-doomed-predict", "clinic", "tm-doomed")]


def train(path) -> tuple[object, np.ndarray]:
    from sklearn.datasets import load_breast_cancer
    x, y = load_breast_cancer(return_X_y=True)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": DEPTH, "seed": 1, "nthread": 1},
                        xgb.DMatrix(x, label=y, feature_names=NAMES), num_boost_round=TREES)
    booster.save_model(str(path))
    return booster, x


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    booster, x = train(root / "hosp-model.json")
    c = Cluster.create(root, SCENARIOS, model_files={"tm-model": root / "hosp-model.json",
                                                     "tm-doomed": root / "hosp-model.json"},
                       extra_identities=["clinic", "nosy", "stranger"])
    with c.running():
        yield c, x


async def run_prediction(cluster: Cluster, scenario: str, querier: str, x: np.ndarray) -> tuple[str, object]:
    job_id = await cluster.submit(scenario)
    await cluster.wait_running("hosp", job_id)
    keys = query_keys(x, "xgboost").reshape(-1)
    await client_submit(job_id, "queries", keys, cluster.nodes_of(scenario), cluster.tls(querier),
                        cluster.fingerprint(scenario))
    await close_inputs(cluster.deployment.coordinator_address, cluster.tls("operator"), job_id)
    return job_id, await cluster.watch(job_id)


def models_row(cluster: Cluster, org: str, model_id: str) -> tuple | None:
    with sqlite3.connect(cluster.data_dir(org) / "shares.sqlite3") as db:
        return db.execute("SELECT owner, deleted FROM models WHERE model_id=?", (model_id,)).fetchone()


def queries(x: np.ndarray) -> np.ndarray:
    q = x[:Q].copy()
    q[1, 3] = np.nan                              # missing: the node's secret default direction
    q[2, 0] = np.inf
    q[3, :] = np.nan
    return q


async def test_model_kept_then_predictions_equal_the_reference_and_only_the_querier_gets_them(world) -> None:
    cluster, x = world
    for name in ("tm-model", "tm-doomed"):
        final = await cluster.run(name)
        assert final.state == "DONE"
    for org in ORGS:
        assert models_row(cluster, org, "tm-v1") == ("hosp", 0)
        audit = [e for e in cluster_audit(cluster, org) if e[1] == "model-stored"]
        assert any("clinic 16" in e[4] and "nosy 0" in e[4] for e in audit)
    # the same approved model job again: refused at Prepare, the kept model and grants unchanged
    final = await cluster.watch(await cluster.submit("tm-model"))
    assert final.state == "FAILED" and "model id tm-v1 is already used" in final.error
    q = queries(x)
    job_id, final = await run_prediction(cluster, "tm-predict", "clinic", q)
    assert final.state == "DONE", final.error
    got = await cluster.fetch(job_id, "predictions", "clinic")
    forest = load_model(cluster.root / "hosp-model.json", depth=DEPTH)
    assert got.values == evaluate(forest, q).encoded.reshape(-1).tolist()
    finite = ~np.isinf(q).any(axis=1)
    lib = xgb.Booster(model_file=str(cluster.root / "hosp-model.json")).inplace_predict(q[finite],
                                                                                       predict_type="margin")
    assert np.abs(np.array(got.values)[finite] / 2.0**32 - lib).max() < 1e-5
    # nobody else gets them: not the owner, not the coordinator's operator, not another client
    for other in ("hosp", "operator", "nosy"):
        with pytest.raises(FetchError, match="refused"):
            await cluster.fetch(job_id, "predictions", other)
    # every node's audit log has the query, with the counts and never a value
    for org in ORGS:
        lines = [e[4] for e in cluster_audit(cluster, org) if e[1] == "model-query" and e[2] == job_id]
        assert lines == [f"clinic: {Q} queries, {Q} of {GRANT} used"]
    # what each node opened depends on neither the model nor the queries: another job with every
    # feature missing opens exactly the same (the row check's bit, public coins, the output)
    other_id, final = await run_prediction(cluster, "tm-predict", "clinic", np.full_like(q, np.nan))
    assert final.state == "DONE", final.error
    for org in ORGS:
        opened = {j: [e[4] for e in cluster_audit(cluster, org) if e[1] == "opened" and e[2] == j]
                  for j in (job_id, other_id)}
        assert opened[job_id] == opened[other_id] and opened[job_id]
        assert [line for line in opened[job_id] if ", output, " in line] == [f"output/predictions: {Q} values, output, "
                                                                              "to clinic"]


async def test_quota_and_grants_are_enforced_at_every_node(world) -> None:
    cluster, x = world
    await ensure_kept(cluster)
    # nosy holds a grant of 0, stranger none: both refused at Prepare, before anything runs
    for scenario, why in (("tm-nosy", "nosy may not make 8 more queries (0 of its 0 left)"),
                          ("tm-stranger", "stranger may not make 8 more queries (no grant)")):
        final = await cluster.watch(await cluster.submit(scenario))
        assert final.state == "FAILED" and why in final.error, final.error
    # clinic's grant is two jobs: use it up, then the next is refused
    while True:
        row = grant_row(cluster, "lab", "clinic")
        if row[0] + Q > row[1]:
            break
        _, final = await run_prediction(cluster, "tm-predict", "clinic", queries(x))
        assert final.state == "DONE", final.error
    final = await cluster.watch(await cluster.submit("tm-predict"))
    assert final.state == "FAILED" and f"clinic may not make {Q} more queries (0 of its {GRANT} left)" in final.error
    assert all(grant_row(cluster, org, "clinic") == (GRANT, GRANT) for org in ORGS)


async def test_only_the_owner_deletes_and_a_deleted_model_cannot_be_used(world) -> None:
    cluster, x = world
    await ensure_kept(cluster)
    # another node's certificate (lab is a peer, not the owner) is refused
    async with secure_channel(cluster.deployment.addresses["auth"], "auth", cluster.tls("lab")) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await node_pb2_grpc.ModelControlStub(ch).DeleteModel(node_pb2.ModelRef(model_id="tm-doomed-v1"), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # the owner's tool, with its node's config: erased at every node
    out = subprocess.run([sys.executable, "-m", "mpcnode", "model", "delete", "--config",
                          str(cluster.deployment.node_configs["hosp"]), "tm-doomed-v1"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split("\n")[:3]) == ["auth: erased", "hosp: erased", "lab: erased"]
    for org in ORGS:
        assert models_row(cluster, org, "tm-doomed-v1")[1] > 0
    final = await cluster.watch(await cluster.submit("tm-doomed-predict"))
    assert final.state == "FAILED" and "model tm-doomed-v1 was deleted" in final.error
    # the listing shows it deleted, the other model kept with its grants
    out = subprocess.run([sys.executable, "-m", "mpcnode", "model", "list", "--json", "--config",
                          str(cluster.deployment.node_configs["lab"])], capture_output=True, text=True, cwd=REPO,
                         timeout=60)
    listed = {m["model"]: m for m in json.loads(out.stdout)}
    assert listed["tm-doomed-v1"]["deleted"] and not listed["tm-v1"]["deleted"]
    assert {g["querier"] for g in listed["tm-v1"]["grants"]} == {"clinic", "nosy"}
    # the owner collects every node's grants and queries; another node's certificate may not
    out = subprocess.run([sys.executable, "-m", "mpcnode", "model", "usage", "--config",
                          str(cluster.deployment.node_configs["hosp"]), "tm-v1"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    for org in ORGS:
        assert f"{org}: model tm-v1" in out.stdout
    assert out.stdout.count(" model-query ") >= 3 and "nosy: 0 of 0 queries used" in out.stdout
    out = subprocess.run([sys.executable, "-m", "mpcnode", "model", "usage", "--config",
                          str(cluster.deployment.node_configs["lab"]), "tm-v1"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 1 and out.stdout.count("PERMISSION_DENIED: only hosp, the owner of model tm-v1") == 3


async def test_a_querier_out_of_range_fails_the_job_cleanly(world) -> None:
    """A client that skips its own checks and sends a key beyond the key range: its row is excluded
    inside MPC before any comparison, the job fails naming no value, and nothing is opened."""
    cluster, x = world
    await ensure_kept(cluster)
    for org in ORGS:        # room for one more job, whatever the other tests used (as a re-shared grant would)
        with sqlite3.connect(cluster.data_dir(org) / "shares.sqlite3") as db:
            db.execute("UPDATE model_grants SET quota=used+? WHERE model_id='tm-v1' AND querier='clinic'", (Q,))
    job_id = await cluster.submit("tm-predict")
    await cluster.wait_running("hosp", job_id)
    keys = query_keys(queries(x), "xgboost").reshape(-1)
    keys[5] = 2**40 + 12345
    await client_submit(job_id, "queries", keys, cluster.nodes_of("tm-predict"), cluster.tls("clinic"),
                        cluster.fingerprint("tm-predict"), skip_local_check=True)
    await close_inputs(cluster.deployment.coordinator_address, cluster.tls("operator"), job_id)
    final = await cluster.watch(job_id)
    assert final.state == "FAILED", final.error
    assert "12345" not in final.error and str(2**40 + 12345) not in final.error
    for org in ORGS:
        assert not [e for e in cluster_audit(cluster, org) if e[1] == "opened" and e[2] == job_id and
                    "output" in e[4]]


async def test_the_querier_client_reads_a_table_and_writes_only_its_predictions(world, tmp_path) -> None:
    """`python -m mpcnode.client predict`, as a querier runs it: a CSV with the model's named
    columns in another order, an id column carried through, fewer rows than the job answers."""
    cluster, x = world
    await ensure_kept(cluster)
    for org in ORGS:        # room for one more job, whatever the other tests used
        with sqlite3.connect(cluster.data_dir(org) / "shares.sqlite3") as db:
            db.execute("UPDATE model_grants SET quota=used+? WHERE model_id='tm-v1' AND querier='clinic'", (Q,))
    rows = queries(x)[:5]
    order = list(reversed(range(FEATURES)))
    lines = ["id," + ",".join(NAMES[j] for j in order)]
    lines += [f"patient-{i}," + ",".join("" if np.isnan(v) else repr(float(v)) for v in r[order])
              for i, r in enumerate(rows)]
    (tmp_path / "q.csv").write_text("\n".join(lines) + "\n")
    job_id = await cluster.submit("tm-predict")
    await cluster.wait_running("hosp", job_id)
    nodes = ",".join(f"{o}={a}" for o, a in cluster.nodes_of("tm-predict").items())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mpcnode.client", "predict", "--job", job_id, "--input", str(tmp_path / "q.csv"),
        "--output", str(tmp_path / "scores.csv"), "--carry", "id", "--nodes", nodes, "--certs", str(cluster.certs),
        "--identity", "clinic", "--fingerprint", cluster.fingerprint("tm-predict"), "--timeout", "60",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        while (await cluster.node_status("lab", job_id)).inputs_received < 1:
            await asyncio.sleep(0.1)
    await close_inputs(cluster.deployment.coordinator_address, cluster.tls("operator"), job_id)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "5 predictions written" in out.decode()
    got = (tmp_path / "scores.csv").read_text().splitlines()
    assert got[0] == '"id","margin"' or got[0] == "id,margin"
    forest = load_model(cluster.root / "hosp-model.json", depth=DEPTH)
    want = evaluate(forest, rows).encoded[:, 0] / 2.0**32
    ids = [line.split(",")[0].strip('"') for line in got[1:]]
    margins = np.array([float(line.split(",")[1]) for line in got[1:]])
    assert ids == [f"patient-{i}" for i in range(5)] and np.array_equal(margins, want)


async def test_probabilities_and_classes_over_real_nodes(world) -> None:
    cluster, x = world
    await ensure_kept(cluster)
    for org in ORGS:        # room for two more jobs, whatever the other tests used
        with sqlite3.connect(cluster.data_dir(org) / "shares.sqlite3") as db:
            db.execute("UPDATE model_grants SET quota=used+? WHERE model_id='tm-v1' AND querier='clinic'", (2 * Q,))
    q = queries(x)
    booster = xgb.Booster(model_file=str(cluster.root / "hosp-model.json"))
    finite = ~np.isinf(q).any(axis=1)            # DMatrix refuses inf; the margins carry them
    margin = booster.inplace_predict(q, predict_type="margin")
    job_id, final = await run_prediction(cluster, "tm-probability", "clinic", q)
    assert final.state == "DONE", final.error
    got = np.array((await cluster.fetch(job_id, "predictions", "clinic")).value)
    assert np.abs(got - 1 / (1 + np.exp(-margin))).max() <= 1e-3
    assert np.abs(got[finite] - booster.predict(xgb.DMatrix(q[finite], feature_names=NAMES))).max() <= 1e-3
    job_id, final = await run_prediction(cluster, "tm-class", "clinic", q)
    assert final.state == "DONE", final.error
    assert (await cluster.fetch(job_id, "predictions", "clinic")).values == (margin > 0).astype(int).tolist()


async def ensure_kept(cluster: Cluster) -> None:
    for name, model_id in (("tm-model", "tm-v1"), ("tm-doomed", "tm-doomed-v1")):
        if models_row(cluster, "hosp", model_id) is None:
            assert (await cluster.run(name)).state == "DONE"


def grant_row(cluster: Cluster, org: str, querier: str) -> tuple[int, int]:
    with sqlite3.connect(cluster.data_dir(org) / "shares.sqlite3") as db:
        return db.execute("SELECT used, quota FROM model_grants WHERE model_id='tm-v1' AND querier=?",
                          (querier,)).fetchone()


def cluster_audit(cluster: Cluster, org: str) -> list[tuple]:
    with sqlite3.connect(cluster.data_dir(org) / "shares.sqlite3") as db:
        return db.execute("SELECT ts, event, job_id, fingerprint, detail FROM audit ORDER BY rowid").fetchall()

