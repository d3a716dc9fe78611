"""`python -m coordinator demo --serve` and `python -m mpcnode audit`, driven as a user drives them:
every step is the command line printed by --serve, run as a subprocess against the addresses the
demo published in deployment.json.

The attack replayed here is the one consent on content exists for: the same scenario name with
`kind: total`, `contributors: [bob]`, `recipients: [alice]` would have given Alice Bob's raise.
Every node must refuse it by its fingerprint, and nothing about a raise may appear in what the
operator sees or in the audit log.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from coordinator import processes  # noqa: E402
from mpcnode import certs as certmod  # noqa: E402
from mpcnode.computation.scenario import load_scenario  # noqa: E402

SCENARIOS = ("raise-average", "regulator-total")
START_TIMEOUT_S = 40.0   # 7 node processes and the coordinator import grpc side by side on 2 cores
CLI_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0    # SIGINT to exit: processes.stop's grace is 5 s per process, ours runs them side by side
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

pytestmark = pytest.mark.timeout(120)


def cli(*args: str, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=processes.child_env(), capture_output=True,
                          text=True, timeout=timeout)


def mentions(text: str, value: int | str) -> bool:
    """`value` as a number of its own: 257 in "... 257 ..." but not inside 1795700257.01 or a hex fingerprint."""
    return re.search(rf"(?<![\w.]){re.escape(str(value))}(?![\w]|\.\d)", text) is not None


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (read from /proc; the demo's children are not ours to list)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile, or not readable
        if text in cmdline:
            found.append(int(entry.name))
    return found


def refuses_connections(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
    except OSError:
        return True
    return False


class Served:
    """The demo process, its workdir and what it published."""

    def __init__(self, root: Path):
        self.root = root
        self.scenario_dir = root / "scenarios"
        self.workdir = root / "work"
        self.stderr_path = root / "demo.stderr"
        self.proc: subprocess.Popen | None = None
        self.deployment: dict = {}
        self.values: dict[str, dict[str, int]] = {}   # scenario -> org -> its private input

    def prepare(self) -> None:
        (self.scenario_dir / "inputs").mkdir(parents=True)
        identities, nodes = {"coordinator", "operator"}, set()
        for name in SCENARIOS:
            path = self.scenario_dir / f"{name}.yaml"
            shutil.copy(REPO / "scenarios" / f"{name}.yaml", path)
            shutil.copytree(REPO / "scenarios" / "inputs" / name, self.scenario_dir / "inputs" / name)
            sc = load_scenario(path)
            identities |= sc.identities()
            nodes |= set(sc.parties)
            key = sc.input.name  # type: ignore[union-attr]
            self.values[name] = {f.stem: yaml.safe_load(f.read_text())[key]
                                 for f in (self.scenario_dir / "inputs" / name).glob("*.yaml")}
        certmod.ensure(self.root / "certs", sorted(identities), nodes=nodes, loopback=True)   # never deploy/certs

    def start(self) -> None:
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "coordinator", "demo", "--serve", "--scenarios", str(self.scenario_dir),
                 "--certs", str(self.root / "certs"), "--workdir", str(self.workdir)],
                cwd=REPO, env=processes.child_env(), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        info = self.workdir / "deployment.json"
        # deployment.json is the demo's readiness signal: written atomically once every node and the
        # coordinator answered an RPC. Polling a file is the only way to see it from outside.
        deadline = time.monotonic() + START_TIMEOUT_S
        while not info.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"demo --serve exited with {self.proc.returncode}:\n{self.stderr()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no deployment.json after {START_TIMEOUT_S:g}s:\n{self.stderr()}")
            time.sleep(0.1)
        self.deployment = json.loads(info.read_text())

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def cleanup(self) -> None:
        """After a failed test: stop the demo, then end any node it left behind, each by its pid."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in processes_mentioning(str(self.workdir)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # what --serve told us to use
    @property
    def certs(self) -> str:
        return self.deployment["certs"]

    def nodes_of(self, scenario: str) -> str:
        sc = load_scenario(self.scenario_dir / f"{scenario}.yaml")
        return ",".join(f"{o}={self.deployment['nodes'][o]}" for o in sc.compute_parties)

    def submit(self, scenario_path: Path, job_id: str) -> subprocess.CompletedProcess:
        return cli("-m", "coordinator", "submit", str(scenario_path), "--coordinator", self.deployment["coordinator"],
                   "--certs", self.certs, "--job-id", job_id)

    def audit(self, org: str, *extra: str) -> subprocess.CompletedProcess:
        return cli("-m", "mpcnode", "audit", "--config", str(self.workdir / f"node-{org}.yaml"), *extra)

    def store(self, org: str) -> Path:
        return self.workdir / "nodes" / org / "shares.sqlite3"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    s = Served(tmp_path_factory.mktemp("serve"))
    s.prepare()
    try:
        s.start()
        yield s
    finally:
        s.cleanup()


@pytest.fixture(scope="module")
def jobs(served: Served) -> dict[str, subprocess.CompletedProcess]:
    """The approved job, Alice's fetch of its average, and the modified computation, each run once."""
    approved = served.submit(served.scenario_dir / "raise-average.yaml", "raise-ok")
    fetched = cli("-m", "mpcnode.recipient", "--job", "raise-ok", "--output", "average",
                  "--nodes", served.nodes_of("raise-average"), "--certs", served.certs, "--identity", "alice")
    attack = yaml.safe_load((served.scenario_dir / "raise-average.yaml").read_text())
    attack.update(kind="total", contributors=["bob"], recipients=["alice"])
    attack_path = served.root / "attacker" / "raise-average.yaml"   # not one of the approved files
    attack_path.parent.mkdir()
    attack_path.write_text(yaml.safe_dump(attack, sort_keys=False))
    refused = served.submit(attack_path, "raise-bob-to-alice")
    return {"approved": approved, "fetched": fetched, "refused": refused}


def test_serve_publishes_the_deployment(served: Served):
    dep = served.deployment
    assert set(dep) == {"coordinator", "nodes", "certs"}
    assert Path(dep["certs"]).is_absolute() and (Path(dep["certs"]) / "ca.pem").is_file()
    parties = {p for name in SCENARIOS for p in load_scenario(served.scenario_dir / f"{name}.yaml").parties}
    assert set(dep["nodes"]) == parties
    text = served.stderr()
    for command in ("-m coordinator submit", "-m coordinator plan", "-m mpcnode.recipient", "-m mpcnode audit",
                    f"--coordinator {dep['coordinator']}"):
        assert command in text, f"--serve does not show {command!r}:\n{text}"
    for name in SCENARIOS:   # the fingerprints a client or a reviewer checks against
        assert load_scenario(served.scenario_dir / f"{name}.yaml").computation().fingerprint() in text


def test_approved_job_runs_and_alice_reconstructs_the_average(served: Served, jobs):
    run = jobs["approved"]
    assert run.returncode == 0, run.stderr
    fetch = jobs["fetched"]
    assert fetch.returncode == 0, fetch.stderr
    result = json.loads(fetch.stdout)
    raises = served.values["raise-average"]
    assert Fraction(str(result["result"])) == Fraction(sum(raises.values()), len(raises))


def test_modified_computation_is_refused_by_every_node_without_a_raise_in_sight(served: Served, jobs):
    run = jobs["refused"]
    assert run.returncode != 0
    error = next((line for line in run.stderr.splitlines() if line.startswith("error:")), "")
    for org in load_scenario(served.scenario_dir / "raise-average.yaml").parties:
        assert f"{org} refused: {org} has not approved computation" in error, run.stderr
    for org, raise_usd in served.values["raise-average"].items():
        assert not mentions(run.stdout + run.stderr, raise_usd), f"{org}'s raise appears in:\n{run.stderr}"


def test_audit_log_shows_what_the_data_fed_what_was_refused_and_who_fetched(served: Served, jobs):
    assert jobs["refused"].returncode != 0 and jobs["fetched"].returncode == 0
    fingerprint = load_scenario(served.scenario_dir / "raise-average.yaml").computation().fingerprint()
    as_json = served.audit("bob", "--json")     # while bob's node runs and holds its store open
    assert as_json.returncode == 0, as_json.stderr
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    by_job: dict[str, list[dict]] = {}
    for e in events:
        assert ISO_UTC.match(e["time"]), e
        by_job.setdefault(e["job"], []).append(e)
    ok = {e["event"]: e for e in by_job["raise-ok"]}
    assert list(ok) == ["accepted", "started", "opened", "done", "committed", "fetched"], by_job["raise-ok"]
    # a total opens nothing while it runs: its only openings are the outputs, to their recipients
    assert [e["detail"] for e in by_job["raise-ok"] if e["event"] == "opened"] == [
        f"output/{name}: 1 values, output, to alice,bob,carlos,david" for name in ("total", "average")]
    assert ok["accepted"]["fingerprint"] == fingerprint
    assert "approved computation raise-average" in ok["accepted"]["detail"]
    assert "datasets fed: raise-average" in ok["accepted"]["detail"]   # the dataset defaults to the scenario name
    assert ok["fetched"]["detail"] == "alice fetched output average"
    [refused] = by_job["raise-bob-to-alice"]
    assert refused["event"] == "refused" and refused["fingerprint"] != fingerprint
    assert "bob has not approved computation" in refused["detail"]

    text = served.audit("bob")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == len(events)
    refused_line = next(line for line in lines if " refused " in line)
    assert refused["fingerprint"][:16] in refused_line and refused["fingerprint"] not in refused_line
    assert "has not approved computation" in refused_line
    only = served.audit("bob", "--job", "raise-bob-to-alice")
    # the same event alone (columns are as wide as the events shown, so compare the words)
    assert only.returncode == 0 and only.stdout.split() == refused_line.split()

    result = Fraction(sum(served.values["raise-average"].values()), 4)
    for output in (as_json.stdout, text.stdout):
        for scenario, values in served.values.items():
            for org, value in values.items():
                assert not mentions(output, value), f"{scenario} input of {org} in the audit log:\n{output}"
        assert not mentions(output, float(result)) and not mentions(output, result * 4)


def test_audit_without_a_database_fails_cleanly_and_creates_nothing(served: Served, tmp_path: Path):
    cfg = yaml.safe_load((served.workdir / "node-bob.yaml").read_text())
    cfg["data_dir"] = str(tmp_path / "never-ran")
    config = tmp_path / "node-bob.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = cli("-m", "mpcnode", "audit", "--config", str(config))
    assert run.returncode == 2
    assert run.stderr.startswith("error: no node database at") and len(run.stderr.splitlines()) == 1
    assert not (tmp_path / "never-ran").exists()


def test_sigint_stops_everything_and_the_audit_log_stays_readable(served: Served, jobs):
    assert served.proc is not None and served.proc.poll() is None, served.stderr()
    served.proc.send_signal(signal.SIGINT)
    try:
        code = served.proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"demo --serve still running {STOP_TIMEOUT_S:g}s after SIGINT:\n{served.stderr()[-2000:]}")
    assert code == 0, served.stderr()[-2000:]
    assert processes_mentioning(str(served.workdir)) == [], "node or coordinator processes left behind"
    for address in [served.deployment["coordinator"], *served.deployment["nodes"].values()]:
        assert refuses_connections(address), f"something still listens on {address}"
    assert not (served.workdir / "deployment.json").exists()   # it means "running"

    # stopped nodes: the audit log still reads, and reading it does not change the database
    db = served.store("bob")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    after_stop = served.audit("bob")
    assert after_stop.returncode == 0 and "alice fetched output average" in after_stop.stdout
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
