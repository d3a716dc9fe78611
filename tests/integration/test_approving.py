"""docs/approving.md, performed end to end by one careful approver (north), as a person would.

A real deployment (four node processes and a coordinator, mutual TLS with a fresh CA) runs a
salary benchmark over north, south, east and west. North starts with NO approval; the other
organizations approve the scenario (and, by fingerprint, the organizers' later update of it).
Everything north and the organizers do goes through the real command lines, as subprocesses:

1. `python -m coordinator plan FILE --certs CERTS`: the words name north's dataset and field,
   every recipient, t and the parties; the fingerprint is read off the output. A typo'd
   recipient is refused by plan with file, field and name.
2. `python -m coordinator submit` before approval fails: north has not approved it.
3. north copies the file next to its config, approves it by `scenario_file` (max_runs 2, note),
   restarts its node: the job runs and the recipient's fetched result (`python -m
   mpcnode.recipient`) is the plaintext of the input files. The organizers' update (one more
   recipient) is refused by north before any input is shared.
4. a third run of the max_runs-2 approval is refused: "all used".
5. the update approved by its fingerprint: an expiry in the past is refused ("expired"), a
   future one accepted.
6. min_threshold above t, min_contributors above the contributors: refused, naming the rule.
7. `python -m mpcnode audit --config node-north.yaml` shows all of it.

Plus: the YAML example under "Approve it" in docs/approving.md is a valid policy.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from coordinator import processes
from mpcnode.config import Policy
from tests.integration.cluster import REPO, Cluster

DOC = REPO / "docs" / "approving.md"

NAME = "salary-benchmark"
PARTIES = ["north", "south", "east", "west"]           # t = 1 by default (largest t with 2t < 4)
RECIPIENTS = ["north", "benchmark-office"]
SCENARIO = {
    "name": NAME, "kind": "average",
    "description": "Average median engineering salary (EUR) of four companies",
    "parties": PARTIES, "recipients": RECIPIENTS,
    "input": {"name": "median_salary_eur", "range": [0, 10_000_000], "dataset": "salaries"},
    "timeout_s": 30,
}
# the organizers' "update": same name, same file name, one more recipient
UPDATED = {**SCENARIO, "recipients": [*RECIPIENTS, "press-office"]}
# distinctive values, so that a refusal that leaked one would be noticed; sum divisible by 4
SALARIES = {"north": 73_519, "south": 64_211, "east": 58_907, "west": 69_363}
OPERATOR = "operator"


def fingerprint_of(sc: dict) -> str:
    from mpcnode.computation.scenario import parse_scenario
    return parse_scenario(dict(sc), Path(f"{sc['name']}.yaml")).computation().fingerprint()


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """One command line, as a person types it in the repository (python -m ...)."""
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=processes.child_env(), capture_output=True,
                          text=True, timeout=timeout)


# ---- the doc's YAML example -------------------------------------------------------------------------

def doc_policy_example() -> str:
    text = DOC.read_text()
    section = text[text.index("**Approve it**"):]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match, "no ```yaml block under 'Approve it' in docs/approving.md"
    return match.group(1)


def test_doc_policy_example_is_a_valid_policy():
    example = doc_policy_example()
    assert "3f5c...e1" in example, "the placeholder fingerprint of the doc example moved; update this test"
    data = yaml.safe_load(example.replace("3f5c...e1", "3f5c" + "0" * 58 + "e1"))
    policy = Policy.model_validate(data["policy"])
    by_file, by_fp = policy.approvals
    assert by_file.scenario_file == Path("approved/breach-loss.yaml")
    assert by_file.expires == datetime(2027, 3, 31, tzinfo=timezone.utc)
    assert by_file.max_runs == 4 and by_file.note == "approved by the CISO, ticket 1234"
    assert by_fp.fingerprint == "3f5c" + "0" * 58 + "e1" and by_fp.scenario_file is None
    assert (policy.min_threshold, policy.min_contributors) == (2, 3)
    assert data["inputs"] == {"breach-loss": "data/breach-loss.yaml"}
    # the validation can fail: the doc's own placeholder is not a fingerprint
    with pytest.raises(ValueError):
        Policy.model_validate(yaml.safe_load(example)["policy"])


# ---- the approver's story --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("approving")
    others = {org: [fingerprint_of(UPDATED)] for org in PARTIES if org != "north"}
    c = Cluster.create(root, [SCENARIO], inputs={NAME: dict(SALARIES)}, extra_identities=["press-office"],
                       policy_overrides={"north": {"approvals": []}}, approve=others)
    with c.running():
        yield c


class Approver:
    """North's person, at north's config file, and the organizers' operator console."""

    def __init__(self, c: Cluster):
        self.c = c
        self.config = c.deployment.node_configs["north"]
        self.runs = 0

    # north's side
    def plan(self, scenario: Path, *extra: str) -> subprocess.CompletedProcess:
        return cli("coordinator", "plan", str(scenario), "--certs", str(self.c.certs), *extra)

    def edit_policy(self, edit) -> None:
        cfg = yaml.safe_load(self.config.read_text())
        edit(cfg["policy"])
        self.config.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def restart_node(self) -> None:
        self.c.stop("north")
        self.c.restart("north")

    def audit(self, *extra: str) -> str:
        done = cli("mpcnode", "audit", "--config", str(self.config), *extra)
        assert done.returncode == 0, done.stderr
        return done.stdout

    # the organizers' side
    def submit(self, scenario: Path, expect_ok: bool) -> tuple[str, str]:
        """Submit a scenario file; returns (job id, everything the command printed)."""
        self.runs += 1
        job_id = f"{NAME}-{self.runs:02d}"
        done = cli("coordinator", "submit", str(scenario), "--coordinator", self.c.deployment.coordinator_address,
                   "--certs", str(self.c.certs), "--identity", OPERATOR, "--job-id", job_id, "--timeout", "40")
        out = done.stdout + done.stderr
        assert (done.returncode == 0) == expect_ok, f"submit {job_id} exit {done.returncode}:\n{out}"
        return job_id, out

    def fetch(self, job_id: str, output: str, recipient: str) -> object:
        nodes = ",".join(f"{o}={a}" for o, a in self.c.nodes_of(NAME).items())
        done = cli("mpcnode.recipient", "--job", job_id, "--output", output, "--nodes", nodes,
                   "--certs", str(self.c.certs), "--identity", recipient)
        assert done.returncode == 0, done.stderr
        reply = json.loads(done.stdout)
        assert (reply["job"], reply["output"], reply["recipient"]) == (job_id, output, recipient)
        return reply["result"]

    def refused(self, scenario: Path, *phrases: str) -> str:
        """Submit a job north must refuse before anything is shared; returns the error printed."""
        job_id, out = self.submit(scenario, expect_ok=False)
        assert "north refused" in out, out
        for other in PARTIES[1:]:
            assert f"{other} refused" not in out, out
        for phrase in phrases:
            assert phrase in out, f"{phrase!r} not in:\n{out}"
        # the refusal names the rule, never a value of north's or a path on north's machine
        assert str(SALARIES["north"]) not in out and str(self.c.root) not in out, out
        # nothing shared: north holds no job, no node holds an output of it, north logged the refusal
        assert job_id not in self.c.stored_jobs("north")
        assert all(self.c.stored_outputs(org, job_id) == 0 for org in PARTIES if self.c.data_dir(org).exists())
        events = [json.loads(line) for line in self.audit("--job", job_id, "--json").splitlines()]
        assert [e["event"] for e in events] == ["refused"], events
        return job_id


def plaintext(c: Cluster) -> list[int]:
    """What the input files hold, read as a person would read them."""
    return [yaml.safe_load(c.input_file(NAME, org).read_text())["median_salary_eur"] for org in PARTIES]


def test_an_organization_reviews_approves_and_audits_a_computation(cluster: Cluster):
    c = cluster
    north = Approver(c)
    organizers_file = c.scenarios[NAME][0]

    # 1. the organizers hand north the scenario file; north reads the plan
    plan = north.plan(organizers_file)
    assert plan.returncode == 0, plan.stderr
    words = plan.stdout
    fp = re.search(r"^fingerprint ([0-9a-f]{64})$", words, re.M)
    assert fp, words
    fingerprint = fp.group(1)
    assert fingerprint == c.fingerprint(NAME)   # what the nodes will pin
    assert "north contributes median_salary_eur (1 value in 0..10000000) from its dataset 'salaries'" in words
    assert "computed by 4 nodes: north, south, east, west; threshold t=1 " in words
    assert "north, benchmark-office learn 'average'" in words and "north, benchmark-office learn 'total'" in words
    assert "computed from east, north, south, west (4 contributor(s))" in words
    assert "press-office" not in words
    # a recipient nobody issued a certificate for is refused by plan with file, field and name
    typo = c.root / "organizers" / "typo.yaml"
    typo.parent.mkdir(parents=True, exist_ok=True)
    typo.write_text(yaml.safe_dump({**SCENARIO, "recipients": ["north", "benchmark-ofice"]}, sort_keys=False))
    bad = north.plan(typo)
    assert bad.returncode == 2 and str(typo) in bad.stderr and "recipients" in bad.stderr \
        and "'benchmark-ofice' is not a known identity" in bad.stderr, bad.stderr

    # 2. before north approves, the job fails: north has not approved the computation
    unapproved = north.refused(organizers_file, f"north has not approved computation {fingerprint[:16]}...")

    # 3a. north keeps its own copy next to its config and approves it by scenario_file
    approved_dir = north.config.parent / "approved"
    approved_dir.mkdir()
    shutil.copy(organizers_file, approved_dir / f"{NAME}.yaml")
    note = "approved by the CISO, ticket 4711"
    north.edit_policy(lambda p: p["approvals"].append(
        {"scenario_file": f"approved/{NAME}.yaml", "max_runs": 2, "note": note}))   # relative to the config
    north.restart_node()
    run1, out = north.submit(organizers_file, expect_ok=True)
    assert f"computation {fingerprint}" in out, out
    values = plaintext(c)
    assert values == [SALARIES[o] for o in PARTIES]
    assert north.fetch(run1, "average", "benchmark-office") == sum(values) // 4
    assert north.fetch(run1, "total", "north") == sum(values)

    # 3b. the organizers "update" the scenario (same name and file name, one more recipient): refused by
    # north, which approved the old one, before any input is shared; every other node approved the update
    updated_file = c.root / "organizers" / "v2" / f"{NAME}.yaml"
    updated_file.parent.mkdir(parents=True)
    updated_file.write_text(yaml.safe_dump(UPDATED, sort_keys=False))
    update_refused = north.refused(updated_file, "north has not approved computation")

    # 4. max_runs: 2 runs accepted, the third refused
    run2, _ = north.submit(organizers_file, expect_ok=True)
    all_used = north.refused(organizers_file, "allows 2 run(s), all used")

    # 5. north reviews the update and approves it by its fingerprint: first with an expiry in the past...
    plan2 = north.plan(updated_file, "--json")
    assert plan2.returncode == 0, plan2.stderr
    reviewed = json.loads(plan2.stdout)
    fingerprint2 = reviewed["fingerprint"]
    assert fingerprint2 != fingerprint and re.fullmatch(r"[0-9a-f]{64}", fingerprint2)
    assert "north, benchmark-office, press-office learn 'average'" in " ".join(reviewed["words"])
    assert all(o["recipients"] == ["north", "benchmark-office", "press-office"]
               for o in reviewed["document"]["outputs"])
    past = "2020-01-31T00:00:00Z"
    north.edit_policy(lambda p: p["approvals"].append(
        {"fingerprint": fingerprint2, "expires": past, "note": "update reviewed, ticket 4712"}))
    north.restart_node()
    expired = north.refused(updated_file, f"approval of computation {fingerprint2[:16]}... expired at {past}")
    # ... then with one in the future
    future = (datetime.now(timezone.utc) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    north.edit_policy(lambda p: p["approvals"][-1].update(expires=future))
    north.restart_node()
    run3, out = north.submit(updated_file, expect_ok=True)
    assert f"computation {fingerprint2}" in out, out
    assert north.fetch(run3, "average", "press-office") == sum(values) // 4

    # 6. floors hold whatever was approved
    north.edit_policy(lambda p: p.update(min_threshold=2))
    north.restart_node()
    low_t = north.refused(updated_file, "north's policy requires threshold t >= 2, the job has t = 1")
    north.edit_policy(lambda p: (p.pop("min_threshold"), p.update(min_contributors=5)))
    north.restart_node()
    few = north.refused(updated_file, "north's policy requires at least 5 contributors behind every output",
                        "has 4")

    # 7. the audit log tells north's person what happened
    log = north.audit()
    lines = log.splitlines()

    def line(job_id: str, event: str) -> str:
        found = [ln for ln in lines if f" {event} " in ln and f" {job_id} " in ln]
        assert len(found) == 1, f"{event} {job_id}: {found}\n{log}"
        return found[0]

    for job in (run1, run2):
        assert f"approved computation {NAME} ({note}); datasets fed: salaries" in line(job, "accepted")
        assert fingerprint[:16] in line(job, "accepted")
        line(job, "done")
    assert f"approved computation {NAME} (update reviewed, ticket 4712); datasets fed: salaries" \
        in line(run3, "accepted")
    assert fingerprint2[:16] in line(run3, "accepted")
    line(run3, "done")
    assert "has not approved computation" in line(unapproved, "refused")
    assert "has not approved computation" in line(update_refused, "refused")
    assert "all used" in line(all_used, "refused")
    assert "expired" in line(expired, "refused")
    assert "threshold t >= 2" in line(low_t, "refused")
    assert "at least 5 contributors" in line(few, "refused")

    def fetches(job_id: str) -> list[str]:
        return [ln.split(maxsplit=4)[4] for ln in lines if ln.split()[1:3] == ["fetched", job_id]]

    assert fetches(run1) == ["benchmark-office fetched output average", "north fetched output total"]
    assert fetches(run2) == []
    assert fetches(run3) == ["press-office fetched output average"]
    # the log holds no value of north's and no local path
    assert str(SALARIES["north"]) not in log and str(c.root) not in log
    c.assert_alive()
