"""Private prediction over real node processes (`make bench`, `--only xgb_predict`): three
replicated3 nodes on localhost with mutual TLS, the coordinator's own scheduler in process.

A binary:logistic XGBoost model of `trees` trees of depth `depth` on the 30 features of
scikit-learn's breast_cancer data is trained at start (not timed) and saved as the first node's
model file. Then, timed from submission until the job is done at every node:
* xgb_share_model: the `model` job: the owner's node reads, encodes and shares the model; every
  node keeps its share (one round);
* xgb_predict: a `predict` job on the kept model: the querier, an input client, secret-shares the
  keys of `queries` rows (drawn from the data with noise, NaN and +-inf) and fetches the margins;
  parley_s runs from submission to the querier's reconstructed margins, node_s is the slowest
  node's own time (Start to outputs stored: the client's submission is in it);
* xgb_predict_one: the same with one query.
plain_s is xgboost's own predict(output_margin=True) on the same queries; max_abs_err the largest
|Parley's margin - xgboost's margin|. Every run checks the margins against the plaintext reference
(mpcnode/trees) exactly.
"""
from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from mpcnode.client import submit as client_submit
from mpcnode.computation.models import MODEL_VALUE_BOUND, PREDICT_MARGIN, tree_model
from mpcnode.protocols import trees as pt
from mpcnode.transport.tls import TlsMaterial
from mpcnode.trees import evaluate, load_model
from mpcnode.trees.keys import KEY_INF, KEY_NAN, query_keys
from parley.v1 import circuit_pb2 as cpb

from .parley_bench import RECIPIENT, Cluster, Setup
from .trees_inprocess import TreeFigures, noisy_queries, print_figures, train

SETUP = Setup("replicated3", 3)
OWNER = SETUP.parties[0]
MODEL_ID = "bench-model"


def model_circuit(shape: pt.ModelShape, queries: int) -> cpb.Circuit:
    c = cpb.Circuit(name="bench-model-share")
    c.inputs.add(name="model", owner=OWNER, source=cpb.INPUT_SOURCE_NODE, length=shape.total, lo=-MODEL_VALUE_BOUND,
                 hi=MODEL_VALUE_BOUND, dataset="bench-model", model=tree_model(shape))
    c.keep.add(model_id=MODEL_ID, value="model", grants=[cpb.QueryGrant(querier=RECIPIENT, queries=10 * queries + 10)])
    return c


def predict_circuit(shape: pt.ModelShape, queries: int) -> cpb.Circuit:
    c = cpb.Circuit(name=f"bench-predict-{queries}")
    c.inputs.add(name="model", owner=OWNER, source=cpb.INPUT_SOURCE_MODEL, key=MODEL_ID, length=shape.total,
                 lo=-MODEL_VALUE_BOUND, hi=MODEL_VALUE_BOUND, model=tree_model(shape))
    c.inputs.add(name="queries", source=cpb.INPUT_SOURCE_CLIENTS, clients=[RECIPIENT],
                 length=queries * shape.features, lo=-KEY_INF, hi=KEY_NAN)
    c.ops.add(out="margins", kind=cpb.OP_PREDICT, args=["model", "queries"], ints=[PREDICT_MARGIN])
    c.outputs.add(name="margins", value="margins", recipients=[RECIPIENT], frac_bits=shape.fraction_bits)
    return c


async def _run(work: Path, queries: int, trees: int, depth: int) -> TreeFigures:
    booster, x = train(work / "model.json", trees, depth)
    forest = load_model(work / "model.json", depth=depth)
    shape = pt.ModelShape.of(forest)
    q = noisy_queries(x, queries, np.random.default_rng(15))
    t0 = time.perf_counter()
    lib = booster.inplace_predict(q, predict_type="margin")
    plain_s = time.perf_counter() - t0
    async with Cluster(work, {}, setup=SETUP, party_inputs={OWNER: {"bench-model": work / "model.json"}},
                       clients=[RECIPIENT]) as cluster:
        t0 = time.perf_counter()
        keep = model_circuit(shape, queries)
        cluster.scheduler.submit_plan("bench-share", SETUP.plan(keep, 600))
        live = cluster.scheduler.live["bench-share"]
        while live.state not in ("DONE", "FAILED"):
            await live.changed.wait()
        if live.state == "FAILED":
            raise RuntimeError(f"xgb_share_model failed: {live.error}")
        share_s = time.perf_counter() - t0
        tls = TlsMaterial.for_identity(cluster.certs, RECIPIENT)
        out = {}
        for name, qs in (("batch", q), ("one", q[:1])):
            circuit = predict_circuit(shape, len(qs))
            fp = SETUP.plan(circuit, 1800).computation.fingerprint()

            async def send(job_id: str, qs=qs, fp=fp) -> None:
                await client_submit(job_id, "queries", query_keys(qs, "xgboost").reshape(-1), cluster.dep.addresses,
                                    tls, fp, timeout=600)
            out[name] = await cluster.run(f"bench-predict-{name}", circuit, "margins", before_close=send)
    ref = evaluate(forest, q)
    batch = np.array(out["batch"].result, dtype=np.int64).reshape(-1, 1)
    if not np.array_equal(batch, ref.encoded) or out["one"].result != ref.encoded[:1].reshape(-1).tolist():
        raise RuntimeError("xgb_predict: the margins the nodes computed differ from the plaintext reference")
    err = float(np.abs(batch[:, 0] / 2.0**shape.fraction_bits - lib).max())
    b = out["batch"]
    return TreeFigures(share_s, b.seconds, out["one"].seconds, plain_s, err, b.rounds, b.bytes_per_node,
                       forest.features, node_s=b.node_s)


def run_nodes(queries: int = 1000, trees: int = 100, depth: int = 6) -> TreeFigures:
    with tempfile.TemporaryDirectory(prefix="parley-bench-trees-") as tmp:
        return asyncio.run(_run(Path(tmp), queries, trees, depth))


def print_lines(queries: int, trees: int, depth: int) -> TreeFigures:
    f = run_nodes(queries, trees, depth)
    print_figures(f, queries, trees, depth, "3 replicated3 nodes")
    return f


if __name__ == "__main__":
    from .trees_inprocess import main
    main(print_lines, __doc__)
