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

from .client import SubmitError, inspect, submit
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


def score_columns(values: np.ndarray, output: str, classes: int) -> dict[str, np.ndarray]:
    """The decoded predictions (queries, width) as named columns."""
    if output == "class":
        return {"class": values[:, 0].astype(np.int64)}
    if values.shape[1] == 1:
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
    model = next((d for d in doc["inputs"] if d["source"] == "model"), None)
    query_decl = next((d for d in doc["inputs"] if d["source"] == "clients"), None)
    out = next((o for o in doc["outputs"] if '"render": "predict"' in o.get("description", "")), None)
    if model is None or query_decl is None or out is None:
        raise SubmitError(f"job {job_id} is not a prediction job that takes queries from clients")
    shape = model["model"]
    features = int(shape["features"])
    # a shape that names no features: the library's own default names (trees/xgboost_model.py, lightgbm_model.py)
    prefix = "Column_" if shape["library"] == "lightgbm" else "f"
    names = list(shape["feature_names"]) or [f"{prefix}{i}" for i in range(features)]
    table = read_queries(queries, names, carry=carry or [])
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
    note = _note(out)
    frac = int(out.get("frac_bits", 0))
    width = 1 if note["output"] == "class" else int(note["classes"])
    if len(result.values) != capacity * width:
        raise FetchError(f"the nodes opened {len(result.values)} values, the job's document promises "
                         f"{capacity} queries x {width}")
    values = np.array(result.values, dtype=np.float64).reshape(capacity, width)[:n] / float(1 << frac)
    columns = {**table.carried, **score_columns(values, note["output"], int(note["classes"]))}
    if scores is not None:
        write_scores(scores, columns)
    return Predictions(columns, n, capacity, view.fingerprint)


def _note(out: dict) -> dict:
    import json
    return json.loads(out["description"])


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
