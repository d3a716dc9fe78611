"""Run one MPyC reference workload as 3 separate party processes on localhost.

    from bench.mpyc_runner import run_mpyc
    result = run_mpyc("sum", 1_000_000)   # {"workload": "sum", "size": ..., "seconds": ..., ...}

or from the command line::

    python -m bench.mpyc_runner --workload sum --size 1000000

Each party is ``<venv python> bench/mpyc_ref.py ... -M3 -I<i> -T1 -B <base port>``: MPyC's
own localhost setup with threshold t=1. MPyC picks up gmpy2 and uvloop by itself when they
are installed; the result records what it actually used (``backend``) and this runner
refuses a result that ran without them, so a slow fallback can't pass as the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PARTIES = 3
THRESHOLD = 1
REF_SCRIPT = Path(__file__).resolve().with_name("mpyc_ref.py")
RESULT_PREFIX = "MPYC_RESULT "


def _venv_python() -> str:
    """The project's venv python (it has mpyc, gmpy2, uvloop); else the current one."""
    venv = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _free_base_port(count: int = PARTIES) -> int:
    """A port b such that b, b+1, ..., b+count-1 are all free on localhost right now."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free localhost ports found for the MPyC parties")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<unreadable>"


def run_mpyc(workload: str, size: int, timeout_s: float = 1200,
             extra_args: list[str] | None = None, seed: int = 1) -> dict[str, Any]:
    """Run `workload` at `size` with MPyC (3 processes, t=1) and return party 0's record.

    The record is the JSON printed by bench/mpyc_ref.py: workload, size, seconds (the
    computation only), check (opened result vs plaintext), input_seconds, backend, ...
    `extra_args` go to mpyc_ref.py as they are (e.g. ["--mul-open", "sum"]).
    Raises RuntimeError (with the output tails) on failure, timeout or a wrong result.
    """
    python = _venv_python()
    base = _free_base_port()
    env = dict(os.environ)
    # Never let an inherited switch turn off MPyC's fast paths.
    for var in ("MPYC_NOGMPY", "MPYC_NOUVLOOP", "MPYC_NONUMPY", "MPYC_NOPRSS"):
        env.pop(var, None)
    env["PYTHONUNBUFFERED"] = "1"
    args = ["--workload", workload, "--size", str(size), "--seed", str(seed), *(extra_args or [])]

    with tempfile.TemporaryDirectory(prefix="mpyc_run_") as tmp:
        logs = [(Path(tmp) / f"party{i}.out", Path(tmp) / f"party{i}.err") for i in range(PARTIES)]
        procs: list[subprocess.Popen[bytes]] = []
        deadline = time.monotonic() + timeout_s
        try:
            for i, (out, err) in enumerate(logs):
                cmd = [python, str(REF_SCRIPT), *args,
                       f"-M{PARTIES}", f"-I{i}", f"-T{THRESHOLD}", "-B", str(base)]
                with open(out, "wb") as fo, open(err, "wb") as fe:
                    procs.append(subprocess.Popen(cmd, stdout=fo, stderr=fe,
                                                  stdin=subprocess.DEVNULL, env=env))
            # Poll all parties: if one dies the others would wait for it forever.
            while any(proc.poll() is None for proc in procs):
                if any(proc.returncode not in (None, 0) for proc in procs):
                    break
                if time.monotonic() > deadline:
                    running = [i for i, proc in enumerate(procs) if proc.poll() is None]
                    raise RuntimeError(
                        f"MPyC {workload} size={size} timed out after {timeout_s:.0f} s "
                        f"(parties {running} still running)\n{_describe(logs)}")
                time.sleep(0.05)
        finally:
            for proc in procs:       # only our own children, by handle
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

        failed = [i for i, proc in enumerate(procs) if proc.returncode not in (0, None)]
        if failed:
            codes = ", ".join(f"party {i}: exit {procs[i].returncode}" for i in failed)
            raise RuntimeError(f"MPyC {workload} size={size} failed ({codes})\n{_describe(logs)}")
        result_lines = [ln for ln in logs[0][0].read_text(errors="replace").splitlines()
                        if ln.startswith(RESULT_PREFIX)]
        if not result_lines:
            raise RuntimeError(f"MPyC {workload} size={size}: party 0 printed no "
                               f"{RESULT_PREFIX.strip()} line\n{_describe(logs)}")
        record: dict[str, Any] = json.loads(result_lines[-1][len(RESULT_PREFIX):])

    backend = record.get("backend", {})
    if backend.get("gmpy") != "gmpy2.mpz" or not str(backend.get("loop", "")).startswith("uvloop"):
        raise RuntimeError(f"MPyC ran without gmpy2/uvloop, not a fair reference: {backend}")
    if not record.get("check", {}).get("ok"):
        raise RuntimeError(f"MPyC {workload} size={size} opened a wrong result: {record['check']}")
    return record


def _describe(logs: list[tuple[Path, Path]]) -> str:
    parts = []
    for i, (out, err) in enumerate(logs):
        parts.append(f"--- party {i} stdout (tail) ---\n{_tail(out)}")
        parts.append(f"--- party {i} stderr (tail) ---\n{_tail(err)}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.mpyc_runner",
        description="Run one MPyC reference workload with 3 local party processes (t=1, "
                    "gmpy2 + uvloop) and print party 0's result record as JSON.")
    p.add_argument("--workload", required=True,
                   choices=("sum", "mul", "cmp", "vickrey", "vote_tally", "vote_winner",
                            "referendum"))
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=1200, help="seconds (default 1200)")
    p.add_argument("extra", nargs=argparse.REMAINDER,
                   help="after '--': more options for bench/mpyc_ref.py, e.g. -- --mul-open sum")
    a = p.parse_args(argv)
    extra = a.extra[1:] if a.extra[:1] == ["--"] else a.extra
    try:
        record = run_mpyc(a.workload, a.size, a.timeout, extra_args=extra, seed=a.seed)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
