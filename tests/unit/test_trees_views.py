"""What one node sees during a tree prediction does not depend on the model or the queries
(tests/unit/views.py: a chi-square test on small features of every message it receives). Node 1
holds neither the model (node 0's) nor the queries (node 2's); node 0, the model owner, must not
learn the queries either. Equal message sizes are test_trees_eval.py's; this checks contents."""
from __future__ import annotations

import numpy as np
import pytest

from mpcnode.protocols import trees as pt
from mpcnode.trees import load_model
from tests.unit.trees_models import data, train_xgboost, with_missing
from tests.unit.views import Z_ALARM, _chi2_z, alarms, distinguisher, view_of

pytest.importorskip("xgboost")
OWNER, QUERIER = 0, 2
TREES, DEPTH, QUERIES = 4, 3, 1500
M = TREES * (2**DEPTH - 1) * QUERIES            # one comparison per node and query


def body_for(forest, q, leak: bool = False):
    """A prediction; the observer's "own" values are its shares of the node keys (T*N*Q of them),
    so a message that, with those, reveals something about the keys shows in the statistic."""
    shape = pt.ModelShape.of(forest)

    async def body(e):
        model = await pt.share_model(e, "model", OWNER, shape, forest if e.party == OWNER else None)
        queries = await pt.share_queries(e, "queries", QUERIER, shape, len(q), q if e.party == QUERIER else None)
        keys = await pt.node_keys(e, "predict", model, queries)
        if leak:                                      # the broken protocol: the keys (split) sent to all
            await e.exchange.round("leak", {j: keys.reshape(-1) for j in range(3) if j != e.party},
                                   [j for j in range(3) if j != e.party])
        margins = await pt.evaluate_keys(e, "predict", model, keys)
        await e.open("predict/out", margins, to=[QUERIER], purpose="output")
        return keys.reshape(M, -1)
    return body


def views(tmp_path, observer: int, leak: bool = False):
    """The observer's views of two runs: model a with ordinary queries, then (model b, or a for the
    owner, who knows its model) with queries whose every feature is missing, so that every node
    key becomes the node's default-direction key: as far from the first run as keys get."""
    x, y = data("breast_cancer")
    a = load_model(train_xgboost("binary", x, y, tmp_path / "a", trees=TREES, depth=DEPTH), depth=DEPTH)
    b = load_model(train_xgboost("binary", with_missing(x[::-1]), 1 - y[::-1], tmp_path / "b", trees=TREES,
                                 depth=DEPTH, eta=0.9), depth=DEPTH)
    rng = np.random.default_rng(7)
    qa = x[rng.integers(0, len(x), QUERIES)]
    qb = np.full_like(qa, np.nan)
    second = b if observer != OWNER else a
    return (view_of("replicated3", 3, 1, observer, M, body_for(a, qa, leak)),
            view_of("replicated3", 3, 1, observer, M, body_for(second, qb, leak)))


def packed_scores(a, b) -> dict[str, float]:
    """The comparison's packed messages (binary.less_than_bits: 64 / 32 lanes per word in the
    cross round, fewer bits per value at each tree level), the path's packed ANDs and the leaf
    injection do not line up with the node keys, so `distinguisher` (features per element,
    jointly with the observer's shares) leaves them out; here every byte of them is one sample
    of a 256-cell chi-square between the two runs."""
    scores = {}
    for key in sorted(set(a.messages) & set(b.messages)):
        x, y = a.messages[key], b.messages[key]
        if key[0].startswith("predict/") and x.size % M and x.size == y.size:
            scores[f"{key[0]}<-{key[1]}:bytes"] = _chi2_z(np.bincount(x.view(np.uint8), minlength=256),
                                                          np.bincount(y.view(np.uint8), minlength=256))
    return scores


@pytest.mark.parametrize("observer", [1, OWNER])
def test_a_node_sees_the_same_distribution_for_other_models_and_queries(tmp_path, observer) -> None:
    va, vb = views(tmp_path, observer)
    scores = distinguisher(va, vb)
    packed = packed_scores(va, vb)
    # the split reduction's two messages go to party 0 only
    assert {k.split("<-")[0] for k in scores if k.startswith("predict/")} == ({"predict/select"} if observer == OWNER
                                                                               else set())
    # the five carry-tree levels, D - 1 = 2 path levels, the margin sum; the cross round's and the
    # leaf injection's two messages (party 0 receives none there)
    assert len(packed) == 5 + 2 + 1 + (4 if observer != OWNER else 0), sorted(packed)
    assert alarms(scores) == {} and {k: z for k, z in packed.items() if z > Z_ALARM} == {}


def test_opening_the_node_keys_is_caught(tmp_path) -> None:
    """The same statistic on a protocol that opens the node keys tells the two runs apart."""
    va, vb = views(tmp_path, 1, leak=True)
    assert any(k.startswith("leak<-") for k in alarms(distinguisher(va, vb)))
