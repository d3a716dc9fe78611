"""Durable share store (SQLite, WAL, one transaction per state change).

What is kept: each job's spec and state, the client input shares accepted for it, which client
rows the live nodes agreed to count or excluded (and why), and the output shares a finished job
produced; secret-shared models (this node's share, the public shape, and each querier's quota
and count; mpcnode/models.py). A node that restarts still holds them; a job that was
running when the node died is marked failed on restart (its intermediate shares were never
written), so no half-written state survives.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY, spec BLOB NOT NULL, fingerprint TEXT NOT NULL, state TEXT NOT NULL,
  error TEXT NOT NULL DEFAULT '', created REAL NOT NULL, updated REAL NOT NULL,
  committed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS client_shares (
  job_id TEXT NOT NULL, input TEXT NOT NULL, client TEXT NOT NULL, share BLOB NOT NULL, received REAL NOT NULL,
  PRIMARY KEY (job_id, input, client));
CREATE TABLE IF NOT EXISTS outputs (
  job_id TEXT NOT NULL, name TEXT NOT NULL, share BLOB NOT NULL, recipients TEXT NOT NULL,
  PRIMARY KEY (job_id, name));
CREATE TABLE IF NOT EXISTS client_exclusions (
  job_id TEXT NOT NULL, input TEXT NOT NULL, client TEXT NOT NULL, reason TEXT NOT NULL,
  PRIMARY KEY (job_id, input, client));
CREATE TABLE IF NOT EXISTS audit (
  ts REAL NOT NULL, event TEXT NOT NULL, job_id TEXT NOT NULL, fingerprint TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_by_fingerprint ON jobs (fingerprint);
CREATE TABLE IF NOT EXISTS models (
  model_id TEXT PRIMARY KEY, owner TEXT NOT NULL, shape TEXT NOT NULL, share BLOB NOT NULL,
  share_shape TEXT NOT NULL, created REAL NOT NULL, deleted REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS model_grants (
  model_id TEXT NOT NULL, querier TEXT NOT NULL, quota INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (model_id, querier));
"""
# Columns added after the first release, per table: (declaration, backfill statement or None).
# jobs.rows_accepted: how many client rows count once the live nodes agreed on them; -1 before
# (and for a job without client input).
# jobs.committed: the coordinator told this node it recorded the job DONE (Commit). A store from
# before Commit existed gets the column on open, with its DONE jobs committed: they were released.
# shape (client shares, outputs): the share's array shape as "d1,d2,..." (a replicated3 share has
# a trailing component axis); '' in rows written before it is a flat array, as they all were.
ADDED_COLUMNS = {
    "jobs": {"committed": ("INTEGER NOT NULL DEFAULT 0", "UPDATE jobs SET committed=1 WHERE state='DONE'"),
             "rows_accepted": ("INTEGER NOT NULL DEFAULT -1", None)},
    "client_shares": {"shape": ("TEXT NOT NULL DEFAULT ''", None)},
    "outputs": {"shape": ("TEXT NOT NULL DEFAULT ''", None),
                "participants": ("TEXT NOT NULL DEFAULT ''", None)},
    # models.checked: its owner range-checked it before sharing (a compute party of the model job);
    # 0 for an input-only owner's, and for rows of stores from before the column
    "models": {"checked": ("INTEGER NOT NULL DEFAULT 0", None)},
}
# outputs.participants: the credentials an output reveals (OutputDecl.reveal_participants), '' for
# every other output. Stores from before it also have outputs.row_labels (every counted client, in
# arrival order); it is never read or written again, so an old job's fetch no longer reveals it.


def _shape_text(a: np.ndarray) -> str:
    return ",".join(str(d) for d in a.shape)


def _array(blob: bytes, shape: str) -> np.ndarray:
    flat = np.frombuffer(blob, dtype="<u8").astype(np.uint64)
    return flat.reshape(tuple(int(d) for d in shape.split(","))) if shape else flat


T = TypeVar("T")
# fn(conn) run inside a job-state write's transaction (the privacy ledger, mpcnode/ledger.py)
InTx = Callable[[sqlite3.Connection], None]


class DuplicateSubmission(ValueError):
    pass


class DuplicateModel(ValueError):
    pass


@dataclass(frozen=True)
class JobRow:
    job_id: str
    spec: bytes
    fingerprint: str
    state: str
    error: str
    committed: bool = False


@dataclass(frozen=True)
class OutputRow:
    share: np.ndarray
    recipients: list[str]
    participants: list[str]   # only for an output that reveals them (release.participants), else []


@dataclass(frozen=True)
class ModelRow:
    model_id: str
    owner: str
    shape: str                  # the public shape, JSON (mpcnode/models.py)
    share: np.ndarray | None    # None once deleted
    deleted: bool
    checked: bool = False       # the owner's node range-checked the values before sharing them


class _Refused(Exception):
    """Rolls back a transaction that found a charge that does not fit (take_all_model_queries)."""


class ShareStore:
    def __init__(self, path: Path):
        # shares and the audit log are for this node's account only: the folder 0700, the
        # database 0600 (SQLite gives its -wal and -shm files the database's permissions)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        path.chmod(0o600)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a committed transaction survives the process being killed (it is in the
        # WAL, in the OS page cache); only an OS crash or power loss can drop the last commits.
        # FULL would fsync every client submission and cut intake several-fold.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        for table, columns in ADDED_COLUMNS.items():
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, (decl, backfill) in columns.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
                    if backfill:
                        self._db.execute(backfill)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def _tx(self, statements: list[tuple[str, tuple]], in_tx: InTx | None = None) -> None:
        def run(conn: sqlite3.Connection) -> None:
            for sql, args in statements:
                conn.execute(sql, args)
            if in_tx is not None:
                in_tx(conn)
        self.transaction(run)

    def transaction(self, fn: Callable[[sqlite3.Connection], T], immediate: bool = True) -> T:
        """fn(conn) in one transaction, rolled back if it raises. BEGIN IMMEDIATE takes SQLite's
        write lock at once, so a read-check-write inside fn is atomic across every connection and
        process on this database (the privacy ledger relies on it); immediate=False for reads."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                result = fn(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return result

    def _query(self, sql: str, args: tuple) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ---- jobs ------------------------------------------------------------------
    def put_job(self, job_id: str, spec: bytes, fingerprint: str, state: str, in_tx: InTx | None = None) -> None:
        """`in_tx`: run in the same transaction (the ledger's reservation: both or neither)."""
        now = time.time()
        self._tx([("INSERT INTO jobs (job_id, spec, fingerprint, state, created, updated) VALUES (?,?,?,?,?,?)",
                   (job_id, spec, fingerprint, state, now, now))], in_tx)

    def set_state(self, job_id: str, state: str, error: str = "", in_tx: InTx | None = None) -> None:
        self._tx([("UPDATE jobs SET state=?, error=?, updated=? WHERE job_id=?", (state, error, time.time(), job_id))],
                 in_tx)

    def job(self, job_id: str) -> JobRow | None:
        rows = self._query("SELECT job_id, spec, fingerprint, state, error, committed FROM jobs WHERE job_id=?",
                           (job_id,))
        return JobRow(*rows[0][:5], committed=bool(rows[0][5])) if rows else None

    def jobs_in_state(self, state: str) -> list[str]:
        return [r[0] for r in self._query("SELECT job_id FROM jobs WHERE state=?", (state,))]

    def jobs_with_fingerprint(self, fingerprint: str) -> int:
        """How many jobs this node accepted for one approved computation (an approval's runs)."""
        return self._query("SELECT COUNT(*) FROM jobs WHERE fingerprint=?", (fingerprint,))[0][0]

    # ---- audit log ------------------------------------------------------------------
    def audit(self, event: str, job_id: str, fingerprint: str, detail: str) -> None:
        """Append one line to the audit log: what the organization's data fed and who fetched what.
        Callers pass nothing secret: public rules, names, dataset names, never values or paths."""
        self._tx([("INSERT INTO audit (ts, event, job_id, fingerprint, detail) VALUES (?,?,?,?,?)",
                   (time.time(), event, job_id[:128], fingerprint[:64], detail[:1000]))])

    def audit_log(self, job_id: str | None = None) -> list[tuple[float, str, str, str, str]]:
        if job_id is None:
            return self._query("SELECT ts, event, job_id, fingerprint, detail FROM audit ORDER BY rowid", ())
        return self._query("SELECT ts, event, job_id, fingerprint, detail FROM audit WHERE job_id=? ORDER BY rowid",
                           (job_id,))

    # ---- secret-shared models (mpcnode/models.py) ------------------------------------
    def model(self, model_id: str, with_share: bool = True) -> ModelRow | None:
        """The model's row; share is None once the model is deleted, or when not asked for (the
        checks at Prepare and the owner's requests read the public fields, not megabytes of shares)."""
        share_cols = "share, share_shape" if with_share else "x'', ''"
        rows = self._query(f"SELECT owner, shape, {share_cols}, deleted, checked FROM models WHERE model_id=?",
                           (model_id,))
        if not rows:
            return None
        owner, shape, blob, share_shape, deleted, checked = rows[0]
        share = _array(blob, share_shape) if with_share and not deleted else None
        return ModelRow(model_id, owner, shape, share, bool(deleted), bool(checked))

    def delete_model(self, model_id: str) -> bool:
        """Erase the share (the row stays as a tombstone, so the id cannot come back) and the grants."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute("UPDATE models SET share=x'', share_shape='', deleted=? "
                                       "WHERE model_id=? AND deleted=0", (time.time(), model_id))
                self._db.execute("DELETE FROM model_grants WHERE model_id=?", (model_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return cur.rowcount == 1

    def take_all_model_queries(self, charges: dict[tuple[str, str], int]) -> tuple[str, str, int, int] | None:
        """Take every (model, querier) charge of a job, all or none, in one transaction: None when
        all fit, else the first that does not, as (model, querier, used, quota) (quota -1: no grant)."""
        def take(conn: sqlite3.Connection) -> tuple[str, str, int, int] | None:
            for (model_id, querier), count in sorted(charges.items()):
                row = conn.execute("SELECT used, quota FROM model_grants WHERE model_id=? AND querier=?",
                                   (model_id, querier)).fetchone()
                if row is None or row[0] + count > row[1]:
                    refused = (model_id, querier, int(row[0]) if row else 0, int(row[1]) if row else -1)
                    raise _Refused(refused)
                conn.execute("UPDATE model_grants SET used=used+? WHERE model_id=? AND querier=?",
                             (count, model_id, querier))
            return None
        try:
            return self.transaction(take)
        except _Refused as r:
            return r.args[0]

    @staticmethod
    def put_model_in(conn: sqlite3.Connection, model_id: str, owner: str, shape: str, share: np.ndarray,
                     grants: list[tuple[str, int]], checked: bool = False) -> None:
        """Keep a model and its grants inside the caller's transaction (a `model` job's finish);
        DuplicateModel if the id exists or existed."""
        try:
            conn.execute("INSERT INTO models (model_id, owner, shape, share, share_shape, created, checked) "
                         "VALUES (?,?,?,?,?,?,?)",
                         (model_id, owner, shape, np.ascontiguousarray(share, dtype="<u8").tobytes(),
                          _shape_text(share), time.time(), int(checked)))
        except sqlite3.IntegrityError:
            raise DuplicateModel(f"model {model_id} already exists (or existed)") from None
        conn.executemany("INSERT INTO model_grants (model_id, querier, quota) VALUES (?,?,?)",
                         [(model_id, q, n) for q, n in grants])

    def models(self) -> list[tuple[str, str, str, bool]]:
        """(id, owner, shape JSON, deleted) of every model this node has kept."""
        return [(m, o, s, bool(d)) for m, o, s, d in
                self._query("SELECT model_id, owner, shape, deleted FROM models ORDER BY created", ())]

    def model_grants(self, model_id: str) -> list[tuple[str, int, int]]:
        """(querier, used, quota) of every grant of a model."""
        return [(q, int(u), int(n)) for q, u, n in
                self._query("SELECT querier, used, quota FROM model_grants WHERE model_id=? ORDER BY querier",
                            (model_id,))]

    def model_grant(self, model_id: str, querier: str) -> tuple[int, int] | None:
        """(used, quota) of a querier, None without a grant."""
        rows = self._query("SELECT used, quota FROM model_grants WHERE model_id=? AND querier=?", (model_id, querier))
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    # ---- client input shares ------------------------------------------------------
    def add_client_share(self, job_id: str, input_name: str, client: str, share: np.ndarray) -> None:
        """Store one client's share; a second submission by the same client is refused. One indexed
        insert: its cost does not grow with the number of shares already held (no count here; the
        node keeps its own counter)."""
        try:
            self._tx([("INSERT INTO client_shares (job_id, input, client, share, received, shape) VALUES (?,?,?,?,?,?)",
                       (job_id, input_name, client, share.astype("<u8").tobytes(), time.time(), _shape_text(share)))])
        except sqlite3.IntegrityError:
            raise DuplicateSubmission(f"{client} already submitted input {input_name!r} for job {job_id}") from None

    def client_shares(self, job_id: str, input_name: str) -> dict[str, np.ndarray]:
        rows = self._query("SELECT client, share, shape FROM client_shares WHERE job_id=? AND input=?",
                           (job_id, input_name))
        return {c: _array(b, shape) for c, b, shape in rows}

    def client_order(self, job_id: str, input_name: str) -> list[str]:
        """Clients in the order this node accepted their shares."""
        rows = self._query("SELECT client FROM client_shares WHERE job_id=? AND input=? ORDER BY received, rowid",
                           (job_id, input_name))
        return [r[0] for r in rows]

    def client_share_bytes(self, job_id: str, input_name: str, client: str) -> bytes | None:
        """The stored bytes of one client's share (what a receipt's hash covers), or None."""
        rows = self._query("SELECT share FROM client_shares WHERE job_id=? AND input=? AND client=?",
                           (job_id, input_name, client))
        return bytes(rows[0][0]) if rows else None

    # ---- which client rows counted (jobrun.take_client_rows) -------------------------
    # Every row this node holds either counts or is excluded, so only the exclusions are kept
    # (a few rows), with the number that count: one write per job, not one per client.
    def record_client_rows(self, job_id: str, accepted: int, excluded: list[tuple[str, str, str]],
                           fingerprint: str) -> None:
        """The agreed client rows of a job, in one transaction: how many count, every excluded
        (credential, input, reason), and one "excluded" audit event per excluded row (names and
        reasons only)."""
        now = time.time()
        stmts = [("UPDATE jobs SET rows_accepted=?, updated=? WHERE job_id=?", (accepted, now, job_id))]
        stmts += [("INSERT OR REPLACE INTO client_exclusions (job_id, input, client, reason) VALUES (?,?,?,?)",
                   (job_id, name, c, reason)) for c, name, reason in excluded]
        stmts += [("INSERT INTO audit (ts, event, job_id, fingerprint, detail) VALUES (?,?,?,?,?)",
                   (now, "excluded", job_id[:128], fingerprint[:64], f"{c} ({name}): {reason}"[:1000]))
                  for c, name, reason in excluded]
        self._tx(stmts)

    def client_verdict(self, job_id: str, input_name: str, client: str) -> tuple[bool, str] | None:
        """For a row this node holds, once the rows were agreed: (counted, why not); else None."""
        agreed = self._query("SELECT rows_accepted FROM jobs WHERE job_id=?", (job_id,))
        if not agreed or agreed[0][0] < 0:
            return None
        rows = self._query("SELECT reason FROM client_exclusions WHERE job_id=? AND input=? AND client=?",
                           (job_id, input_name, client))
        return (False, rows[0][0]) if rows else (True, "")

    def client_rows_summary(self, job_id: str) -> tuple[bool, int, list[tuple[str, str, str]]]:
        """(rows agreed, rows counted, [(credential, input, reason)] of the excluded rows)."""
        agreed = self._query("SELECT rows_accepted FROM jobs WHERE job_id=?", (job_id,))
        if not agreed or agreed[0][0] < 0:
            return False, 0, []
        rows = self._query("SELECT client, input, reason FROM client_exclusions WHERE job_id=? ORDER BY input, client",
                           (job_id,))
        return True, int(agreed[0][0]), [(c, i, r) for c, i, r in rows]

    # ---- outputs ------------------------------------------------------------------
    def finish_job(self, job_id: str, outputs: dict[str, tuple[np.ndarray, list[str], list[str]]],
                   opened: tuple[str, list[str]] = ("", []), in_tx: InTx | None = None) -> None:
        """Write every output share and mark the job done, atomically. `opened`: (the job's
        fingerprint, one audit line per value the node opened), written in the same transaction
        as "opened" audit events, so a finished job always has its opened-values log. `in_tx`:
        also in that transaction (the ledger's spend: outputs stored iff the budget is spent)."""
        stmts = [("INSERT OR REPLACE INTO outputs (job_id, name, share, recipients, participants, shape) "
                  "VALUES (?,?,?,?,?,?)",
                  (job_id, name, share.astype("<u8").tobytes(), "\n".join(rec), "\n".join(who), _shape_text(share)))
                 for name, (share, rec, who) in outputs.items()]
        now = time.time()
        fingerprint, lines = opened
        stmts += [("INSERT INTO audit (ts, event, job_id, fingerprint, detail) VALUES (?,?,?,?,?)",
                   (now, "opened", job_id[:128], fingerprint[:64], line[:1000])) for line in lines]
        stmts.append(("UPDATE jobs SET state=?, error='', updated=? WHERE job_id=?", ("DONE", time.time(), job_id)))
        self._tx(stmts, in_tx)

    def commit_job(self, job_id: str) -> bool:
        """Record that the coordinator decided DONE; False if the job is not DONE here."""
        with self._lock:
            cur = self._db.execute("UPDATE jobs SET committed=1, updated=? WHERE job_id=? AND state='DONE'",
                                   (time.time(), job_id))
            return cur.rowcount == 1

    def withdraw_outputs(self, job_id: str, reason: str) -> bool:
        """Delete a finished job's output shares and mark it failed, atomically; never a committed
        job's (False then, and nothing changes). The check is inside the transaction, so a Commit
        and an Abort cannot interleave into a committed job without outputs."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute("UPDATE jobs SET state='FAILED', error=?, updated=? WHERE job_id=?"
                                       " AND state='DONE' AND committed=0", (reason, time.time(), job_id))
                if cur.rowcount == 1:
                    self._db.execute("DELETE FROM outputs WHERE job_id=?", (job_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return cur.rowcount == 1

    def output(self, job_id: str, name: str) -> OutputRow | None:
        rows = self._query("SELECT share, recipients, participants, shape FROM outputs WHERE job_id=? AND name=?",
                           (job_id, name))
        if not rows:
            return None
        share, rec, who, shape = rows[0]
        return OutputRow(_array(share, shape), rec.split("\n") if rec else [], who.split("\n") if who else [])
