"""The oblivious evaluation (mpcnode/protocols/trees.py) in one process: three replicated3
parties over MemoryNetwork; the model owner is party 0, the querier party 2. The opened margins
equal the plaintext reference exactly (in encoded units) and the library's margins within the
leaf-encoding bound; two different models of one public shape cost the same rounds and bytes;
nothing is opened but the querier's output."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mpcnode.engines import Replicated3Engine, ShamirEngine
from mpcnode.exchange import MemoryNetwork
from mpcnode.protocols import trees as pt
from mpcnode.trees import evaluate, leaf_error_bound, load_model
from tests.unit.local_mpc import deal, mine, mpc
from tests.unit.trees_models import (OWNER, QUERIER, data, edge_queries, share_model_and_queries, three_parties,
                                     train_lightgbm, train_xgboost, with_missing)

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")

RNG = np.random.default_rng(1515)


def run_prediction(forest, q: np.ndarray, *, fraction_bits: int = 32):
    """Share the model (owner) and the queries (querier), predict; returns (the querier's opened
    margins, the engines)."""
    shape = pt.ModelShape.of(forest, fraction_bits)

    async def body(e):
        model, queries = await share_model_and_queries(e, forest, shape, q)
        return await pt.predict(e, "predict", model, queries, QUERIER)

    out, engines, net = three_parties(body)
    assert out[OWNER] is None and out[1] is None
    assert all(not box for box in net._mail), "undelivered messages"
    return out[QUERIER], engines


@pytest.mark.parametrize("lib,kind,dataset,depth,params", [
    ("xgboost", "binary", "breast_cancer", 4, {}),
    ("xgboost", "multiclass", "wine", 3, {}),
    ("xgboost", "regression", "diabetes", 1, {}),
    ("lightgbm", "binary", "breast_cancer", None, {"zero_as_missing": True}),
    ("lightgbm", "regression", "diabetes", None, {"num_leaves": 3}),
])
def test_mpc_margins_equal_the_reference_exactly(tmp_path, lib, kind, dataset, depth, params) -> None:
    x, y = data(dataset)
    x = with_missing(x)
    if lib == "xgboost":
        path = train_xgboost(kind, x, y, tmp_path / "m", trees=5, depth=depth, **params)
    else:
        path = train_lightgbm(kind, x, y, tmp_path / "m", trees=5, **params)
    forest = load_model(path)
    q = np.concatenate([x[:40], edge_queries(forest, x, 80, RNG)])
    got, engines = run_prediction(forest, q)
    ref = evaluate(forest, q)
    assert got.shape == (len(q), forest.classes)
    assert np.array_equal(got, ref.encoded)
    # the leaf encoding's error against the library's own float margin
    if lib == "xgboost":
        finite = ~np.isinf(q).any(axis=1)
        lib_margin = xgb.Booster(model_file=str(path)).inplace_predict(q[finite], predict_type="margin")
        got_f, ref_f = got[finite], ref.margin[finite]
    else:
        lib_margin = lgb.Booster(model_file=str(path)).predict(q, raw_score=True)
        got_f, ref_f = got, ref.margin
    lib_margin = lib_margin.reshape(len(got_f), -1)
    float32_rounding = (forest.trees + 1) * np.abs(ref_f).max() * 2.0**-23 if lib == "xgboost" else 1e-9
    assert np.abs(got_f / 2.0**32 - lib_margin).max() <= leaf_error_bound(forest) + float32_rounding
    assert [o.purpose for o in engines[QUERIER].opened] == ["output"]
    assert all([(o.label, o.to) for o in e.opened] == [("predict/out", (QUERIER,))] for e in engines)


def test_same_shape_same_messages_and_nothing_opened_but_the_output(tmp_path) -> None:
    """Two different models (different data, features, thresholds, leaves) of the same public
    shape: identical rounds and bytes at every party, whatever the queries."""
    x, y = data("breast_cancer")
    a = load_model(train_xgboost("binary", x, y, tmp_path / "a", trees=4, depth=3), depth=3)
    b = load_model(train_xgboost("binary", with_missing(x[::-1]), 1 - y[::-1], tmp_path / "b", trees=4, depth=2,
                                 eta=0.9), depth=3)
    assert pt.ModelShape.of(a) == pt.ModelShape.of(b)
    assert not np.array_equal(a.feature, b.feature)
    qa, qb = x[:30], edge_queries(b, x, 30, RNG)
    _, ea = run_prediction(a, qa)
    _, eb = run_prediction(b, qb)
    for e1, e2 in zip(ea, eb):
        s1, s2 = e1.exchange.stats, e2.exchange.stats
        assert (s1.rounds, s1.messages_sent, s1.bytes_sent) == (s2.rounds, s2.messages_sent, s2.bytes_sent)
        assert s1.labels == s2.labels
        assert list(e1.opened) == list(e2.opened) and [o.purpose for o in e1.opened] == ["output"]
    # rounds: key agreement, model, queries, then 1 select + 6 comparison (cross round, 5 tree
    # levels) + (D - 1) path + 1 leaf injection + 1 margin sum + 1 opening
    assert ea[0].exchange.stats.rounds == 3 + 1 + 6 + 2 + 1 + 1 + 1


def test_other_engines_are_refused() -> None:
    net = MemoryNetwork(3)
    e = ShamirEngine(net.exchange(0), 1)
    shape = pt.ModelShape(trees=1, depth=1, features=2, classes=1, tree_class=(0,), library="xgboost")
    with pytest.raises(ValueError, match="replicated3 engine with 3 parties; this job has engine shamir"):
        asyncio.run(pt.share_model(e, "m", 0, shape, None))


def test_the_owner_must_share_the_announced_shape(tmp_path) -> None:
    x, y = data("breast_cancer")
    forest = load_model(train_xgboost("binary", x, y, tmp_path / "m", trees=2, depth=2))
    wrong = pt.ModelShape(trees=3, depth=2, features=30, classes=1, tree_class=(0, 0, 0), library="xgboost")
    net = MemoryNetwork(3, timeout_s=2)
    e = Replicated3Engine(net.exchange(0), 1)
    with pytest.raises(ValueError, match="announced shape"):
        asyncio.run(pt.share_model(e, "m", 0, wrong, forest))


@pytest.mark.parametrize("engine", ["shamir", "replicated3"])
def test_matmul_local_is_a_matrix_product(engine) -> None:
    """The generic matmul_local (Shamir) and replicated3's component products, reduced in one round."""
    a = RNG.integers(-1000, 1000, (7, 5))
    b = RNG.integers(-1000, 1000, (5, 4))
    da, db = deal(a, 3), deal(b, 3)

    async def body(e):
        if engine == "replicated3":
            await e.establish()
        return await e.reduce("mm", e.matmul_local(mine(e, da), mine(e, db)))

    got, _ = mpc(3, body, engine=engine)
    assert np.array_equal(got, a @ b)


def test_ring_matmul_equals_the_uint64_product() -> None:
    from mpcnode.replicated import ring_matmul
    for m, k, n in [(1, 1, 1), (7, 300, 5), (130, 2, 129), (200, 90, 300)]:    # plain and limb paths
        a = RNG.integers(0, 2**64, (m, k), dtype=np.uint64)
        b = RNG.integers(0, 2**64, (k, n), dtype=np.uint64)
        a[0, 0], b[0, 0] = np.uint64(2**64 - 1), np.uint64(2**64 - 1)
        assert np.array_equal(ring_matmul(a, b), np.matmul(a, b))
        for bits in (1, 17, 33, 34, 35, 63):                                 # two 17-bit limbs up to 34
            assert np.array_equal(ring_matmul(a, b, bits), np.matmul(a, b) & np.uint64(2**bits - 1)), bits


@pytest.mark.parametrize("depth,classes,count", [(1, 1, 17), (2, 3, 17), (4, 1, 17), (3, 1, 40)])
def test_predict_cost_from_the_shape_is_what_is_sent(tmp_path, depth, classes, count) -> None:
    kind, dataset = ("multiclass", "wine") if classes > 1 else ("binary", "breast_cancer")
    x, y = data(dataset)
    forest = load_model(train_xgboost(kind, x, y, tmp_path / "m", trees=2, depth=depth), depth=depth)
    shape = pt.ModelShape.of(forest)
    q = x[:count]                 # 2 trees x 40 queries: the packed words of a node straddle 64
    marks = {}

    async def body(e):
        model, queries = await share_model_and_queries(e, forest, shape, q)
        marks[e.party] = (e.exchange.stats.rounds, e.exchange.stats.bytes_sent)
        return await pt.predict(e, "predict", model, queries, QUERIER)

    _, engines, _ = three_parties(body)
    rounds = {e.exchange.stats.rounds - marks[e.party][0] for e in engines}
    sent = sum(e.exchange.stats.bytes_sent - marks[e.party][1] for e in engines)
    assert (rounds, sent) == ({pt.predict_cost(shape, len(q))[0]}, 8 * pt.predict_cost(shape, len(q))[1])


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_query_columns_from_keys_equal_the_plaintext_columns(library) -> None:
    """The one integer per feature a querier sends (keys.query_keys: KEY_NAN for NaN): the nodes
    derive the missing bits from it, and C equals plain.query_columns, for NaN, +-0, +-inf, tiny
    values (LightGBM's zero rule) and ordinary ones."""
    from mpcnode.trees.keys import query_keys
    from mpcnode.trees.plain import query_columns
    vals = np.array([np.nan, 0.0, -0.0, np.inf, -np.inf, 1e-36, -1e-36, 1e-35, 3.5, -2.25, 1e30, -7e-30])
    x = RNG.choice(vals, (13, 5))
    keys = query_keys(x, library)
    dealt = deal(keys, 3)

    async def body(e):
        await e.establish()
        return await pt.query_columns_from_keys(e, "q", mine(e, dealt), library)

    got, _ = mpc(3, body, engine="replicated3")
    want = query_columns(x, library)
    if library == "xgboost":          # no XGBoost node reads the is-zero bits (Z = 0): not computed
        want[10:] = 0
    assert np.array_equal(got, want)
    if library == "lightgbm":
        # keys inside LightGBM's zero band that no honest querier sends (it sends 0) read as 0
        from mpcnode.trees.keys import LGBM_ZERO_KEY
        band = np.array([[LGBM_ZERO_KEY, -LGBM_ZERO_KEY, 1, -1, LGBM_ZERO_KEY + 1]])
        dealt_band = deal(band, 3)

        async def body2(e):
            await e.establish()
            return await pt.query_columns_from_keys(e, "q", mine(e, dealt_band), library)
        got, _ = mpc(3, body2, engine="replicated3")
        assert got[:5].reshape(-1).tolist() == [0, 0, 0, 0, LGBM_ZERO_KEY + 1]
        assert got[10:].reshape(-1).tolist() == [1, 1, 1, 1, 0]
