"""Secret-shared models kept at a node between jobs (issue 15, "the model as a lasting
secret-shared object"): the node's share of each model, its public shape, who may query it and
how many queries each has left, and deletion. Every use is in the node's audit log.

Built so far: this store layer and its rules, used in process (tests/unit/test_trees_models.py).
Not yet: the RPCs and scenario kind that create a model, grant queries and run a prediction job
at the nodes, and the owner's approval that names the queriers and quotas (docs/prediction.md).

Why quotas: every returned score tells the querier something about the model, and enough chosen
queries reconstruct it (model extraction), so the owner bounds each querier's total.
"""
from __future__ import annotations

from .errors import Denied, NotFound
from .protocols.trees import ModelShape, SharedModel, pack, unpack
from .store import ShareStore


class ModelRegistry:
    """One node's models. `fingerprint` fields of the audit lines carry the model id."""

    def __init__(self, store: ShareStore, share_shape: tuple[int, ...] = (2,)):
        self.store = store
        self.share_shape = share_shape

    def keep(self, model_id: str, owner: str, model: SharedModel) -> None:
        """Store this node's shares of a model the owner just shared."""
        self.store.put_model(model_id, owner, model.shape.to_json(), pack(model))
        s = model.shape
        self.store.audit("model-stored", "", model_id,
                         f"owner {owner}: {s.trees} trees of depth {s.depth}, {s.features} features, "
                         f"{s.classes} classes")

    def grant(self, model_id: str, querier: str, quota: int) -> None:
        """Allow `querier` `quota` queries in all."""
        if quota < 0:
            raise ValueError(f"a quota cannot be negative ({quota})")
        self._live(model_id)
        self.store.set_model_grant(model_id, querier, quota)
        self.store.audit("model-grant", "", model_id, f"{querier} may make {quota} queries")

    def shape(self, model_id: str) -> ModelShape:
        return ModelShape.from_json(self._live(model_id).shape)

    def authorize(self, model_id: str, querier: str, count: int, job_id: str) -> SharedModel:
        """Count a job's `count` queries against the querier's quota and return the model's shares;
        Denied without a grant or over the quota, NotFound for a deleted or unknown model. The
        audit line names the job, the querier and the counts (never a query or a score)."""
        row = self._live(model_id)
        taken = self.store.take_model_queries(model_id, querier, count)
        if taken is None:
            have = self.store.model_grant(model_id, querier)
            reason = ("no grant" if have is None else
                      f"{count} queries asked, {have[1] - have[0]} of its {have[1]} left")
            self.store.audit("model-query-refused", job_id, model_id, f"{querier}: {reason}")
            raise Denied(f"model {model_id}: {querier} may not query it ({reason})")
        self.store.audit("model-query", job_id, model_id, f"{querier}: {count} queries, {taken[0]} of {taken[1]} used")
        return unpack(ModelShape.from_json(row.shape), row.share, self.share_shape)

    def delete(self, model_id: str) -> bool:
        """Erase this node's shares of the model (the owner asks every node); True if it was here."""
        gone = self.store.delete_model(model_id)
        if gone:
            self.store.audit("model-deleted", "", model_id, "shares erased")
        return gone

    def _live(self, model_id: str):
        row = self.store.model(model_id)
        if row is None or row.share is None:
            raise NotFound(f"model {model_id} {'was deleted' if row is not None else 'is not known here'}")
        return row
