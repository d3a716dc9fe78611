"""Models kept at the nodes between jobs (mpcnode/models.py over the SQLite store): shared once,
reloaded after the stores are closed and reopened, used by several predictions, counted against
each querier's quota (over it: refused), deleted (then unusable), every use in the audit log."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mpcnode.engines import Replicated3Engine
from mpcnode.errors import Denied, NotFound
from mpcnode.exchange import MemoryNetwork
from mpcnode.models import ModelRegistry
from mpcnode.protocols import trees as pt
from mpcnode.store import DuplicateModel, ShareStore
from mpcnode.trees import evaluate, load_model
from tests.unit.trees_models import data, train_lightgbm

pytest.importorskip("lightgbm")
OWNER, QUERIER = 0, 2


def three(body):
    net = MemoryNetwork(3, timeout_s=30)
    engines = [Replicated3Engine(net.exchange(i), 1) for i in range(3)]

    async def main():
        await asyncio.gather(*(e.establish() for e in engines))
        return await asyncio.gather(*(body(e) for e in engines))
    return asyncio.run(main())


def test_a_kept_model_serves_several_jobs_within_quota_and_not_after_deletion(tmp_path) -> None:
    x, y = data("wine")
    forest = load_model(train_lightgbm("multiclass", x, y, tmp_path / "m", trees=3))
    shape = pt.ModelShape.of(forest)
    paths = [tmp_path / f"node{i}" / "shares.db" for i in range(3)]

    async def share(e):
        model = await pt.share_model(e, "model", OWNER, shape, forest if e.party == OWNER else None)
        store = ShareStore(paths[e.party])
        reg = ModelRegistry(store)
        reg.keep("wine-1", "hospital", model)
        reg.grant("wine-1", "clinic", 25)
        store.close()
    three(share)

    def predict(job: str, q: np.ndarray, querier: str = "clinic"):
        async def body(e):
            store = ShareStore(paths[e.party])            # reopened: the shares are durable
            try:
                model = ModelRegistry(store).authorize("wine-1", querier, len(q), job)
                sq = await pt.share_queries(e, f"{job}/q", QUERIER, model.shape, len(q),
                                            q if e.party == QUERIER else None)
                return await pt.predict(e, job, model, sq, QUERIER)
            finally:
                store.close()
        return three(body)[QUERIER]

    ref = evaluate(forest, x[:25])
    assert np.array_equal(predict("job-1", x[:20]), ref.encoded[:20])
    assert np.array_equal(predict("job-2", x[20:25]), ref.encoded[20:25])
    with pytest.raises(Denied, match=r"clinic may not query it \(1 queries asked, 0 of its 25 left\)"):
        predict("job-3", x[25:26])
    with pytest.raises(Denied, match="stranger may not query it .no grant."):
        predict("job-4", x[:1], querier="stranger")

    for p in paths:
        store = ShareStore(p)
        reg = ModelRegistry(store)
        events = [(ev, job) for _, ev, job, fp, _ in store.audit_log() if fp == "wine-1"]
        assert events == [("model-stored", ""), ("model-grant", ""), ("model-query", "job-1"),
                          ("model-query", "job-2"), ("model-query-refused", "job-3"),
                          ("model-query-refused", "job-4")]
        assert reg.delete("wine-1") and not reg.delete("wine-1")
        with pytest.raises(NotFound, match="model wine-1 was deleted"):
            reg.authorize("wine-1", "clinic", 1, "job-5")
        with pytest.raises(NotFound):
            reg.grant("wine-1", "clinic", 100)
        row = store.model("wine-1")
        assert row is not None and row.deleted and row.share is None
        with pytest.raises(DuplicateModel):               # an id never comes back
            store.put_model("wine-1", "hospital", shape.to_json(), np.zeros((3, 2), dtype=np.uint64))
        store.close()


def test_stored_shares_of_the_wrong_size_are_refused(tmp_path) -> None:
    shape = pt.ModelShape(trees=1, depth=1, features=2, classes=1, tree_class=(0,), library="xgboost")
    store = ShareStore(tmp_path / "s.db")
    store.put_model("m", "o", shape.to_json(), np.zeros((5, 2), dtype=np.uint64))
    store.set_model_grant("m", "q", 3)
    with pytest.raises(ValueError, match="stored model shares have shape"):
        ModelRegistry(store).authorize("m", "q", 1, "j")
    assert pt.ModelShape.from_json(shape.to_json()) == shape
