"""A recipient (a node's organization or a light client with its own certificate) fetches the
output shares of a job from the nodes and reconstructs the result itself. It fails closed.

What it accepts (docs/outputs.md, "What a recipient checks"):
- The names it renders come from the approved computation, never from one node: every node sends
  the canonical computation document it ran (OutputShare.spec); each must hash to the fingerprint
  that node claims, and every answering node must send the same document, the same client list
  for a winner's label (whose hash the document holds) and the same participants list (only where
  the document reveals them). A node that differs from the majority is named (all of them when
  there is no majority). The parties, the threshold, the engine, the output's divisor and its
  description are read from that document.
- The numbers: Shamir needs t + 2 answering nodes whose shares ALL lie on one polynomial of degree
  t (t + 1 shares always lie on one: they would be accepted unchecked); replicated3 needs all three
  nodes, each component equal between its two holders. A share that does not fit names its node
  when that can be told (Shamir with n >= t + 3 answering), or the pair that disagrees (replicated3).
- The opened values must fit the output's kind (render()): a count or value the kind does not
  open is a FetchError naming the kind and what was expected and opened, not a rendering.
- Fewer answering nodes: FetchError naming the missing ones, unless the caller passes
  accept_unchecked (CLI --accept-unchecked), which takes t + 1 Shamir shares or 2 replicated3
  nodes and marks the Result checked=False: one lying node can then change the result unseen.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from parley.v1 import node_pb2, node_pb2_grpc

from . import sharing
from .computation.spec import SpecError, clients_digest, parse_document
from .transport.tls import TlsMaterial, secure_channel


class FetchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Result:
    job_id: str
    output: str
    values: list[int]
    value: object            # rendered for people (see render())
    nodes: list[str]         # the nodes whose shares were used
    checked: bool = True     # False: accepted with too few nodes to check (accept_unchecked)
    fingerprint: str = ""    # the computation every answering node ran
    participants: list[str] = field(default_factory=list)   # only where the computation reveals them
    dp: dict | None = None   # a differentially private output's promise, from the approved document (dp_metadata)


async def _fetch_one(org: str, address: str, tls: TlsMaterial, req: node_pb2.OutputRequest, timeout: float):
    async with secure_channel(address, org, tls) as ch:
        return await node_pb2_grpc.ResultReleaseStub(ch).FetchOutput(req, timeout=timeout)


async def fetch(job_id: str, output: str, nodes: dict[str, str], tls: TlsMaterial, timeout: float = 15.0, *,
                accept_unchecked: bool = False, fingerprint: str = "") -> Result:
    """Ask every node in `nodes` (org -> address) for its share of `output` and reconstruct.
    `fingerprint`, if given, is the computation the caller expects (else any, all nodes agreeing)."""
    req = node_pb2.OutputRequest(job_id=job_id, output=output)
    orgs = list(nodes)
    answers = await asyncio.gather(*(_fetch_one(o, nodes[o], tls, req, timeout) for o in orgs), return_exceptions=True)
    got: dict[str, node_pb2.OutputShare] = {}
    problems: dict[str, str] = {}
    for org, ans in zip(orgs, answers):
        if isinstance(ans, grpc.aio.AioRpcError):
            if ans.code() == grpc.StatusCode.PERMISSION_DENIED:
                raise FetchError(f"{org} refused: {ans.details()}")
            problems[org] = f"{ans.code().name}: {ans.details()}"
            continue
        if isinstance(ans, BaseException):
            problems[org] = str(ans) or type(ans).__name__
            continue
        if ans.node != org:
            raise FetchError(f"node at {nodes[org]} answered as {ans.node!r}, expected {org}")
        got[org] = ans
    return check_answers(job_id, output, got, problems, accept_unchecked=accept_unchecked, fingerprint=fingerprint)


def check_answers(job_id: str, output: str, answers: dict[str, node_pb2.OutputShare], problems: dict[str, str],
                  *, accept_unchecked: bool = False, fingerprint: str = "") -> Result:
    """The checks and the reconstruction of `fetch`, without the network: `answers` are the
    OutputShares by answering node, `problems` why the other asked nodes did not answer."""
    if not answers:
        raise FetchError("no node returned a share: " + "; ".join(f"{o}: {p}" for o, p in problems.items()))
    for org, ans in answers.items():
        if ans.job_id != job_id or ans.output != output:
            raise FetchError(f"{org} answered for {ans.job_id}/{ans.output}, not {job_id}/{output}")
    doc, fp = _agreed_document(answers, fingerprint)
    try:
        decl = next((o for o in doc["outputs"] if o.get("name") == output), None)
        if decl is None:
            raise FetchError(f"the computation {fp[:16]}... has no output {output!r}")
        labels, participants = _agreed_names(answers, doc, decl)
        parties, t = [str(p) for p in doc["parties"]], int(doc["threshold"])
        protocol = str(doc["protocol"]["engine"])
        sharing.share_shape(protocol)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FetchError(f"the computation document {fp[:16]}... is not well formed ({type(exc).__name__})") from None
    # the fields that repeat the document for older recipients must say the same; a node where they
    # differ was changed in what it sends, not only in what it stores
    repeated = (t, len(parties), protocol, int(decl.get("public_divisor", "0")), decl.get("description", ""))
    odd = sorted(o for o, a in answers.items()
                 if (a.threshold, a.party_count, a.protocol or "shamir", a.public_divisor, a.description) != repeated)
    if odd:
        raise FetchError(f"{', '.join(odd)} sent a threshold, engine, divisor or description that is not the one "
                         "of the computation it claims")
    strangers = sorted(set(answers) - set(parties))
    if strangers:
        raise FetchError(f"{', '.join(strangers)} answered but {'is' if len(strangers) == 1 else 'are'} "
                         f"not a compute party of computation {fp[:16]}...")
    # checked: every share beyond the t + 1 (2) that fix the result must agree with them
    need_checked = t + 2 if protocol == "shamir" else len(parties)
    need = sharing.min_shares(protocol, t)
    missing = [p for p in parties if p not in answers]
    checked = len(answers) >= need_checked
    if not checked and (not accept_unchecked or len(answers) < need):
        why = "; ".join(f"{p}: {problems.get(p, 'not asked')}" for p in missing)
        rule = (f"a checked result needs {need_checked} of the {len(parties)} nodes"
                if len(answers) >= need else f"even an unchecked result needs {need}")
        raise FetchError(f"only {len(answers)} node{'s' if len(answers) != 1 else ''} answered ({rule}"
                         f"{'' if len(answers) < need else '; accept_unchecked takes fewer'}); "
                         f"missing: {why}")
    shares, by_index = _decoded_shares(answers, parties, protocol)
    try:
        secret = sharing.reconstruct(protocol, shares, t)
    except sharing.InconsistentShares as exc:
        if exc.pair:
            names = " and ".join(by_index[i] for i in exc.culprits)
            raise FetchError(f"output shares from {names} disagree on a value both hold: "
                             "one of them is wrong") from None
        if exc.culprits:
            names = ", ".join(by_index[i] for i in exc.culprits)
            raise FetchError(f"output share from {names} is inconsistent with the other nodes' shares") from None
        raise FetchError(f"output shares are inconsistent ({', '.join(sorted(answers))}); "
                         f"too few nodes answered to tell which one is wrong") from None
    values = [int(v) for v in secret.reshape(-1)]
    return Result(job_id, output, values, render(values, decl, labels), sorted(answers), checked, fp, participants,
                  dp_metadata(decl))


def dp_metadata(decl: dict) -> dict | None:
    """What a DP output promises, read from the approved computation document (so every node
    vouched for it): mechanism, unit, relation, epsilon (delta, rho), sensitivity, noise scale, and
    the noise's std and 95% interval half-width in the released value's units (an average's are the
    total's over its public divisor). None for an exact output."""
    dp = decl.get("dp")
    if not isinstance(dp, dict):
        return None
    from .dp import accounting           # here: only DP outputs need it
    out: dict = {k: dp[k] for k in ("mechanism", "unit", "relation", "epsilon", "delta", "rho", "sensitivity",
                                     "scale") if dp.get(k)}
    divisor = int(decl.get("public_divisor", "0")) or 1
    try:
        out["std"] = accounting.std_of(dp["mechanism"], dp["scale"]) / divisor
        out["interval95"] = accounting.interval95(dp["mechanism"], dp["scale"]) / divisor
    except (KeyError, ValueError):
        pass
    if dp.get("post_processing"):
        out["post_processing"] = True
    return out


def majority(views: dict[str, Any]) -> tuple[bool, Any, list[str]]:
    """(whether more than half of the nodes share one view; that view, or None; the nodes that
    differ from it, or all of them when no view has a majority). A view may itself be None."""
    counts = Counter(views.values())
    top, count = counts.most_common(1)[0]
    if count * 2 > len(views):
        return True, top, sorted(o for o, v in views.items() if v != top)
    return False, None, sorted(views)


def _disagree(what: str, views: dict[str, Any]) -> None:
    if len(set(views.values())) > 1:
        found, _, odd = majority(views)
        whom = "the other answering nodes" if found else "each other (no majority)"
        raise FetchError(f"{', '.join(odd)} disagree{'s' if len(odd) == 1 else ''} with {whom} about {what}")


def _agreed_document(answers: dict[str, node_pb2.OutputShare], fingerprint: str) -> tuple[dict, str]:
    """The computation document every answering node sent, checked: each one hashes to the
    fingerprint its node claims, is canonical, and all are the same."""
    docs: dict[str, tuple[dict, str]] = {}
    bad = []
    for org, ans in answers.items():
        try:
            doc, fp = parse_document(ans.spec)
        except SpecError:
            bad.append(org)
            continue
        if fp != ans.fingerprint:
            bad.append(org)
            continue
        docs[org] = (doc, fp)
    if bad:
        raise FetchError(f"{', '.join(sorted(bad))} sent a computation document that does not hash to the "
                         "fingerprint it claims (its stored job was changed, or it is not the approved one)")
    _disagree("the computation (fingerprint)", {o: fp for o, (_, fp) in docs.items()})
    doc, fp = next(iter(docs.values()))
    if fingerprint and fp != fingerprint:
        raise FetchError(f"the nodes ran computation {fp[:16]}..., not the expected {fingerprint[:16]}...")
    return doc, fp


def _agreed_names(answers: dict[str, node_pb2.OutputShare], doc: dict, decl: dict) -> tuple[list[str], list[str]]:
    """(the labels of the output's carried row tags, the participants): the same from every node,
    and only what the document says the output carries."""
    _disagree("the winner's client list", {o: tuple(a.tag_labels) for o, a in answers.items()})
    _disagree("who took part", {o: tuple(a.participants) for o, a in answers.items()})
    first = next(iter(answers.values()))
    labels, participants = list(first.tag_labels), list(first.participants)
    tagged = _tagged_input(doc, decl["value"])
    if labels or tagged:
        inp = next((d for d in doc["inputs"] if d.get("name") == tagged), None)
        if inp is None or inp.get("source") != "clients" or clients_digest(labels) != inp["clients"]["sha256"]:
            raise FetchError(f"{', '.join(sorted(answers))} sent a client list for output {decl['name']!r} "
                             "that is not the approved one")
    if participants and not decl.get("reveal_participants"):
        raise FetchError(f"{', '.join(sorted(answers))} sent who took part, which output {decl['name']!r} "
                         "does not reveal")
    return labels, participants


def _tagged_input(doc: dict, value: str) -> str:
    """The client input whose row tags `value` carries (through the ops), or ''."""
    producers = {op["out"]: op for op in doc["ops"]}
    todo, seen = [value], set()
    while todo:
        name = todo.pop()
        op = producers.get(name)
        if op is None or name in seen:
            continue
        seen.add(name)
        if op.get("tags"):
            return str(op["tags"])
        todo.extend(op["args"])
    return ""


def _decoded_shares(answers: dict[str, node_pb2.OutputShare], parties: list[str],
                    protocol: str) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """{party index: share}, {party index: org}; the index is the node's place in the document's
    parties, and every share must have the same shape."""
    component = sharing.share_shape(protocol)
    _disagree("the output's shape", {o: tuple(a.shape) for o, a in answers.items()})
    shares: dict[int, np.ndarray] = {}
    by_index: dict[int, str] = {}
    for org, ans in answers.items():
        index = parties.index(org)
        if ans.party_index != index:
            raise FetchError(f"{org} claims party index {ans.party_index}, the computation says {index}")
        if tuple(ans.shape[len(ans.shape) - len(component):]) != component or len(ans.shape) <= len(component):
            raise FetchError(f"{org} sent a share of shape {list(ans.shape)}, not a {protocol} share")
        try:
            shares[index] = sharing.decode(protocol, ans.share, list(ans.shape), f"output share from {org}")
        except ValueError as exc:
            raise FetchError(str(exc)) from None
        by_index[index] = org
    return shares, by_index


def render(values: list[int], decl: dict, labels: list[str] | None = None) -> object:
    """Turn the opened integers into what the scenario promised (see docs/outputs.md). `decl` is
    the output's entry in the computation document; `labels` the approved client list the output's
    row tags point into (an auction's winner).

    Values that do not fit the output's kind (a count other than the kind's, a winner index with no
    option) raise FetchError: the answering nodes agreed on them, but they are not what the approved
    computation opens, so nothing is rendered from them."""
    try:
        return _render(values, decl, labels or [])
    except FetchError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise FetchError(f"output {_name(decl)!r}: cannot render the {len(values)} value"
                         f"{'' if len(values) == 1 else 's'} the nodes opened as its document describes "
                         f"({type(exc).__name__}: {exc})") from None


def _name(decl: object) -> str:
    return str(decl.get("name", "?")) if isinstance(decl, dict) else "?"


def _render(values: list[int], decl: dict, labels: list[str]) -> object:
    divisor = int(decl.get("public_divisor", "0"))
    frac_bits = int(decl.get("frac_bits", 0))
    if frac_bits and not divisor and all(-(1 << 53) < v < 1 << 53 for v in values):
        # fixed point: v / 2^frac_bits is exact in float64 for |v| < 2^53 (a power-of-two scaling),
        # printed as a decimal; vectorized, since an output may hold millions of values
        floats = (np.array(values, dtype=np.float64) / float(1 << frac_bits)).tolist()
        return floats[0] if len(floats) == 1 else floats
    if divisor or frac_bits:
        # a public divisor (of a fixed-point value too): the exact fraction, as a float if exact
        out = [_number(Fraction(v, (divisor or 1) << frac_bits)) for v in values]
        return out[0] if len(out) == 1 else out
    note: dict = {}
    description = decl.get("description", "")
    if description.startswith("{"):
        try:
            note = json.loads(description)
        except ValueError:
            note = {}
    kind = note.get("render")

    def expect(count: int) -> None:
        if len(values) != count:
            raise FetchError(f"output {_name(decl)!r} ({kind}): expected {count} value{'' if count == 1 else 's'}, "
                             f"the nodes opened {len(values)}")

    if kind == "auction":
        expect(3)
        sold, winner, price = values
        if not sold:
            return {"sold": False}
        return {"sold": True, "winner": labels[winner - 1] if 0 < winner <= len(labels) else winner, "price": price}
    if kind == "tally":
        options = note["options"]
        expect(len(options) + 1)
        return {**{o: c for o, c in zip(options, values)}, "invalid": values[len(options)]}
    if kind == "winner":   # 0: no option has a vote; i: option i - 1 (computation/vote.py)
        expect(1)
        options = note["options"]
        if not values[0]:
            return {"winner": None, "result": "no votes" if note.get("approval") else "no valid ballots"}
        if not 0 < values[0] <= len(options):   # a negative index would silently pick from the end
            raise FetchError(f"output {_name(decl)!r} (winner): expected an option index 0 to {len(options)}, "
                             f"the nodes opened {values[0]}")
        return {"winner": options[values[0] - 1]}
    if kind == "survey":       # [reported yeses, respondents] (computation/survey.py)
        expect(2)
        from .randomized_response import estimate
        return estimate(values[0], values[1], note["epsilon"])
    if kind == "referendum":   # 0: no valid ballot, 1: NO, 2: YES (computation/vote.py)
        expect(1)
        if values[0] not in (0, 1, 2):
            raise FetchError(f"output {_name(decl)!r} (referendum): expected 0, 1 or 2, the nodes opened {values[0]}")
        return {"passed": values[0] == 2, "result": {2: "YES", 1: "NO"}.get(values[0], "no valid ballots")}
    return values[0] if len(values) == 1 else values


def _number(f: Fraction) -> int | float | str:
    if f.denominator == 1:
        return f.numerator
    as_float = float(f)
    return as_float if Fraction(as_float) == f else f"{f.numerator}/{f.denominator}"


def parse_nodes(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, text.split(",")):
        org, sep, addr = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected org=host:port, got {item!r}")
        out[org.strip()] = addr.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpcnode.recipient",
                                     description="Fetch output shares of a job from the nodes and reconstruct the result. "
                                                 "Fails unless enough nodes answer to check it (Shamir: t + 2 "
                                                 "whose shares agree; replicated3: all three) and all of them "
                                                 "ran the same computation.")
    parser.add_argument("--job", required=True, help="job id")
    parser.add_argument("--output", required=True, help="output name (e.g. total, average, result, tally)")
    parser.add_argument("--nodes", required=True, type=parse_nodes, help="org=host:port,org=host:port,...")
    parser.add_argument("--certs", type=Path, default=Path("deploy/certs"), help="folder with ca.pem and <identity>.pem/.key")
    parser.add_argument("--identity", required=True, help="the recipient's identity (its certificate name)")
    parser.add_argument("--timeout", type=float, default=15.0)
    parser.add_argument("--fingerprint", default="",
                        help="the computation you expect (sha256 hex); default: any, as long as all nodes agree")
    parser.add_argument("--accept-unchecked", action="store_true",
                        help="accept a result from too few nodes to check it (Shamir: t + 1, replicated3: 2); "
                             "it is marked \"checked\": false, and one lying node could have changed it")
    args = parser.parse_args(argv)
    try:
        tls = TlsMaterial.for_identity(args.certs, args.identity)
        result = asyncio.run(fetch(args.job, args.output, args.nodes, tls, args.timeout,
                                   accept_unchecked=args.accept_unchecked, fingerprint=args.fingerprint))
    except (FetchError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    line: dict[str, object] = {"job": result.job_id, "output": result.output, "recipient": args.identity,
                               "result": result.value, "checked": result.checked}
    if result.participants:
        line["participants"] = result.participants
    if result.dp:
        line["dp"] = result.dp
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
