"""Models and queries for the tree tests (test_trees_*.py): small XGBoost and LightGBM models
trained here on data that ships with scikit-learn (nothing is downloaded), queries that sit
exactly at, and one float32 ulp around, the models' thresholds, plus NaN, +-inf, zeros, tiny
values and values far outside the training range; and the three replicated3 parties in one
process that share a model (party OWNER) and queries (party QUERIER)."""
from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

import numpy as np

from mpcnode.engines import Replicated3Engine
from mpcnode.exchange import MemoryNetwork
from mpcnode.protocols import trees as pt
from mpcnode.trees import Forest

warnings.filterwarnings("ignore", message=".*feature names.*")

SEED = 20261126
OWNER, QUERIER = 0, 2


def three_parties(body, timeout_s: float = 60):
    """body(engine) at the three replicated3 parties over one MemoryNetwork, their keys established
    first; returns (their results, the engines, the network)."""
    net = MemoryNetwork(3, timeout_s=timeout_s)
    engines = [Replicated3Engine(net.exchange(i), 1) for i in range(3)]

    async def main():
        await asyncio.gather(*(e.establish() for e in engines))
        return await asyncio.gather(*(body(e) for e in engines))
    return asyncio.run(main()), engines, net


async def share_model_and_queries(e, forest: Forest, shape, q: np.ndarray):
    """The owner's model and the querier's queries (all 3F rows), as every party's shares."""
    model = await pt.share_model(e, "model", OWNER, shape, forest if e.party == OWNER else None)
    queries = await pt.share_queries(e, "queries", QUERIER, shape, len(q), q if e.party == QUERIER else None)
    return model, queries


def data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A bundled scikit-learn dataset, features rounded to float32 (queries are float32)."""
    from sklearn import datasets
    loader = {"breast_cancer": datasets.load_breast_cancer, "diabetes": datasets.load_diabetes,
              "wine": datasets.load_wine}[name]
    x, y = loader(return_X_y=True)
    return x.astype(np.float32).astype(np.float64), y


def with_missing(x: np.ndarray, every: int = 9) -> np.ndarray:
    """x with NaN in a diagonal pattern and zeros in another (so the models learn default
    directions and, for LightGBM, missing types)."""
    x = x.copy()
    rows = np.arange(len(x))
    x[rows[::every], rows[::every] % x.shape[1]] = np.nan
    x[rows[3::every], (rows[3::every] + 1) % x.shape[1]] = 0.0
    return x


def train_xgboost(kind: str, x: np.ndarray, y: np.ndarray, path: Path, *, trees: int = 6, depth: int = 4,
                  fmt: str = "json", **params) -> Path:
    import xgboost as xgb
    objective = {"binary": "binary:logistic", "regression": "reg:squarederror", "multiclass": "multi:softprob"}[kind]
    p = {"objective": objective, "max_depth": depth, "seed": SEED, "nthread": 1, **params}
    if kind == "multiclass":
        p["num_class"] = int(y.max()) + 1
    booster = xgb.train(p, xgb.DMatrix(x, y), trees)
    out = path.with_suffix("." + fmt)
    booster.save_model(str(out))
    return out


def train_lightgbm(kind: str, x: np.ndarray, y: np.ndarray, path: Path, *, trees: int = 6, leaves: int = 12,
                   **params) -> Path:
    import lightgbm as lgb
    p = {"objective": kind, "num_leaves": leaves, "verbose": -1, "seed": SEED, "num_threads": 1,
         "min_data_in_leaf": 5, **params}
    if kind == "multiclass":
        p["num_class"] = int(y.max()) + 1
    booster = lgb.train(p, lgb.Dataset(x, y), trees)
    out = path.with_suffix(".txt")
    booster.save_model(str(out))
    return out


def from_keys(keys: np.ndarray) -> np.ndarray:
    """The float32 values of order keys (the inverse of keys.float_keys), as float64."""
    keys = np.asarray(keys, dtype=np.int64)
    bits = np.where(keys >= 0, keys, (-keys) | 0x80000000).astype(np.uint32)
    return bits.view(np.float32).astype(np.float64)


def edge_queries(forest: Forest, x: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` queries from rows of x, where about a third of the features are replaced by a value
    at or one ulp around a threshold the model uses on that feature, and some by NaN, +-inf, 0,
    -0.0, +-1e-35, +-1e-36 or values far outside the training range."""
    q = x[rng.integers(0, len(x), count)].copy()
    real = forest.feature >= 0
    feats, thr = forest.feature[real], forest.threshold[real]
    pick = rng.random(q.shape) < 0.35
    rows, cols = np.nonzero(pick)
    for f in np.unique(cols):                   # per feature: thresholds of the nodes that test it
        mine = thr[feats == f]
        sel = cols == f
        if len(mine) == 0:
            continue
        t = mine[rng.integers(0, len(mine), sel.sum())] + rng.integers(-2, 2, sel.sum())
        q[rows[sel], f] = from_keys(t)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-35, -1e-35, 1e-36, -1e-36, 3e38, -3e38, 1e7, -1e7],
                        dtype=np.float32).astype(np.float64)
    odd = rng.random(q.shape) < 0.08
    q[odd] = specials[rng.integers(0, len(specials), odd.sum())]
    return q
