"""The coordinator's job database (SQLite). It holds scenarios and progress, never shares or results."""
from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY, scenario TEXT NOT NULL, scenario_path TEXT NOT NULL, scenario_yaml TEXT NOT NULL,
  fingerprint TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
  rounds_done INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, updated REAL NOT NULL,
  live TEXT NOT NULL DEFAULT '', plan TEXT NOT NULL DEFAULT '', unsettled TEXT NOT NULL DEFAULT '');
"""
# Columns added after the first release; an older database gets them on open.
ADDED_COLUMNS = {"live": "TEXT NOT NULL DEFAULT ''", "plan": "TEXT NOT NULL DEFAULT ''",
                 "unsettled": "TEXT NOT NULL DEFAULT ''"}
TERMINAL = ("DONE", "FAILED")


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    scenario: str
    scenario_path: str
    scenario_yaml: str
    fingerprint: str
    state: str
    error: str
    rounds_done: int
    live: str = ""   # comma-separated parties taking part, once started ('' = all)
    plan: str = ""   # a circuit built in code (JSON, see jobplan.JobPlan.to_json); '' for scenarios
    unsettled: str = ""   # DONE/FAILED: comma-separated nodes not yet told the decision (Commit/Abort)

    def unsettled_nodes(self) -> list[str]:
        return self.unsettled.split(",") if self.unsettled else []


class JobStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, decl in ADDED_COLUMNS.items():
            if name not in have:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def insert(self, job_id: str, scenario: str, path: str, text: str, plan: str = "") -> bool:
        """False when the id exists already (a resubmission runs once)."""
        now = time.time()
        with self._lock:
            try:
                self._db.execute("INSERT INTO jobs (job_id, scenario, scenario_path, scenario_yaml, state, created,"
                                 " updated, plan) VALUES (?,?,?,?,?,?,?,?)",
                                 (job_id, scenario, path, text, "PENDING", now, now, plan))
                return True
            except sqlite3.IntegrityError:
                return False

    def update(self, job_id: str, **fields: object) -> None:
        """Progress of an undecided job. A decided job (DONE/FAILED) is left as it is: a decision
        is made once, by decide(), and nothing written later may overwrite it."""
        assert fields.get("state") not in TERMINAL, "DONE and FAILED are recorded by decide()"
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {cols}, updated=? WHERE job_id=? AND state NOT IN ('DONE','FAILED')",
                             (*fields.values(), time.time(), job_id))

    def decide(self, job_id: str, state: str, error: str, tell: list[str], **fields: object) -> JobRecord:
        """Record the job's outcome, DONE or FAILED, unless it is decided already, and return the
        decision that stands (possibly an earlier one, by another task or process on this database).
        `tell`: the nodes to send it to (Commit or Abort); settled() crosses them off."""
        assert state in TERMINAL
        cols = "".join(f", {k}=?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET state=?, error=?, unsettled=?{cols}, updated=?"
                             " WHERE job_id=? AND state NOT IN ('DONE','FAILED')",
                             (state, error, ",".join(tell), *fields.values(), time.time(), job_id))
        rec = self.get(job_id)
        assert rec is not None and rec.state in TERMINAL, job_id
        return rec

    def decision(self, job_id: str) -> tuple[str, str] | None:
        """(state, error) if the job is decided (DONE/FAILED), else None; cheap enough to poll."""
        with self._lock:
            row = self._db.execute("SELECT state, error FROM jobs WHERE job_id=? AND state IN ('DONE','FAILED')",
                                   (job_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def settled(self, job_id: str, nodes: list[str]) -> list[str]:
        """These nodes have answered the decision; the nodes still to be told."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT unsettled FROM jobs WHERE job_id=?", (job_id,)).fetchone()
                left = [n for n in (row[0].split(",") if row and row[0] else []) if n not in nodes]
                self._db.execute("UPDATE jobs SET unsettled=?, updated=? WHERE job_id=?",
                                 (",".join(left), time.time(), job_id))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return left

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT job_id, scenario, scenario_path, scenario_yaml, fingerprint, state, error,"
                                   " rounds_done, live, plan, unsettled FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return JobRecord(*row) if row else None

    def unfinished(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT job_id FROM jobs WHERE state NOT IN ('DONE','FAILED') ORDER BY created").fetchall()
        return [r[0] for r in rows]

    def unsettled(self) -> list[str]:
        """Decided jobs that some node has not been told about yet."""
        with self._lock:
            rows = self._db.execute("SELECT job_id FROM jobs WHERE state IN ('DONE','FAILED') AND unsettled != ''"
                                    " ORDER BY updated").fetchall()
        return [r[0] for r in rows]
