"""The canonical computation document and its fingerprint: what an organization approves.

A job's fingerprint is the SHA-256 (hex) of the RFC 8785 (JSON Canonicalization Scheme)
encoding of one JSON document that holds everything deciding what can leak:

* the circuit: every op, every input declaration with its range and source, the local dataset
  and field each node input reads, and the allowed client population (by count and content hash);
* the outputs with their recipients, public divisors and descriptions;
* the ordered compute parties, the threshold t, the rule for running with fewer live parties;
* the input-only parties, whose nodes contribute node inputs but compute nothing (if any);
* the protocol and its parameters (field, dealing, statistical security);
* a format version.

docs/approving.md specifies the document field by field, so that another implementation can
recompute the fingerprint from the public spec. Integers that can exceed 2^53 (ranges, constants,
op parameters, divisors) are decimal strings; counts and lengths are JSON numbers. The job id,
timeouts and deadlines are left out on purpose: they decide when, not what, and leaving them out
lets one approval cover several runs (bounded by the approval's max_runs and expiry).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import rfc8785

from parley.v1 import circuit_pb2 as cpb
from parley.v1 import node_pb2

from .. import field

FORMAT = "parley-computation-v1"
PROTOCOLS = ("shamir", "replicated3")
DROPOUT_RULES = ("within-threshold", "none")
# Statistical security of masks for values whose range the nodes enforced (ballot zero test) or
# whose comparison declares a small bit_length (bounded comparison); mirrors
# mpcnode.protocols.compare.STATISTICAL_SECURITY, checked by a unit test.
STATISTICAL_SECURITY_BITS = 40
# Which comparison protocol runs for a declared bit_length: the exact LSB protocol, except for
# bit_length <= 19 - ceil(log2(t+1)) (18 at t = 1), where the statistically masked bitwise one runs
# (compare.max_bounded_bit_length, checked by a unit test). t is the document's threshold.
COMPARISON = "lsb-exact; masked-bitwise for range-checked operands with bit_length <= 19 - ceil(log2(t+1))"

Document = dict[str, Any]


def protocol_parameters(engine: str) -> dict[str, Any]:
    """The parameters a node's code runs with for `engine`: part of the fingerprint, so a node whose
    code changes them (another field, weaker masks) no longer matches an older approval."""
    if engine == "shamir":
        return {"engine": "shamir", "field_modulus": str(field.P), "dealing": "seeded-aes256-ctr",
                "comparison": COMPARISON, "statistical_security_bits": STATISTICAL_SECURITY_BITS}
    if engine == "replicated3":
        # mpcnode/engines/replicated3.py and mpcnode/protocols/binary.py
        return {"engine": "replicated3", "ring": "Z_2^64", "parties": 3, "corruptions": 1,
                "share_layout": "party i holds (x_i, x_i+1 mod 3)", "dealing": "seeded-aes256-ctr-one-message",
                "comparison": "split-a2b-kogge-stone", "equality": "and-tree-64", "bit_injection": "one-round-correlated"}
    raise ValueError(f"protocol: {engine!r} is not supported (supported: {', '.join(PROTOCOLS)})")


def tree_parameters(circuit: cpb.Circuit) -> dict[str, Any]:
    """The tree-evaluation protocol a circuit with predictions runs (protocols/trees.py): part of
    the protocol parameters only then, so every other computation keeps its fingerprint."""
    if not any(op.kind == cpb.OP_PREDICT for op in circuit.ops):
        return {}
    return {"tree_evaluation": "missing-bits-from-keys, selection-mod-2^33-to-split, packed-lane-carry-tree-33, "
                               "xor-packed-path, leaf-injection"}


def canonical_json(doc: Any) -> bytes:
    return rfc8785.dumps(doc)


def fingerprint_of(canonical: bytes) -> str:
    return hashlib.sha256(canonical).hexdigest()


def clients_digest(clients: list[str]) -> str:
    """Content hash of an input's client population: sha256 of the canonical JSON list of names,
    in the circuit's order. The document carries this, not the list, so it stays small for a
    million voters; a node recomputes it from the list it enforces."""
    return hashlib.sha256(canonical_json(list(clients))).hexdigest()


def _op_name(kind: int) -> str:
    return cpb.OpKind.Name(kind).removeprefix("OP_").lower()


# the document's names of the ops that need a round (mpcnode.circuit.INTERACTIVE)
INTERACTIVE_OPS = frozenset({"mul", "lt", "eq", "ge", "argmax", "top_two", "dot", "select", "mul_rows", "rows_valid",
                             "trunc", "mul_trunc", "reciprocal", "exp", "sigmoid", "noise", "predict"})


def _input_doc(d: cpb.InputDecl) -> Document:
    doc: Document = {"name": d.name, "length": d.length, "range": [str(d.lo), str(d.hi)]}
    if d.source == cpb.INPUT_SOURCE_NODE:
        doc.update(source="node", owner=d.owner, dataset=d.dataset, field=d.key or d.name)
    elif d.source == cpb.INPUT_SOURCE_MODEL:
        doc.update(source="model", owner=d.owner, model_id=d.key)
    else:
        doc.update(source="clients", clients={"count": len(d.clients), "sha256": clients_digest(list(d.clients))})
    if d.frac_bits:
        # only when set (as op tags): integer inputs keep their document and fingerprint
        doc["frac_bits"] = d.frac_bits
    if d.HasField("model"):
        doc["model"] = tree_model_doc(d.model)   # a tree model's public shape, only when set
    return doc


def tree_model_doc(m: cpb.TreeModel) -> Document:
    """A tree model's public shape, every field (docs/approving.md)."""
    return {"trees": m.trees, "depth": m.depth, "features": m.features, "classes": m.classes,
            "tree_class": list(m.tree_class), "library": m.library, "kind": m.kind,
            "fraction_bits": m.fraction_bits, "feature_names": list(m.feature_names)}


def _keep_doc(k: cpb.KeptModel) -> Document:
    """A model kept by a `model` job, with the owner's grants: who may query it, how often."""
    return {"model_id": k.model_id, "value": k.value,
            "grants": [{"querier": g.querier, "queries": str(g.queries)} for g in k.grants]}


def _op_doc(op: cpb.Op) -> Document:
    doc: Document = {"out": op.out, "op": _op_name(op.kind), "args": list(op.args),
                     "consts": [str(v) for v in op.consts], "ints": [str(v) for v in op.ints],
                     "bit_length": op.bit_length}
    if op.tags:
        # only when set: every op without tags keeps the document (and fingerprint) it had before
        doc["tags"] = op.tags
    if op.HasField("noise"):
        doc["noise"] = _fields_doc(op.noise)   # the noise an organization approves (issue 14), only when set
    return doc


def _fields_doc(m: Any) -> Document:
    """The fields set in a DP message, numbers as strings like consts: a coordinator that changed
    any of them (a ρ the ledger charges, a noise scale) would change the fingerprint."""
    return {f.name: v if isinstance(v, (str, bool)) else str(v) for f, v in m.ListFields()}


def _output_doc(o: cpb.OutputDecl) -> Document:
    doc: Document = {"name": o.name, "value": o.value, "recipients": list(o.recipients),
                     "public_divisor": str(o.public_divisor), "description": o.description}
    if o.reveal_participants:
        doc["reveal_participants"] = True    # only when set, as op tags
    if o.frac_bits:
        doc["frac_bits"] = o.frac_bits        # fixed point: the recipient divides by 2^frac_bits
    if o.HasField("dp"):
        doc["dp"] = _fields_doc(o.dp)        # what the release promises and the ledger charges
    return doc


@dataclass(frozen=True)
class Computation:
    """A circuit together with who computes it and how: the unit of consent."""
    circuit: cpb.Circuit
    parties: tuple[str, ...]
    threshold: int
    protocol: str = "shamir"
    dropouts: str = "within-threshold"
    # organizations whose nodes only contribute node inputs (shared to the compute parties when the
    # job starts) and hold no shares; disjoint from `parties`
    input_parties: tuple[str, ...] = ()

    @classmethod
    def of_job(cls, spec: node_pb2.JobSpec) -> "Computation":
        return cls(circuit=spec.circuit, parties=tuple(spec.parties), threshold=spec.threshold,
                   protocol=spec.protocol or "shamir", dropouts=spec.dropouts or "within-threshold",
                   input_parties=tuple(spec.input_parties))

    def document(self) -> Document:
        if self.dropouts not in DROPOUT_RULES:
            raise ValueError(f"dropouts: {self.dropouts!r} is not one of {', '.join(DROPOUT_RULES)}")
        c = self.circuit
        doc: Document = {
            "format": FORMAT,
            "name": c.name,
            "description": c.description,
            "protocol": protocol_parameters(self.protocol) | tree_parameters(c),
            "parties": list(self.parties),
            "threshold": self.threshold,
            "dropouts": self.dropouts,
            "inputs": [_input_doc(d) for d in c.inputs],
            "ops": [_op_doc(op) for op in c.ops],
            "outputs": [_output_doc(o) for o in c.outputs],
        }
        if c.keep:
            doc["keep"] = [_keep_doc(k) for k in c.keep]   # only when set, as ring_bits below
        if c.ring_bits and c.ring_bits != 64:
            doc["ring_bits"] = c.ring_bits     # only when not the default 64, as above
        if self.input_parties:
            # only when there are any: every computation without input-only parties keeps the
            # document (and the fingerprint) it had before input-only parties existed
            doc["input_parties"] = list(self.input_parties)
        return doc

    def canonical(self) -> bytes:
        return canonical_json(self.document())

    def fingerprint(self) -> str:
        return fingerprint_of(self.canonical())

    def job_spec(self, job_id: str, timeout_s: float, input_deadline_unix: float = 0.0) -> node_pb2.JobSpec:
        return node_pb2.JobSpec(job_id=job_id, scenario=self.circuit.name, circuit=self.circuit,
                                parties=list(self.parties), threshold=self.threshold, timeout_s=timeout_s,
                                fingerprint=self.fingerprint(), input_deadline_unix=input_deadline_unix,
                                protocol=self.protocol, dropouts=self.dropouts,
                                input_parties=list(self.input_parties))


class SpecError(ValueError):
    """A computation document that is not canonical or not well formed."""


def parse_document(data: bytes) -> tuple[Document, str]:
    """A client's check of what a node shows it: the bytes must be the canonical form of the JSON
    they hold (no duplicate keys, no alternative encodings); returns (document, fingerprint)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise SpecError("computation document has a duplicate key")
        return dict(pairs)

    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"computation document is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SpecError(f"computation document is not in format {FORMAT}")
    try:
        again = canonical_json(doc)
    except Exception as exc:  # rfc8785 refuses floats out of range, unsafe integers, lone surrogates
        raise SpecError(f"computation document cannot be canonicalized: {exc}") from None
    if again != data:
        raise SpecError("computation document is not in canonical (RFC 8785) form")
    return doc, fingerprint_of(data)


# ---- what depends on what -------------------------------------------------------------------------

@dataclass(frozen=True)
class Feeds:
    """The inputs one output depends on, and who provides them."""
    inputs: tuple[str, ...]
    owners: tuple[str, ...]   # parties (compute or input-only) whose node inputs feed the output
    clients: int              # listed input clients whose rows feed it (at most this many submit)

    @property
    def contributors(self) -> int:
        return len(self.owners) + self.clients


def output_feeds(doc: Document) -> dict[str, Feeds]:
    """For each output, the inputs it depends on through the ops (data flow, not values)."""
    deps: dict[str, frozenset[str]] = {d["name"]: frozenset([d["name"]]) for d in doc["inputs"]}
    for op in doc["ops"]:
        deps[op["out"]] = frozenset().union(*(deps.get(a, frozenset()) for a in op["args"]))
    by_name = {d["name"]: d for d in doc["inputs"]}
    out = {}
    for o in doc["outputs"]:
        names = sorted(deps.get(o["value"], frozenset()))
        decls = [by_name[n] for n in names]
        # a kept model's owner is a contributor like a node input's: its data is in the output
        owners = sorted({d["owner"] for d in decls if d["source"] in ("node", "model")})
        clients = sum(d["clients"]["count"] for d in decls if d["source"] == "clients")
        out[o["name"]] = Feeds(tuple(names), tuple(owners), clients)
    return out
