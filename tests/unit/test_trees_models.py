"""Models kept at the nodes between jobs (mpcnode/models.py ModelJobs over the SQLite store):
shared once and kept with the grants of the `model` job's circuit, reloaded after the stores are
closed and reopened, used by several predictions, counted against each querier's quota (over it:
refused), deleted (then unusable), every use in the audit log."""
from __future__ import annotations


import numpy as np
import pytest

from mpcnode.computation.models import MODEL_VALUE_BOUND, tree_model
from mpcnode.errors import Denied
from mpcnode.models import ModelJobs
from mpcnode.protocols import trees as pt
from mpcnode.store import DuplicateModel, ShareStore
from mpcnode.trees import evaluate, load_model
from mpcnode.trees.keys import KEY_INF, KEY_NAN
from parley.v1 import circuit_pb2 as cpb
from tests.unit.trees_models import OWNER, QUERIER, data, three_parties, train_lightgbm

pytest.importorskip("lightgbm")


def three(body):
    return three_parties(body, timeout_s=30)[0]


def model_job(shape: pt.ModelShape, grants: dict[str, int]) -> cpb.Circuit:
    c = cpb.Circuit(name="keep")
    c.inputs.add(name="model", owner="hospital", source=cpb.INPUT_SOURCE_NODE, length=shape.total,
                 lo=-MODEL_VALUE_BOUND, hi=MODEL_VALUE_BOUND, dataset="m", model=tree_model(shape))
    c.keep.add(model_id="wine-1", value="model", grants=[cpb.QueryGrant(querier=q, queries=n) for q, n in grants.items()])
    return c


def predict_job(shape: pt.ModelShape, queries: int, querier: str) -> cpb.Circuit:
    c = cpb.Circuit(name="predict")
    c.inputs.add(name="model", owner="hospital", source=cpb.INPUT_SOURCE_MODEL, key="wine-1", length=shape.total,
                 lo=-MODEL_VALUE_BOUND, hi=MODEL_VALUE_BOUND, model=tree_model(shape))
    c.inputs.add(name="queries", source=cpb.INPUT_SOURCE_CLIENTS, clients=[querier], length=queries * shape.features,
                 lo=-KEY_INF, hi=KEY_NAN)
    c.ops.add(out="p", kind=cpb.OP_PREDICT, args=["model", "queries"], ints=[0])
    c.outputs.add(name="p", value="p", recipients=[querier])
    return c


def test_a_kept_model_serves_several_jobs_within_quota_and_not_after_deletion(tmp_path) -> None:
    x, y = data("wine")
    forest = load_model(train_lightgbm("multiclass", x, y, tmp_path / "m", trees=3))
    shape = pt.ModelShape.of(forest)
    paths = [tmp_path / f"node{i}" / "shares.db" for i in range(3)]
    keep = model_job(shape, {"clinic": 25})

    async def share(e):
        model = await pt.share_model(e, "model", OWNER, shape, forest if e.party == OWNER else None)
        store = ShareStore(paths[e.party])
        jobs = ModelJobs(store, f"node{e.party}")
        store.transaction(jobs.keeper(keep, {"wine-1": pt.pack(model)}, ["hospital", "lab", "auth"]))
        jobs.audit_kept("keep-job", keep)
        store.close()
    three(share)

    def predict(job: str, q: np.ndarray, querier: str = "clinic"):
        circuit = predict_job(shape, 10, querier)

        async def body(e):
            store = ShareStore(paths[e.party])            # reopened: the shares are durable
            try:
                flat = ModelJobs(store, f"node{e.party}").take(job, circuit)["model"]
                model = pt.unpack(shape, flat, e.share_shape)
                sq = await pt.share_queries(e, f"{job}/q", QUERIER, model.shape, len(q),
                                            q if e.party == QUERIER else None)
                return await pt.predict(e, job, model, sq, QUERIER)
            finally:
                store.close()
        return three(body)[QUERIER]

    ref = evaluate(forest, x[:20])
    assert np.array_equal(predict("job-1", x[:10]), ref.encoded[:10])
    assert np.array_equal(predict("job-2", x[10:20]), ref.encoded[10:20])
    with pytest.raises(Denied, match=r"clinic may not make 10 more queries \(5 of its 25 left\)"):
        predict("job-3", x[20:30])
    with pytest.raises(Denied, match="stranger may not make 10 more queries .no grant."):
        predict("job-4", x[:10], querier="stranger")

    for i, p in enumerate(paths):
        store = ShareStore(p)
        jobs = ModelJobs(store, f"node{i}")
        events = [(ev, job) for _, ev, job, fp, _ in store.audit_log() if fp == "wine-1"]
        assert events == [("model-stored", "keep-job"), ("model-query", "job-1"), ("model-query", "job-2"),
                          ("model-query-refused", "job-3"), ("model-query-refused", "job-4")]
        assert jobs.delete("hospital", "wine-1") and not jobs.delete("hospital", "wine-1")
        with pytest.raises(Denied, match="model wine-1 was deleted"):
            jobs.check(predict_job(shape, 1, "clinic"))
        row = store.model("wine-1")
        assert row is not None and row.deleted and row.share is None and row.checked   # its owner computed
        with pytest.raises(DuplicateModel):               # an id never comes back
            store.transaction(jobs.keeper(keep, {"wine-1": np.zeros((shape.total, 2), dtype=np.uint64)}, []))
        store.close()


def test_stored_shares_of_the_wrong_size_are_refused() -> None:
    shape = pt.ModelShape(trees=1, depth=1, features=2, classes=1, tree_class=(0,), library="xgboost")
    with pytest.raises(ValueError, match="stored model shares have shape"):
        pt.unpack(shape, np.zeros((5, 2), dtype=np.uint64), (2,))
    assert pt.ModelShape.from_json(shape.to_json()) == shape
