"""Secret-shared models kept at a node between jobs (issue 15, "the model as a lasting
secret-shared object"): the node's share of each model, its public shape, who may query it and
how many queries each has left, and deletion. Every use is in the node's audit log.

* A `model` job (circuit `keep`) ends with every compute node keeping its share and the grants
  named in the job's document, which the owner's node approved (ModelJobs.keeper).
* A `predict` job reads the share of a kept model (INPUT_SOURCE_MODEL): at Prepare each node
  checks the model is here, its owner and shape are the declared ones and every recipient's
  grant has room (ModelJobs.check); at Start it takes the queries from the grants, all or none,
  and loads the shares (ModelJobs.take).
* The owner deletes a model at every node (ModelJobs.delete, the DeleteModel RPC, called by
  `python -m mpcnode model delete`); only the owner's certificate may.
* The owner's node reads its model file as a node input (model_input).

Why quotas: every returned score tells the querier something about the model, and enough chosen
queries reconstruct it (model extraction), so the owner bounds each querier's total.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from parley.v1 import circuit_pb2 as cpb, node_pb2

from .computation.models import PREDICT_PROBABILITY, model_inputs, query_charges, shape_of
from .errors import Denied, NotFound
from .inputs import InputError, check_values
from .protocols.trees import ModelShape, model_vector
from .store import ShareStore


def model_input(path: Path, decl: cpb.InputDecl, dataset: str) -> np.ndarray:
    """The owner's node: its model file (the dataset's file) as the int64 vector it shares,
    padded to the declared depth and checked against the declared public shape and range. The
    public reason names the input and the rule; the node's log gets the file's own figures."""
    from .trees import ModelError, load_model
    try:
        forest = load_model(path, depth=decl.model.depth)
    except (ModelError, OSError) as exc:
        raise InputError(f"dataset {dataset!r}: the model file cannot be used", str(exc)) from None
    want = shape_of(decl.model)
    have = ModelShape.of(forest, want.fraction_bits)
    if not want.feature_names:      # a shape that names no features accepts the file's names
        have = replace(have, feature_names=())
    if have != want:
        differ = [f for f in ("trees", "depth", "features", "classes", "tree_class", "library", "kind", "feature_names")
                  if getattr(have, f) != getattr(want, f)]
        raise InputError(f"input {decl.name}: the model file does not have the declared public shape "
                         f"({', '.join(differ)} differ)", f"{path}: the file has {have}, the job declares {want}")
    try:
        vec = model_vector(forest, want.fraction_bits)
    except ValueError as exc:
        raise InputError(f"input {decl.name}: the model's leaves do not fit {want.fraction_bits} fraction bits",
                         str(exc)) from None
    return check_values(decl.key or decl.name, vec, decl, str(path))


class ModelJobs:
    """The node's side of `model` and `predict` jobs (module docstring). Refusals name the model,
    the querier and counts, never a share; they go to the coordinator and the audit log."""

    def __init__(self, store: ShareStore, org: str, share_shape: tuple[int, ...] = (2,)):
        self.store = store
        self.org = org
        self.share_shape = share_shape

    def check(self, circuit: cpb.Circuit) -> None:
        """Prepare: Denied unless every kept model this job reads is here, as declared, and every
        charge fits its grant now (taken only at Start: take); and for a `model` job, unless its
        model ids are new here (a second run of an approved `model` job keeps nothing twice)."""
        for k in circuit.keep:
            if self.store.model(k.model_id, with_share=False) is not None:
                raise Denied(f"model id {k.model_id} is already used on {self.org} (ids are never reused)")
        for d in model_inputs(circuit):
            row = self.store.model(d.key, with_share=False)
            if row is None or row.deleted:
                raise Denied(f"model {d.key} {'was deleted' if row is not None else 'is not kept'} on {self.org}")
            if row.owner != d.owner:
                raise Denied(f"model {d.key} on {self.org} is owned by {row.owner}, not {d.owner}")
            if ModelShape.from_json(row.shape) != shape_of(d.model):
                raise Denied(f"model {d.key} on {self.org} does not have the public shape the job declares")
            if not row.checked and any(op.kind == cpb.OP_PREDICT and op.args[0] == d.name
                                       and op.ints[0] == PREDICT_PROBABILITY for op in circuit.ops):
                # probabilities truncate, which is private only within the margins' range: a model
                # nobody range-checked (an input-only owner's) could break it (margins and classes can't)
                raise Denied(f"model {d.key} was shared by an input-only party, which nothing range-checks: "
                             "it gives margins and classes, not probabilities")
        for (model_id, querier), count in sorted(query_charges(circuit).items()):
            have = self.store.model_grant(model_id, querier)
            if have is None or have[0] + count > have[1]:
                raise Denied(f"model {model_id}: {querier} may not make {count} more queries "
                             f"({'no grant' if have is None else f'{have[1] - have[0]} of its {have[1]} left'})")

    def take(self, job_id: str, circuit: cpb.Circuit) -> dict[str, np.ndarray]:
        """Start: take every charge from the grants (all or none, one transaction) and return this
        node's shares of every kept model the job reads, keyed by input name. The shares are read
        first: a model deleted since Prepare refuses the job before anything is charged."""
        shares = {}
        for d in model_inputs(circuit):
            row = self.store.model(d.key)
            if row is None or row.share is None:      # deleted between Prepare and Start
                raise Denied(f"model {d.key} was deleted on {self.org}")
            shares[d.name] = row.share
        charges = query_charges(circuit)
        refused = self.store.take_all_model_queries(charges)
        if refused is not None:
            model_id, querier, used, quota = refused
            reason = "no grant" if quota < 0 else f"{quota - used} of its {quota} left"
            self.store.audit("model-query-refused", job_id, model_id, f"{querier}: {reason}")
            raise Denied(f"model {model_id}: {querier} may not make {charges[(model_id, querier)]} more queries ({reason})")
        for (model_id, querier), count in sorted(charges.items()):
            used, quota = self.store.model_grant(model_id, querier) or (0, 0)
            self.store.audit("model-query", job_id, model_id, f"{querier}: {count} queries, {used} of {quota} used")
        return shares

    def keeper(self, circuit: cpb.Circuit, kept: dict[str, np.ndarray], compute_parties: list[str]) -> Callable:
        """For the finish transaction of a job: keep every model of a `model` job (circuit.keep)
        and its grants, so the job is DONE iff its models are kept; a no-op for other jobs.
        `kept`: model id -> this node's share. A model whose owner was a compute party was
        range-checked by its node before sharing (`checked`); an input-only owner's was not."""
        decls = {d.name: d for d in circuit.inputs}

        def keep_all(conn) -> None:
            for k in circuit.keep:
                d = decls[k.value]
                ShareStore.put_model_in(conn, k.model_id, d.owner, shape_of(d.model).to_json(), kept[k.model_id],
                                        [(g.querier, int(g.queries)) for g in k.grants],
                                        checked=d.owner in compute_parties)
        return keep_all

    def audit_kept(self, job_id: str, circuit: cpb.Circuit) -> None:
        decls = {d.name: d for d in circuit.inputs}
        for k in circuit.keep:
            d = decls[k.value]
            s = shape_of(d.model)
            grants = ", ".join(f"{g.querier} {g.queries}" for g in k.grants) or "none"
            self.store.audit("model-stored", job_id, k.model_id,
                             f"owner {d.owner}: {s.trees} trees of depth {s.depth}, {s.features} features, "
                             f"{s.classes} classes; queries granted: {grants}")

    def usage(self, caller: str | None, model_id: str) -> node_pb2.ModelUsage:
        """For the owner only: the grants and every query this node took or refused (its audit
        lines), so an owner whose node computes nothing still has every query in its own hands."""
        row = self._owned_by(caller, model_id, "read the usage of")
        out = node_pb2.ModelUsage(model_id=model_id, deleted=row.deleted)
        for q, used, quota in self.store.model_grants(model_id):
            out.grants.add(querier=q, used=used, quota=quota)
        for ts, event, job, fp, detail in self.store.audit_log():
            if fp == model_id and event in ("model-query", "model-query-refused"):
                out.queries.add(ts=ts, job_id=job, event=event, detail=detail)
        return out

    def _owned_by(self, caller: str | None, model_id: str, what: str):
        row = self.store.model(model_id, with_share=False)
        if row is None:
            raise NotFound(f"model {model_id} is not kept on {self.org}")
        if caller != row.owner:
            self.store.audit("model-owner-refused", "", model_id, f"{caller} may not {what} it")
            raise Denied(f"only {row.owner}, the owner of model {model_id}, may {what} it")
        return row

    def delete(self, caller: str | None, model_id: str) -> bool:
        """The owner's request to erase this node's share: Denied for anyone else; True if a
        share was erased, False if the model was already deleted."""
        self._owned_by(caller, model_id, "delete")
        gone = self.store.delete_model(model_id)
        if gone:
            self.store.audit("model-deleted", "", model_id, f"shares erased at the request of {caller}")
        return gone
