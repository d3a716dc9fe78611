"""A light input client (a bidder, a voter): secret-shares its value on its own machine and
sends exactly one share to each node over mutual TLS, so no single node ever sees the value.

The share format is the job's engine's (mpcnode/sharing.py): Shamir, one field element per value
to each node; replicated3, node i gets the pair (x_i, x_{i+1 mod 3}) of every value, shape
(length, 2) (docs/protocols.md, "Share formats outside the engines").
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import grpc
import numpy as np
from cryptography import x509
from cryptography.x509.oid import NameOID

from parley.v1 import circuit_pb2 as cpb
from parley.v1 import node_pb2, node_pb2_grpc

from . import randomized_response, receipts, sharing
from .computation.describe import describe
from .computation.liveness import live_set_problem
from .computation.spec import INTERACTIVE_OPS, Document, SpecError, parse_document
from .dpcheck import MAX_RR_EPSILON
from .inputs import InputError, check_values
from .recipient import parse_nodes
from .transport import serde
from .transport.tls import TlsMaterial, secure_channel


class SubmitError(RuntimeError):
    pass


@dataclass(frozen=True)
class JobView:
    """What every live node showed this client about a job, checked against the expected fingerprint."""
    document: Document
    fingerprint: str
    live: list[str]

    def words(self) -> list[str]:
        return describe(self.document)


START_GRACE_S = 5.0


async def _ask_nodes(job_id: str, chans: dict[str, grpc.aio.Channel],
                     timeout: float) -> tuple[dict[str, node_pb2.PublicJob], dict[str, str]]:
    """Every node's public view of the job ({org: PublicJob}) and why the others did not answer."""
    infos = await asyncio.gather(*(node_pb2_grpc.InputIntakeStub(ch).JobInfo(node_pb2.JobRef(job_id=job_id),
                                                                              timeout=timeout)
                                   for ch in chans.values()), return_exceptions=True)
    shown: dict[str, node_pb2.PublicJob] = {}
    problems: dict[str, str] = {}
    for org, info in zip(chans, infos):
        if isinstance(info, grpc.aio.AioRpcError):
            problems[org] = f"{org}: {info.code().name}: {info.details()}"
        elif isinstance(info, BaseException):
            problems[org] = f"{org}: {info}"
        else:
            shown[org] = info
    return shown, problems


def _starting(shown: dict[str, node_pb2.PublicJob]) -> bool:
    """Some nodes show a live set and others none yet: the job is starting."""
    lives = {tuple(info.live) for info in shown.values()}
    return len(lives) > 1 and () in lives and len(lives - {()}) == 1


async def inspect(job_id: str, expected_fingerprint: str, nodes: dict[str, str], tls: TlsMaterial,
                  timeout: float = 15.0, channels: dict[str, grpc.aio.Channel] | None = None) -> JobView:
    """Ask every node for the job's public computation document and check it before anything is sent:
    each live node must show the same canonical document, its SHA-256 must equal the fingerprint the
    client was given out of band, and the nodes must agree on who takes part."""
    own = channels is None
    chans = channels or {org: secure_channel(addr, org, tls) for org, addr in nodes.items()}
    try:
        shown, problems = await _ask_nodes(job_id, chans, timeout)
        # a job starts on its nodes one after another: a node that has not started it yet shows no
        # live set while the others show theirs. Ask again briefly rather than refuse a client
        # that came a moment early; a real disagreement (two non-empty live sets) is refused at once.
        waited = 0.0
        while _starting(shown) and waited < min(timeout, START_GRACE_S):
            await asyncio.sleep(0.05)
            waited += 0.05
            shown, problems = await _ask_nodes(job_id, chans, timeout)
    finally:
        if own:
            await asyncio.gather(*(ch.close() for ch in chans.values()))
    if not shown:
        raise SubmitError("no node answered: " + "; ".join(problems.values()))
    docs = {org: info.spec for org, info in shown.items()}
    if len(set(docs.values())) != 1:
        raise SubmitError("the nodes show different computations for this job; not submitting "
                          f"({', '.join(sorted(docs))} answered)")
    if len({tuple(info.live) for info in shown.values()}) != 1:
        raise SubmitError("the nodes disagree about which parties take part; not submitting")
    try:
        document, fp = parse_document(next(iter(docs.values())))
    except SpecError as exc:
        raise SubmitError(f"{exc}; not submitting") from None
    if fp != expected_fingerprint.strip().lower():
        raise SubmitError(f"the job computes {fp[:16]}..., not the computation you were given "
                          f"({expected_fingerprint.strip()[:16]}...); not submitting")
    parties = list(document["parties"])
    live = list(next(iter(shown.values())).live) or parties
    # whoever set the live set, it must be one the computation allows (the same rule the nodes enforce)
    owners = {d["owner"] for d in document["inputs"] if d["source"] == "node"}
    multiplies = any(op["op"] in INTERACTIVE_OPS for op in document["ops"])
    problem = live_set_problem(parties, int(document["threshold"]), owners, multiplies, document["dropouts"], live)
    if problem:
        raise SubmitError(f"the nodes show a live set the computation does not allow: {problem}; not submitting")
    # a node that is not taking part (down when the job started) may be unreachable or not know the job
    missing = [p for p in live if p not in shown]
    if missing:
        raise SubmitError("the job's live compute parties did not answer: "
                          + "; ".join(problems.get(p, f"{p}: no address given") for p in missing))
    return JobView(document, fp, live)


async def submit(job_id: str, input_name: str, values: list[int] | np.ndarray, nodes: dict[str, str],
                 tls: TlsMaterial, expected_fingerprint: str, timeout: float = 15.0, skip_local_check: bool = False,
                 show: Callable[[JobView], None] | None = None, node_input: bool = False,
                 live: list[str] | None = None) -> JobView:
    """Check the job (inspect), validate locally, share, and deliver one share per live node.
    Raises SubmitError with the reason; nothing is sent unless every check passed.

    node_input: the caller is an input-only party's node delivering its own node input
    `input_name` (mpcnode/inputparty.py); `live`, if given, is the set of compute parties it was
    told take part, which the nodes must show too. Its errors carry no value.

    skip_local_check exists only to play a misbehaving client in demos and tests: the nodes
    must then catch a bad ballot inside MPC.
    """
    channels = {org: secure_channel(addr, org, tls) for org, addr in nodes.items()}
    try:
        view = await inspect(job_id, expected_fingerprint, nodes, tls, timeout, channels)
        if show is not None:
            show(view)
        doc = view.document
        source = "node" if node_input else "clients"
        decl_doc = next((d for d in doc["inputs"] if d["name"] == input_name and d["source"] == source), None)
        if decl_doc is None:
            raise SubmitError(f"job {job_id} takes no {source} input named {input_name!r}")
        if live is not None and list(view.live) != list(live):
            raise SubmitError(f"the nodes show live parties {view.live}, not {live}; not submitting")
        decl = cpb.InputDecl(name=input_name, length=decl_doc["length"], lo=int(decl_doc["range"][0]),
                             hi=int(decl_doc["range"][1]), source=cpb.INPUT_SOURCE_CLIENTS,
                             frac_bits=int(decl_doc.get("frac_bits", 0)))   # fixed point: encoded here
        try:
            signed = check_values(input_name, values, decl, "input")
        except InputError as exc:
            if not skip_local_check:
                raise SubmitError(str(exc) if node_input else exc.detail) from None
            signed = np.array(values, dtype=np.int64)
        rr = None if node_input else rr_epsilon(doc)
        if rr is not None:
            # randomized response: the answer is flipped HERE, before it is shared, so nobody
            # downstream (nodes, coordinator, recipients) ever sees the true answer
            signed = randomized_response.randomize(signed, rr)
        parties = list(doc["parties"])
        # the share format of the job's engine, as the fingerprinted document names it (docs/protocols.md)
        protocol = str(doc["protocol"]["engine"])
        try:
            shares = sharing.client_shares(protocol, signed, len(parties), int(doc["threshold"]))
        except ValueError as exc:
            raise SubmitError(f"cannot share for this job: {exc}; not submitting") from None
        calls, digests = [], []
        live_index = [(parties.index(org), org) for org in view.live]
        for i, org in live_index:
            payload, shape = serde.encode(shares[i])
            digests.append(hashlib.sha256(payload).digest())
            req = node_pb2.ClientShare(job_id=job_id, input=input_name, share=payload, shape=shape)
            calls.append(node_pb2_grpc.InputIntakeStub(channels[org]).SubmitShare(req, timeout=timeout))
        acks = await asyncio.gather(*calls, return_exceptions=True)
        errors = [f"{org}: {a.code().name}: {a.details()}" if isinstance(a, grpc.aio.AioRpcError) else f"{org}: {a}"
                  for (_, org), a in zip(live_index, acks) if isinstance(a, BaseException)]
        # each node's receipt must name it, this job and input, and hash exactly the share sent to it
        # (a receipt is not checked for an input-only party's node input: that path returns none)
        me = own_identity(tls)
        errors += [f"{org}: its receipt does not match the share sent to it"
                   for (_, org), a, digest in zip(live_index, acks, digests)
                   if not isinstance(a, BaseException) and a.HasField("receipt")
                   and (a.receipt.node, a.receipt.job_id, a.receipt.input, a.receipt.client, a.receipt.share_sha256)
                   != (org, job_id, input_name, me, digest)]
        # and be signed by that node (mpcnode/receipts.py): evidence the client can keep
        errors += [f"{org}: {problem}" for (_, org), a in zip(live_index, acks)
                   if not isinstance(a, BaseException) and a.HasField("receipt")
                   for problem in [receipts.verify(a.receipt, tls.ca)] if problem]
        if not node_input:
            errors += [f"{org}: no receipt" for (_, org), a in zip(live_index, acks)
                       if not isinstance(a, BaseException) and not a.HasField("receipt")]
        if errors:
            raise SubmitError("; ".join(errors))
        return view
    finally:
        await asyncio.gather(*(ch.close() for ch in channels.values()))


def rr_epsilon(doc: dict) -> str | None:
    """The epsilon of the job's randomized-response output, if it declares one (the fingerprinted
    document, so a coordinator cannot change it without the client noticing)."""
    found = {str((o.get("dp") or {}).get("epsilon")) for o in doc.get("outputs", [])
             if (o.get("dp") or {}).get("mechanism") == "randomized-response"}
    if len(found) > 1:
        raise SubmitError("the job's randomized-response outputs state different epsilons; not submitting")
    eps = found.pop() if found else None
    try:
        bad = eps is not None and not 0 < Fraction(eps) <= MAX_RR_EPSILON
    except (ValueError, ZeroDivisionError):
        bad = True
    if bad:
        raise SubmitError(f"the job's randomized response has epsilon {eps}, outside (0, {MAX_RR_EPSILON}]: "
                          "your answer would not be protected; not submitting")
    return eps


STATE_WORDS = {node_pb2.SUBMISSION_STATE_NOT_RECEIVED: "not received", node_pb2.SUBMISSION_STATE_STORED: "stored",
               node_pb2.SUBMISSION_STATE_COUNTED: "counted", node_pb2.SUBMISSION_STATE_EXCLUDED: "excluded"}


async def status(job_id: str, input_name: str, nodes: dict[str, str], tls: TlsMaterial,
                 timeout: float = 15.0) -> dict[str, node_pb2.SubmissionStatusReply | str]:
    """Ask every node about this client's own submission (the identity of `tls`): {org: its
    SubmissionStatusReply (stored, counted or excluded with the reason, and its receipt), or
    why it did not answer}. A node answers only about the caller's own credential."""
    channels = {org: secure_channel(addr, org, tls) for org, addr in nodes.items()}
    try:
        query = node_pb2.SubmissionQuery(job_id=job_id, input=input_name)
        replies = await asyncio.gather(*(node_pb2_grpc.InputIntakeStub(ch).SubmissionStatus(query, timeout=timeout)
                                         for ch in channels.values()), return_exceptions=True)
    finally:
        await asyncio.gather(*(ch.close() for ch in channels.values()))
    return {org: (r if not isinstance(r, BaseException) else
                  f"{r.code().name}: {r.details()}" if isinstance(r, grpc.aio.AioRpcError) else str(r))
            for org, r in zip(channels, replies)}


def _status_main(args: argparse.Namespace) -> int:
    try:
        tls = TlsMaterial.for_identity(args.certs, args.identity)
        answers = asyncio.run(status(args.job, args.input, args.nodes, tls, args.timeout))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for org, a in answers.items():
        if isinstance(a, str):
            print(f"{org}: no answer: {a}")
            continue
        line = f"{org}: {STATE_WORDS.get(a.state, 'unknown')}" + (f" ({a.reason})" if a.reason else "")
        if a.HasField("receipt"):
            problem = receipts.verify(a.receipt, tls.ca)
            line += (f", stored share sha256 {a.receipt.share_sha256.hex()}, "
                     + (f"receipt NOT valid: {problem}" if problem else f"receipt signed by {a.receipt.node}"))
        print(line)
    return 0 if all(not isinstance(a, str) for a in answers.values()) else 1


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpcnode.client",
                                     description="Light input client: secret-share a value and send one share to each node.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("submit", help="submit a bid or a ballot to a job")
    p.add_argument("--job", required=True)
    p.add_argument("--input", required=True, help="client input name (bids, ballots)")
    p.add_argument("--values", required=True, help="comma-separated integers, e.g. 1500 or 0,1,0; decimals "
                                                   "(2.75) for a fixed-point input, encoded and range-checked here")
    p.add_argument("--nodes", required=True, type=parse_nodes, help="org=host:port,... for every compute party")
    p.add_argument("--certs", type=Path, default=Path("deploy/certs"))
    p.add_argument("--identity", required=True, help="this client's credential name")
    p.add_argument("--fingerprint", required=True,
                   help="the computation's fingerprint as published by the organizers (sha256 hex); "
                        "nothing is sent unless every node runs exactly that computation")
    p.add_argument("--timeout", type=float, default=15.0)
    q = sub.add_parser("status", help="ask every node whether this client's own submission is stored, counted or "
                                      "excluded (and why)")
    q.add_argument("--job", required=True)
    q.add_argument("--input", required=True, help="client input name (bids, ballots)")
    q.add_argument("--nodes", required=True, type=parse_nodes, help="org=host:port,... for every compute party")
    q.add_argument("--certs", type=Path, default=Path("deploy/certs"))
    q.add_argument("--identity", required=True, help="this client's credential name")
    q.add_argument("--timeout", type=float, default=15.0)
    r = sub.add_parser("predict", help="private prediction: secret-share a table of queries (CSV or Parquet with "
                                       "the model's named columns) and write the predictions only you receive")
    r.add_argument("--job", required=True, help="the prediction job (a `predict` scenario's job id)")
    r.add_argument("--input", required=True, type=Path, help="queries: .csv (header row) or .parquet")
    r.add_argument("--output", required=True, type=Path, help="predictions: .csv or .parquet")
    r.add_argument("--carry", default="", help="comma-separated columns copied to the output (e.g. an id column)")
    r.add_argument("--nodes", required=True, type=parse_nodes, help="org=host:port,... for every compute party")
    r.add_argument("--certs", type=Path, default=Path("deploy/certs"))
    r.add_argument("--identity", required=True, help="this querier's credential name")
    r.add_argument("--fingerprint", required=True, help="the prediction computation's fingerprint (sha256 hex)")
    r.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the predictions")
    args = parser.parse_args(argv)
    if args.command == "status":
        return _status_main(args)
    if args.command == "predict":
        return _predict_main(args)
    try:
        # integers, or decimals for a fixed-point input (encoded after the document is checked)
        values = [_number(v) for v in args.values.split(",")]
    except ValueError:
        print(f"error: --values must be comma-separated numbers, got {args.values!r}", file=sys.stderr)
        return 2
    try:
        tls = TlsMaterial.for_identity(args.certs, args.identity)
        asyncio.run(submit(args.job, args.input, values, args.nodes, tls, args.fingerprint, args.timeout,
                           show=_show))
    except (SubmitError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"submitted {len(values)} value(s) as {args.identity} to job {args.job}")
    return 0


def _predict_main(args: argparse.Namespace) -> int:
    from .predictclient import predict
    from .recipient import FetchError
    from .trees.table import TableError
    try:
        tls = TlsMaterial.for_identity(args.certs, args.identity)
        got = asyncio.run(predict(args.job, args.input, args.output, args.nodes, tls, args.fingerprint,
                                  carry=[c for c in args.carry.split(",") if c], timeout=args.timeout))
    except (SubmitError, FetchError, TableError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{got.queries} predictions written to {args.output} (job {args.job}, computation {got.fingerprint[:16]}...)")
    return 0


def _show(view: JobView) -> None:
    print(f"job computation {view.fingerprint} (matches the fingerprint you gave):", file=sys.stderr)
    for line in view.words():
        print(f"  {line}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())


def own_identity(tls: TlsMaterial) -> str:
    """This client's credential: the common name of its own certificate."""
    cert = x509.load_pem_x509_certificate(tls.cert)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""
