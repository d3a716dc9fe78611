"""Consent on content: a node takes part in a job only if its organization approved exactly that
computation, pinned by the fingerprint of its canonical document (computation/spec.py).

An approval names a fingerprint, or a scenario file the organization keeps locally: the node
rebuilds the computation from that file at start-up and pins the fingerprint it computes, so
nothing the coordinator sends can change what was approved. Approvals may expire and may be
limited to a number of runs. Floors that hold whatever was approved: the threshold t, and the
number of contributors behind every output our data feeds.

Refusal reasons name the rule, never an input value or a local path: they travel to the
coordinator. The node's own log has the details.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from parley.v1 import circuit_pb2 as cpb, node_pb2

from .computation.spec import Computation, Document, Feeds, output_feeds
from .config import NodeConfig
from .configfile import ConfigError
from .errors import ConsentStop, Denied

log = logging.getLogger("parley.node")

INSECURE_ANY = "approve_any_computation_insecure"


@dataclass(frozen=True)
class Approved:
    """One approval, resolved to the fingerprint it pins."""
    fingerprint: str
    label: str                     # the scenario name for a file approval, else '' (audit log)
    expires: datetime | None = None
    max_runs: int | None = None
    note: str = ""


def resolve_approvals(cfg: NodeConfig, config_path: Path | str) -> list[Approved]:
    """Every approval of the node's policy, scenario files rebuilt into fingerprints. A scenario
    file that does not parse stops the node with one line naming the config and the file."""
    from .computation.scenario import load_scenario

    out = []
    for i, a in enumerate(cfg.policy.approvals):
        if a.scenario_file is not None:
            try:
                sc = load_scenario(a.scenario_file)
                fp = sc.computation().fingerprint()
            except ConfigError as exc:
                raise ConfigError(config_path, f"policy.approvals[{i}].scenario_file", str(exc)) from None
            except ValueError as exc:
                raise ConfigError(config_path, f"policy.approvals[{i}].scenario_file",
                                  f"{a.scenario_file}: {exc}") from None
            out.append(Approved(fp, sc.name, a.expires, a.max_runs, a.note))
        else:
            assert a.fingerprint is not None
            out.append(Approved(a.fingerprint, "", a.expires, a.max_runs, a.note))
    return out


def accepted_note(org: str, spec: node_pb2.JobSpec, approval: Approved, input_only: bool, charges: dict) -> str:
    """The audit line of an accepted Prepare: which approval, which of our datasets it reads, our
    role, and the privacy budget reserved."""
    fed = sorted({d.dataset for d in spec.circuit.inputs if d.source == cpb.INPUT_SOURCE_NODE and d.owner == org})
    return (f"approved computation {approval.label or spec.circuit.name}"
            + (f" ({approval.note})" if approval.note else "")
            + f"; datasets fed: {', '.join(fed) if fed else 'none'}"
            + ("; input-only: shared to the compute nodes at start, no shares held here" if input_only else "")
            + ("; privacy budget reserved: " + ", ".join(f"{k} rho={v}" for k, v in sorted(charges.items()))
               if charges else ""))


class Admission:
    """Decides, for one organization, whether a validated computation may use its data."""

    def __init__(self, cfg: NodeConfig, approvals: list[Approved], runs_used: Callable[[str], int]):
        self.org = cfg.organization
        self.policy = cfg.policy
        self.approvals = approvals
        self.runs_used = runs_used
        if self.policy.approve_any_computation_insecure:
            log.warning("%s: policy.%s is set: this node accepts ANY computation the coordinator sends "
                        "(tests and benchmarks only)", self.org, INSECURE_ANY)

    def check(self, comp: Computation, doc: Document, fp: str, now: datetime | None = None) -> Approved:
        """The approval that covers this computation; raises Denied naming the rule otherwise."""
        approval = self._approval(fp, now or datetime.now(timezone.utc))
        if comp.threshold < self.policy.min_threshold:
            raise Denied(f"{self.org}'s policy requires threshold t >= {self.policy.min_threshold}, "
                         f"the job has t = {comp.threshold}")
        floor = self.policy.min_contributors
        for name, feeds in output_feeds(doc).items():
            if self.org in feeds.owners and feeds.contributors < floor:
                raise Denied(f"{self.org}'s policy requires at least {floor} contributors behind every output "
                             f"its data feeds; output {name!r} has {feeds.contributors}")
        return approval

    def check_clients(self, circuit: cpb.Circuit) -> None:
        """Denied if the computation takes input from clients this organization's policy does not
        accept (`input_clients`: names, 'prefix*', '*' for any; none by default), or from one of
        the coordinators it takes jobs from, whatever the rules say: the party that schedules a
        job must not also be able to bid or vote in it."""
        clients = {c for d in circuit.inputs if d.source == cpb.INPUT_SOURCE_CLIENTS for c in d.clients}
        coordinators = sorted(clients & set(self.policy.coordinators))
        if coordinators:
            raise Denied(f"{self.org} does not accept input from its coordinator {coordinators[0]}")
        rules = self.policy.input_clients
        if not clients or "*" in rules:
            return
        prefixes = tuple(r[:-1] for r in rules if r.endswith("*"))
        stray = sorted(c for c in clients - set(rules) if not c.startswith(prefixes))
        if stray:
            raise Denied(f"{self.org}'s policy does not accept input from {', '.join(stray[:5])}")

    def check_rows(self, feeds: dict[str, Feeds], rows: dict[str, int]) -> None:
        """min_contributors against the clients whose rows actually count, once the nodes agreed on
        them: an auction approved for eight bidders may close with one. Every node sees the same
        agreed counts, so all stop together, before anything is opened."""
        floor = self.policy.min_contributors
        for name, f in feeds.items():
            if self.org not in f.owners:
                continue
            actual = len(f.owners) + sum(rows.get(i, 0) for i in f.inputs)
            if actual < floor:
                raise ConsentStop(f"{self.org}'s policy requires at least {floor} contributors behind every output "
                                  f"its data feeds; output {name!r} has {actual} once client input closed")

    def _approval(self, fp: str, now: datetime) -> Approved:
        matching = [a for a in self.approvals if a.fingerprint == fp]
        if not matching:
            if self.policy.approve_any_computation_insecure:
                return Approved(fp, "", note=INSECURE_ANY)
            raise Denied(f"{self.org} has not approved computation {fp[:16]}... "
                         "(its policy pins approved fingerprints; see docs/approving.md)")
        live = [a for a in matching if a.expires is None or now < a.expires]
        if not live:
            raise Denied(f"{self.org}'s approval of computation {fp[:16]}... expired "
                         f"at {max(a.expires for a in matching if a.expires):%Y-%m-%dT%H:%M:%SZ}")
        used = self.runs_used(fp)
        for a in live:
            if a.max_runs is None or used < a.max_runs:
                return a
        raise Denied(f"{self.org}'s approval of computation {fp[:16]}... allows "
                     f"{max(a.max_runs or 0 for a in live)} run(s), all used")
