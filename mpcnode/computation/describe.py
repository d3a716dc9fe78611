"""A computation document in plain words: who contributes what, what each recipient learns, who
computes it and with which threshold. Shown by `coordinator plan`, by the input client before it
sends anything, and usable by an approver reviewing a fingerprint (docs/approving.md).

Everything here is derived from the document itself (the thing the fingerprint covers), so the
words cannot say something the fingerprint does not pin.
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
        if render == "auction":
            return (f"whether the item sold, and if so only the winner and the price ({note.get('type', '?')} auction); "
                    "no other bid")
        if render == "tally":
            return f"the number of valid votes for each option ({', '.join(note.get('options', []))}) and the number of invalid ballots"
        if render == "winner":
            return f"only the winning option among {', '.join(note.get('options', []))} (first listed on a tie), no counts"
        if render == "referendum":
            return "only whether YES got at least half of the valid votes"
    divisor = int(out.get("public_divisor", "0"))
    text = out["description"] or f"the value of {out['value']}"
    return text + (f" (the opened sum divided by {divisor})" if divisor else "")


def describe(doc: Document) -> list[str]:
    lines = [f"computation {doc['name']!r}: {doc['description'] or '(no description)'}"]
    parties = doc["parties"]
    drop = ("may run without parties that are down before the computation starts, within the threshold"
            if doc["dropouts"] == "within-threshold" else "runs only with all its parties")
    lines.append(f"computed by {len(parties)} nodes: {', '.join(parties)}; threshold t={doc['threshold']} "
                 f"(any {doc['threshold']} of them together learn nothing about the inputs; "
                 f"{doc['threshold'] + 1} colluding could); {drop}")
    proto = doc["protocol"]
    lines.append(f"protocol: {proto['engine']} over the field of size {proto['field_modulus']}, "
                 f"semi-honest, honest majority")
    by_owner: dict[str, list[str]] = defaultdict(list)
    for d in doc["inputs"]:
        if d["source"] == "node":
            by_owner[d["owner"]].append(f"{d['field']} ({_values(d['length'])} in {_range(d)}) "
                                        f"from its dataset {d['dataset']!r}")
    for owner, items in by_owner.items():
        lines.append(f"{owner} contributes " + "; ".join(items))
    for d in doc["inputs"]:
        if d["source"] == "clients":
            c = d["clients"]
            lines.append(f"up to {c['count']} listed input clients (list sha256 {c['sha256'][:16]}...) each "
                         f"contribute {d['name']}: {_values(d['length'])} in {_range(d)}")
    feeds = output_feeds(doc)
    for out in doc["outputs"]:
        f = feeds[out["name"]]
        who = []
        if f.owners:
            who.append(", ".join(f.owners))
        if f.clients:
            who.append(f"up to {f.clients} clients")
        lines.append(f"{', '.join(out['recipients'])} learn {out['name']!r}: {_learns(out)}; "
                     f"computed from {' and '.join(who) or 'no input'} ({f.contributors} contributor(s))")
    recipients = sorted({r for o in doc["outputs"] for r in o["recipients"]})
    lines.append(f"nobody else learns any result: not the coordinator, not a compute node unless listed "
                 f"above ({', '.join(recipients)})")
    return lines
