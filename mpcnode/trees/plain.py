"""The plaintext reference: the padded Forest evaluated on integer keys, exactly as the oblivious
evaluation does it, and the integer encodings both share (the node rows of the selection matrix,
the thresholds, the leaves in fixed point). Pure numpy, no I/O, no randomness.

Per node and query the evaluation forms one integer, the node's key
    e = S . key + M . is_nan + Z . is_zero          (row vectors over the features)
where S is the one-hot vector of the node's feature (all zero for a dummy split), M = dk S if a
NaN is missing at this node (XGBoost; LightGBM missing types NaN and Zero) and Z = dk S if a zero
is missing (LightGBM type Zero), else 0, with dk = keys.DEFAULT_LEFT_KEY or DEFAULT_RIGHT_KEY by
the node's default direction. The querier's encoding (keys.encode_queries) puts key 0 wherever a
value is missing, so e is the value's key, or dk when it is missing at this node. Then the node
goes left iff e < threshold. One dot product and one comparison per node, whatever the library
and the missing rule, which is what lets the MPC select every node's feature at once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .forest import Forest
from .keys import DEFAULT_LEFT_KEY, DEFAULT_RIGHT_KEY, MISSING_NAN, MISSING_ZERO, encode_queries

DEFAULT_FRACTION_BITS = 32
_ENC_LIMIT = 2**62                  # every partial sum of encoded leaves stays below this


def node_rows(forest: Forest) -> np.ndarray:
    """The model owner's selection matrix (T * N, 3F) int64: row = [S | M | Z] of each internal
    node, trees major (module docstring)."""
    T, N, F = forest.trees, 2**forest.depth - 1, forest.features
    feat = forest.feature.reshape(-1)
    real = feat >= 0
    onehot = np.zeros((T * N, F), dtype=np.int64)
    onehot[np.nonzero(real)[0], feat[real]] = 1
    dk = np.where(forest.default_left.reshape(-1), DEFAULT_LEFT_KEY, DEFAULT_RIGHT_KEY)[:, None]
    miss = forest.missing.reshape(-1)[:, None]
    nan_missing = (forest.library == "xgboost") | (miss == MISSING_NAN) | (miss == MISSING_ZERO)
    m = np.where(nan_missing, dk * onehot, 0)
    z = np.where(miss == MISSING_ZERO, dk * onehot, 0)
    return np.concatenate([onehot, m, z], axis=1)


def query_columns(x: np.ndarray, library: str) -> np.ndarray:
    """The querier's matrix (3F, Q) int64: [key; is_nan; is_zero] of each query, one column per
    query, so that node_rows(forest) @ query_columns(x) is every node's key e for every query."""
    key, nan, zero = encode_queries(x, library)
    return np.concatenate([key, nan, zero], axis=1).T.copy()


def encode_leaves(forest: Forest, fraction_bits: int = DEFAULT_FRACTION_BITS) -> tuple[np.ndarray, np.ndarray]:
    """(leaves (T, L), base (K,)) as int64 round(v * 2^f). Refused if a margin could leave
    |v| < 2^62 (then no sum of them wraps in Z_2^64 and every margin decodes as a signed value)."""
    scale = float(2**fraction_bits)
    leaves = np.rint(forest.leaf * scale)
    base = np.rint(forest.base * scale)
    worst = np.abs(base).max(initial=0.0) + np.abs(leaves).max(axis=1, initial=0.0).sum()
    if not np.isfinite(worst) or worst >= _ENC_LIMIT:
        raise ValueError(f"{forest.source}: leaf values too large for {fraction_bits} fraction bits "
                         f"(a margin could reach 2^{np.log2(max(worst, 1)):.1f}, the limit is 2^62); "
                         f"use fewer fraction bits")
    return leaves.astype(np.int64), base.astype(np.int64)


def leaf_error_bound(forest: Forest, fraction_bits: int = DEFAULT_FRACTION_BITS) -> float:
    """|encoded margin / 2^f - exact sum of the (float) leaves and base| <= (trees + 1) 2^-(f+1):
    each leaf and the base are rounded once, the sum itself is exact."""
    return (forest.trees + 1) * 2.0 ** -(fraction_bits + 1)


@dataclass
class Prediction:
    """What the reference evaluator gives for Q queries."""
    leaf: np.ndarray                # (Q, T) padded leaf index reached in each tree
    leaf_id: np.ndarray             # (Q, T) the library's leaf number (compare with pred_leaf)
    margin: np.ndarray              # (Q, K) float64: base + sum of leaves, in float64
    encoded: np.ndarray | None      # (Q, K) int64: the same in fixed point (what the MPC opens)


def decisions(forest: Forest, cols: np.ndarray) -> np.ndarray:
    """(Q, T, N) bool: does each node send each query left? cols = query_columns(...)."""
    e = node_rows(forest) @ cols                               # (T * N, Q)
    left = e < forest.threshold.reshape(-1)[:, None]
    return left.T.reshape(cols.shape[1], forest.trees, 2**forest.depth - 1)


def evaluate(forest: Forest, x: np.ndarray, fraction_bits: int | None = DEFAULT_FRACTION_BITS) -> Prediction:
    """The reference: walk every tree for every query, level by level, vectorized (Q, T)."""
    go_left = decisions(forest, query_columns(x, forest.library))
    Q, T = go_left.shape[:2]
    idx = np.zeros((Q, T), dtype=np.int64)
    rows = np.arange(Q)[:, None]
    trees = np.arange(T)[None, :]
    for _ in range(forest.depth):
        idx = 2 * idx + 1 + (~go_left[rows, trees, idx]).astype(np.int64)
    leaf = idx - (2**forest.depth - 1)
    K = forest.classes
    onehot = np.eye(K)[forest.tree_class]                     # (T, K)
    margin = forest.base[None, :] + forest.leaf[trees, leaf] @ onehot
    encoded = None
    if fraction_bits is not None:
        enc_leaves, enc_base = encode_leaves(forest, fraction_bits)
        encoded = enc_base[None, :] + enc_leaves[trees, leaf] @ onehot.astype(np.int64)
    return Prediction(leaf=leaf, leaf_id=forest.leaf_id[trees, leaf], margin=margin, encoded=encoded)
