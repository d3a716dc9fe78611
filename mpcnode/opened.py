"""What a node opens in a job, and why: the per-job log every engine keeps (Engine.opened).

No dependencies, so the engines, the Shamir session and the job runner can all use it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


# Why a value may be opened at all. Every `open` states one; the node keeps the list of what it
# opened per job (jobrun.JobResult.opened, stored and shown by `python -m mpcnode audit`), and
# docs/security-model.md ("What a node opens") describes each purpose's distribution. A test runs
# every demo scenario and checks that nothing else is opened.
OPEN_PURPOSES = {
    "masked-comparison": "x + r for a comparison or zero test, r uniform (or statistically masking) and fresh",
    "masked-zero-test": "x + r for a bounded zero test of a range-checked value, r statistically masking",
    "public-coins": "uniform random values that no party chose (a random linear combination's coefficients)",
    "input-check": "client input checks: per client row, a combination of its shares masked by a fresh uniform "
                   "value (Shamir degree check), and one bit 'this row is in range'",
    "truncation": "x + 2^L + r for a fixed-point truncation in Z_2^128 (|x| < 2^L), r a sum of three uniform "
                  "[0, 2^126) components, each party missing one: within 2^(L+3-128) of independent of x "
                  "(to parties 0 and 2)",
    "output": "an output's shares, to the recipients the computation names",
}


@dataclass(frozen=True)
class Opened:
    """One opening of a job: its round label, how many values, why, and to whom (party ids; for
    outputs, the recipients' names)."""
    label: str
    count: int
    purpose: str
    to: tuple


class OpenLog(list):
    """A job's openings, in order (a list of Opened)."""

    def note(self, label: str, count: int, purpose: str | None, to: Sequence) -> None:
        self.append(Opened(label, int(count), purpose or "unstated", tuple(to)))


def describe(o: Opened) -> str:
    """One audit line: 'L3/lt32/open: 1000 values, masked-comparison, to 0,1,2'."""
    to = ",".join(str(x) for x in o.to) or "nobody"
    return f"{o.label}: {o.count} values, {o.purpose}, to {to}"
