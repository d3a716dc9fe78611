"""XGBoost models as Booster.save_model writes them: JSON (*.json) and UBJSON (*.ubj), format
version 1.x to 3.x. gbtree boosters only; objectives binary:logistic, reg:squarederror and
multi:softprob. Anything else is refused with one line naming the file (and the tree).

What the margin is (checked against predict(output_margin=True) in tests/unit/test_trees_import.py):
sum of the leaves of the trees of each class (tree_info) plus the intercept from
learner_model_param.base_score, a string such as "[5E-1]" (3.x) or "5E-1" (older), one value or
one per class: for binary:logistic it is a probability and the margin adds logit(base_score); for
reg:squarederror and multi:softprob the stored values are added as they are.
"""
from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np

from . import ubjson
from .forest import Forest, ModelError, RawTree, pad
from .keys import MISSING_NAN, strict_xgboost

OBJECTIVES = {"binary:logistic": "binary", "reg:squarederror": "regression", "multi:softprob": "multiclass"}


def _float32_exact(text: str) -> float:
    """A JSON number as the float32 nearest to its decimal value (returned as a Python float,
    which holds it exactly). XGBoost prints float32 values in their shortest round-trip form; going
    through a double first rounds twice, which errs only when the double is exactly halfway between
    two float32 values: then round the decimal itself."""
    d = float(text)
    f = np.float32(d)
    if not math.isfinite(d) or float(f) == d:
        return float(f)
    lo, hi = (f, np.nextafter(f, np.float32(np.inf))) if float(f) < d else (np.nextafter(f, np.float32(-np.inf)), f)
    if d - float(lo) != float(hi) - d:
        return float(f)
    exact = Fraction(text)                                  # a tie in double: decide on the decimal
    dl, dh = abs(exact - Fraction(float(lo))), abs(Fraction(float(hi)) - exact)
    if dl != dh:
        return float(lo if dl < dh else hi)
    return float(lo if int(lo.view(np.uint32)) % 2 == 0 else hi)


def read(path: str, data: bytes, depth: int | None = None) -> Forest:
    """Parse an XGBoost JSON or UBJSON model file's bytes."""
    try:
        if data[:1] == b"{" and data[1:2] in (b"L", b"l", b"i", b"U", b"I", b"$", b"#", b"}"):
            doc = ubjson.loads(data)
        else:
            doc = json.loads(data.decode("utf-8"), parse_float=_float32_exact)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not an XGBoost JSON or UBJSON model ({str(exc).splitlines()[0]})") from None
    try:
        return _forest(path, doc, depth)
    except (KeyError, TypeError, IndexError) as exc:
        raise ModelError(f"{path}: not an XGBoost model file this version understands "
                         f"(missing or malformed {exc})") from None


def _forest(path: str, doc: dict, depth: int | None) -> Forest:
    learner = doc["learner"]
    objective = learner["objective"]["name"]
    if objective not in OBJECTIVES:
        raise ModelError(f"{path}: objective {objective} is not supported "
                         f"(supported: {', '.join(OBJECTIVES)})")
    booster = learner["gradient_booster"]
    if booster["name"] != "gbtree":
        raise ModelError(f"{path}: booster {booster['name']} is not supported (gbtree only)")
    params = learner["learner_model_param"]
    if int(params.get("num_target", 1)) > 1:
        raise ModelError(f"{path}: multi-target models are not supported")
    types = learner.get("feature_types") or []
    if any(str(t) == "c" for t in types):
        raise ModelError(f"{path}: categorical features are not supported "
                         f"(feature {[str(t) for t in types].index('c')})")
    features = int(params["num_feature"])
    kind = OBJECTIVES[objective]
    classes = max(1, int(params.get("num_class", 0))) if kind == "multiclass" else 1
    model = booster["model"]
    tree_info = np.asarray(model["tree_info"], dtype=np.int64)
    if np.any((tree_info < 0) | (tree_info >= classes)):
        raise ModelError(f"{path}: tree_info names a class outside 0..{classes - 1}")
    raw = [_tree(path, i, t) for i, t in enumerate(model["trees"])]
    if len(raw) != len(tree_info):
        raise ModelError(f"{path}: {len(raw)} trees but {len(tree_info)} tree_info entries")
    # a model trained without names has an empty list: XGBoost itself then calls them f0, f1, ...
    names = learner.get("feature_names") or [f"f{i}" for i in range(features)]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelError(f"{path}: feature_names must be a list of text")
    return pad(raw, library="xgboost", objective=objective, kind=kind, features=features,
               classes=classes, tree_class=tree_info, base=_base_margin(path, params, kind, classes),
               source=path, depth=depth, feature_names=list(names))


def _base_margin(path: str, params: dict, kind: str, classes: int) -> np.ndarray:
    text = str(params["base_score"]).strip().strip("[]")
    vals = np.asarray([_float32_exact(v) for v in text.split(",") if v.strip()], dtype=np.float64)
    if len(vals) == 1:
        vals = np.repeat(vals, classes)
    if len(vals) != classes:
        raise ModelError(f"{path}: base_score has {len(vals)} values for {classes} classes")
    if kind == "binary":
        if np.any((vals <= 0) | (vals >= 1)):
            raise ModelError(f"{path}: base_score {text} is not a probability in (0, 1)")
        return np.log(vals / (1.0 - vals))
    return vals


def _tree(path: str, index: int, t: dict) -> RawTree:
    left = np.asarray(t["left_children"], dtype=np.int64)
    right = np.asarray(t["right_children"], dtype=np.int64)
    n = len(left)
    if int(t["tree_param"].get("size_leaf_vector", 1)) > 1:
        raise ModelError(f"{path}: tree {index}: vector leaves (multi-target trees) are not supported")
    split_type = np.asarray(t.get("split_type", np.zeros(n)), dtype=np.int64)
    if np.any(split_type != 0):
        raise ModelError(f"{path}: tree {index}: categorical split at node {int(np.argmax(split_type != 0))} "
                         f"is not supported")
    cond = np.asarray(t["split_conditions"], dtype=np.float32)
    feature = np.asarray(t["split_indices"], dtype=np.int64)
    dleft = np.asarray(t["default_left"], dtype=np.int64) != 0
    if not (len(right) == len(cond) == len(feature) == len(dleft) == n) or n == 0:
        raise ModelError(f"{path}: tree {index}: node arrays of different lengths")
    inner = left >= 0
    if np.any(inner & ((right < 0) | (left >= n) | (right >= n))) or np.any(~inner & (right >= 0)):
        raise ModelError(f"{path}: tree {index}: malformed children")
    if np.any(np.isnan(cond[inner])):
        raise ModelError(f"{path}: tree {index}: a NaN split condition")
    return RawTree(left=np.where(inner, left, -1), right=np.where(inner, right, -1), feature=feature,
                   threshold=strict_xgboost(cond), default_left=dleft,
                   missing=np.full(n, MISSING_NAN, dtype=np.uint8), value=cond.astype(np.float64),
                   leaf_id=np.arange(n, dtype=np.int64))
