"""Total and average scenarios end to end: real node processes over mutual TLS on localhost.

One deployment (10 nodes + the coordinator) serves every test of this module: 3-, 4- and
7-party totals and averages on random 48-bit inputs (negative ones too), the shipped
raise-average scenario (12686 / 4 = 3171.5), and the shipped regulator-total scenario whose
only recipient is not a compute party.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.integration.cluster import Cluster
from mpcnode.recipient import FetchError

REPO = Path(__file__).resolve().parents[2]
SEVEN = ["alice", "bob", "carlos", "david", "erin", "frank", "grace"]
B48 = 1 << 48

_rng = np.random.default_rng(20260501)


def _values(n: int, length: int, lo: int, hi: int) -> list:
    vals = _rng.integers(lo, hi, size=(n, length), endpoint=True, dtype=np.int64)
    vals[0, 0] = hi  # the bounds themselves are valid inputs
    vals[-1, -1] = lo
    return [int(v[0]) if length == 1 else [int(x) for x in v] for v in vals]


def _scenario(name: str, kind: str, parties: list[str], recipients: list[str], lo: int, hi: int,
              length: int = 1, **extra) -> dict:
    return {"name": name, "kind": kind, "parties": parties, "recipients": recipients,
            "input": {"name": "amount", "range": [lo, hi], **({"length": length} if length != 1 else {})},
            "timeout_s": 60, **extra}


SCENARIOS = [
    _scenario("total-3", "total", ["erin", "frank", "grace"], ["erin", "grace"], -B48, B48),
    _scenario("average-3", "average", ["grace", "erin", "frank"], ["frank"], -B48, B48),
    _scenario("total-4", "total", ["alice", "bob", "carlos", "david"], ["bob"], -(B48 // 2), B48 // 2, length=3),
    _scenario("average-4", "average", ["david", "carlos", "bob", "alice"], ["alice", "david"], -B48, B48, length=2),
    _scenario("total-7", "total", SEVEN, ["carlos", "frank"], -B48, B48),
    _scenario("average-7", "average", SEVEN, SEVEN, 0, B48),
    _scenario("total-7-t1", "total", SEVEN[::-1], ["alice"], -B48, B48, threshold=1),
    _scenario("total-contributors", "total", ["alice", "erin", "grace"], ["erin"], 0, B48,
              contributors=["alice", "grace"]),
]
INPUTS: dict[str, dict[str, object]] = {}
for sc in SCENARIOS:
    owners = sc.get("contributors") or sc["parties"]
    lo, hi = sc["input"]["range"]
    INPUTS[sc["name"]] = dict(zip(owners, _values(len(owners), sc["input"].get("length", 1), lo, hi)))

RAISE = REPO / "scenarios" / "raise-average.yaml"
REGULATOR = REPO / "scenarios" / "regulator-total.yaml"
for shipped in (RAISE, REGULATOR):
    name = yaml.safe_load(shipped.read_text())["name"]
    INPUTS[name] = {p.stem: yaml.safe_load(p.read_text())
                    for p in (REPO / "scenarios" / "inputs" / name).glob("*.yaml")}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, protocol: str):
    """One deployment per engine under test (tests/conftest.py ENGINES_UNDER_TEST)."""
    c = Cluster.create(tmp_path_factory.mktemp(f"totals-{protocol}"), [*SCENARIOS, RAISE, REGULATOR], INPUTS,
                       protocol=protocol)
    with c.running():
        yield c


def plaintext_total(name: str) -> int:
    total = 0
    for v in INPUTS[name].values():
        v = next(iter(v.values())) if isinstance(v, dict) else v
        total += sum(v) if isinstance(v, list) else v
    return total


def as_fraction(rendered: object) -> Fraction:
    if isinstance(rendered, str):
        num, den = rendered.split("/")
        return Fraction(int(num), int(den))
    assert isinstance(rendered, (int, float)) and not isinstance(rendered, bool)
    return Fraction(rendered)


def check_rendering(rendered: object, exact: Fraction) -> None:
    """public_divisor rendering: an int when whole, a float only when exact, else "num/den"."""
    assert as_fraction(rendered) == exact
    if exact.denominator == 1:
        assert type(rendered) is int
    elif Fraction(float(exact)) == exact:
        assert type(rendered) is float
    else:
        assert rendered == f"{exact.numerator}/{exact.denominator}"


async def _run_and_fetch(cluster: Cluster, name: str) -> tuple[object, dict[str, dict[str, object]]]:
    progress = await cluster.run(name)
    sc = cluster.scenarios[name][1]
    outputs = ["total", "average"] if sc.kind == "average" else ["total"]
    assert list(progress.outputs) == outputs
    assert sorted(progress.recipients) == sorted(sc.recipients)
    assert progress.rounds_done == 2  # a total is linear: the key round, one round of input sharing, nothing else
    results: dict[str, dict[str, object]] = {}
    for recipient in sc.recipients:
        got = await asyncio.gather(*(cluster.fetch(progress.job_id, o, recipient) for o in outputs))
        for o, r in zip(outputs, got):
            assert r.nodes == sorted(sc.parties)
            results.setdefault(o, {})[recipient] = r.value
    return progress, results


@pytest.mark.parametrize("name", [s["name"] for s in SCENARIOS])
async def test_total_and_average_match_plaintext(cluster: Cluster, name: str) -> None:
    _, results = await _run_and_fetch(cluster, name)
    sc = cluster.scenarios[name][1]
    total = plaintext_total(name)
    assert set(results["total"].values()) == {total}, results
    if sc.kind == "average":
        owners = sc.contributors or sc.parties
        exact = Fraction(total, len(owners) * sc.input.length)
        for value in results["average"].values():
            check_rendering(value, exact)


def test_inputs_span_negative_and_48_bit_values() -> None:
    """Guard for the data above: the random inputs really exercise negatives and large magnitudes."""
    flat = [x for per in INPUTS.values() for v in per.values() if not isinstance(v, dict)
            for x in (v if isinstance(v, list) else [v])]
    assert min(flat) < -(1 << 46) and max(flat) > (1 << 46)
    assert max(flat) == B48 and min(flat) == -B48


async def test_raise_average(cluster: Cluster) -> None:
    assert INPUTS["raise-average"] == {"alice": {"raise_usd": 3800}, "bob": {"raise_usd": 2514},
                                       "carlos": {"raise_usd": 2982}, "david": {"raise_usd": 3390}}
    _, results = await _run_and_fetch(cluster, "raise-average")
    for recipient in ["alice", "bob", "carlos", "david"]:
        assert results["total"][recipient] == 12686
        assert results["average"][recipient] == 3171.5
        assert type(results["average"][recipient]) is float


async def test_regulator_is_the_only_recipient(cluster: Cluster) -> None:
    sc = cluster.scenarios["regulator-total"][1]
    assert sc.recipients == ["health-regulator"] and "health-regulator" not in sc.parties
    assert "health-regulator" not in cluster.orgs  # no node, no input file: it only receives
    progress, results = await _run_and_fetch(cluster, "regulator-total")
    assert results["total"] == {"health-regulator": 412 + 1093 + 257}
    # the hospitals computed it but may not open it
    for hospital in sc.parties:
        with pytest.raises(FetchError, match="refused"):
            await cluster.fetch(progress.job_id, "total", hospital)


async def test_a_recipient_needs_t_plus_2_nodes_or_accepts_unchecked(cluster: Cluster) -> None:
    """t + 2 of the 7 nodes (as if the others had dropped out) give a checked total; t + 1 fail
    closed, naming the missing nodes, unless the recipient accepts an unchecked result."""
    progress = await cluster.run("total-7")
    nodes = cluster.nodes_of("total-7")
    five = dict(list(nodes.items())[:5])  # t = 3
    result = await cluster.fetch(progress.job_id, "total", "carlos", nodes=five)
    assert result.value == plaintext_total("total-7") and len(result.nodes) == 5 and result.checked
    four = dict(list(nodes.items())[:4])
    with pytest.raises(FetchError, match="a checked result needs 5 of the 7 nodes"):
        await cluster.fetch(progress.job_id, "total", "carlos", nodes=four)
    result = await cluster.fetch(progress.job_id, "total", "carlos", nodes=four, accept_unchecked=True)
    assert result.value == plaintext_total("total-7") and len(result.nodes) == 4 and not result.checked
    cluster.assert_alive()


# ---- the operator and recipient command lines against the same deployment -------------------------

def _cli(args: list[str]) -> subprocess.CompletedProcess:
    from coordinator.processes import child_env

    return subprocess.run([sys.executable, *args], cwd=REPO, env=child_env(), capture_output=True, text=True,
                          timeout=90)


async def test_operator_and_recipient_command_lines(cluster: Cluster) -> None:
    cluster.needs("raise-average")
    scenario_path = cluster.scenarios["raise-average"][0]
    job_id = "raise-average-cli-1"
    proc = await asyncio.to_thread(_cli, ["-m", "coordinator", "submit", str(scenario_path), "--coordinator",
                                          cluster.deployment.coordinator_address, "--certs", str(cluster.certs),
                                          "--job-id", job_id, "--timeout", "60"])
    assert proc.returncode == 0, proc.stderr
    assert f"job {job_id} done" in proc.stdout
    nodes = ",".join(f"{o}={a}" for o, a in cluster.nodes_of("raise-average").items())
    proc = await asyncio.to_thread(_cli, ["-m", "mpcnode.recipient", "--job", job_id, "--output", "average",
                                          "--nodes", nodes, "--certs", str(cluster.certs), "--identity", "bob"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"job": job_id, "output": "average", "recipient": "bob", "result": 3171.5,
                                       "checked": True}
    # two of the four nodes (t = 1): too few to check, unless the recipient says it accepts that
    two = ",".join(f"{o}={a}" for o, a in list(cluster.nodes_of("raise-average").items())[:2])
    args = ["-m", "mpcnode.recipient", "--job", job_id, "--output", "average", "--nodes", two,
            "--certs", str(cluster.certs), "--identity", "bob", "--fingerprint", cluster.fingerprint("raise-average")]
    proc = await asyncio.to_thread(_cli, args)
    assert proc.returncode == 1 and "a checked result needs 3 of the 4 nodes" in proc.stderr, proc.stderr
    proc = await asyncio.to_thread(_cli, args + ["--accept-unchecked"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["checked"] is False and json.loads(proc.stdout)["result"] == 3171.5
    proc = await asyncio.to_thread(_cli, args[:-2] + ["--fingerprint", "0" * 64, "--accept-unchecked"])
    assert proc.returncode == 1 and "not the expected" in proc.stderr, proc.stderr


async def test_submitting_a_malformed_scenario_is_one_line(cluster: Cluster, tmp_path: Path) -> None:
    bad = tmp_path / "bad-total.yaml"
    bad.write_text(yaml.safe_dump({**SCENARIOS[0], "threshold": 2}))
    proc = await asyncio.to_thread(_cli, ["-m", "coordinator", "submit", str(bad), "--coordinator",
                                          cluster.deployment.coordinator_address, "--certs", str(cluster.certs)])
    assert proc.returncode == 2   # a scenario error, as docs/configuration.md promises (checked before connecting)
    assert proc.stderr == f"error: {bad}: threshold: t=2 needs 2t < 3 parties\n"
