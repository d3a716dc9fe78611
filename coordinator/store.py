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
  live TEXT NOT NULL DEFAULT '', plan TEXT NOT NULL DEFAULT '');
"""
# Columns added after the first release; an older database gets them on open.
ADDED_COLUMNS = {"live": "TEXT NOT NULL DEFAULT ''", "plan": "TEXT NOT NULL DEFAULT ''"}


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
    plan: str = ""   # a circuit built in code (JSON, see scheduler.JobPlan.to_json); '' for scenarios


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
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {cols}, updated=? WHERE job_id=?", (*fields.values(), time.time(), job_id))

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT job_id, scenario, scenario_path, scenario_yaml, fingerprint, state, error,"
                                   " rounds_done, live, plan FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return JobRecord(*row) if row else None

    def unfinished(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT job_id FROM jobs WHERE state NOT IN ('DONE','FAILED') ORDER BY created").fetchall()
        return [r[0] for r in rows]
