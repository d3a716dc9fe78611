"""`python -m coordinator plan SCENARIO.yaml`: what a scenario would run, before it runs.

It prints what an organization approves and what the job will cost each node:
- the fingerprint of the canonical computation document (mpcnode/computation/spec.py);
- the document in plain words: who contributes what, what each recipient learns, t and the
  parties (mpcnode/computation/describe.py);
- rounds and bytes sent per node, from a dry run on dummy inputs (mpcnode/computation/cost.py).

Every identity the scenario names must be known to the deployment: a certificate in --certs, or
a node in the coordinator config. A typo in a recipient would otherwise be approved under its
fingerprint and only fail (or wait for a party that never comes) when the job runs.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from mpcnode.computation.auction import AuctionScenario
from mpcnode.computation.cost import CostEstimate, dry_run, resolve_client_rows
from mpcnode.computation.describe import describe
from mpcnode.computation.scenario import AnyScenario, load_scenario
from mpcnode.computation.spec import Document, clients_digest
from mpcnode.computation.vote import VoteScenario
from mpcnode.configfile import ConfigError
from mpcnode.recipient import dp_metadata
from parley.v1 import circuit_pb2 as cpb

from .config import load_coordinator_config

MAX_NAMES_SHOWN = 50   # a list of a million voters is summarized; its hash still pins every name


@dataclass(frozen=True)
class ScenarioPlan:
    path: Path
    fingerprint: str
    document: Document
    words: list[str]
    cost: CostEstimate

    def as_json(self) -> dict:
        return {"scenario": str(self.path), "fingerprint": self.fingerprint, "document": self.document,
                "words": self.words, "cost": self.cost.as_json()}


def named_identities(sc: AnyScenario) -> list[tuple[str, list[str]]]:
    """(scenario field, the identities it names), in the order an error should name them."""
    fields = [("parties", list(sc.parties)), ("recipients", list(sc.recipients))]
    if isinstance(sc, AuctionScenario):
        fields.append(("bidders", sc.bidder_names))
    if isinstance(sc, VoteScenario):
        fields.append(("voters", sc.voter_names))
    # a kind added later still has all its identities checked, if under a coarser field name
    listed = {name for _, names in fields for name in names}
    rest = sorted(sc.identities() - listed)
    if rest:
        fields.append(("(scenario)", rest))
    return fields


def check_identities(sc: AnyScenario, path: Path, certs: Path, config: Path | None) -> None:
    """Raise ConfigError(file, field, ...) for the first identity that has neither a certificate
    `<name>.pem` in `certs` (ca.pem is the CA, not an identity) nor a node in `config`."""
    known = {p.stem for p in certs.glob("*.pem") if p.name != "ca.pem"} if certs.is_dir() else set()
    where = f"no certificate in {certs}"
    if config is not None:
        known |= set(load_coordinator_config(config).nodes)
        where += f", no node in {config}"
    for field, names in named_identities(sc):
        unknown = [n for n in names if n not in known]
        if unknown:
            more = f"; {len(unknown) - 1} more in {field} are not known either" if len(unknown) > 1 else ""
            raise ConfigError(path, field, f"{unknown[0]!r} is not a known identity ({where}){more}")


async def make_plan(path: Path, certs: Path, config: Path | None = None,
                    submitted: dict[str, int] | None = None) -> ScenarioPlan:
    """Load and check the scenario, then describe and dry-run it. Problems with the scenario, the
    identities or `submitted` are one-line ConfigErrors naming the file and field."""
    sc = load_scenario(path)
    check_identities(sc, path, certs, config)
    computation = sc.computation()
    try:
        resolve_client_rows(computation.circuit, submitted)
    except ValueError as exc:
        raise ConfigError(path, "--submitted", str(exc)) from None
    doc = computation.document()
    try:
        cost = await dry_run(computation, submitted)
    except ValueError as exc:
        # the nodes run the same code (mpcnode/jobrun.py): the job itself would fail the same way,
        # e.g. an auction in which no bidder submits
        raise ConfigError(path, "(dry run)", f"the job would fail: {exc}") from None
    return ScenarioPlan(path=path, fingerprint=computation.fingerprint(), document=doc,
                        words=describe(doc) + client_words(computation.circuit), cost=cost)


def client_words(circuit: cpb.Circuit) -> list[str]:
    """The input clients by name. The document pins each client list by count and hash only (it
    stays small for a million voters); the plan has the list itself, and shows the hash it must
    match, so the names shown are the ones the fingerprint covers."""
    lines = []
    for d in circuit.inputs:
        if d.source == cpb.INPUT_SOURCE_CLIENTS:
            names = list(d.clients)
            shown = ", ".join(names[:MAX_NAMES_SHOWN])
            more = f" and {len(names) - MAX_NAMES_SHOWN} more" if len(names) > MAX_NAMES_SHOWN else ""
            lines.append(f"the input clients of {d.name} (list sha256 {clients_digest(names)[:16]}...): {shown}{more}")
    return lines


def render_text(plan: ScenarioPlan) -> str:
    cost = plan.cost
    parties = plan.document["parties"]
    rows = ", ".join(f"{name}: {count} of {_listed(plan.document, name)} listed clients submit"
                     for name, count in cost.client_rows.items())
    lines = [f"scenario {plan.path}",
             f"fingerprint {plan.fingerprint}",
             "  (SHA-256 of the canonical computation document; organizations approve this value)",
             "",
             "what it computes:"]
    lines += [f"  {w}" for w in plan.words]
    lines += ["",
              f"what it costs each node ({cost.interactive_levels} interactive levels; all {len(parties)} parties live"
              + (f"; {rows}" if rows else "") + "):"]
    width = max(len("node"), *(len(p) for p in parties))
    lines.append(f"  {'node':<{width}}  {'rounds':>7}  {'bytes sent':>14}  {'messages':>9}")
    for p in cost.parties:
        lines.append(f"  {p.party:<{width}}  {p.rounds:>7}  {p.bytes_sent:>14,}  {p.messages_sent:>9}")
    lines.append(f"  measured by a dry run on dummy inputs ({cost.dry_run_s:.2f}s); protocol costs do not depend "
                 "on the input values")
    lines += dp_words(plan.document)
    lines += ["", "what the nodes open while it runs (besides the outputs; docs/security-model.md):"]
    by_purpose: dict[str, list[int]] = {}
    for o in cost.opened:
        if o.purpose != "output":
            by_purpose.setdefault(o.purpose, []).append(o.count)
    lines += [f"  {purpose}: {sum(counts):,} values in {len(counts)} openings" for purpose, counts in by_purpose.items()]
    if not by_purpose:
        lines.append("  nothing")
    return "\n".join(lines)


def dp_words(doc: Document) -> list[str]:
    """The expected error of each differentially private output, before anyone approves
    (docs/privacy.md): read from the document, as the recipients will read it."""
    lines = []
    for o in doc.get("outputs", []):
        meta = dp_metadata(o)
        if meta is None:
            continue
        if not lines:
            lines = ["", "differential privacy (docs/privacy.md):"]
        head = (f"  {o['name']}: {meta.get('mechanism')}, epsilon {meta.get('epsilon')}"
                f"{', delta ' + meta['delta'] if meta.get('delta') else ''}, rho {meta.get('rho', '-')} per "
                f"{meta.get('unit')} ({meta.get('relation')}), sensitivity {meta.get('sensitivity')}"
                + (f", scale {meta['scale']}" if meta.get("scale") else ""))
        if meta.get("post_processing"):
            head += "; post-processing of another DP output (charged nothing more)"
        lines.append(head)
        if "std" in meta:
            lines.append(f"    expected error: std {meta['std']:.4g}, 95% of results within +-{meta['interval95']:.4g} "
                         "of the exact value" + (" (of each count)" if o.get("description", "").startswith('{"render": "tally"')
                                                 else ""))
        if meta.get("mechanism") == "randomized-response":
            from mpcnode.randomized_response import estimate
            listed = sum(int(d.get("clients", {}).get("count", 0)) if isinstance(d.get("clients"), dict) else 0
                         for d in doc.get("inputs", []))
            e = estimate(0, listed, meta["epsilon"]) if listed else None
            lines.append(f"    each client flips its own answer with probability {estimate(0, 1, meta['epsilon'])['flip_probability']}"
                         " before sharing (the nodes cannot check it)"
                         + (f"; with all {listed} listed respondents the estimate's 95% interval is "
                            f"+-{(e['interval95'][1] - e['interval95'][0]) / 2:.3g}" if e else ""))
        if meta.get("mechanism") == "one-sided-geometric":
            lines.append("    report-noisy-max: the option with the largest noisy count wins (first on a tie)")
    return lines


def _listed(doc: Document, name: str) -> int:
    return next(d["clients"]["count"] for d in doc["inputs"] if d["name"] == name)


def parse_submitted(text: str) -> tuple[str, int]:
    """argparse type for --submitted INPUT=COUNT."""
    name, sep, count = text.partition("=")
    if not sep or not name or not count.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected INPUT=COUNT, e.g. bids=5")
    return name, int(count)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", type=Path, help="scenario YAML file")
    p.add_argument("--certs", type=Path, default=Path("deploy/certs"),
                   help="certificates of the deployment: every identity the scenario names needs one "
                        "(or a node in --config)")
    p.add_argument("--config", type=Path, help="coordinator config YAML: its nodes count as known identities")
    p.add_argument("--submitted", type=parse_submitted, action="append", default=[], metavar="INPUT=COUNT",
                   help="how many listed clients submit to a client input (default: all of them)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")


async def run_plan(args: argparse.Namespace) -> str:
    """The text (or JSON) `plan` prints; ConfigError for a bad scenario, identity or count."""
    plan = await make_plan(args.scenario, args.certs, args.config, dict(args.submitted) or None)
    return json.dumps(plan.as_json(), indent=2) if args.json else render_text(plan)
