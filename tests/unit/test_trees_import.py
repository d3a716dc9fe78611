"""Model import (mpcnode/trees) and the plaintext reference evaluator against the libraries
themselves: identical leaves (pred_leaf) for every query, margins within float32 rounding, on
models trained here on scikit-learn's bundled data; the order keys; one-line refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mpcnode.trees import ModelError, evaluate, load_model
from mpcnode.trees import keys
from tests.unit.trees_models import data, edge_queries, train_lightgbm, train_xgboost, with_missing

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")

RNG = np.random.default_rng(151)


# ---- keys -------------------------------------------------------------------------------------

def test_float_keys_preserve_the_float32_order_with_both_zeros_equal() -> None:
    bits = RNG.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32)
    vals = bits.view(np.float32)
    vals = np.concatenate([vals[~np.isnan(vals)], np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45,
                                                            np.finfo(np.float32).max], dtype=np.float32)])
    k = keys.float_keys(vals)
    a, b = vals[:, None][:4000], vals[None, :][:, :4000]
    ka, kb = k[:, None][:4000], k[None, :][:, :4000]
    assert np.array_equal(a < b, ka < kb) and np.array_equal(a == b, ka == kb)
    assert keys.float_keys(np.float32(-0.0)) == keys.float_keys(np.float32(0.0)) == 0
    assert np.abs(k).max() == keys.KEY_INF


def test_threshold_rules_match_float_comparisons_at_and_around_thresholds() -> None:
    x = RNG.standard_normal(3000).astype(np.float32)
    thr32 = np.concatenate([x[:1000], np.nextafter(x[1000:2000], np.float32(np.inf)), x[2000:] * 3])
    x64 = x.astype(np.float64)
    # XGBoost: x < thr in float32
    assert np.array_equal(x < thr32, keys.float_keys(x) < keys.strict_xgboost(thr32))
    # LightGBM: (double) x <= thr for double thresholds, including ones between float32 values
    thr = np.concatenate([x64[:1000], x64[1000:2000] + 1e-12, x64[2000:] - 1e-12])
    assert np.array_equal(x64 <= thr, keys.float_keys(x) < keys.strict_lightgbm(thr))
    assert keys.strict_lightgbm(np.array([np.inf]))[0] > keys.float_keys(np.float32(np.inf))


# ---- the libraries' own predictions ------------------------------------------------------------

def xgb_reference(path, q: np.ndarray):
    """(pred_leaf for the rows without inf, their mask, margins of all rows) from xgboost itself;
    DMatrix refuses inf, inplace_predict takes it."""
    booster = xgb.Booster(model_file=str(path))
    finite = ~np.isinf(q).any(axis=1)
    leaves = booster.predict(xgb.DMatrix(q[finite]), pred_leaf=True).astype(np.int64)
    margin = booster.inplace_predict(q, predict_type="margin").reshape(len(q), -1)
    return leaves.reshape(finite.sum(), -1), finite, margin


def margin_tolerance(forest) -> float:
    """float32 accumulation in the library: one rounding per addition, relative to the largest
    partial sum."""
    biggest = np.abs(forest.base).max() + np.abs(forest.leaf).max(axis=1).sum()
    return (forest.trees + 1) * biggest * 2.0**-23


@pytest.mark.parametrize("kind,dataset,fmt", [("binary", "breast_cancer", "json"), ("binary", "breast_cancer", "ubj"),
                                              ("regression", "diabetes", "json"), ("multiclass", "wine", "ubj")])
def test_xgboost_paths_and_margins(tmp_path, kind, dataset, fmt) -> None:
    x, y = data(dataset)
    x = with_missing(x)
    path = train_xgboost(kind, x, y, tmp_path / "m", fmt=fmt, trees=8, depth=4)
    forest = load_model(path)
    assert forest.library == "xgboost" and forest.kind == kind
    q = np.concatenate([x, edge_queries(forest, x, 600, RNG)])
    ours = evaluate(forest, q)
    leaves, finite, margin = xgb_reference(path, q)
    assert np.array_equal(ours.leaf_id[finite], leaves)
    assert np.abs(ours.margin - margin).max() <= margin_tolerance(forest)
    assert np.abs(ours.encoded / 2.0**32 - margin).max() <= margin_tolerance(forest) + 9 * 2.0**-33


@pytest.mark.parametrize("kind,dataset,params", [
    ("binary", "breast_cancer", {}),                               # NaN in training: missing type NaN
    ("binary", "breast_cancer", {"zero_as_missing": True}),        # missing type Zero
    ("regression", "diabetes", {"use_missing": False}),            # missing type None
    ("multiclass", "wine", {}),
])
def test_lightgbm_paths_and_raw_scores(tmp_path, kind, dataset, params) -> None:
    x, y = data(dataset)
    x = with_missing(x)
    path = train_lightgbm(kind, x, y, tmp_path / "m", trees=8, **params)
    forest = load_model(path)
    assert forest.library == "lightgbm" and forest.kind == kind
    q = np.concatenate([x, edge_queries(forest, x, 600, RNG)])
    booster = lgb.Booster(model_file=str(path))
    ours = evaluate(forest, q)
    assert np.array_equal(ours.leaf_id, booster.predict(q, pred_leaf=True).astype(np.int64))
    raw = booster.predict(q, raw_score=True).reshape(len(q), -1)
    assert np.abs(ours.margin - raw).max() <= 1e-9 * (1 + np.abs(raw).max())


def test_lightgbm_missing_types_all_occur(tmp_path) -> None:
    """The parametrized models above really exercise the three missing types."""
    x, y = data("breast_cancer")
    x = with_missing(x)
    seen = set()
    for params in ({}, {"zero_as_missing": True}, {"use_missing": False}):
        forest = load_model(train_lightgbm("binary", x, y, tmp_path / "m", trees=8, **params))
        seen |= set(np.unique(forest.missing[forest.feature >= 0]).tolist())
    assert seen == {keys.MISSING_NONE, keys.MISSING_ZERO, keys.MISSING_NAN}


def test_padding_deeper_changes_no_prediction(tmp_path) -> None:
    x, y = data("breast_cancer")
    path = train_xgboost("binary", x, y, tmp_path / "m", trees=4, depth=3)
    shallow, deep = load_model(path), load_model(path, depth=6)
    assert deep.depth == 6 and shallow.depth == 3
    q = edge_queries(shallow, x, 300, RNG)
    a, b = evaluate(shallow, q), evaluate(deep, q)
    assert np.array_equal(a.leaf_id, b.leaf_id) and np.array_equal(a.encoded, b.encoded)
    with pytest.raises(ModelError, match="depth 2 asked"):
        load_model(path, depth=2)


def test_fraction_bits_bound_the_leaf_error(tmp_path) -> None:
    from mpcnode.trees.plain import encode_leaves
    x, y = data("diabetes")
    forest = load_model(train_xgboost("regression", x, y, tmp_path / "m", trees=5))
    for f in (8, 16, 32):
        p = evaluate(forest, x, fraction_bits=f)
        assert np.abs(p.encoded / 2.0**f - p.margin).max() <= (forest.trees + 1) * 2.0**-(f + 1)
    with pytest.raises(ValueError, match="too large for 60 fraction bits"):
        encode_leaves(forest, 60)


# ---- refusals: one line naming the file (and the tree) ---------------------------------------------

def one_line(exc: pytest.ExceptionInfo, *parts: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for p in parts:
        assert p in msg, msg


def test_refusals_name_the_file_and_the_tree(tmp_path) -> None:
    x, y = data("breast_cancer")
    path = train_xgboost("binary", x, y, tmp_path / "m", trees=3, depth=2)
    doc = json.loads(path.read_text())
    bad = tmp_path / "cat.json"
    trees = doc["learner"]["gradient_booster"]["model"]["trees"]
    trees[2]["split_type"][0] = 1
    bad.write_text(json.dumps(doc))
    with pytest.raises(ModelError) as e:
        load_model(bad)
    one_line(e, str(bad), "tree 2", "categorical")

    trees[2]["split_type"][0] = 0
    doc["learner"]["objective"]["name"] = "count:poisson"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ModelError) as e:
        load_model(bad)
    one_line(e, str(bad), "count:poisson", "not supported")

    dart = xgb.train({"booster": "dart", "max_depth": 2}, xgb.DMatrix(x, y), 2)
    dart.save_model(str(tmp_path / "dart.json"))
    with pytest.raises(ModelError) as e:
        load_model(tmp_path / "dart.json")
    one_line(e, "dart.json", "booster dart")

    c = RNG.integers(0, 6, len(y))
    xc = np.column_stack([c, x[:, :3]])
    cat = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4, "min_data_per_group": 1,
                     "cat_smooth": 1}, lgb.Dataset(xc, np.isin(c, [1, 3, 4]).astype(float),
                                                   categorical_feature=[0]), 3)
    cat.save_model(str(tmp_path / "cat.txt"))
    with pytest.raises(ModelError) as e:
        load_model(tmp_path / "cat.txt")
    one_line(e, "cat.txt", "tree ", "categorical")

    pois = lgb.train({"objective": "poisson", "verbose": -1, "num_leaves": 4}, lgb.Dataset(x, y), 2)
    pois.save_model(str(tmp_path / "pois.txt"))
    with pytest.raises(ModelError) as e:
        load_model(tmp_path / "pois.txt")
    one_line(e, "pois.txt", "objective poisson")

    lin = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4, "linear_tree": True},
                    lgb.Dataset(x, y), 2)
    lin.save_model(str(tmp_path / "lin.txt"))
    with pytest.raises(ModelError) as e:
        load_model(tmp_path / "lin.txt")
    one_line(e, "lin.txt", "tree 0", "linear")

    for name, content in [("junk.bin", b"\x00\x01junk"), ("trunc.ubj", path.with_suffix(".json").read_bytes()[:40]),
                          ("empty.json", b"{}")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ModelError) as e:
            load_model(tmp_path / name)
        one_line(e, name)
    ubj = train_xgboost("binary", x, y, tmp_path / "u", trees=2, depth=2, fmt="ubj")
    (tmp_path / "trunc2.ubj").write_bytes(ubj.read_bytes()[:-30])
    with pytest.raises(ModelError) as e:
        load_model(tmp_path / "trunc2.ubj")
    one_line(e, "trunc2.ubj")
    with pytest.raises(ModelError) as e:
        load_model(tmp_path / "absent.json")
    one_line(e, "absent.json", "cannot read")


def test_float32_thresholds_parse_exactly_from_json() -> None:
    """A decimal that lies within a double's rounding of a float32 midpoint still gives the float32
    nearest to the decimal itself (no double rounding)."""
    from mpcnode.trees.xgboost_model import _float32_exact
    text = "1.000000059604644775390625000001"      # just above 1 + 2^-24, the midpoint of 1 and its successor
    assert float(np.float32(float(text))) == 1.0     # through a double: the tie, rounded to even
    assert _float32_exact(text) == float(np.nextafter(np.float32(1), np.float32(2)))
    assert _float32_exact("1.000000059604644775390624999999") == 1.0
    assert _float32_exact("0.1") == float(np.float32(0.1))


def test_inspect_command_prints_the_public_shape_or_one_line(tmp_path, capsys) -> None:
    from mpcnode.trees.__main__ import main
    x, y = data("wine")
    path = train_xgboost("multiclass", x, y, tmp_path / "m", trees=2, depth=2)
    rows = x[:4].copy()
    rows[0, 3] = np.nan
    np.savetxt(tmp_path / "q.csv", rows, delimiter=",")
    assert main([str(path), "--depth", "3", "--predict", str(tmp_path / "q.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    shape = json.loads(lines[0])["shape"]
    assert (shape["trees"], shape["depth"], shape["features"], shape["classes"]) == (6, 3, 13, 3)
    assert shape["feature_names"] == [f"f{i}" for i in range(13)]      # XGBoost's own default names
    from mpcnode.computation.predict import ShapeSpec
    assert ShapeSpec.model_validate(shape).tree_model().tree_class == [t % 3 for t in range(6)]
    margins = np.array([json.loads(line) for line in lines[1:]])
    lib = xgb.Booster(model_file=str(path)).inplace_predict(rows, predict_type="margin")
    assert np.abs(margins - lib).max() < 1e-5
    (tmp_path / "bad.txt").write_text("tree\nobjective=lambdarank\nmax_feature_idx=3\n")
    assert main([str(tmp_path / "bad.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.txt: objective lambdarank is not supported" in err


def test_base_score_forms_and_parallel_trees_and_constant_trees(tmp_path) -> None:
    from mpcnode.trees.xgboost_model import _base_margin
    one = {"base_score": "5E-1"}
    assert _base_margin("f", one, "regression", 1).tolist() == [0.5]
    assert _base_margin("f", {"base_score": "[5E-1]"}, "binary", 1).tolist() == [0.0]
    assert _base_margin("f", {"base_score": "[1E0,2E0,-3E0]"}, "multiclass", 3).tolist() == [1.0, 2.0, -3.0]
    with pytest.raises(ModelError, match="not a probability"):
        _base_margin("f", {"base_score": "[1.5E0]"}, "binary", 1)
    with pytest.raises(ModelError, match="2 values for 3 classes"):
        _base_margin("f", {"base_score": "[1E0,2E0]"}, "multiclass", 3)
    x, y = data("wine")
    # num_parallel_tree > 1: several trees per class and round, all summed
    path = train_xgboost("multiclass", x, y, tmp_path / "rf", trees=2, depth=3, num_parallel_tree=3,
                         subsample=0.8, colsample_bynode=0.8)
    forest = load_model(path)
    assert forest.trees == 2 * 3 * 3
    booster = xgb.Booster(model_file=str(path))
    ours = evaluate(forest, x)
    assert np.array_equal(ours.leaf_id, booster.predict(xgb.DMatrix(x), pred_leaf=True).astype(np.int64))
    assert np.abs(ours.margin - booster.predict(xgb.DMatrix(x), output_margin=True)).max() < 1e-5
    # LightGBM trees with a single leaf (nothing to split on)
    xd, yd = data("diabetes")
    path = train_lightgbm("regression", xd, yd, tmp_path / "flat", trees=3, min_data_in_leaf=10_000)
    forest = load_model(path)
    assert forest.depth == 1 and np.all(forest.feature == -1)
    raw = lgb.Booster(model_file=str(path)).predict(xd, raw_score=True)
    assert np.abs(evaluate(forest, xd).margin[:, 0] - raw).max() < 1e-9


def test_feature_names_come_from_the_file_or_the_library_defaults(tmp_path) -> None:
    x, y = data("breast_cancer")
    names = [f"m {i}" for i in range(x.shape[1])]          # spaces are fine; names are public
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(x, y, feature_names=names), 2)
    booster.save_model(str(tmp_path / "named.json"))
    booster.save_model(str(tmp_path / "named.ubj"))
    assert load_model(tmp_path / "named.json").feature_names == names
    assert load_model(tmp_path / "named.ubj").feature_names == names
    lgb_names = [f"col_{i}" for i in range(x.shape[1])]
    m = lgb.train({"objective": "binary", "num_leaves": 4, "verbose": -1}, lgb.Dataset(x, y, feature_name=lgb_names), 2)
    m.save_model(str(tmp_path / "named.txt"))
    assert load_model(tmp_path / "named.txt").feature_names == lgb_names
    plain = train_lightgbm("binary", x, y, tmp_path / "plain", trees=2)
    assert load_model(plain).feature_names == [f"Column_{i}" for i in range(x.shape[1])]
    doc = json.loads((tmp_path / "named.json").read_text())
    doc["learner"]["feature_names"][1] = doc["learner"]["feature_names"][0]
    (tmp_path / "twice.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="twice.json: a feature name is used twice"):
        load_model(tmp_path / "twice.json")
    doc["learner"]["feature_names"][1] = "bad\nname"
    (tmp_path / "ctl.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="ctl.json: feature names must be printable"):
        load_model(tmp_path / "ctl.json")
    doc["learner"]["feature_names"] = "abc"
    (tmp_path / "text.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="text.json: feature_names must be a list of text"):
        load_model(tmp_path / "text.json")
    unnamed = train_xgboost("binary", x, y, tmp_path / "unnamed", trees=2, depth=2, fmt="ubj")
    assert load_model(unnamed).feature_names == [f"f{i}" for i in range(x.shape[1])]
