"""`python -m mpcnode ledger --config node.yaml`: this node's privacy budgets, spent, reserved and
remaining per dataset (mpcnode/ledger.py, docs/privacy-budget.md), in ρ-zCDP and as the (ε, δ)
they imply at the policy's δ.

Like `mpcnode audit`, it opens the store read-only (`mode=ro` URI): safe while the node runs (a
WAL reader never blocks the writer), and it works on a stopped node's database.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
from pathlib import Path
from urllib.parse import quote

from .audit import STORE_FILE, printable
from .config import PrivacyBudget, load_node_config
from .configfile import ConfigError
from .dp.accounting import eps_delta_of_rho
from .ledger import DATASET, LedgerRow, report_rows, total_of


class LedgerUnavailable(Exception):
    pass


def read_ledger(db: Path, budget: PrivacyBudget) -> list[LedgerRow]:
    """The ledger's rows; a node that never ran (no database) or never charged anything (no ledger
    tables) shows its configured budgets untouched."""
    empty = [LedgerRow(DATASET + d, total_of(budget, DATASET + d), 0, 0, "", False) for d in sorted(budget.datasets)]
    if not db.is_file():
        return empty
    uri = f"file:{quote(str(db.resolve()))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as conn:
            return report_rows(conn, budget)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return empty
        raise LedgerUnavailable(f"cannot read {db}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise LedgerUnavailable(f"{db} is not a readable SQLite database: {exc}") from None


def _eps(rho, delta: float) -> str:
    return "-" if rho is None else f"{eps_delta_of_rho(float(rho), delta):.4g}"


def _rho(rho) -> str:
    return "-" if rho is None else f"{float(rho):.6g}"


def as_json(row: LedgerRow, delta: float) -> dict[str, object]:
    return {"key": row.key, "total_rho": None if row.total is None else str(row.total), "spent_rho": str(row.spent),
            "reserved_rho": str(row.reserved), "remaining_rho": None if row.remaining is None else str(row.remaining),
            "delta": delta, "spent_epsilon": eps_delta_of_rho(float(row.spent), delta),
            "total_epsilon": None if row.total is None else eps_delta_of_rho(float(row.total), delta),
            "content_sha256": row.content_sha256, "content_changed": row.content_changed}


def format_text(rows: list[LedgerRow], delta: float) -> list[str]:
    head = ("dataset", "total ρ", "spent ρ", "reserved ρ", "remaining ρ", f"spent ε (δ={delta:g})",
            f"total ε (δ={delta:g})")
    body = [(printable(r.key), _rho(r.total), _rho(r.spent), _rho(r.reserved), _rho(r.remaining),
             _eps(r.spent, delta), _eps(r.total, delta)) for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [head, *body]]
    lines += [f"note: {printable(r.key)}: file content changed since first charged (the budget continues)"
              for r in rows if r.content_changed]
    lines += [f"note: {printable(r.key)}: charged before, no budget configured now" for r in rows if r.total is None]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mpcnode ledger",
        description="Print this node's privacy budgets: per dataset (or client population), the total, spent, "
                    "reserved (jobs prepared or running) and remaining ρ (zCDP), and the (ε, δ) that ρ implies at "
                    "policy.privacy_budget.delta. Reads the node's store read-only: safe while the node runs.")
    parser.add_argument("--config", type=Path, required=True, help="the node's config YAML (budgets and data_dir)")
    parser.add_argument("--json", action="store_true", help="one JSON object per dataset (exact ρ as fractions)")
    args = parser.parse_args(argv)
    try:
        cfg = load_node_config(args.config)
        budget = cfg.policy.privacy_budget
        rows = read_ledger(cfg.data_dir / STORE_FILE, budget)
    except (ConfigError, LedgerUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print("no privacy budget configured (policy.privacy_budget) and nothing charged", file=sys.stderr)
        return 0
    print("\n".join(json.dumps(as_json(r, budget.delta)) for r in rows) if args.json
          else "\n".join(format_text(rows, budget.delta)))
    return 0
