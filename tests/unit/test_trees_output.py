"""Classes and probabilities of a prediction inside MPC (mpcnode/protocols/treeoutput.py), three
replicated3 parties in one process: the class equals the library's on every query (ties to the
first class, a zero binary margin to class 0), the probabilities are within PROB_ERROR of the
library's, and nothing is opened but the output."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mpcnode.engines import Replicated3Engine
from mpcnode.exchange import MemoryNetwork
from mpcnode.protocols import treeoutput, trees as pt
from mpcnode.trees import evaluate, load_model
from tests.unit.local_mpc import deal, mine
from tests.unit.trees_models import (QUERIER, data, share_model_and_queries, three_parties, train_lightgbm,
                                     train_xgboost, with_missing)

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")


def run(forest, q: np.ndarray, what: str):
    shape = pt.ModelShape.of(forest)

    async def body(e):
        model, sq = await share_model_and_queries(e, forest, shape, q)
        margins = await pt.evaluate(e, "p", model, sq)
        if what == "class":
            out = await treeoutput.predicted_class(e, "c", margins, shape)
        else:
            out, frac = await treeoutput.probabilities(e, "prob", margins, shape)
            assert frac == treeoutput.PROB_FRAC
        got = await e.open("out", out, to=[QUERIER], purpose="output")
        return None if got is None else got.view(np.int64)

    results, engines, _ = three_parties(body)
    out = results[QUERIER]
    # the masked openings of the probabilities' truncations (statistically hiding: docs/protocols.md),
    # then the output: nothing else
    purposes = [o.purpose for o in engines[QUERIER].opened]
    assert purposes[-1] == "output" and set(purposes[:-1]) <= ({"truncation"} if what != "class" else set())
    return out


@pytest.mark.parametrize("lib,kind,dataset", [("xgboost", "binary", "breast_cancer"), ("xgboost", "multiclass", "wine"),
                                              ("lightgbm", "binary", "breast_cancer"),
                                              ("lightgbm", "multiclass", "wine")])
def test_probabilities_and_classes_match_the_library(tmp_path, lib, kind, dataset) -> None:
    x, y = data(dataset)
    x = with_missing(x)
    if lib == "xgboost":
        path = train_xgboost(kind, x, y, tmp_path / "m", trees=4, depth=3)
        booster = xgb.Booster(model_file=str(path))
        prob = booster.predict(xgb.DMatrix(x[:40]))
    else:
        path = train_lightgbm(kind, x, y, tmp_path / "m", trees=4)
        prob = lgb.Booster(model_file=str(path)).predict(x[:40])
    forest = load_model(path)
    q = x[:40]
    prob = prob.reshape(len(q), -1)
    got = run(forest, q, "probability") / 2.0**treeoutput.PROB_FRAC
    assert got.shape == prob.shape
    assert np.abs(got - prob).max() <= treeoutput.PROB_ERROR[kind]
    cls = run(forest, q, "class")[:, 0]
    margins = evaluate(forest, q).encoded
    want = (margins[:, 0] > 0).astype(int) if kind == "binary" else np.argmax(margins, axis=1)
    assert np.array_equal(cls, want)


def test_ties_and_zero_margins_go_to_the_first_class() -> None:
    """Class decisions straight from dealt margins: exact ties and a zero binary margin."""
    from tests.unit.local_mpc import mpc
    m = np.array([[5, 5, 1], [-3, 7, 7], [2, 2, 2], [-(2**61), 2**61, 0], [9, 1, 9]], dtype=np.int64)
    dm = deal(m, 3)
    multi = pt.ModelShape(trees=3, depth=1, features=1, classes=3, tree_class=(0, 1, 2), library="xgboost",
                          kind="multiclass")
    got, _ = mpc(3, lambda e: _cls(e, mine(e, dm), multi), engine="replicated3")
    assert got.reshape(-1).tolist() == np.argmax(m, axis=1).tolist() == [0, 1, 0, 1, 0]
    b = np.array([[0], [1], [-1], [2**61], [-(2**61)]], dtype=np.int64)
    db = deal(b, 3)
    binary = pt.ModelShape(trees=1, depth=1, features=1, classes=1, tree_class=(0,), library="xgboost", kind="binary")
    got, _ = mpc(3, lambda e: _cls(e, mine(e, db), binary), engine="replicated3")
    assert got.reshape(-1).tolist() == [0, 1, 0, 1, 0]


async def _cls(e, margins, shape):
    await e.establish()
    return await treeoutput.predicted_class(e, "c", margins, shape)


def test_a_regression_model_has_neither() -> None:
    shape = pt.ModelShape(trees=1, depth=1, features=1, classes=1, tree_class=(0,), library="xgboost",
                          kind="regression")
    net = MemoryNetwork(3)
    e = Replicated3Engine(net.exchange(0), 1)
    with pytest.raises(ValueError, match="regression model has no probability"):
        asyncio.run(treeoutput.probabilities(e, "p", np.zeros((1, 1, 2), dtype=np.uint64), shape))
    with pytest.raises(ValueError, match="regression model has no class"):
        asyncio.run(treeoutput.predicted_class(e, "c", np.zeros((1, 1, 2), dtype=np.uint64), shape))


def test_the_circuit_rules_use_the_protocol_s_fraction_bits() -> None:
    from mpcnode.computation.models import PROBABILITY_FRAC_BITS, PROBABILITY_MIN_FRAC_BITS
    assert PROBABILITY_FRAC_BITS == treeoutput.PROB_FRAC
    assert PROBABILITY_MIN_FRAC_BITS == treeoutput.PROB_MIN_FRAC


@pytest.mark.parametrize("classes,f", [(1, 32), (1, 18), (2, 32), (3, 24), (5, 18), (9, 32)])
@pytest.mark.parametrize("what", ["class", "probability"])
def test_output_cost_from_the_shape_is_the_rounds_taken(classes, f, what) -> None:
    """output_cost counts the rounds each output takes, from the public shape alone (no query count:
    one batch); here on dealt margins, the same for every party."""
    kind = "binary" if classes == 1 else "multiclass"
    shape = pt.ModelShape(trees=classes, depth=1, features=1, classes=classes, tree_class=tuple(range(classes)),
                          library="xgboost", kind=kind, fraction_bits=f)
    m = np.round(np.random.default_rng(classes + f).normal(0, 3, (6, classes)) * 2.0**f).astype(np.int64)
    dm = deal(m, 3)
    net = MemoryNetwork(3, timeout_s=60)
    engines = [Replicated3Engine(net.exchange(i), 1) for i in range(3)]

    async def body(e):
        await e.establish()
        before = e.exchange.stats.rounds
        if what == "class":
            await treeoutput.predicted_class(e, "c", mine(e, dm), shape)
        else:
            await treeoutput.probabilities(e, "p", mine(e, dm), shape)
        return e.exchange.stats.rounds - before

    async def main():
        return await asyncio.gather(*(body(e) for e in engines))
    assert set(asyncio.run(main())) == {treeoutput.output_cost(shape, what)}


def test_output_cost_refuses_what_a_model_has_not() -> None:
    reg = pt.ModelShape(trees=1, depth=1, features=1, classes=1, tree_class=(0,), library="xgboost", kind="regression")
    with pytest.raises(ValueError, match="regression model has no probability"):
        treeoutput.output_cost(reg, "probability")
    binary = pt.ModelShape(trees=1, depth=1, features=1, classes=1, tree_class=(0,), library="xgboost", kind="binary")
    with pytest.raises(ValueError, match="unknown output"):
        treeoutput.output_cost(binary, "margin")


@pytest.mark.parametrize("classes", [1, 3])
def test_probabilities_refuse_too_few_fraction_bits(classes) -> None:
    """Below PROB_MIN_FRAC the margins' public range (2^62 at f bits) does not fit the comparisons
    once at PROB_FRAC bits: refused before any round, with the reason, by the protocol and the cost."""
    f = treeoutput.PROB_MIN_FRAC - 1
    shape = pt.ModelShape(trees=classes, depth=1, features=1, classes=classes, tree_class=tuple(range(classes)),
                          library="xgboost", kind="binary" if classes == 1 else "multiclass", fraction_bits=f)
    e = Replicated3Engine(MemoryNetwork(3).exchange(0), 1)
    with pytest.raises(ValueError, match=f"at least {treeoutput.PROB_MIN_FRAC} fraction bits, not {f}"):
        asyncio.run(treeoutput.probabilities(e, "p", np.zeros((1, classes, 2), dtype=np.uint64), shape))
    with pytest.raises(ValueError, match=f"at least {treeoutput.PROB_MIN_FRAC} fraction bits"):
        treeoutput.output_cost(shape, "probability")
