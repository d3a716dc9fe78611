"""Which parties a computation may run with: one rule for the node that enforces it, the
coordinator that plans around dead nodes, and the input client that checks what it is shown.

A computation whose dropout rule is "none" runs with all its parties. Otherwise it may run with
the parties that are up when it starts, as long as every node input's owner takes part (its
input cannot be replaced) and enough parties remain for the sharing: t+1 to reconstruct sums,
2t+1 once the circuit multiplies (degree reduction needs them).

Input-only parties (who only contribute node inputs) are never dropped: without one, its input
would be missing, and no rule replaces an organization's input with a default. A job runs only
with every input-only party reachable, and fails naming the one that is not.
"""
from __future__ import annotations

from typing import Iterable, Sequence


def live_set_problem(parties: Sequence[str], t: int, owners: Iterable[str], multiplies: bool, dropouts: str,
                     live: Sequence[str]) -> str:
    """'' if the computation may run with exactly the parties in `live`; otherwise why not (one
    line naming the rule and the parties, nothing private)."""
    if len(set(live)) != len(live) or not set(live) <= set(parties):
        return f"live parties {list(live)} must be distinct parties of the job"
    if dropouts == "none" and set(live) != set(parties):
        return "this computation was approved to run with all its parties only (dropouts: none)"
    # owners that are not compute parties are input-only: their input arrives by submission
    missing = sorted((set(owners) & set(parties)) - set(live))
    if missing:
        return f"cannot run without input owners {', '.join(missing)}"
    need = 2 * t + 1 if multiplies else t + 1
    if len(live) < need:
        return f"{len(live)} live parties, this circuit needs {need} with t={t}"
    return ""


def input_parties_problem(input_parties: Iterable[str], down: Iterable[str]) -> str:
    """'' if no input-only party is down; otherwise why the job cannot run (naming them)."""
    missing = sorted(set(input_parties) & set(down))
    if missing:
        return (f"cannot run without input-only part{'ies' if len(missing) > 1 else 'y'} {', '.join(missing)} "
                f"(its input would be missing)")
    return ""
