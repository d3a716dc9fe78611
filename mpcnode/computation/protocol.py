"""Which protocol (engine) a computation runs under: the default rule and what each protocol
requires of the parties, the threshold and the dropout rule.

The rule is part of what a scenario means, so it lives in one place that the scenario loader, the
coordinator and every node share:

* a scenario that states `protocol:` gets that protocol;
* otherwise `default_protocol(n)`: "replicated3" (three-party replicated sharing over Z_2^64)
  when the computation has exactly 3 compute parties, "shamir" otherwise;
* a scenario that states no `dropouts:` gets `default_dropouts(protocol)`: "none" for
  replicated3 (it needs all three parties), "within-threshold" for Shamir.

The resolved protocol and dropout rule are written into the computation document, so the
fingerprint pins them whether the scenario stated them or not (docs/approving.md).
"""
from __future__ import annotations

from .spec import protocol_parameters

SHAMIR = "shamir"
REPLICATED3 = "replicated3"


def default_protocol(n_parties: int) -> str:
    """The protocol of a computation whose scenario names none: replicated3 for exactly 3
    compute parties, Shamir otherwise."""
    return REPLICATED3 if n_parties == 3 else SHAMIR


def default_dropouts(protocol: str) -> str:
    """The dropout rule of a computation whose scenario names none."""
    return "none" if protocol == REPLICATED3 else "within-threshold"


def protocol_problem(protocol: str, n_parties: int, threshold: int, dropouts: str) -> str:
    """Why `protocol` cannot run with these parties, threshold and dropout rule ('' if it can), as
    one line "field: problem". Replicated three-party sharing has exactly three parties, tolerates
    one corrupt party (t = 1) and needs every party to the end (no dropouts)."""
    if protocol == REPLICATED3:
        if n_parties != 3:
            return f"protocol: replicated3 runs with exactly 3 compute parties, this computation has {n_parties}"
        if threshold != 1:
            return f"threshold: replicated3 runs with t = 1 only, got t={threshold}"
        if dropouts != "none":
            return f"dropouts: replicated3 needs every party to take part (dropouts: none), got {dropouts!r}"
    return ""


def job_protocol_problem(protocol: str, n_parties: int, threshold: int, dropouts: str) -> str:
    """`protocol_problem`, then whether this build runs `protocol` at all: what a node's Prepare
    and the coordinator's plan check refuse ('' if nothing)."""
    problem = protocol_problem(protocol, n_parties, threshold, dropouts)
    if problem:
        return problem
    try:
        protocol_parameters(protocol)
    except ValueError as exc:
        return str(exc)
    return ""
