"""LightGBM text models (Booster.save_model / model_to_string). Objectives binary, regression
(L2) and multiclass (softmax); numerical splits only.

The rules reproduced (LightGBM include/LightGBM/tree.h, NumericalDecision; c_api.cpp):
* decision_type bits: 1 categorical (refused), 2 default_left, bits 2-3 the missing type
  (0 None, 1 Zero, 2 NaN);
* a NaN is replaced by 0.0 unless the missing type is NaN; then a value counts as missing if the
  type is Zero and |x| <= kZeroThreshold (1e-35), or the type is NaN and x is NaN, and goes the
  default direction; otherwise left iff x <= threshold (a double);
* the raw score is the sum of the leaves of the trees of each class (tree t belongs to class
  t mod num_tree_per_iteration); there is no separate intercept (boost_from_average is folded
  into the first trees' leaves).
"""
from __future__ import annotations

import numpy as np

from .forest import Forest, ModelError, RawTree, pad
from .keys import MISSING_NONE, strict_lightgbm

OBJECTIVES = {"binary": "binary", "regression": "regression", "multiclass": "multiclass"}


def read(path: str, text: str, depth: int | None = None) -> Forest:
    """Parse a LightGBM text model."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "tree":
        raise ModelError(f"{path}: not a LightGBM text model (the first line is not 'tree')")
    header, blocks = _blocks(lines)
    try:
        objective = header["objective"]
        features = int(header["max_feature_idx"]) + 1
        per_iter = int(header.get("num_tree_per_iteration", "1"))
        classes = int(header.get("num_class", "1"))
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{path}: header field {exc} missing or malformed") from None
    name = objective.split()[0] if objective else ""
    if name not in OBJECTIVES:
        raise ModelError(f"{path}: objective {name or '(none)'} is not supported (supported: binary, "
                         f"regression, multiclass)")
    if "average_output" in header:
        raise ModelError(f"{path}: random-forest models (average_output) are not supported")
    kind = OBJECTIVES[name]
    if (kind == "multiclass") != (classes > 1) or per_iter != classes:
        raise ModelError(f"{path}: num_class {classes} and num_tree_per_iteration {per_iter} do not fit "
                         f"objective {name}")
    raw = [_tree(path, i, b) for i, b in enumerate(blocks)]
    if not raw:
        raise ModelError(f"{path}: the model has no trees")
    # LightGBM always writes the line; without names given at training they are Column_0, ...
    names = header.get("feature_names", "").split() or [f"Column_{i}" for i in range(features)]
    return pad(raw, library="lightgbm", objective=objective, kind=kind, features=features, classes=classes,
               tree_class=np.arange(len(raw)) % classes, base=np.zeros(classes), source=path, depth=depth,
               feature_names=names)


def _blocks(lines: list[str]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(header key=value pairs, one dict per Tree=i block), stopping at 'end of trees'."""
    header: dict[str, str] = {}
    blocks: list[dict[str, str]] = []
    cur = header
    for line in lines[1:]:
        line = line.strip()
        if line == "end of trees":
            break
        if line.startswith("Tree="):
            cur = {"Tree": line[5:]}
            blocks.append(cur)
            continue
        key, eq, value = line.partition("=")
        if eq:
            cur[key] = value
        elif line and cur is header:
            header[line] = ""
    return header, blocks


def _floats(path: str, index: int, block: dict[str, str], key: str, n: int) -> np.ndarray:
    try:
        vals = np.asarray([float(v) for v in block[key].split()], dtype=np.float64)
    except KeyError:
        raise ModelError(f"{path}: tree {index}: field {key} missing") from None
    except ValueError:
        raise ModelError(f"{path}: tree {index}: field {key} is not a list of numbers") from None
    if len(vals) != n:
        raise ModelError(f"{path}: tree {index}: {key} has {len(vals)} values, expected {n}")
    return vals


def _ints(path: str, index: int, block: dict[str, str], key: str, n: int) -> np.ndarray:
    vals = _floats(path, index, block, key, n)
    if np.any(vals != np.round(vals)):
        raise ModelError(f"{path}: tree {index}: {key} must hold integers")
    return vals.astype(np.int64)


def _tree(path: str, index: int, block: dict[str, str]) -> RawTree:
    try:
        leaves = int(block["num_leaves"])
        num_cat = int(block.get("num_cat", "0"))
    except (KeyError, ValueError):
        raise ModelError(f"{path}: tree {index}: num_leaves missing or malformed") from None
    if num_cat > 0:
        raise ModelError(f"{path}: tree {index}: categorical splits are not supported")
    if block.get("is_linear", "0") != "0":
        raise ModelError(f"{path}: tree {index}: linear trees are not supported")
    if leaves < 1:
        raise ModelError(f"{path}: tree {index}: num_leaves must be at least 1")
    value = _floats(path, index, block, "leaf_value", leaves)
    if leaves == 1:                               # a constant tree: one leaf, node 0
        return RawTree(left=np.array([-1]), right=np.array([-1]), feature=np.array([0]),
                       threshold=np.array([0]), default_left=np.array([True]),
                       missing=np.array([MISSING_NONE], dtype=np.uint8), value=value[:1],
                       leaf_id=np.array([0]))
    m = leaves - 1                                # internal nodes 0..m-1, leaf j is node m + j
    feature = _ints(path, index, block, "split_feature", m)
    thr = _floats(path, index, block, "threshold", m)
    dtype = _ints(path, index, block, "decision_type", m)
    lc = _ints(path, index, block, "left_child", m)
    rc = _ints(path, index, block, "right_child", m)
    if np.any(dtype & 1):
        raise ModelError(f"{path}: tree {index}: categorical split at node {int(np.argmax(dtype & 1))} "
                         f"is not supported")
    mtype = (dtype >> 2) & 3
    if np.any(mtype > 2) or np.any(np.isnan(thr)):
        raise ModelError(f"{path}: tree {index}: unknown missing type or a NaN threshold")

    def node(c: np.ndarray) -> np.ndarray:        # LightGBM: a child < 0 is leaf ~c
        return np.where(c >= 0, c, m + ~c)
    left, right = node(lc), node(rc)
    if np.any((left < 0) | (left >= m + leaves) | (right < 0) | (right >= m + leaves)):
        raise ModelError(f"{path}: tree {index}: a child outside the tree")
    pad_int = np.full(leaves, -1, dtype=np.int64)
    return RawTree(left=np.concatenate([left, pad_int]), right=np.concatenate([right, pad_int]),
                   feature=np.concatenate([feature, np.zeros(leaves, dtype=np.int64)]),
                   threshold=np.concatenate([strict_lightgbm(thr), np.zeros(leaves, dtype=np.int64)]),
                   default_left=np.concatenate([(dtype & 2) != 0, np.zeros(leaves, dtype=bool)]),
                   missing=np.concatenate([mtype.astype(np.uint8),          # the codes are keys.MISSING_*
                                           np.zeros(leaves, dtype=np.uint8)]),
                   value=np.concatenate([np.zeros(m), value]),
                   leaf_id=np.concatenate([np.zeros(m, dtype=np.int64), np.arange(leaves)]))
