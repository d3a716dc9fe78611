"""python -m mpcnode --config deploy/org-a.yaml: run one organization's Parley node.
python -m mpcnode audit --config deploy/org-a.yaml: print its audit log (audit.py).
python -m mpcnode ledger --config deploy/org-a.yaml: print its privacy budgets (ledgercli.py).
python -m mpcnode model list|delete --config deploy/org-a.yaml ...: its kept models (modelcli.py)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import grpc

from .admission import resolve_approvals
from .audit import main as audit_main
from .certs import NODE
from .config import load_node_config
from .ledgercli import main as ledger_main
from .configfile import ConfigError
from .node import Node
from .transport.servicers import add_all
from .transport.serving import check_certificate_name, load_tls, serve_until_signalled
from .transport.tls import message_options


async def serve(config_path: Path, port_file: Path | None) -> None:
    cfg = load_node_config(config_path)
    tls = load_tls(config_path, cfg.tls)
    check_certificate_name(config_path, "organization", cfg.organization, cfg.tls, tls, NODE)
    approvals = resolve_approvals(cfg, config_path)
    try:
        node = Node(cfg, tls, approvals)
    except OSError as exc:   # data_dir cannot be created, or the store in it opened
        raise ConfigError(config_path, "data_dir", f"cannot open the share store in {cfg.data_dir}: {exc}") from None
    server = grpc.aio.server(options=message_options(cfg.max_message_mb))
    add_all(server, node)
    port = server.add_secure_port(cfg.listen, tls.server_credentials())
    if port == 0:
        raise ConfigError(config_path, "listen", f"cannot bind {cfg.listen}")
    await server.start()
    logging.getLogger("parley.node").info("%s listening on port %d", cfg.organization, port)
    if port_file:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        tmp.replace(port_file)
    await serve_until_signalled(server)
    await node.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["audit"]:
        # a leading word, not an argparse subcommand: `python -m mpcnode --config X` must keep serving
        return audit_main(argv[1:])
    if argv[:1] == ["ledger"]:
        return ledger_main(argv[1:])
    if argv[:1] == ["model"]:
        from .modelcli import main as model_main
        return model_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m mpcnode", description="Run one organization's Parley node.",
                                     epilog="python -m mpcnode audit --config X prints the node's audit log "
                                            "(see python -m mpcnode audit --help); python -m mpcnode ledger "
                                            "--config X its privacy budgets (docs/privacy-budget.md); python -m mpcnode model "
                                            "list|delete --config X its kept models (docs/prediction.md).")
    parser.add_argument("--config", type=Path, required=True, help="node config YAML (see docs/configuration.md)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once serving (for port 0)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args.config, args.port_file))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
