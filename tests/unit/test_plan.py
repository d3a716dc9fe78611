"""`python -m coordinator plan` and the dry-run cost estimate (mpcnode/computation/cost.py).

The estimate's claim is that protocol costs do not depend on the input values. The tests check
it the direct way: the same computation run over the in-memory exchange on random real inputs
(real Shamir shares from clients, some clients absent, invalid ballots) counts exactly the
rounds and bytes the estimate reports. tests/integration/test_plan_matches_run.py checks the
same against real node processes.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from coordinator.__main__ import main
from mpcnode import field, shamir
from mpcnode.circuit import validate
from mpcnode.computation.cost import dry_run, estimate
from mpcnode.computation.scenario import AnyScenario, load_scenario, parse_scenario_text
from mpcnode.computation.spec import Computation
from mpcnode.exchange import MemoryNetwork
from mpcnode.jobrun import run_job
from parley.v1 import circuit_pb2 as cpb

PARTIES = ["house", "escrow", "notary", "bank"]
BIDDERS = [f"bidder-{i}" for i in range(1, 9)]
VOTERS = [f"v-{i:02d}" for i in range(1, 13)]

TOTAL = {"name": "payroll", "kind": "total", "parties": PARTIES, "threshold": 1, "recipients": ["regulator", "house"],
         "input": {"name": "amount", "length": 3, "range": [-1000, 1000]}, "contributors": ["house", "notary", "bank"]}
AUCTION = {"name": "lot-7", "kind": "auction", "parties": PARTIES[:3], "protocol": "shamir",
           "recipients": ["seller"],
           "auction": {"type": "second-price", "bit_length": 30, "min_bid": 10, "max_bid": 10 ** 6,
                       "reserve": {"public": 500}},
           "bidders": BIDDERS}
VOTE = {"name": "board", "kind": "vote", "parties": PARTIES, "threshold": 1, "recipients": ["clerk", "escrow"],
        "vote": {"options": ["ann", "bo", "cy"], "output": "winner"}, "voters": VOTERS}


def write(tmp_path: Path, scenario: dict, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def certs_for(tmp_path: Path, names: list[str]) -> Path:
    """A --certs directory: the check looks at file names only (<name>.pem), so empty files do."""
    d = tmp_path / "certs"
    d.mkdir(exist_ok=True)
    for name in ["ca", *names]:
        (d / f"{name}.pem").write_text("")
        (d / f"{name}.key").write_text("")
    return d


def everyone(scenario: dict) -> list[str]:
    return sorted(load_scenario_dict(scenario).identities())


def load_scenario_dict(scenario: dict) -> AnyScenario:
    return parse_scenario_text(yaml.safe_dump(scenario), "s.yaml")


# ---- unknown identities ---------------------------------------------------------------------------

@pytest.mark.parametrize("scenario, field_name, typo", [
    (TOTAL, "recipients", "regulatr"),
    (TOTAL, "parties", "banq"),
    (AUCTION, "bidders", "bidder-99"),
    (VOTE, "voters", "v-99"),
])
def test_unknown_identity_is_refused_with_file_field_and_name(tmp_path, capsys, scenario, field_name, typo) -> None:
    certs = certs_for(tmp_path, everyone(scenario))
    bad = dict(scenario)
    names = list(bad[field_name])
    names[-1] = typo
    bad[field_name] = names
    if field_name == "parties" and "contributors" in bad:
        bad["contributors"] = [c for c in bad["contributors"] if c in names]
    path = write(tmp_path, bad)
    assert main(["plan", str(path), "--certs", str(certs)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"error: {path}: {field_name}: '{typo}' is not a known identity (no certificate in {certs})\n"


def test_a_node_in_the_coordinator_config_is_known_and_named_in_the_error(tmp_path, capsys) -> None:
    # certificates only for the recipients; the parties are known as the coordinator's nodes
    certs = certs_for(tmp_path, ["house"])
    config = tmp_path / "coordinator.yaml"
    config.write_text(yaml.safe_dump({
        "listen": "127.0.0.1:0", "database": "c.sqlite3",
        "tls": {"ca": "certs/ca.pem", "cert": "certs/coordinator.pem", "key": "certs/coordinator.key"},
        "nodes": {p: f"127.0.0.1:{7000 + i}" for i, p in enumerate(PARTIES)}}))
    path = write(tmp_path, TOTAL)
    assert main(["plan", str(path), "--certs", str(certs), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {path}: recipients: 'regulator' is not a known identity "
                   f"(no certificate in {certs}, no node in {config})\n")
    (certs / "regulator.pem").write_text("")
    assert main(["plan", str(path), "--certs", str(certs), "--config", str(config)]) == 0


def test_the_ca_certificate_is_not_an_identity(tmp_path, capsys) -> None:
    certs = certs_for(tmp_path, everyone(TOTAL))
    path = write(tmp_path, {**TOTAL, "recipients": ["house", "ca"]})
    assert main(["plan", str(path), "--certs", str(certs)]) == 2
    assert "recipients: 'ca' is not a known identity" in capsys.readouterr().err


def test_more_unknown_names_are_counted_not_listed(tmp_path, capsys) -> None:
    certs = certs_for(tmp_path, PARTIES + ["clerk", "escrow"])
    path = write(tmp_path, {**VOTE, "voters": {"prefix": "member-", "count": 500}})
    assert main(["plan", str(path), "--certs", str(certs)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "voters: 'member-001' is not a known identity" in err and "499 more in voters" in err


def test_scenario_errors_stay_one_line_exit_2(tmp_path, capsys) -> None:
    path = write(tmp_path, {**TOTAL, "threshold": 2})
    assert main(["plan", str(path), "--certs", str(certs_for(tmp_path, everyone(TOTAL)))]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: threshold: ") and err.count("\n") == 1


# ---- what plan prints -----------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", [TOTAL, AUCTION, VOTE], ids=lambda s: s["kind"])
def test_json_pins_the_fingerprint_and_words_name_every_recipient_and_contributor(tmp_path, capsys,
                                                                                  scenario) -> None:
    path = write(tmp_path, scenario)
    assert main(["plan", str(path), "--certs", str(certs_for(tmp_path, everyone(scenario))), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    comp = load_scenario(path).computation()
    assert got["fingerprint"] == comp.fingerprint()
    assert got["document"] == comp.document()
    words = "\n".join(got["words"])
    sc = load_scenario(path)
    contributors = sc.contributors if scenario["kind"] == "total" else \
        sc.bidder_names if scenario["kind"] == "auction" else sc.voter_names
    for name in [*sc.recipients, *contributors, *sc.parties]:
        assert name in words, f"{name} is missing from the words"
    if scenario["kind"] == "total":
        # escrow is a compute party that contributes nothing: the words must not say it does
        assert "escrow contributes" not in words
    assert f"t={sc.t}" in words
    assert [p["party"] for p in got["cost"]["parties"]] == list(sc.parties)
    assert got["cost"] == {**estimate(comp).as_json(), "dry_run_s": got["cost"]["dry_run_s"]}


def test_text_shows_fingerprint_words_and_a_cost_row_per_node(tmp_path, capsys) -> None:
    path = write(tmp_path, AUCTION)
    assert main(["plan", str(path), "--certs", str(certs_for(tmp_path, everyone(AUCTION)))]) == 0
    out = capsys.readouterr().out
    comp = load_scenario(path).computation()
    assert f"fingerprint {comp.fingerprint()}" in out
    assert "seller learn 'result'" in out
    for p in estimate(comp).parties:
        row = next(line.split() for line in out.splitlines() if line.split()[:1] == [p.party])
        assert row[1:3] == [str(p.rounds), f"{p.bytes_sent:,}"]


def test_submitted_counts_change_the_cost_and_bad_ones_are_refused(tmp_path, capsys) -> None:
    path = write(tmp_path, AUCTION)
    certs = str(certs_for(tmp_path, everyone(AUCTION)))
    assert main(["plan", str(path), "--certs", certs, "--json", "--submitted", "bids=3"]) == 0
    few = json.loads(capsys.readouterr().out)["cost"]
    assert few["client_rows"] == {"bids": 3}
    comp = load_scenario(path).computation()
    assert few["parties"] == estimate(comp, {"bids": 3}).as_json()["parties"]
    full = estimate(comp)
    assert all(f["bytes_sent"] < p.bytes_sent for f, p in zip(few["parties"], full.parties))
    assert main(["plan", str(path), "--certs", certs, "--submitted", "bid=3"]) == 2
    assert "--submitted: 'bid' is not a client input of this computation (client inputs: bids)" in capsys.readouterr().err
    assert main(["plan", str(path), "--certs", certs, "--submitted", "bids=9"]) == 2
    assert "between 0 and the 8 listed clients" in capsys.readouterr().err
    # no bid at all: the job runs and answers "no sale"; the tournament costs nothing then
    assert main(["plan", str(path), "--certs", certs, "--json", "--submitted", "bids=0"]) == 0
    none = json.loads(capsys.readouterr().out)["cost"]
    assert none["client_rows"] == {"bids": 0}
    assert all(n["bytes_sent"] < f["bytes_sent"] for n, f in zip(none["parties"], few["parties"]))


# ---- the estimate ---------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", [TOTAL, AUCTION, VOTE], ids=lambda s: s["kind"])
def test_estimate_is_deterministic(scenario) -> None:
    comp = load_scenario_dict(scenario).computation()
    first, second = estimate(comp), estimate(comp)
    assert first == second
    assert all(p.rounds > 0 and p.bytes_sent > 0 for p in first.parties)


async def real_run(comp: Computation, node_values: dict[str, dict[str, list[int]]],
                   client_values: dict[str, dict[str, list[int]]], order_seed: int) -> list[tuple[int, int]]:
    """Every party runs the job through run_job on real inputs: node inputs as their owners read
    them, client rows as real Shamir shares of each client's values, every node receiving the
    clients in its own (shuffled) order. Returns (rounds, bytes sent) per party."""
    parties = list(comp.parties)
    n = len(parties)
    spec = comp.job_spec("real-run", timeout_s=60)
    plan = validate(spec.circuit, parties)
    shares: dict[str, dict[str, np.ndarray]] = {}   # input -> client -> shares (n, length)
    for name, rows in client_values.items():
        shares[name] = {c: shamir.share(field.asfield(np.array(v, dtype=np.int64)), n, comp.threshold)
                        for c, v in rows.items()}
    rng = np.random.default_rng(order_seed)

    def feed(me: int):
        def client_rows(decl: cpb.InputDecl):
            got = {c: s[me] for c, s in shares.get(decl.name, {}).items()}
            return got, [str(c) for c in rng.permutation(sorted(got))]
        return client_rows

    net = MemoryNetwork(n, timeout_s=30)
    exchanges = [net.exchange(i) for i in range(n)]
    await asyncio.gather(*(run_job(ex, spec, plan, parties,
                                   {k: np.array(v, dtype=np.int64)
                                    for k, v in node_values.get(parties[i], {}).items()}, feed(i))
                           for i, ex in enumerate(exchanges)))
    return [(ex.stats.rounds, ex.stats.bytes_sent) for ex in exchanges]


def counts(est) -> list[tuple[int, int]]:
    return [(p.rounds, p.bytes_sent) for p in est.parties]


async def test_dummy_inputs_cost_what_random_real_inputs_cost() -> None:
    rng = np.random.default_rng(7)
    total = load_scenario_dict(TOTAL).computation()
    values = {o: {f"amount@{o}": rng.integers(-1000, 1000, 3, endpoint=True).tolist()} for o in TOTAL["contributors"]}
    assert await real_run(total, values, {}, 1) == counts(await dry_run(total))

    auction = load_scenario_dict(AUCTION).computation()
    submitting = [str(b) for b in rng.choice(BIDDERS, size=5, replace=False)]
    bids = {b: [int(rng.integers(10, 10 ** 6))] for b in submitting}
    assert await real_run(auction, {}, {"bids": bids}, 2) == counts(await dry_run(auction, {"bids": 5}))

    vote = load_scenario_dict(VOTE).computation()
    ballots = {v: np.eye(3, dtype=np.int64)[rng.integers(0, 3)].tolist() for v in VOTERS}
    ballots[VOTERS[0]] = [1, 1, 0]    # invalid ballots cost the same as valid ones
    assert await real_run(vote, {}, {"ballots": ballots}, 3) == counts(await dry_run(vote))
    # an out-of-range ballot is excluded before the circuit (protocols/clientchecks.py): the
    # estimate, which counts every submitted row, is then an upper bound
    ballots[VOTERS[1]] = [5, -2, 0]
    real, dry = await real_run(vote, {}, {"ballots": ballots}, 3), counts(await dry_run(vote))
    assert all(r[1] < d[1] for r, d in zip(real, dry))


async def test_client_rows_are_checked() -> None:
    auction = load_scenario_dict(AUCTION).computation()
    with pytest.raises(ValueError, match="'votes' is not a client input"):
        await dry_run(auction, {"votes": 1})
    with pytest.raises(ValueError, match="between 0 and the 8 listed"):
        await dry_run(auction, {"bids": -1})
