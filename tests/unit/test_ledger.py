"""The privacy-budget ledger (mpcnode/ledger.py): reserve, spend, refund, expire; over-budget and
exact releases refused; no refund after release; concurrent jobs never overspend."""
from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from mpcnode.config import NodeConfig, load_node_config
from mpcnode.configfile import ConfigError
from mpcnode.errors import Denied
from mpcnode.dp.accounting import eps_delta_of_rho
from mpcnode.ledger import (EXPIRED, REFUNDED, SPENT, BudgetExceeded, PrivacyLedger, job_charges,
                            output_inputs)
from mpcnode.store import ShareStore
from parley.v1 import circuit_pb2 as cpb

ORG = "org-a"


def config(tmp_path: Path, budget: dict) -> NodeConfig:
    data = tmp_path / "sales.yaml"
    data.write_text("amount: [1, 2, 3]\n")
    return NodeConfig.model_validate({
        "organization": ORG, "listen": "127.0.0.1:0", "tls": {"ca": "ca", "cert": "c", "key": "k"},
        "peers": {}, "data_dir": str(tmp_path / "data"), "inputs": {"sales": str(data)},
        "policy": {"privacy_budget": budget}})


def circuit(*outputs: cpb.OutputDecl, clients: list[str] | None = None) -> cpb.Circuit:
    c = cpb.Circuit(name="dp-total")
    c.inputs.add(name="amount", owner=ORG, length=3, lo=0, hi=100, source=cpb.INPUT_SOURCE_NODE, dataset="sales")
    c.inputs.add(name="other", owner="org-b", length=3, lo=0, hi=100, source=cpb.INPUT_SOURCE_NODE, dataset="sales")
    if clients:
        c.inputs.add(name="votes", length=1, lo=0, hi=1, source=cpb.INPUT_SOURCE_CLIENTS, clients=clients)
        c.ops.add(out="vsum", kind=cpb.OP_SUM, args=["votes"])
    c.ops.add(out="mine", kind=cpb.OP_SUM, args=["amount"])
    c.ops.add(out="theirs", kind=cpb.OP_SUM, args=["other"])
    c.ops.add(out="both", kind=cpb.OP_ADD, args=["mine", "theirs"])
    c.ops.add(out="noisy", kind=cpb.OP_NOISE, args=["both"],
              noise=cpb.DpNoise(mechanism="discrete-laplace", source="distributed", scale="10", min_live=3))
    c.outputs.extend(outputs)
    return c


def dp_out(name: str = "total", value: str = "noisy", **dp: object) -> cpb.OutputDecl:
    return cpb.OutputDecl(name=name, value=value, recipients=["regulator"],
                          dp=cpb.DpRelease(unit="organization", relation="add-remove", **dp))


def ledger(tmp_path: Path, total: str = "1") -> tuple[PrivacyLedger, ShareStore]:
    cfg = config(tmp_path, {"datasets": {"sales": {"rho": total}}})
    store = ShareStore(cfg.data_dir / "shares.sqlite3")
    return PrivacyLedger(store, cfg), store


KEY = "dataset:sales"


# ---- what a job is charged ------------------------------------------------------------------------

def test_charges_follow_the_dag_and_convert_pure_epsilon(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"datasets": {"sales": {"rho": 1}}})
    c = circuit(dp_out(rho="0.125"), dp_out("pure", epsilon="0.5"),
                dp_out("again", post_processing=True),
                cpb.OutputDecl(name="theirs-exact", value="theirs", recipients=["org-b"]))   # not ours: allowed
    assert output_inputs(c)["total"] == {"amount", "other"}
    assert job_charges(c, ORG, cfg, holds_client_shares=True) == {KEY: Fraction(1, 8) + Fraction(1, 8)}
    # no budget on the dataset: nothing is charged, exact outputs are allowed
    assert job_charges(circuit(cpb.OutputDecl(name="x", value="mine")), ORG, config(tmp_path, {}), True) == {}


def test_exact_release_of_a_budgeted_dataset_is_refused_naming_the_key(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"datasets": {"sales": {"rho": 1}}})
    with pytest.raises(Denied) as err:
        job_charges(circuit(dp_out(rho="0.1"), cpb.OutputDecl(name="exact", value="both")), ORG, cfg, True)
    assert "dataset:sales" in str(err.value) and "'exact'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(Denied, match="'total': a DP release states neither rho nor epsilon"):
        job_charges(circuit(dp_out(mechanism="discrete-laplace")), ORG, cfg, True)


def test_client_population_keyed_by_content_hash(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"client_populations": {"epsilon": 1}})
    c = circuit(dp_out("votes", value="vsum", rho="0.25"), clients=["v1", "v2"])
    charges = job_charges(c, ORG, cfg, holds_client_shares=True)
    (key,) = charges
    assert key.startswith("clients:") and len(key) == len("clients:") + 64 and charges[key] == Fraction(1, 4)
    assert job_charges(c, ORG, cfg, holds_client_shares=False) == {}   # an input-only party holds none
    other = job_charges(circuit(dp_out("votes", value="vsum", rho="0.25"), clients=["v1", "v3"]), ORG, cfg, True)
    assert set(other) != set(charges)


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    base = yaml.safe_load(yaml.safe_dump(config(tmp_path, {}).model_dump(mode="json")))
    for budget, reason in [({"datasets": {"nope": {"rho": 1}}}, "'nope' is not a dataset in inputs"),
                           ({"datasets": {"sales": {"rho": 1, "epsilon": 1}}}, "exactly one of rho or epsilon"),
                           ({"datasets": {"sales": {"rho": -1}}}, "must be positive")]:
        base["policy"]["privacy_budget"] = budget
        path = tmp_path / "node.yaml"
        path.write_text(yaml.safe_dump(base))
        with pytest.raises(ConfigError) as err:
            load_node_config(path)
        assert reason in str(err.value) and "\n" not in str(err.value)


# ---- lifecycle -------------------------------------------------------------------------------------

def test_reserve_spend_refund_expire(tmp_path: Path) -> None:
    led, _ = ledger(tmp_path)
    for job in ("j1", "j2", "j3"):
        led.reserve(job, {KEY: Fraction(1, 4)})
    led.spend("j1")
    led.refund("j2")
    led.release_expired("j3")
    assert led.charges_of("j1") == {KEY: (Fraction(1, 4), SPENT)}
    assert led.charges_of("j2") == {KEY: (Fraction(1, 4), REFUNDED)}
    assert led.charges_of("j3") == {KEY: (Fraction(1, 4), EXPIRED)}
    (row,) = led.report()
    assert (row.key, row.total, row.spent, row.reserved, row.remaining) == (KEY, 1, Fraction(1, 4), 0, Fraction(3, 4))


def test_no_refund_after_release(tmp_path: Path) -> None:
    led, _ = ledger(tmp_path)
    led.reserve("j1", {KEY: Fraction(1, 2)})
    led.spend("j1")
    led.refund("j1")
    led.release_expired("j1")
    assert led.charges_of("j1") == {KEY: (Fraction(1, 2), SPENT)}


def test_over_budget_refused_and_exact_fit_accepted(tmp_path: Path) -> None:
    led, _ = ledger(tmp_path, total="0.3")
    led.reserve("a", {KEY: Fraction("0.1")})
    led.spend("a")
    led.reserve("b", {KEY: Fraction("0.1")})   # reserved counts against the budget
    with pytest.raises(BudgetExceeded) as err:
        led.reserve("c", {KEY: Fraction("0.1000001")})
    assert "dataset:sales" in str(err.value) and "0.1" not in str(err.value)
    assert led.charges_of("c") == {}
    led.reserve("c", {KEY: Fraction("0.1")})    # 0.1 + 0.1 + 0.1 == 0.3 exactly: fits (no float rounding)
    assert led.report()[0].remaining == 0


def test_reservation_commits_with_the_job_row_or_not_at_all(tmp_path: Path) -> None:
    led, store = ledger(tmp_path, total="0.5")
    store.put_job("ok", b"spec", "f" * 64, "PREPARED", led.reserver("ok", {KEY: Fraction("0.5")}))
    with pytest.raises(BudgetExceeded):
        store.put_job("no", b"spec", "f" * 64, "PREPARED", led.reserver("no", {KEY: Fraction("0.1")}))
    assert store.job("no") is None and led.charges_of("no") == {}
    # spent in the transaction that stores the outputs; a later failure or withdrawal refunds nothing
    store.finish_job("ok", {}, in_tx=lambda conn: PrivacyLedger.spend_in(conn, "ok"))
    assert store.job("ok").state == "DONE" and led.charges_of("ok")[KEY][1] == SPENT
    store.withdraw_outputs("ok", "aborted")
    store.set_state("ok", "FAILED", "x", lambda conn: PrivacyLedger.settle_in(conn, "ok", REFUNDED))
    assert led.charges_of("ok")[KEY][1] == SPENT


def test_content_change_keeps_the_budget_and_is_reported(tmp_path: Path) -> None:
    led, _ = ledger(tmp_path)
    led.reserve("a", {KEY: Fraction("0.25")})
    assert not led.report()[0].content_changed
    led.cfg.inputs["sales"].write_text("amount: [9, 9, 9]\n")
    led.reserve("b", {KEY: Fraction("0.25")})
    row = led.report()[0]
    assert row.content_changed and row.reserved == Fraction(1, 2)


def test_eps_delta_of_rho() -> None:
    assert eps_delta_of_rho(0.5, 1e-9) == pytest.approx(0.5 + 2 * (0.5 * 20.7232658) ** 0.5, rel=1e-6)
    assert eps_delta_of_rho(0, 1e-9) == 0


# ---- concurrency -----------------------------------------------------------------------------------

def test_twenty_concurrent_jobs_never_overspend(tmp_path: Path) -> None:
    """20 jobs race, each on its own connection to the same database (as separate processes would):
    the budget fits exactly 6 charges of 0.15; exactly 6 are reserved, whatever the interleaving."""
    cfg = config(tmp_path, {"datasets": {"sales": {"rho": "0.95"}}})
    path = cfg.data_dir / "shares.sqlite3"
    ShareStore(path).close()
    barrier = threading.Barrier(20)
    results: dict[int, bool] = {}

    def job(i: int) -> None:
        store = ShareStore(path)
        led = PrivacyLedger(store, cfg)
        barrier.wait()
        try:
            store.put_job(f"j{i}", b"spec", "f" * 64, "PREPARED", led.reserver(f"j{i}", {KEY: Fraction("0.15")}))
            results[i] = True
            if i % 2:   # some release, some fail: neither frees what the others need beyond the budget
                store.finish_job(f"j{i}", {}, in_tx=lambda conn: PrivacyLedger.spend_in(conn, f"j{i}"))
        except BudgetExceeded:
            results[i] = False
        finally:
            store.close()

    threads = [threading.Thread(target=job, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20 and sum(results.values()) == 6
    store = ShareStore(path)
    (row,) = PrivacyLedger(store, cfg).report()
    assert row.spent + row.reserved == Fraction("0.9") and row.remaining == Fraction("0.05")
    assert sorted(store.jobs_in_state("PREPARED") + store.jobs_in_state("DONE")) == \
        sorted(f"j{i}" for i, ok in results.items() if ok)


# ---- python -m mpcnode ledger --------------------------------------------------------------------

def test_ledger_command_reads_a_live_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mpcnode.ledgercli import main

    cfg = config(tmp_path, {"datasets": {"sales": {"epsilon": 1}}, "delta": 1e-6})
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert main(["--config", str(path)]) == 0          # before the node ever ran: the budget, untouched
    assert "dataset:sales  0.5" in capsys.readouterr().out
    store = ShareStore(cfg.data_dir / "shares.sqlite3")   # left open, as a running node keeps it
    led = PrivacyLedger(store, cfg)
    led.reserve("a", {KEY: Fraction(1, 8)})
    led.spend("a")
    led.reserve("b", {KEY: Fraction(1, 16)})
    assert main(["--config", str(path)]) == 0
    head, row = capsys.readouterr().out.splitlines()
    assert head.split()[:3] == ["dataset", "total", "ρ"]
    assert row.split() == ["dataset:sales", "0.5", "0.125", "0.0625", "0.3125",
                           f"{eps_delta_of_rho(0.125, 1e-6):.4g}", f"{eps_delta_of_rho(0.5, 1e-6):.4g}"]
    assert main(["--config", str(path), "--json"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert (doc["spent_rho"], doc["reserved_rho"], doc["remaining_rho"]) == ("1/8", "1/16", "5/16")
    store.close()


def test_dp_declarations_are_part_of_the_fingerprint() -> None:
    """The ledger charges what DpRelease declares: a coordinator must not be able to lower a ρ (or
    mark an output post-processing) without changing what the organization approved."""
    from mpcnode.computation.spec import Computation

    def fp(c: cpb.Circuit) -> str:
        return Computation(c, ("org-a", "org-b", "org-c"), 1).fingerprint()

    base = circuit(dp_out(rho="0.25"))
    assert fp(base) != fp(circuit(dp_out(rho="0.125")))
    assert fp(base) != fp(circuit(dp_out(rho="0.25", post_processing=True)))
    other_noise = circuit(dp_out(rho="0.25"))
    other_noise.ops[-1].noise.scale = "1"
    assert fp(base) != fp(other_noise)
    plain = circuit(cpb.OutputDecl(name="x", value="both"))
    del plain.ops[-1]
    assert "dp" not in Computation(plain, ("org-a",), 1).document()["outputs"][0]


def _race_in_process(path: str, cfg_json: str, i: int, barrier, results) -> None:
    cfg = NodeConfig.model_validate_json(cfg_json)
    store = ShareStore(Path(path))
    led = PrivacyLedger(store, cfg)
    barrier.wait()
    try:
        store.put_job(f"p{i}", b"spec", "f" * 64, "PREPARED", led.reserver(f"p{i}", {KEY: Fraction(1, 7)}))
        results[i] = 1
    except BudgetExceeded:
        results[i] = 0
    finally:
        store.close()


def test_twenty_processes_never_overspend(tmp_path: Path) -> None:
    """The same race between 20 processes (each its own SQLite connection and its own ShareStore
    lock): only SQLite's BEGIN IMMEDIATE serializes them. ρ = 1/2 fits three charges of 1/7."""
    import multiprocessing

    cfg = config(tmp_path, {"datasets": {"sales": {"rho": "1/2"}}})
    path = cfg.data_dir / "shares.sqlite3"
    ShareStore(path).close()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(20)
    results = ctx.Array("i", [-1] * 20)
    procs = [ctx.Process(target=_race_in_process, args=(str(path), cfg.model_dump_json(), i, barrier, results))
             for i in range(20)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 20
    assert sorted(results[:]) == [0] * 17 + [1] * 3
    store = ShareStore(path)
    (row,) = PrivacyLedger(store, cfg).report()
    assert (row.reserved, row.remaining) == (Fraction(3, 7), Fraction(1, 2) - Fraction(3, 7))
    assert len(store.jobs_in_state("PREPARED")) == 3



def test_a_client_population_in_another_order_is_the_same_budget(tmp_path: Path) -> None:
    """Reordering the same list of clients must not open a fresh budget."""
    from mpcnode.ledger import dataset_keys
    cfg = config(tmp_path, {"client_populations": {"epsilon": 1}})

    def keys(clients):
        return dataset_keys(circuit(clients=clients), ORG, cfg, True)["votes"]
    assert keys(["a", "b", "c"]) == keys(["c", "a", "b"]) != keys(["a", "b", "d"])
