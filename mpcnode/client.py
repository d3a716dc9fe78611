"""A light input client (a bidder, a voter): secret-shares its value on its own machine and
sends exactly one share to each node over mutual TLS, so no single node ever sees the value.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import grpc
import numpy as np

from parley.v1 import circuit_pb2 as cpb
from parley.v1 import node_pb2, node_pb2_grpc

from . import field, shamir
from .inputs import InputError, check_values
from .recipient import parse_nodes
from .transport import serde
from .transport.tls import TlsMaterial, secure_channel


class SubmitError(RuntimeError):
    pass


async def submit(job_id: str, input_name: str, values: list[int], nodes: dict[str, str], tls: TlsMaterial,
                 timeout: float = 15.0, skip_local_check: bool = False) -> None:
    """Validate locally, share, and deliver one share per node. Raises SubmitError with the reason.

    skip_local_check exists only to play a misbehaving client in demos and tests: the nodes
    must then catch a bad ballot inside MPC.
    """
    channels = {org: secure_channel(addr, org, tls) for org, addr in nodes.items()}
    try:
        infos = await asyncio.gather(*(node_pb2_grpc.InputIntakeStub(ch).JobInfo(node_pb2.JobRef(job_id=job_id),
                                                                                  timeout=timeout)
                                       for ch in channels.values()), return_exceptions=True)
        specs = {}
        problems: dict[str, str] = {}
        for org, info in zip(channels, infos):
            if isinstance(info, grpc.aio.AioRpcError):
                problems[org] = f"{org}: {info.code().name}: {info.details()}"
            elif isinstance(info, BaseException):
                problems[org] = f"{org}: {info}"
            else:
                specs[org] = info
        if not specs:
            raise SubmitError("no node answered: " + "; ".join(problems.values()))
        if len({s.fingerprint for s in specs.values()}) != 1 or len({tuple(s.live) for s in specs.values()}) != 1:
            raise SubmitError("the nodes disagree about the job; not submitting")
        spec = next(iter(specs.values()))
        parties = list(spec.parties)
        live = list(spec.live) or parties
        # a node that is not taking part (down when the job started) may be unreachable or not know the job
        missing = [p for p in live if p not in specs]
        if missing:
            raise SubmitError("the job's live compute parties did not answer: "
                              + "; ".join(problems.get(p, f"{p}: no address given") for p in missing))
        decl = next((d for d in spec.circuit.inputs if d.name == input_name and d.source == cpb.INPUT_SOURCE_CLIENTS),
                    None)
        if decl is None:
            raise SubmitError(f"job {job_id} takes no client input named {input_name!r}")
        try:
            encoded = check_values(input_name, values, decl, "input")
        except InputError as exc:
            if not skip_local_check:
                raise SubmitError(str(exc)) from None
            encoded = field.asfield(np.array(values, dtype=np.int64))
        shares = shamir.share(encoded, len(parties), spec.threshold)
        calls = []
        live_index = [(parties.index(org), org) for org in live]
        for i, org in live_index:
            payload, shape = serde.encode(shares[i])
            req = node_pb2.ClientShare(job_id=job_id, input=input_name, share=payload, shape=shape)
            calls.append(node_pb2_grpc.InputIntakeStub(channels[org]).SubmitShare(req, timeout=timeout))
        acks = await asyncio.gather(*calls, return_exceptions=True)
        errors = [f"{org}: {a.code().name}: {a.details()}" if isinstance(a, grpc.aio.AioRpcError) else f"{org}: {a}"
                  for (_, org), a in zip(live_index, acks) if isinstance(a, BaseException)]
        if errors:
            raise SubmitError("; ".join(errors))
    finally:
        await asyncio.gather(*(ch.close() for ch in channels.values()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpcnode.client",
                                     description="Light input client: secret-share a value and send one share to each node.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("submit", help="submit a bid or a ballot to a job")
    p.add_argument("--job", required=True)
    p.add_argument("--input", required=True, help="client input name (bids, ballots)")
    p.add_argument("--values", required=True, help="comma-separated integers, e.g. 1500 or 0,1,0")
    p.add_argument("--nodes", required=True, type=parse_nodes, help="org=host:port,... for every compute party")
    p.add_argument("--certs", type=Path, default=Path("deploy/certs"))
    p.add_argument("--identity", required=True, help="this client's credential name")
    p.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args(argv)
    try:
        values = [int(v) for v in args.values.split(",")]
    except ValueError:
        print(f"error: --values must be comma-separated integers, got {args.values!r}", file=sys.stderr)
        return 2
    try:
        tls = TlsMaterial.for_identity(args.certs, args.identity)
        asyncio.run(submit(args.job, args.input, values, args.nodes, tls, args.timeout))
    except (SubmitError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"submitted {len(values)} value(s) as {args.identity} to job {args.job}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
