"""Private prediction with gradient-boosted trees, in process: the three replicated3 parties in one
process over the in-memory exchange (no network, no serialization, one core for all three), so
parley_s is the three parties' compute summed, plus copying the messages. Over real nodes
(not built yet) each party computes on its own core but pays the transport.

`python -m bench.trees_inprocess [--queries 1000] [--trees 100] [--depth 6]` (also `make bench`,
`--only xgb_predict`). A binary:logistic XGBoost model of `trees` trees of depth `depth` on the
30 features of scikit-learn's breast_cancer data is trained at start (not timed), shared by its
owner (party 0; the line xgb_share_model), then queried by party 2 with `queries` rows drawn
from the data with noise, NaN and +-inf. Lines:
BENCH name=xgb_share_model engine=replicated3 transport=memory parley_s=<s> trees=.. depth=.. features=30
BENCH name=xgb_predict engine=replicated3 transport=memory parley_s=<s> plain_s=<s> max_abs_err=<e> queries=.. trees=.. depth=.. features=30 rounds=<r> bytes_per_node=<max>
BENCH name=xgb_predict_one engine=replicated3 transport=memory parley_s=<s>
plain_s is xgboost's own predict(output_margin=True) on the same queries; max_abs_err is the
largest |Parley's margin - xgboost's margin| (the leaf encoding's error and xgboost's float32
sums). Every run checks the MPC margins against the plaintext reference (mpcnode/trees) exactly.
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpcnode.engines import Replicated3Engine
from mpcnode.exchange import MemoryNetwork
from mpcnode.protocols import trees as pt
from mpcnode.trees import evaluate, load_model

OWNER, QUERIER = 0, 2


@dataclass
class TreeFigures:
    share_s: float
    predict_s: float
    one_s: float
    plain_s: float
    max_abs_err: float
    rounds: int
    bytes_per_node: int
    features: int
    node_s: float = 0.0       # over real nodes: the slowest node's own time for the batch


def train(path: Path, trees: int, depth: int):
    """The benchmark's binary:logistic model on breast_cancer (30 features), saved at `path`;
    returns (the booster, the data)."""
    import xgboost as xgb
    from sklearn.datasets import load_breast_cancer
    x, y = load_breast_cancer(return_X_y=True)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": depth, "nthread": 1, "seed": 15},
                        xgb.DMatrix(x, y), trees)
    booster.save_model(str(path))
    return booster, x


def noisy_queries(x: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    q = x[rng.integers(0, len(x), count)] * rng.uniform(0.9, 1.1, (count, x.shape[1]))
    q[rng.random(q.shape) < 0.01] = np.nan
    q[rng.random(q.shape) < 0.002] = np.inf
    return q.astype(np.float32).astype(np.float64)


def run_xgb_predict(queries: int = 1000, trees: int = 100, depth: int = 6) -> TreeFigures:
    rng = np.random.default_rng(15)
    with tempfile.TemporaryDirectory() as tmp:
        booster, x = train(Path(tmp) / "model.ubj", trees, depth)
        forest = load_model(Path(tmp) / "model.ubj", depth=depth)
    shape = pt.ModelShape.of(forest)
    q = noisy_queries(x, queries, rng)
    t0 = time.perf_counter()
    lib = booster.inplace_predict(q, predict_type="margin")
    plain_s = time.perf_counter() - t0
    net = MemoryNetwork(3, timeout_s=600)
    engines = [Replicated3Engine(net.exchange(i), 1) for i in range(3)]
    marks: dict[str, float] = {}

    async def run():
        await asyncio.gather(*(e.establish() for e in engines))
        t = time.perf_counter()
        models = await asyncio.gather(*(pt.share_model(e, "model", OWNER, shape, forest if e.party == OWNER else None)
                                        for e in engines))
        marks["share"] = time.perf_counter() - t
        before = [(e.exchange.stats.rounds, e.exchange.stats.bytes_sent) for e in engines]
        out = {}
        for name, qs in (("batch", q), ("one", q[:1])):
            t = time.perf_counter()

            async def one_party(e, m, qs=qs, name=name):
                sq = await pt.share_queries(e, f"q-{name}", QUERIER, shape, len(qs), qs if e.party == QUERIER else None)
                return await pt.predict(e, f"p-{name}", m, sq, QUERIER)
            res = await asyncio.gather(*(one_party(e, m) for e, m in zip(engines, models)))
            marks[name] = time.perf_counter() - t
            out[name] = res[QUERIER]
            if name == "batch":
                after = [(e.exchange.stats.rounds, e.exchange.stats.bytes_sent) for e in engines]
                marks["rounds"] = after[0][0] - before[0][0]
                marks["bytes"] = max(a[1] - b[1] for a, b in zip(after, before))
        return out

    out = asyncio.run(run())
    ref = evaluate(forest, q)
    if not np.array_equal(out["batch"], ref.encoded) or not np.array_equal(out["one"], ref.encoded[:1]):
        raise RuntimeError("xgb_predict: the MPC margins differ from the plaintext reference")
    err = float(np.abs(out["batch"][:, 0] / 2.0**shape.fraction_bits - lib).max())
    return TreeFigures(marks["share"], marks["batch"], marks["one"], plain_s, err, int(marks["rounds"]),
                       int(marks["bytes"]), forest.features)


def print_figures(f: TreeFigures, queries: int, trees: int, depth: int, where: str, transport: str = "") -> None:
    """The three BENCH lines (and a # summary) of a prediction benchmark, in process or over nodes."""
    node = f" (slowest node {f.node_s:.3f}s)" if f.node_s else ""
    print(f"# xgb_predict  {queries} queries, {trees} trees of depth {depth}, {f.features} features, {where}: "
          f"share {f.share_s:.3f}s, predict {f.predict_s:.3f}s{node}, one query {f.one_s * 1000:.1f} ms, "
          f"xgboost {f.plain_s * 1000:.2f} ms; rounds={f.rounds} bytes/node={f.bytes_per_node}")
    common = f"trees={trees} depth={depth} features={f.features}"
    tag = f"engine=replicated3{' transport=' + transport if transport else ''}"
    print(f"BENCH name=xgb_share_model {tag} parley_s={f.share_s:.4f} {common}", flush=True)
    print(f"BENCH name=xgb_predict {tag} parley_s={f.predict_s:.4f}{f' node_s={f.node_s:.4f}' if f.node_s else ''} "
          f"plain_s={f.plain_s:.6f} max_abs_err={f.max_abs_err:.3g} queries={queries} {common} rounds={f.rounds} "
          f"bytes_per_node={f.bytes_per_node}", flush=True)
    print(f"BENCH name=xgb_predict_one {tag} parley_s={f.one_s:.4f}", flush=True)


def print_lines(queries: int, trees: int, depth: int) -> TreeFigures:
    f = run_xgb_predict(queries, trees, depth)
    print_figures(f, queries, trees, depth, "in process (3 parties on one event loop)", "memory")
    return f


def main(lines=None, description: str = __doc__) -> None:
    """The command line of this module, and of bench/trees_nodes.py (its own `lines`)."""
    ap = argparse.ArgumentParser(description=description.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--depth", type=int, default=6)
    args = ap.parse_args()
    (lines or print_lines)(args.queries, args.trees, args.depth)


if __name__ == "__main__":
    main()
