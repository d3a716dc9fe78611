"""Oblivious evaluation of a padded tree ensemble (mpcnode/trees) on secret-shared model and
queries. Protocol math only, written against the engine interface (engines/base.py); runs on
the replicated3 engine (three parties), and refuses any other.

Inputs, all secret-shared:
* the model (the owner's; `share_model`): the selection matrix R (T*N, 3F) of plain.node_rows
  (per internal node [S | M | Z]: one-hot feature, missing-NaN and missing-zero columns scaled by
  the default-direction key), the thresholds t (T*N,), the encoded leaves V (T, L) and the
  encoded base margin (K,);
* the queries (the querier's; `share_queries`): the matrix C (3F, Q) of plain.query_columns
  (per query: float32 keys, is-NaN bits, is-zero bits).

Public: the shape (trees T, depth D, features F, classes K, the class of each tree) and the
number of queries Q; N = 2^D - 1 internal nodes per tree. Every round's size depends on these only.

Evaluation (`evaluate`):
1. Every node's key for every query, E = R C, node-major (N, T, Q), mod 2^33 (all the
   comparison reads): one local matrix product and ONE round that reduces the local products
   (a DOT: one element per node and query) straight to the split form E = s + y the comparison
   starts from (engine.reduce_to_split: parties 1 and 2 send one element each to party 0).
   Each node's decision does not depend on the path, so every level is selected at once.
2. go_left = [E < t] for all N*T*Q nodes in ONE batched comparison of bit_length 31
   (keys.KEY_BIT_LENGTH), binary.less_than_bits: 32-bit lanes through the cross round and a
   5-level carry tree, 1 + 5 rounds, about 4.9 elements per comparison; the bits come out
   XOR-shared and packed 64 to a word along (tree, query), W = ceil(T Q / 64) words per node.
3. Path indicators on those packed bits, level by level: I_1 = (b_root, NOT b_root),
   I_{l+1} = (I_l AND b_l, I_l XOR (I_l AND b_l)): one AND of words per node of the level, D - 1
   rounds, the last giving the 2^D leaf indicators.
4. The leaf indicators are injected into the ring (one round, 4 elements per leaf, tree and
   query) and the margins are the sums over the trees of class k and the leaves of indicator x
   leaf value, plus the base: one DOT round, reducing one element per query and class.
Rounds: 1 + 6 + (D - 1) + 1 + 1 = D + 8 (D = 6: 14), then one opening to the querier. Nothing
is opened before the output (replicated3 comparisons open nothing), so the openings log holds
the output alone.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from ..engines.base import Engine, Share
from . import binary
from ..trees.forest import Forest
from ..trees.keys import KEY_BIT_LENGTH, KEY_INF, KEY_NAN, LGBM_ZERO_KEY, QUERY_KEY_BIT_LENGTH
from ..trees.plain import DEFAULT_FRACTION_BITS, encode_leaves, node_rows, query_columns

ENGINES = ("replicated3",)


@dataclass(frozen=True)
class ModelShape:
    """What every party knows about a shared model (docs/prediction.md, "What each party learns")."""
    trees: int
    depth: int
    features: int
    classes: int
    tree_class: tuple[int, ...]
    library: str                    # fixes the querier's encoding (keys.encode_queries)
    fraction_bits: int = DEFAULT_FRACTION_BITS
    kind: str = ""                  # binary | regression | multiclass ("" in tests that need none)
    feature_names: tuple[str, ...] = ()

    @classmethod
    def of(cls, forest: Forest, fraction_bits: int = DEFAULT_FRACTION_BITS) -> "ModelShape":
        return cls(forest.trees, forest.depth, forest.features, forest.classes,
                   tuple(int(c) for c in forest.tree_class), forest.library, fraction_bits, forest.kind,
                   tuple(getattr(forest, "feature_names", None) or ()))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "ModelShape":
        d = json.loads(text)
        d["tree_class"] = tuple(d["tree_class"])
        d["feature_names"] = tuple(d.get("feature_names", ()))
        return cls(**d)

    @property
    def total(self) -> int:
        """How many ring elements the model's shares hold (its flat length, `pack`)."""
        return sum(int(np.prod(s)) for s in self.sizes().values())

    @property
    def nodes(self) -> int:
        return 2**self.depth - 1

    def sizes(self) -> dict[str, tuple[int, ...]]:
        T, N, F = self.trees, self.nodes, self.features
        return {"rows": (T * N, 3 * F), "threshold": (T * N,), "leaves": (T, N + 1), "base": (self.classes,)}


@dataclass
class SharedModel:
    """One party's shares of a model (value shapes as ModelShape.sizes)."""
    shape: ModelShape
    rows: Share
    threshold: Share
    leaves: Share
    base: Share


def pack(model: SharedModel) -> Share:
    """One party's model shares as one flat share array (the order of ModelShape.sizes), to store."""
    parts = [model.rows, model.threshold, model.leaves, model.base]
    return np.concatenate([p.reshape((-1,) + p.shape[len(s):]) for p, s in zip(parts, model.shape.sizes().values())])


def unpack(shape: ModelShape, flat: Share, share_shape: tuple[int, ...]) -> SharedModel:
    """The inverse of `pack`; refuses an array of the wrong size (a store row of another shape)."""
    sizes = shape.sizes()
    total = sum(int(np.prod(s)) for s in sizes.values())
    if flat.shape != (total,) + tuple(share_shape):
        raise ValueError(f"stored model shares have shape {flat.shape}, the model's shape needs "
                         f"{(total,) + tuple(share_shape)}")
    out, pos = {}, 0
    for key, s in sizes.items():
        n = int(np.prod(s))
        out[key] = flat[pos:pos + n].reshape(s + tuple(share_shape))
        pos += n
    return SharedModel(shape=shape, **out)


def model_vector(forest: Forest, fraction_bits: int) -> np.ndarray:
    """The owner's plaintext model as one int64 vector in the order of ModelShape.sizes (rows,
    thresholds, leaves, base): what it secret-shares, once."""
    leaves, base = encode_leaves(forest, fraction_bits)
    parts = [node_rows(forest), forest.threshold, leaves, base]
    return np.concatenate([p.reshape(-1) for p in parts]).astype(np.int64)


def check_engine(engine: Engine) -> None:
    """Tree evaluation needs the replicated3 engine: its ring Z_2^64 holds the fixed-point margins
    exactly and its local matrix products make the feature selection one cheap DOT round."""
    if engine.name not in ENGINES or engine.n != 3:
        raise ValueError(f"tree evaluation runs on the replicated3 engine with 3 parties; this job has "
                         f"engine {engine.name} with {engine.n} parties")
    if getattr(engine, "ring_bits", 64) != 64:
        raise ValueError("tree evaluation runs on replicated3's 64-bit ring, not the 128-bit one")


async def share_model(engine: Engine, label: str, owner: int, shape: ModelShape,
                      forest: Forest | None = None) -> SharedModel:
    """The owner secret-shares its model in one round; every other party passes forest=None.
    The owner checks that its forest has the announced public shape."""
    check_engine(engine)
    flat = None
    if engine.party == owner:
        if forest is None or ModelShape.of(forest, shape.fraction_bits) != shape:
            raise ValueError(f"{label}: the owner's model does not have the announced shape {shape}")
        flat = engine.encode(model_vector(forest, shape.fraction_bits))
    total = shape.total
    got = (await engine.share_inputs(label, {owner: flat}, {owner: (total,)}))[owner]
    return unpack(shape, got, engine.share_shape)


async def share_queries(engine: Engine, label: str, querier: int, shape: ModelShape, count: int,
                        x: np.ndarray | None = None) -> Share:
    """The querier secret-shares `count` queries (its x, (count, features) floats; NaN = missing)
    as the (3F, count) matrix of plain.query_columns, in one round; the others pass x=None."""
    check_engine(engine)
    cols = None
    if engine.party == querier:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (count, shape.features):
            raise ValueError(f"{label}: queries must have shape ({count}, {shape.features}), got {x.shape}")
        cols = engine.encode(query_columns(x, shape.library))
    return (await engine.share_inputs(label, {querier: cols}, {querier: (3 * shape.features, count)}))[querier]


async def query_columns_from_keys(engine: Engine, label: str, keys: Share, library: str) -> Share:
    """The query matrix C (3F, Q) of plain.query_columns from shares of the querier's keys (Q, F)
    (keys.query_keys, range-checked to [-KEY_INF, KEY_NAN] before: jobrun.take_client_rows for a
    client, the owner's node for a node input). One batched comparison (7 rounds): is_nan =
    [KEY_INF < key]; then key - KEY_NAN is_nan, locally. For LightGBM also is_zero = [-k0 <= key
    <= k0], k0 the key of its zero threshold 1e-35, and the key is zeroed there (one product
    round): an honest querier sends 0 for the whole band (LightGBM reads those values as 0.0), and
    a key inside it that no honest querier sends must not probe thresholds within the band. So the
    missing bits and keys always agree with an honest encoding, whatever a querier sends."""
    check_engine(engine)
    q, f = engine.value_shape(keys)
    keys_t = np.swapaxes(keys, 0, 1)                                   # (F, Q)

    def const(v: int) -> Share:
        return engine.constant(engine.encode(np.full((f, q), v, dtype=np.int64)))

    lightgbm = library == "lightgbm"
    a = [const(KEY_INF)] + ([keys_t, keys_t] if lightgbm else [])
    b = [keys_t] + ([const(LGBM_ZERO_KEY + 1), const(-LGBM_ZERO_KEY)] if lightgbm else [])
    bits = await engine.less_than(f"{label}/missing", np.concatenate(a), np.concatenate(b), QUERY_KEY_BIT_LENGTH)
    nan = bits[:f]
    key = engine.sub(keys_t, engine.mul_const(nan, engine.encode(np.array([KEY_NAN], dtype=np.int64))))
    if not lightgbm:
        return np.concatenate([key, nan, const(0)])
    zero = engine.sub(bits[f:2 * f], bits[2 * f:])
    key = engine.sub(key, await engine.mul(f"{label}/zeroed", keys_t, zero))   # never NaN and zero together
    return np.concatenate([key, nan, zero])


# The comparison of step 2 (bit_length 31) reads only bits 0..32 of E - t, so the keys are needed
# only mod 2^33: the feature selection's matrix product is computed mod 2^33 (two 17-bit limbs in
# replicated.ring_matmul, a third of the full product's work).
KEY_RING_BITS = KEY_BIT_LENGTH + 2


async def node_keys(engine: Engine, label: str, model: SharedModel, queries: Share) -> np.ndarray:
    """Step 1: every node's key e for every query, (N, T, Q) (node-major: the comparison packs
    each node's T*Q decisions into words), mod 2^33 (KEY_RING_BITS; the bits above are not e's),
    in the split form the comparison starts from: this party's part of e = s + y (s at party 0,
    y at parties 1 and 2; engine.reduce_to_split). One local matrix product, one round."""
    check_engine(engine)
    sh = model.shape
    T, N = sh.trees, sh.nodes
    Q = engine.value_shape(queries)[1]
    if Q <= 3 * sh.features:     # reorder whichever is smaller: the products (few queries) or R
        products = engine.matmul_local(model.rows, queries, KEY_RING_BITS).reshape(T, N, Q)
        products = np.ascontiguousarray(np.swapaxes(products, 0, 1))
    else:
        rows = np.swapaxes(model.rows.reshape((T, N) + model.rows.shape[1:]), 0, 1)
        products = engine.matmul_local(rows.reshape(model.rows.shape), queries, KEY_RING_BITS).reshape(N, T, Q)
    return await engine.reduce_to_split(f"{label}/select", products)


async def evaluate(engine: Engine, label: str, model: SharedModel, queries: Share) -> Share:
    """Shares of the encoded margins (Q, K) of every query: round(v 2^f) summed exactly (module
    docstring for the rounds)."""
    return await evaluate_keys(engine, label, model, await node_keys(engine, label, model, queries))


async def evaluate_keys(engine: Engine, label: str, model: SharedModel, keys: np.ndarray) -> Share:
    """Steps 2-4 from the node keys (N, T, Q) of `node_keys` (split form). The decisions stay XOR-shared bits
    packed 64 to a word along (tree, query) until the leaf indicators are known: a path level is
    then one AND of words per 64 (tree, query) pairs, and only the 2^D leaf indicators are
    injected into the ring."""
    check_engine(engine)
    sh = model.shape
    T, D, N = sh.trees, sh.depth, sh.nodes
    Q = keys.shape[2]
    thr = binary.own_split(engine.party, model.threshold).reshape(T, N).T[:, :, None]          # (N, T, 1)
    own, view = binary.split_rows(keys.shape)
    np.subtract(keys, thr, out=view)                   # this party's part of the split of E - t
    compare = binary.sign_bits(engine, f"{label}/cmp", own, KEY_BIT_LENGTH)
    del keys, view, own          # sign_bits consumes own: no reference here keeps ~50 MB a party alive
    bits = await compare                                                                       # (2, N, W)
    words = bits.shape[2]

    def level(l: int) -> Share:                   # the decisions of the 2^l nodes of level l
        return bits[:, 2**l - 1:2**(l + 1) - 1]

    root = level(0)
    ind = np.concatenate([root, binary.xor_public(engine.party, root, ~np.uint64(0))], axis=1)   # level 1: left, right
    for lv in range(1, D):
        left = await binary.and_words(engine, f"{label}/path{lv}", ind.reshape(2, -1), level(lv).reshape(2, -1))
        left = left.reshape(ind.shape)
        ind = np.stack([left, ind ^ left], axis=2).reshape(2, 2**(lv + 1), words)
    leaf = (await binary.inject_packed(engine, f"{label}/leaves", ind, T * Q)).reshape((2**D, T, Q, 2))
    values = np.expand_dims(np.swapaxes(model.leaves, 0, 1), 2)                                  # (L, T, 1)
    per_tree = engine.sum(engine.mul_local(leaf, values), axis=0)                                # (T, Q) products
    return await _margins(engine, label, sh, per_tree, model.base, products=True)


async def _margins(engine: Engine, label: str, sh: ModelShape, per_tree: np.ndarray, base: Share, *,
                   products: bool) -> Share:
    """The margins (Q, K): the per-tree values (T, Q), shares or (products=True) local products
    reduced here in one round, summed over the trees of each class (public tree_class), plus the
    base."""
    cls = np.asarray(sh.tree_class)
    sums = np.stack([engine.sum(per_tree[cls == k], axis=0) for k in range(sh.classes)])       # (K, Q)
    if products:
        sums = await engine.reduce(f"{label}/sum", sums)
    return np.swapaxes(engine.add(sums, np.expand_dims(base, 1)), 0, 1)


def predict_cost(shape: ModelShape, queries: int) -> tuple[int, int]:
    """(rounds, ring elements sent by all three parties together) of `predict` on replicated3, from
    the public shape alone (docs/prediction.md has the table; the query and model sharing are not
    included). The comparison is binary.less_than_bits at bit_length 31 on N rows of T*Q values
    (binary.bits_cost): a cross round and 5 carry-tree levels."""
    from .binary import bits_cost, prefix_levels
    T, D, N, K, Q = shape.trees, shape.depth, shape.nodes, shape.classes, queries
    words = -(-T * Q // 64)                                   # packed words per node (or leaf)
    rounds = 1 + (1 + prefix_levels(KEY_BIT_LENGTH)) + (D - 1) + 1 + 1 + 1   # ... leaves, sum, open
    elements = (2 * N * T * Q + bits_cost(N, T * Q, KEY_BIT_LENGTH) + 3 * (2**D - 2) * words
                + 4 * 2**D * T * Q + 3 * K * Q + 2 * K * Q)
    return rounds, elements


async def predict(engine: Engine, label: str, model: SharedModel, queries: Share, querier: int):
    """evaluate, then open the margins (Q, K) to the querier only (purpose "output"): the querier
    gets the encoded margins as signed integers, the others None."""
    margins = await evaluate(engine, label, model, queries)
    opened = await engine.open(f"{label}/out", margins, to=[querier], purpose="output")
    if opened is None:
        return None
    return opened.view(np.int64) if engine.field_modulus is None else opened
