"""python -m coordinator {serve,submit,plan,demo}: the Parley coordinator and its operator commands."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import grpc

from mpcnode.certs import COORDINATOR
from mpcnode.computation.scenario import load_scenario
from mpcnode.configfile import ConfigError
from mpcnode.transport.serving import check_certificate_name, load_tls, serve_until_signalled
from mpcnode.transport.tls import TlsMaterial
from mpcnode.transport.servicers import add_service
from parley.v1 import coordinator_pb2 as cop

from .client import JobFailed, close_inputs, excluded_lines, progress_printer, rpc_error_text, submit, watch
from .config import load_coordinator_config
from .plan import add_arguments as add_plan_arguments, run_plan
from .scheduler import Scheduler
from .service import CoordinatorService


async def serve(config: Path) -> None:
    cfg = load_coordinator_config(config)
    tls = load_tls(config, cfg.tls)
    check_certificate_name(config, "identity", cfg.identity, cfg.tls, tls, COORDINATOR)
    scheduler = Scheduler(cfg, tls)
    scheduler.recover()
    server = grpc.aio.server()
    add_service(server, cop, "Coordinator", CoordinatorService(scheduler))  # malformed requests: INVALID_ARGUMENT
    if server.add_secure_port(cfg.listen, tls.server_credentials()) == 0:
        raise ConfigError(config, "listen", f"cannot bind {cfg.listen}")
    await server.start()
    logging.getLogger("parley.coordinator").info("coordinator listening on %s", cfg.listen)
    await serve_until_signalled(server)
    await scheduler.close()


async def submit_and_wait(args: argparse.Namespace) -> int:
    # a broken scenario is the operator's own mistake: found here, before any connection, it is
    # one line and exit code 2 like every other configuration error (the coordinator checks again)
    load_scenario(args.scenario)
    tls = TlsMaterial.for_identity(args.certs, args.identity)
    try:
        job_id, created = await submit(args.coordinator, tls, args.scenario, args.job_id or "")
        print(f"job {job_id} {'submitted' if created else 'already exists; following it'}", file=sys.stderr)
        if args.close_inputs_after is not None:
            await asyncio.sleep(args.close_inputs_after)
            await close_inputs(args.coordinator, tls, job_id)
        final = await watch(args.coordinator, tls, job_id, progress_printer(), timeout=args.timeout)
    except grpc.aio.AioRpcError as exc:
        print(f"error: {rpc_error_text(exc)}", file=sys.stderr)
        # INVALID_ARGUMENT: the coordinator refused the scenario (e.g. a party it has no address for)
        return 2 if exc.code() == grpc.StatusCode.INVALID_ARGUMENT else 1
    except JobFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"job {job_id} done in {final.elapsed_s:.2f}s, {final.rounds_done} rounds (computation {final.fingerprint}); "
          f"outputs {', '.join(final.outputs)} are held as shares by the nodes for: {', '.join(final.recipients)}")
    if final.rows_agreed:
        print("client rows: counts withheld by the nodes (the DP outputs protect participation)"
              if final.rows_withheld else f"client rows: {final.rows_accepted} counted, {len(final.excluded)} excluded")
        for line in excluded_lines(final):
            print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coordinator", description="The Parley coordinator.")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the coordinator service")
    p_serve.add_argument("--config", type=Path, required=True, help="coordinator config YAML")
    p_sub = sub.add_parser("submit", help="submit a scenario, show live progress, wait; non-zero exit on failure")
    p_sub.add_argument("scenario", type=Path, help="scenario YAML file")
    p_sub.add_argument("--coordinator", required=True, help="host:port of the coordinator")
    p_sub.add_argument("--certs", type=Path, default=Path("deploy/certs"))
    p_sub.add_argument("--identity", default="operator", help="operator identity (certificate name)")
    p_sub.add_argument("--job-id", help="client-chosen job id; submitting the same id twice runs the job once")
    p_sub.add_argument("--close-inputs-after", type=float, metavar="SECONDS",
                       help="close client input submission this many seconds after submitting")
    p_sub.add_argument("--timeout", type=float, default=3600)
    p_plan = sub.add_parser("plan", help="fingerprint, plain-words summary and per-node cost of a scenario, "
                                         "before it runs")
    add_plan_arguments(p_plan)
    p_demo = sub.add_parser("demo", help="start nodes + coordinator on localhost, run every scenario, print results "
                                         "(--serve: keep them running for you to drive instead)")
    p_demo.add_argument("--scenarios", type=Path, default=Path("scenarios"))
    p_demo.add_argument("--certs", type=Path, default=Path("deploy/certs"))
    p_demo.add_argument("--workdir", type=Path, default=Path(".demo"))
    p_demo.add_argument("--only", nargs="*", help="run only these scenario names")
    p_demo.add_argument("--serve", action="store_true",
                        help="run no scenario: start the same deployment (same policies), write "
                             "<workdir>/deployment.json (coordinator, nodes, certs), print how to submit, join as "
                             "an input client, fetch and audit, and keep serving until SIGINT/SIGTERM (exit 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if args.command == "serve":
            asyncio.run(serve(args.config))
            return 0
        if args.command == "submit":
            return asyncio.run(submit_and_wait(args))
        if args.command == "plan":
            print(asyncio.run(run_plan(args)))
            return 0
        from .demo import run_demo

        return asyncio.run(run_demo(args.scenarios, args.certs, args.workdir, args.only, serve=args.serve))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
