"""The privacy-budget ledger: how much of each dataset's differential-privacy budget this node has
let jobs use (issue 14 item 5; docs/privacy-budget.md).

Currency: ρ-zCDP, kept as exact fractions (strings in SQLite) so that sums never round past a
budget. What one output costs is dp/accounting.py's release_rho (a pure ε-DP release: ρ = ε²/2).

Keys are this node's own dataset identities, never a name the coordinator chose:
- `dataset:<name>` for a node input, where <name> is the dataset name in this node's config
  (`inputs:`). The sha256 of the file's content is recorded when the dataset is first charged and
  again at each charge, for the audit log only: a new content does NOT start a new budget, or an
  operator could reset the budget by touching the file.
- `clients:<sha256>` for a client population: the content hash of the list of clients the node
  enforces, sorted (computation/spec.py clients_digest; one population in any order is one
  budget), budgeted by `client_populations` in the policy.

Lifecycle of one job's charge, each step in the same SQLite transaction as the job's state change
(store.py), so a crash cannot leave one without the other:
  reserved (Prepare accepted) -> spent (Start: the job runs here, before any share that depends on
  our data leaves this node; from then on the others can finish and release it without us)
  reserved -> refunded (the job ended here before it started) | expired (prepared, never started).
A spent charge is never refunded, not when the job fails later, not when the outputs are withdrawn
(a recipient may already hold them). Reservations count against the budget: spent + reserved + new <= total is
checked and written under one BEGIN IMMEDIATE, which SQLite serializes across connections and
processes.
"""
from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

from parley.v1 import circuit_pb2 as cpb

from .computation.spec import clients_digest
from .dp import accounting
from .config import NodeConfig, PrivacyBudget
from .errors import Denied

SCHEMA = """
CREATE TABLE IF NOT EXISTS privacy_charges (
  job_id TEXT NOT NULL, dataset TEXT NOT NULL, rho TEXT NOT NULL, state TEXT NOT NULL,
  created REAL NOT NULL, updated REAL NOT NULL, PRIMARY KEY (job_id, dataset));
CREATE TABLE IF NOT EXISTS privacy_datasets (
  dataset TEXT PRIMARY KEY, first_sha256 TEXT NOT NULL, last_sha256 TEXT NOT NULL,
  first_charged REAL NOT NULL, last_charged REAL NOT NULL);
"""
RESERVED, SPENT, REFUNDED, EXPIRED = "reserved", "spent", "refunded", "expired"
DATASET, CLIENTS = "dataset:", "clients:"


class BudgetExceeded(Denied):
    """A job's charge does not fit a dataset's remaining budget. The message names the dataset key
    and the rule, never a value: it travels to the coordinator."""


def release_rho(output: cpb.OutputDecl) -> Fraction:
    """The ledger charge of one DP output (dp/accounting.py release_rho: its declared ρ, ε²/2 for
    a pure-DP release, nothing for post-processing). A declaration it cannot price is refused,
    naming the output and never a value."""
    try:
        rho = accounting.release_rho(output.dp)
    except (ValueError, ZeroDivisionError) as exc:
        raise Denied(f"output {output.name!r}: {exc}") from None
    if rho < 0:
        raise Denied(f"output {output.name!r}: a negative rho")
    return Fraction(rho)


def output_inputs(circuit: cpb.Circuit) -> dict[str, frozenset[str]]:
    """For each output, the circuit inputs its value depends on through the op DAG (data flow)."""
    deps: dict[str, frozenset[str]] = {d.name: frozenset([d.name]) for d in circuit.inputs}
    for op in circuit.ops:
        deps[op.out] = frozenset().union(*(deps.get(a, frozenset()) for a in op.args))
    return {o.name: deps.get(o.value, frozenset()) for o in circuit.outputs}


def dataset_keys(circuit: cpb.Circuit, org: str, cfg: NodeConfig, holds_client_shares: bool) -> dict[str, str]:
    """input name -> this node's ledger key, for the inputs this node's budgets cover: our own node
    inputs whose dataset has a budget, and (if we receive client shares) every client input when
    the policy budgets client populations."""
    budget = cfg.policy.privacy_budget
    keys = {}
    for d in circuit.inputs:
        if d.source == cpb.INPUT_SOURCE_NODE and d.owner == org and d.dataset in budget.datasets:
            keys[d.name] = DATASET + d.dataset
        elif d.source == cpb.INPUT_SOURCE_CLIENTS and holds_client_shares and budget.client_populations:
            keys[d.name] = CLIENTS + clients_digest(sorted(set(d.clients)))
    return keys


def job_charges(circuit: cpb.Circuit, org: str, cfg: NodeConfig, holds_client_shares: bool) -> dict[str, Fraction]:
    """ledger key -> ρ this job would use of it: the sum of release_rho over the outputs that
    depend on the key's inputs. Raises Denied if such an output is not DP (an exact release of a
    budgeted dataset), naming the output and the key, never a value."""
    keys = dataset_keys(circuit, org, cfg, holds_client_shares)
    charges: dict[str, Fraction] = {}
    if not keys:
        return charges
    by_output = output_inputs(circuit)
    for out in circuit.outputs:
        touched = sorted({keys[i] for i in by_output[out.name] if i in keys})
        if not touched:
            continue
        if not out.HasField("dp"):
            raise Denied(f"{org} has a privacy budget on {touched[0]}: output {out.name!r} depends on it "
                         "and is not differentially private")
        rho = release_rho(out)
        for key in touched:
            charges[key] = charges.get(key, Fraction(0)) + rho
    return charges


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def total_of(budget: PrivacyBudget, key: str) -> Fraction | None:
    """The configured total ρ of a ledger key, None if it has no budget."""
    if key.startswith(DATASET):
        b = budget.datasets.get(key[len(DATASET):])
        return b.rho_total if b else None
    if key.startswith(CLIENTS) and budget.client_populations:
        return budget.client_populations.rho_total
    return None


@dataclass(frozen=True)
class LedgerRow:
    key: str
    total: Fraction | None    # None: charged in the past, no budget configured now
    spent: Fraction
    reserved: Fraction
    content_sha256: str       # last content hash seen for a node dataset ('' for clients / never charged)
    content_changed: bool     # the content differs from when the dataset was first charged

    @property
    def remaining(self) -> Fraction | None:
        return None if self.total is None else self.total - self.spent - self.reserved


def _sums(conn: sqlite3.Connection) -> dict[str, tuple[Fraction, Fraction]]:
    out: dict[str, tuple[Fraction, Fraction]] = {}
    for key, rho, state in conn.execute("SELECT dataset, rho, state FROM privacy_charges WHERE state IN (?,?)",
                                        (SPENT, RESERVED)):
        spent, reserved = out.get(key, (Fraction(0), Fraction(0)))
        out[key] = (spent + Fraction(rho), reserved) if state == SPENT else (spent, reserved + Fraction(rho))
    return out


def report_rows(conn: sqlite3.Connection, budget: PrivacyBudget) -> list[LedgerRow]:
    """Every budgeted or charged key, sorted: what `python -m mpcnode ledger` prints."""
    sums = _sums(conn)
    hashes = {k: (first, last) for k, first, last in
              conn.execute("SELECT dataset, first_sha256, last_sha256 FROM privacy_datasets")}
    keys = set(sums) | {DATASET + d for d in budget.datasets} | set(hashes)
    rows = []
    for key in sorted(keys):
        spent, reserved = sums.get(key, (Fraction(0), Fraction(0)))
        first, last = hashes.get(key, ("", ""))
        rows.append(LedgerRow(key, total_of(budget, key), spent, reserved, last, first != last))
    return rows


class PrivacyLedger:
    """The ledger over a node's ShareStore database. `store.transaction(fn)` runs fn(conn) inside
    the store's BEGIN IMMEDIATE; the *_in methods are meant to be passed to the store's job-state
    writes so that the charge and the job state change commit together."""

    def __init__(self, store, cfg: NodeConfig):
        self.store = store
        self.cfg = cfg
        store.transaction(lambda conn: [conn.execute(sql) for sql in SCHEMA.split(";") if sql.strip()])

    # ---- the four transitions, standalone (each its own transaction) ------------------------------
    def reserve(self, job_id: str, charges: dict[str, Fraction]) -> None:
        self.store.transaction(self.reserver(job_id, charges))

    def spend(self, job_id: str) -> None:
        self.store.transaction(lambda conn: self.spend_in(conn, job_id))

    def refund(self, job_id: str) -> None:
        self.store.transaction(lambda conn: self.settle_in(conn, job_id, REFUNDED))

    def release_expired(self, job_id: str) -> None:
        self.store.transaction(lambda conn: self.settle_in(conn, job_id, EXPIRED))

    def report(self) -> list[LedgerRow]:
        return self.store.transaction(lambda conn: report_rows(conn, self.cfg.policy.privacy_budget), immediate=False)

    def charges_of(self, job_id: str) -> dict[str, tuple[Fraction, str]]:
        """key -> (ρ, state) of one job (tests, audit)."""
        rows = self.store.transaction(lambda conn: conn.execute(
            "SELECT dataset, rho, state FROM privacy_charges WHERE job_id=?", (job_id,)).fetchall(), immediate=False)
        return {k: (Fraction(r), s) for k, r, s in rows}

    # ---- inside a store transaction ----------------------------------------------------------------
    def reserver(self, job_id: str, charges: dict[str, Fraction]) -> Callable[[sqlite3.Connection], None]:
        """fn(conn) that checks every charge against its remaining budget and writes the
        reservations, or raises BudgetExceeded (the caller's transaction rolls back). Content hashes
        are read here, before the transaction: file I/O does not hold the database's write lock."""
        hashes = {k: file_sha256(self.cfg.inputs[k[len(DATASET):]]) for k in charges if k.startswith(DATASET)}
        budget = self.cfg.policy.privacy_budget

        def fn(conn: sqlite3.Connection) -> None:
            if not charges:
                return
            sums = _sums(conn)
            for key, rho in sorted(charges.items()):
                total = total_of(budget, key)
                if total is None:
                    raise BudgetExceeded(f"no privacy budget configured for {key}")
                spent, reserved = sums.get(key, (Fraction(0), Fraction(0)))
                if spent + reserved + rho > total:
                    raise BudgetExceeded(f"privacy budget of {key} exhausted: this job's charge does not fit "
                                         "what remains (python -m mpcnode ledger shows the balance)")
            now = time.time()
            for key, rho in charges.items():
                conn.execute("INSERT INTO privacy_charges (job_id, dataset, rho, state, created, updated) "
                             "VALUES (?,?,?,?,?,?)", (job_id, key, str(rho), RESERVED, now, now))
            for key, digest in hashes.items():
                conn.execute("INSERT INTO privacy_datasets (dataset, first_sha256, last_sha256, first_charged, "
                             "last_charged) VALUES (?,?,?,?,?) ON CONFLICT (dataset) DO UPDATE SET "
                             "last_sha256=excluded.last_sha256, last_charged=excluded.last_charged",
                             (key, digest, digest, now, now))
        return fn

    @staticmethod
    def spend_in(conn: sqlite3.Connection, job_id: str) -> None:
        conn.execute("UPDATE privacy_charges SET state=?, updated=? WHERE job_id=? AND state=?",
                     (SPENT, time.time(), job_id, RESERVED))

    @staticmethod
    def settle_in(conn: sqlite3.Connection, job_id: str, outcome: str) -> None:
        """Free a reservation (refunded or expired); a spent charge is never touched."""
        assert outcome in (REFUNDED, EXPIRED)
        conn.execute("UPDATE privacy_charges SET state=?, updated=? WHERE job_id=? AND state=?",
                     (outcome, time.time(), job_id, RESERVED))

