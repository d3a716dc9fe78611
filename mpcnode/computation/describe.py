"""A computation document in plain words: who contributes what, what each recipient learns, who
computes it and with which threshold. Shown by `coordinator plan`, by the input client before it
sends anything, and usable by an approver reviewing a fingerprint (docs/approving.md).

Everything here is derived from the document itself (the thing the fingerprint covers). Two
kinds of statement come out of it, and the words keep them apart: what follows from the structure
(who contributes, who receives, how many values an output opens, which inputs feed it) is checked
by construction; what an output "means" (only the winner and the price, only YES/NO) is the
output's description, pinned by the fingerprint but not proved by it, so it is shown as
"described as". A reviewer who builds the computation from a scenario file (`coordinator plan`)
gets both from the same builder; one who reviews a bare document should compare the opened
lengths with the description.
"""
from __future__ import annotations

import json
from collections import defaultdict

from .spec import Document, output_feeds


def _range(d: dict) -> str:
    lo, hi = d["range"]
    return f"{lo}..{hi}"


def _values(n: int) -> str:
    return "1 value" if n == 1 else f"{n} values"


def _learns(out: dict) -> str:
    """What opening this output tells its recipients, from its render note or description."""
    try:
        note = json.loads(out["description"])
    except (ValueError, TypeError):
        note = None
    if isinstance(note, dict):
        render = note.get("render")
        text = _kind_learns(render, note)
        if text and out.get("dp") and render in ("tally", "winner"):
            text = _dp_learns(render, note)
        if text:
            return text + ("; and which listed clients' inputs counted" if out.get("reveal_participants")
                           else "; not who took part")
    divisor = int(out.get("public_divisor", "0"))
    text = out["description"] or f"the value of {out['value']}"
    return text + (f" (the opened sum divided by {divisor})" if divisor else "")


def _dp_learns(render: object, note: dict) -> str:
    """A DP vote's output (computation/vote.py _dp_vote): noisy, and the noise is part of it."""
    options = ", ".join(note.get("options", []))
    if render == "tally":
        return (f"a NOISY count for each option ({options}) and a noisy count of invalid ballots "
                "(differential privacy: see below)")
    return (f"only the option among {options} with the largest NOISY count (report-noisy-max, first on a tie; "
            "always an option, even with no valid ballot); no counts")


def _kind_learns(render: object, note: dict) -> str:
    if render == "auction":
        return (f"whether the item sold, and if so only the winner (from the approved bidder list) and the price "
                f"({note.get('type', '?')} auction); no other bid")
    if render == "tally":
        return f"the number of valid votes for each option ({', '.join(note.get('options', []))}) and the number of invalid ballots"
    if render == "winner":
        return (f"only the winning option among {', '.join(note.get('options', []))} (first listed on a tie), "
                "or that no option has a vote; no counts")
    if render == "survey":
        return (f"how many respondents REPORTED yes to {note.get('question', '?')!r} after each flipped its own "
                f"answer with probability 1/(1+e^{note.get('epsilon', '?')}) (randomized response), and how many "
                "answered: the estimate of the true yeses and its 95% interval follow")
    if render == "referendum":
        return "only whether YES got at least half of the valid votes, or that no ballot was valid"
    if render == "predict":
        what = {"margin": "the model's margin (raw score) per class", "probability": "the probability per class",
                "class": "the predicted class"}.get(note.get("output"), "?")
        return (f"for each of up to {note.get('queries', '?')} queries, {what} from model {note.get('model', '?')} "
                "(returned scores let a querier learn about the model: the owner's grants bound the queries); "
                "not the trees")
    return ""


def _shape_words(m: dict) -> str:
    names = m.get("feature_names") or []
    return (f"{m['trees']} trees of depth {m['depth']}, {m['features']} features"
            f"{' (' + ', '.join(names[:3]) + (', ...' if len(names) > 3 else '') + ')' if names else ''}, "
            f"{m['kind']} {m['library']} model, leaves in {m['fraction_bits']} fraction bits")


def describe(doc: Document) -> list[str]:
    lines = [f"computation {doc['name']!r}: {doc['description'] or '(no description)'}"]
    parties = doc["parties"]
    drop = ("may run without parties that are down before the computation starts, as long as every input "
            "owner and enough parties remain (t+1 for sums, 2t+1 with products)"
            if doc["dropouts"] == "within-threshold" else "runs only with all its parties")
    lines.append(f"computed by {len(parties)} nodes: {', '.join(parties)}; threshold t={doc['threshold']} "
                 f"(any {doc['threshold']} of them together learn nothing about the inputs; "
                 f"{doc['threshold'] + 1} colluding could); {drop}")
    input_only = doc.get("input_parties", [])
    if input_only:
        lines.append(f"input-only: {', '.join(input_only)} compute nothing and hold no shares; each node "
                     f"range-checks its own input and secret-shares it to the compute nodes when the job starts")
    proto = doc["protocol"]
    where = (f"over the field of size {proto['field_modulus']}" if "field_modulus" in proto else
             "(" + ", ".join(f"{k} {v}" for k, v in proto.items() if k != "engine") + ")")   # another engine's parameters
    lines.append(f"protocol: {proto['engine']} {where}, semi-honest, honest majority")
    by_owner: dict[str, list[str]] = defaultdict(list)
    kept = {k["value"]: k for k in doc.get("keep", [])}
    for d in doc["inputs"]:
        if d["source"] == "node" and "model" in d:
            k = kept.get(d["name"])
            grants = ", ".join(f"{g['querier']} {g['queries']}" for g in k["grants"]) if k else ""
            by_owner[d["owner"]].append(
                f"the model in its dataset {d['dataset']!r} (public: {_shape_words(d['model'])}), secret-shared once"
                + (f" and kept by the compute nodes as model {k['model_id']}; queries granted: {grants or 'none'}"
                   if k else ""))
        elif d["source"] == "node":
            by_owner[d["owner"]].append(f"{d['field']} ({_values(d['length'])} in {_range(d)}) "
                                        f"from its dataset {d['dataset']!r}")
        elif d["source"] == "model":
            lines.append(f"the compute nodes use their shares of model {d['model_id']} kept for {d['owner']} "
                         f"(public: {_shape_words(d['model'])}); its owner's grants are counted at every node")
    for owner, items in by_owner.items():
        role = " (input-only)" if owner in input_only else ""
        lines.append(f"{owner}{role} contributes " + "; ".join(items))
    for d in doc["inputs"]:
        if d["source"] == "clients":
            c = d["clients"]
            lines.append(f"up to {c['count']} listed input clients (list sha256 {c['sha256'][:16]}...) each "
                         f"contribute {d['name']}: {_values(d['length'])} in {_range(d)}")
    feeds = output_feeds(doc)
    lengths = array_lengths(doc)
    for out in doc["outputs"]:
        f = feeds[out["name"]]
        who = []
        if f.owners:
            who.append(", ".join(f.owners))
        if f.clients:
            who.append(f"up to {f.clients} clients")
        opened = lengths.get(out["value"])
        size = f"{_values(opened)} opened" if opened is not None else "values opened"
        lines.append(f"{', '.join(out['recipients'])} learn {out['name']!r} ({size}), described as: {_learns(out)}; "
                     f"computed from {' and '.join(who) or 'no input'} ({f.contributors} contributor(s))")
    recipients = sorted({r for o in doc["outputs"] for r in o["recipients"]})
    if not recipients:
        lines.append("nothing is opened to anyone: not the coordinator, not a compute node")
        return lines
    lines.append(f"nobody else learns any result ({', '.join(recipients)} do): not the coordinator unless listed, "
                 f"not a compute node unless listed")
    return lines


_SAME_AS_ARGS = {"add", "sub", "mul", "lt", "ge", "eq", "mul_trunc"}


def array_lengths(doc: Document) -> dict[str, int]:
    """How many values each array holds, from the declarations and ops alone (every listed client
    assumed to submit): the size of what each output opens. Unknown cases are left out."""
    n: dict[str, int] = {}
    for d in doc["inputs"]:
        rows = d["clients"]["count"] if d["source"] == "clients" else 1
        n[d["name"]] = rows * d["length"]
    for op in doc["ops"]:
        args = [n.get(a) for a in op["args"]]
        if any(a is None for a in args):
            continue
        kind, ints = op["op"], [int(v) for v in op["ints"]]
        size: int | None
        if kind in _SAME_AS_ARGS:
            size = max(args)
        elif kind in ("neg", "add_const", "mul_const", "mul_rows", "trunc", "reciprocal", "exp", "sigmoid"):
            size = args[0]
        elif kind in ("sum", "dot", "count_rows"):
            size = 1
        elif kind == "concat":
            size = sum(args)
        elif kind == "slice":
            size = len(range(*[min(v, args[0]) if v >= 0 else v for v in ints[:2]], ints[2]))
        elif kind in ("reshape_sum", "repeat"):
            size = ints[0]
        elif kind == "select":
            size = max(args[1:])
        elif kind == "argmax":
            size = 2
        elif kind == "top_two":
            size = 3
        elif kind == "predict":
            model = next((d["model"] for d in doc["inputs"] if d["name"] == op["args"][0] and "model" in d), None)
            size = None if model is None else (
                args[1] // model["features"] * (1 if ints[:1] == [2] else model["classes"]))
        elif kind == "rows_valid":
            size = args[0] // ints[0] if ints and ints[0] else None
        else:
            size = None
        if size is not None:
            n[op["out"]] = size
    return n
