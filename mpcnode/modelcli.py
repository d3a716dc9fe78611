"""`python -m mpcnode model ...`: a model owner's and a node operator's tools (docs/prediction.md).

  model list   --config node.yaml            the models this node keeps, their public shape, and
                                             each querier's grant and queries used (read-only)
  model delete --config node.yaml MODEL_ID   as the model's owner: erase its shares at every
                                             compute node (each checks the caller's certificate is
                                             the owner's), and say which erased it
  model usage  --config node.yaml MODEL_ID   as the model's owner: every compute node's grants,
                                             queries used, and each query it took or refused

`list` opens the store read-only (as `mpcnode audit` does): safe while the node runs. `delete`
calls every configured peer over mutual TLS with this node's own certificate; a node that does
not keep the model answers NOT_FOUND, which is reported and is not an error.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import grpc

from parley.v1 import node_pb2, node_pb2_grpc

from .audit import STORE_FILE, printable
from .config import load_node_config
from .configfile import ConfigError
from .transport.serving import load_tls
from .transport.tls import secure_channel


def read_models(db: Path) -> list[dict]:
    if not db.is_file():
        return []
    uri = f"file:{quote(str(db.resolve()))}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as conn:
        try:
            models = conn.execute("SELECT model_id, owner, shape, deleted FROM models ORDER BY created").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        out = []
        for model_id, owner, shape, deleted in models:
            grants = conn.execute("SELECT querier, used, quota FROM model_grants WHERE model_id=? ORDER BY querier",
                                  (model_id,)).fetchall()
            out.append({"model": model_id, "owner": owner, "deleted": bool(deleted), "shape": json.loads(shape),
                        "grants": [{"querier": q, "used": u, "quota": n} for q, u, n in grants]})
        return out


async def ask_everywhere(config: Path, model_id: str, timeout: float, method: str) -> list[tuple[str, object]]:
    """(node, its reply or the error text) of ModelControl.`method` at every configured peer and
    this node itself, called with this node's certificate."""
    cfg = load_node_config(config)
    tls = load_tls(config, cfg.tls)
    targets = {**cfg.peers, cfg.organization: cfg.listen}

    async def one(org: str, address: str) -> tuple[str, object]:
        try:
            async with secure_channel(address, org, tls) as ch:
                call = getattr(node_pb2_grpc.ModelControlStub(ch), method)
                return org, await call(node_pb2.ModelRef(model_id=model_id), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return org, f"{exc.code().name}: {exc.details()}"
        except Exception as exc:   # one node's trouble must not hide what the others answered
            return org, f"ERROR: {type(exc).__name__}"
    return list(await asyncio.gather(*(one(o, a) for o, a in sorted(targets.items()))))


def _usage_lines(org: str, got: node_pb2.ModelUsage) -> list[str]:
    lines = [f"{org}: model {printable(got.model_id)}{' (deleted)' if got.deleted else ''}"]
    lines += [f"  {printable(g.querier)}: {g.used} of {g.quota} queries used" for g in got.grants]
    lines += [f"  {datetime.fromtimestamp(q.ts, timezone.utc):%Y-%m-%dT%H:%M:%SZ} {printable(q.event)} "
              f"{printable(q.job_id)}: {printable(q.detail)}" for q in got.queries]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpcnode model", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="the models this node keeps and each querier's grant (read-only)")
    ls.add_argument("--config", type=Path, required=True)
    ls.add_argument("--json", action="store_true")
    rm = sub.add_parser("delete", help="as the model's owner, erase it at every compute node")
    rm.add_argument("--config", type=Path, required=True, help="the owner's node config")
    rm.add_argument("model_id")
    rm.add_argument("--timeout", type=float, default=10.0)
    us = sub.add_parser("usage", help="as the model's owner, every compute node's grants and queries")
    us.add_argument("--config", type=Path, required=True, help="the owner's node config")
    us.add_argument("model_id")
    us.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            cfg = load_node_config(args.config)
            models = read_models(cfg.data_dir / STORE_FILE)
            if args.json:
                print(json.dumps(models, indent=2))
            for m in [] if args.json else models:
                s = m["shape"]
                print(f"{printable(m['model'])}  owner {printable(m['owner'])}  "
                      f"{'DELETED' if m['deleted'] else 'kept'}  {s['trees']} trees, depth {s['depth']}, "
                      f"{s['features']} features, {s['classes']} class(es), {s['library']}")
                for g in m["grants"]:
                    print(f"    {printable(g['querier'])}: {g['used']} of {g['quota']} queries used")
            if not models and not args.json:
                print("no models kept here")
            return 0
        method = "DeleteModel" if args.command == "delete" else "Usage"
        answers = asyncio.run(ask_everywhere(args.config, args.model_id, args.timeout, method))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for org, got in answers:
        if isinstance(got, str):
            print(f"{org}: {printable(got)}")
        elif args.command == "delete":
            print(f"{org}: {'erased' if got.erased else 'already deleted'}")
        else:
            print("\n".join(_usage_lines(org, got)))
    failed = [got for _, got in answers if isinstance(got, str) and not got.startswith("NOT_FOUND")]
    return 1 if failed else 0
