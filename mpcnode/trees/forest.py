"""The imported model: raw trees as the libraries store them, and the Forest, every tree padded to
the same full depth, as flat arrays the plaintext evaluator and the oblivious evaluation share.

Public shape of a Forest: (trees, depth, features, objective, classes) plus the library (which
fixes the query encoding, keys.encode_queries). Everything else (split features, thresholds,
default directions, missing types, leaf values, base score) is the model owner's secret.

Padded layout: tree t is a complete binary tree of depth D in breadth-first order: internal node
i (0 <= i < 2^D - 1) has children 2i + 1 (left) and 2i + 2 (right); leaf j (0 <= j < 2^D) is node
2^D - 1 + j. A leaf of the original tree above depth D becomes a dummy subtree: dummy splits
(feature -1: no feature selected, so the node's key is 0, and threshold 1: always left) over
copies of the leaf, so the padding cannot change a prediction whichever way a dummy went.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .keys import MISSING_NAN, MISSING_NONE, MISSING_ZERO

LIBRARIES = ("xgboost", "lightgbm")
KINDS = ("binary", "regression", "multiclass")
MAX_DEPTH = 16                      # 2^16 leaves per tree: far beyond boosted trees in practice


class ModelError(ValueError):
    """A model file Parley cannot use: one line naming the file (and the tree, if one is at fault)."""


@dataclass
class RawTree:
    """One tree as imported: node arrays indexed by node id. Leaves have left == right == -1 and
    `value`; splits have feature, threshold (the strict integer form: go left iff
    key(x) < threshold, keys.py), default_left (where a missing value goes) and missing (the
    LightGBM missing type; XGBoost's rule is MISSING_NAN). `leaf_id` is the library's own
    number for each leaf (XGBoost: its node id, LightGBM: its leaf index), what pred_leaf shows."""
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    default_left: np.ndarray
    missing: np.ndarray
    value: np.ndarray
    leaf_id: np.ndarray
    root: int = 0

    def depth(self) -> int:
        """The longest root-to-leaf path (0 for a single leaf); MAX_DEPTH + 1 for anything deeper,
        so that a malformed file with a cycle cannot make the walk run forever."""
        best, stack = 0, [(self.root, 0)]
        while stack:
            node, d = stack.pop()
            if d > MAX_DEPTH:
                return MAX_DEPTH + 1
            if self.left[node] < 0:
                best = max(best, d)
            else:
                stack.append((int(self.left[node]), d + 1))
                stack.append((int(self.right[node]), d + 1))
        return best


@dataclass
class Forest:
    """A model padded to full depth (module docstring). Shapes: T trees, N = 2^D - 1 internal
    nodes and L = 2^D leaves per tree, F features, K classes (1 unless multiclass)."""
    library: str
    objective: str                  # the file's objective, e.g. "binary:logistic" or "binary sigmoid:1"
    kind: str                       # binary | regression | multiclass
    depth: int
    features: int
    classes: int
    tree_class: np.ndarray          # (T,) which class's margin each tree adds to
    feature: np.ndarray             # (T, N) int64, -1 for a dummy split
    threshold: np.ndarray           # (T, N) int64: go left iff key < threshold
    default_left: np.ndarray        # (T, N) bool
    missing: np.ndarray             # (T, N) uint8, keys.MISSING_*
    leaf: np.ndarray                # (T, L) float64 leaf values
    leaf_id: np.ndarray             # (T, L) int64: the library's leaf number (pred_leaf)
    base: np.ndarray                # (K,) float64: the margin every prediction starts from
    source: str = field(default="")
    # public, like the shape: the querier's table names its columns so (trees/table.py)
    feature_names: list[str] = field(default_factory=list)

    @property
    def trees(self) -> int:
        return len(self.tree_class)

    def shape(self) -> tuple[int, int, int, str, int]:
        """The public shape: (trees, depth, features, objective, classes)."""
        return (self.trees, self.depth, self.features, self.objective, self.classes)


def pad(raw: list[RawTree], *, library: str, objective: str, kind: str, features: int, classes: int,
        tree_class: np.ndarray, base: np.ndarray, source: str, depth: int | None = None,
        feature_names: list[str] | None = None) -> Forest:
    """Pad every tree to full depth D = max(1, the deepest tree) or `depth` if given (it must not
    be smaller). Import time only: a walk over each tree's nodes."""
    names = check_feature_names(source, list(feature_names or []), features)
    deepest = max([t.depth() for t in raw] + [1])
    d = deepest if depth is None else depth
    if d < deepest:
        raise ModelError(f"{source}: depth {d} asked, but a tree is {deepest} deep")
    if d > MAX_DEPTH:
        raise ModelError(f"{source}: trees deeper than the {MAX_DEPTH} levels Parley pads to")
    n_int, n_leaf, T = 2**d - 1, 2**d, len(raw)
    feat = np.full((T, n_int), -1, dtype=np.int64)
    thr = np.ones((T, n_int), dtype=np.int64)
    dleft = np.ones((T, n_int), dtype=bool)
    miss = np.full((T, n_int), MISSING_NONE, dtype=np.uint8)
    leaf = np.zeros((T, n_leaf), dtype=np.float64)
    leaf_id = np.zeros((T, n_leaf), dtype=np.int64)
    for t, tree in enumerate(raw):
        stack = [(tree.root, 0, 0)]               # (node id, level, position within the level)
        while stack:
            node, level, pos = stack.pop()
            if tree.left[node] < 0:               # a leaf: fills its whole subtree of leaves
                span = 2 ** (d - level)
                leaf[t, pos * span:(pos + 1) * span] = tree.value[node]
                leaf_id[t, pos * span:(pos + 1) * span] = tree.leaf_id[node]
                continue
            i = 2**level - 1 + pos
            feat[t, i] = tree.feature[node]
            thr[t, i] = tree.threshold[node]
            dleft[t, i] = tree.default_left[node]
            miss[t, i] = tree.missing[node]
            stack.append((int(tree.left[node]), level + 1, 2 * pos))
            stack.append((int(tree.right[node]), level + 1, 2 * pos + 1))
    if np.any(feat >= features):
        raise ModelError(f"{source}: a split uses feature {int(feat.max())}, the model has {features}")
    return Forest(library=library, objective=objective, kind=kind, depth=d, features=features,
                  classes=classes, tree_class=np.asarray(tree_class, dtype=np.int64), feature=feat,
                  threshold=thr, default_left=dleft, missing=miss, leaf=leaf, leaf_id=leaf_id,
                  base=np.asarray(base, dtype=np.float64), source=source, feature_names=names)


MAX_NAME = 200


def check_feature_names(source: str, names: list[str], features: int) -> list[str]:
    """The model's feature names, one per feature, distinct, printable (they are shown to queriers
    and name the columns of their tables); ModelError naming the file otherwise."""
    if len(names) != features:
        raise ModelError(f"{source}: {len(names)} feature names for {features} features")
    if len(set(names)) != len(names):
        raise ModelError(f"{source}: a feature name is used twice")
    if not all(isinstance(n, str) and n and n.isprintable() and len(n) <= MAX_NAME for n in names):
        raise ModelError(f"{source}: feature names must be printable text of 1-{MAX_NAME} characters")
    return names


__all__ = ["Forest", "RawTree", "ModelError", "pad", "MISSING_NAN", "MISSING_NONE", "MISSING_ZERO"]
