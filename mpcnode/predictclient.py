"""The querier's batch client for private prediction (docs/prediction.md): read a table of queries
with the model's named feature columns (CSV or Parquet), check the prediction job every node
shows against the fingerprint the querier was given, encode each value as its float32 order key
(trees/keys.py query_keys: a missing value is KEY_NAN), secret-share the keys, wait for the job,
fetch the predictions as their recipient and write them next to the carried columns.

`python -m mpcnode.client predict --job J --input queries.csv --output scores.csv ...`.
Nothing leaves this machine but one share per node; errors about the table name the file, the
column and the row, never a value (they may end up in shared logs).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .client import SubmitError, inspect, own_identity, submit
from .computation.spec import clients_digest
from .recipient import FetchError, Result, fetch
from .transport.tls import TlsMaterial
from .trees.keys import query_keys
from .trees.table import TableError, read_queries, write_scores


@dataclass(frozen=True)
class Predictions:
    columns: dict[str, np.ndarray]     # carried columns, then the score columns, one row per query
    queries: int
    capacity: int
    fingerprint: str


def score_columns(values: np.ndarray, output: str, width: int) -> dict[str, np.ndarray]:
    """The decoded predictions (queries, width) as named columns: `class`, or `margin` /
    `probability` (one class), or `margin_0`, `margin_1`, ... (several)."""
    if output == "class":
        return {"class": values[:, 0].astype(np.int64)}
    if width == 1:
        return {output: values[:, 0]}
    return {f"{output}_{k}": values[:, k] for k in range(values.shape[1])}


async def predict(job_id: str, queries: Path, scores: Path | None, nodes: dict[str, str], tls: TlsMaterial,
                  fingerprint: str, *, carry: list[str] | None = None, timeout: float = 300.0,
                  submitted: asyncio.Event | None = None) -> Predictions:
    """Submit the table's queries to prediction job `job_id`, wait for the predictions, write them
    to `scores` (if given) and return them. SubmitError / FetchError / TableError say why not.
    `submitted` is set once every node holds its share (an organizer may close the input then)."""
    view = await inspect(job_id, fingerprint, nodes, tls)
    doc = view.document
    model, query_decl, out, mode = prediction_parts(doc, own_identity(tls))
    shape = model["model"]
    features = int(shape["features"])
    # a shape that names no features: the library's own default names (trees/xgboost_model.py, lightgbm_model.py)
    prefix = "Column_" if shape["library"] == "lightgbm" else "f"
    names = list(shape["feature_names"]) or [f"{prefix}{i}" for i in range(features)]
    table = read_queries(queries, names, carry=carry or [])
    width = 1 if mode == "class" else int(shape["classes"])
    clash = sorted(set(score_columns(np.zeros((0, width)), mode, width)) & set(table.carried))
    if clash:   # checked before anything is sent: the job would spend queries for nothing
        raise TableError(f"{queries}: carried column {clash[0]!r} has the name of a prediction column")
    capacity = int(query_decl["length"]) // features
    n = len(table.x)
    if n > capacity:
        raise TableError(f"{queries}: {n} queries, the job answers at most {capacity}")
    x = np.zeros((capacity, features))          # padding rows: answered, never written out
    x[:n] = table.x
    keys = query_keys(x, str(shape["library"])).reshape(-1)
    await submit(job_id, query_decl["name"], keys, nodes, tls, fingerprint, min(timeout, 30.0))
    if submitted is not None:
        submitted.set()
    result = await _wait_and_fetch(job_id, out["name"], nodes, tls, view.fingerprint, timeout)
    frac = int(out.get("frac_bits", 0))
    if len(result.values) != capacity * width:
        raise FetchError(f"the nodes opened {len(result.values)} values, the job's document promises "
                         f"{capacity} queries x {width}")
    values = np.array(result.values, dtype=np.float64).reshape(capacity, width)[:n] / float(1 << frac)
    columns = {**table.carried, **score_columns(values, mode, width)}
    if scores is not None:
        write_scores(scores, columns)
    return Predictions(columns, n, capacity, view.fingerprint)


MODES = {"0": "margin", "1": "probability", "2": "class"}


def prediction_parts(doc: dict, me: str) -> tuple[dict, dict, dict, str]:
    """(the kept model input, the queries input, the output, the output kind) of the job's one
    predict op, read from the op itself (never from descriptions), after checking that this
    querier is the queries' only listed client and a recipient of the predictions; SubmitError
    otherwise, before anything is sent."""
    ops = [op for op in doc["ops"] if op["op"] == "predict"]
    if len(ops) != 1:
        raise SubmitError("the job is not a prediction job with one predict op")
    op = ops[0]
    inputs = {d["name"]: d for d in doc["inputs"]}
    model, queries = inputs.get(op["args"][0]), inputs.get(op["args"][1])
    out = next((o for o in doc["outputs"] if o["value"] == op["out"]), None)
    mode = MODES.get(op["ints"][0] if op["ints"] else "")
    if model is None or model.get("source") != "model" or queries is None or out is None or mode is None:
        raise SubmitError("the job's predict op does not read a kept model and release its predictions")
    if queries.get("source") != "clients" or queries["clients"] != {"count": 1, "sha256": clients_digest([me])}:
        # the keys are the exact float32 bits of the features: they go to a job whose queries are ours alone
        raise SubmitError(f"the job's queries input {queries['name']!r} does not list {me} as its only client")
    if me not in out["recipients"]:
        raise SubmitError(f"{me} is not a recipient of the job's predictions")
    return model, queries, out, mode


async def _wait_and_fetch(job_id: str, output: str, nodes: dict[str, str], tls: TlsMaterial, fingerprint: str,
                          timeout: float) -> Result:
    """The output once the job is done and committed at the nodes; a refusal (not a recipient) or
    a failed job ends the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await fetch(job_id, output, nodes, tls, fingerprint=fingerprint)
        except FetchError as exc:
            text = str(exc)
            if "refused" in text or "is failed on" in text or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.25)
