"""`python -m mpcnode audit`: print a node's audit log, what the organization's data was used for.

The node appends one row per event to the `audit` table of its store (store.py, node.py): a job
accepted (which approved computation, which datasets fed it), refused (the public rule), started
(the live parties), every value opened while it ran (label, count, purpose and to whom: each is a
masked value, public coins or an output, mpcnode/opened.py), done, failed, and each fetch of an output (who fetched which output). The
node writes public rules, names and dataset names only; this module prints what is there and
adds nothing else.

The store is opened read-only through a `mode=ro` SQLite URI, so the command works while the node
runs (a WAL reader never blocks the writer), never creates a missing database and never writes
to one. SQLite may create the empty `-wal`/`-shm` companion files of a WAL database that no
process has open: it needs them to read at all; the database file itself is not touched.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from .config import load_node_config
from .configfile import ConfigError

STORE_FILE = "shares.sqlite3"  # the file Node opens in its data_dir (node.py)
FINGERPRINT_PREFIX = 16        # as refusal reasons show it (admission.py)


class AuditUnavailable(Exception):
    """The log cannot be read (no database yet, not a Parley store); str() is one line for the user."""


@dataclass(frozen=True)
class AuditEvent:
    ts: float            # seconds since the epoch, as the node wrote it
    event: str           # accepted, refused, started, opened, done, failed, fetched
    job_id: str
    fingerprint: str     # sha256 hex of the job's computation document ('' if the request had none)
    detail: str

    @property
    def time(self) -> str:
        """UTC, ISO 8601 with milliseconds, e.g. 2026-01-31T09:15:02.347Z."""
        return datetime.fromtimestamp(self.ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def as_json(self) -> dict[str, object]:
        return {"time": self.time, "ts": self.ts, "event": self.event, "job": self.job_id,
                "fingerprint": self.fingerprint, "detail": self.detail}


def store_path(config: Path) -> Path:
    """The node's store, from its config file (raises ConfigError for a bad config)."""
    return load_node_config(config).data_dir / STORE_FILE


def read_audit(db: Path, job_id: str | None = None) -> list[AuditEvent]:
    """Every audit event in the order the node wrote it, or only those of one job."""
    if not db.is_file():
        # checked first: even read-only, sqlite would report only "unable to open database file"
        raise AuditUnavailable(f"no node database at {db} (has the node run with this config?)")
    uri = f"file:{quote(str(db.resolve()))}?mode=ro"  # quoted: a '?' or '#' in the path would end it
    sql = "SELECT ts, event, job_id, fingerprint, detail FROM audit"
    args: tuple[str, ...] = ()
    if job_id is not None:
        sql += " WHERE job_id=?"
        args = (job_id,)
    try:
        # timeout: a reader waits only while a restarting node recovers its WAL; never in steady state
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as conn:
            rows = conn.execute(sql + " ORDER BY rowid", args).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            raise AuditUnavailable(f"{db} holds no audit log (written by a node older than the audit log?)") from None
        raise AuditUnavailable(f"cannot read {db}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise AuditUnavailable(f"{db} is not a readable SQLite database: {exc}") from None
    return [AuditEvent(float(ts), str(ev), str(job), str(fp), str(detail)) for ts, ev, job, fp, detail in rows]


def printable(text: str) -> str:
    """One terminal line: line breaks become spaces and other control characters are escaped.
    Job ids and failure reasons come from the coordinator and peers; printed raw, an escape
    sequence in one could rewrite what the reader sees on the terminal."""
    text = " ".join(text.splitlines())
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def format_text(events: list[AuditEvent]) -> list[str]:
    """Aligned columns: time, event, job, fingerprint prefix, detail."""
    rows = [(e.time, printable(e.event), printable(e.job_id) or "-",
             printable(e.fingerprint[:FINGERPRINT_PREFIX]) or "-", printable(e.detail)) for e in events]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r[:4], widths)), r[4]]).rstrip() for r in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mpcnode audit",
        description="Print this node's audit log: jobs accepted (approved computation, datasets fed), refused "
                    "(the rule), started, every value opened (label, count, purpose, to whom), done, failed, and who "
                    "fetched which output. Reads the node's store "
                    "read-only, so it is safe while the node runs.")
    parser.add_argument("--config", type=Path, required=True, help="the node's config YAML (finds its data_dir)")
    parser.add_argument("--job", help="only the events of this job id")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per line (time, ts, event, job, full fingerprint, detail)")
    args = parser.parse_args(argv)
    try:
        events = read_audit(store_path(args.config), args.job)
    except (ConfigError, AuditUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not events:
        print("no audit events" + (f" for job {printable(args.job)}" if args.job else ""), file=sys.stderr)
        return 0
    lines = [json.dumps(e.as_json()) for e in events] if args.json else format_text(events)
    print("\n".join(lines))
    return 0
