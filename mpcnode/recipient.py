"""A recipient (a node's organization or a light client with its own certificate) fetches the
output shares of a job from the nodes and reconstructs the result itself.

The job's engine decides the format (mpcnode/sharing.py), and every node says which it is
(OutputShare.protocol). Shamir: it checks that the shares lie on one polynomial of degree t and
names the node that disagrees when that can be told; it needs only t+1 answering nodes (dropouts
tolerated). replicated3: it needs two of the three nodes; each component is held by two nodes,
and a component two nodes hold differently names both (which one is wrong cannot be told).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import grpc
import numpy as np

from parley.v1 import node_pb2, node_pb2_grpc

from . import sharing
from .transport.tls import TlsMaterial, secure_channel


class FetchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Result:
    job_id: str
    output: str
    values: list[int]
    value: object            # rendered for people (see render())
    nodes: list[str]


async def _fetch_one(org: str, address: str, tls: TlsMaterial, req: node_pb2.OutputRequest, timeout: float):
    async with secure_channel(address, org, tls) as ch:
        return await node_pb2_grpc.ResultReleaseStub(ch).FetchOutput(req, timeout=timeout)


async def fetch(job_id: str, output: str, nodes: dict[str, str], tls: TlsMaterial, timeout: float = 15.0) -> Result:
    req = node_pb2.OutputRequest(job_id=job_id, output=output)
    orgs = list(nodes)
    answers = await asyncio.gather(*(_fetch_one(o, nodes[o], tls, req, timeout) for o in orgs), return_exceptions=True)
    shares: dict[int, np.ndarray] = {}
    meta: dict[str, node_pb2.OutputShare] = {}
    problems = []
    for org, ans in zip(orgs, answers):
        if isinstance(ans, grpc.aio.AioRpcError):
            if ans.code() == grpc.StatusCode.PERMISSION_DENIED:
                raise FetchError(f"{org} refused: {ans.details()}")
            problems.append(f"{org}: {ans.code().name}: {ans.details()}")
            continue
        if isinstance(ans, BaseException):
            problems.append(f"{org}: {ans}")
            continue
        if ans.node != org:
            raise FetchError(f"node at {nodes[org]} answered as {ans.node!r}, expected {org}")
        meta[org] = ans
    if not meta:
        raise FetchError("no node returned a share: " + "; ".join(problems))
    first = next(iter(meta.values()))
    t, n = first.threshold, first.party_count
    protocol = first.protocol or "shamir"     # nodes from before OutputShare.protocol ran Shamir only
    by_index: dict[int, str] = {}
    for org, ans in meta.items():
        if (ans.protocol or "shamir") != protocol:
            raise FetchError(f"{org} says the job ran {ans.protocol or 'shamir'!r}, another node says {protocol!r}")
        if (ans.threshold, ans.party_count, list(ans.shape), ans.public_divisor) != (t, n, list(first.shape),
                                                                                     first.public_divisor):
            raise FetchError(f"{org} disagrees with the other nodes about the output's shape or threshold")
        if ans.party_index in by_index or ans.party_index >= n:
            raise FetchError(f"{org} claims party index {ans.party_index}, already taken or out of range")
        by_index[ans.party_index] = org
    try:
        need = sharing.min_shares(protocol, t)
        component = sharing.share_shape(protocol)
        for org, ans in meta.items():
            if tuple(ans.shape[len(ans.shape) - len(component):]) != component:
                raise FetchError(f"{org} sent a share of shape {list(ans.shape)}, not a {protocol} share")
            shares[ans.party_index] = sharing.decode(protocol, ans.share, list(ans.shape), f"output share from {org}")
    except ValueError as exc:
        raise FetchError(str(exc)) from None
    if len(shares) < need:
        raise FetchError(f"only {len(shares)} of the {need} shares needed arrived: " + "; ".join(problems))
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
        raise FetchError(f"output shares are inconsistent ({', '.join(sorted(meta))}); "
                         f"too few nodes answered to tell which one is wrong") from None
    values = [int(v) for v in secret.reshape(-1)]
    return Result(job_id, output, values, render(values, first), sorted(meta))


def render(values: list[int], meta: node_pb2.OutputShare) -> object:
    """Turn the opened integers into what the scenario promised (see docs/outputs.md)."""
    if meta.public_divisor:
        fr = [Fraction(v, meta.public_divisor) for v in values]
        out = [_number(f) for f in fr]
        return out[0] if len(out) == 1 else out
    note: dict = {}
    if meta.description.startswith("{"):
        try:
            note = json.loads(meta.description)
        except ValueError:
            note = {}
    kind = note.get("render")
    labels = list(meta.row_labels)
    if kind == "auction":
        sold, winner, price = values
        if not sold:
            return {"sold": False}
        return {"sold": True, "winner": labels[winner - 1] if 0 < winner <= len(labels) else winner, "price": price}
    if kind == "tally":
        options = note["options"]
        return {**{o: c for o, c in zip(options, values)}, "invalid": values[len(options)]}
    if kind == "winner":   # 0: no option has a vote; i: option i - 1 (computation/vote.py)
        if not values[0]:
            return {"winner": None, "result": "no votes" if note.get("approval") else "no valid ballots"}
        return {"winner": note["options"][values[0] - 1]}
    if kind == "referendum":   # 0: no valid ballot, 1: NO, 2: YES (computation/vote.py)
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
                                     description="Fetch output shares of a job from the nodes and reconstruct the result.")
    parser.add_argument("--job", required=True, help="job id")
    parser.add_argument("--output", required=True, help="output name (e.g. total, average, result, tally)")
    parser.add_argument("--nodes", required=True, type=parse_nodes, help="org=host:port,org=host:port,...")
    parser.add_argument("--certs", type=Path, default=Path("deploy/certs"), help="folder with ca.pem and <identity>.pem/.key")
    parser.add_argument("--identity", required=True, help="the recipient's identity (its certificate name)")
    parser.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args(argv)
    try:
        tls = TlsMaterial.for_identity(args.certs, args.identity)
        result = asyncio.run(fetch(args.job, args.output, args.nodes, tls, args.timeout))
    except (FetchError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"job": result.job_id, "output": result.output, "recipient": args.identity, "result": result.value}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
