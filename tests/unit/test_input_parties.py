"""Input-only organizations, without a network: the scenario's `compute` field, the computation
document and fingerprint, the circuit rules, the liveness rule, and one node's part of a job
(jobrun.run_job) when input-only parties submitted their shares.

The end-to-end behaviour (consent, submission rules, delivery, failures) is in
tests/integration/test_input_only.py.
"""
from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from mpcnode import sharing
from mpcnode.circuit import CircuitError, validate
from mpcnode.computation.builder import CircuitBuilder
from mpcnode.computation.cost import dry_run
from mpcnode.computation.describe import describe
from mpcnode.computation.liveness import input_parties_problem, live_set_problem
from mpcnode.computation.scenario import load_scenario, parse_scenario
from mpcnode.computation.spec import Computation, output_feeds
from mpcnode.configfile import ConfigError
from mpcnode.exchange import MemoryNetwork
from mpcnode.jobrun import run_job
from mpcnode.protocols.agreement import MissingInput
from parley.v1 import circuit_pb2 as cpb
from parley.v1 import node_pb2

REPO = Path(__file__).resolve().parents[2]
BREACH = REPO / "scenarios" / "breach-loss.yaml"
SIX = ["northwind-bank", "contoso-insurance", "fabrikam-credit", "tailspin-payments", "woodgrove-bank",
       "litware-lending"]


def breach(**changes: object) -> dict:
    """The shipped breach-loss with `changes`; with other than 3 compute nodes it runs Shamir
    (replicated3, which the file names, needs exactly 3)."""
    data = yaml.safe_load(BREACH.read_text())
    data.update(changes)
    if len(data.get("compute") or data["parties"]) != 3 and "protocol" not in changes:
        data["protocol"] = "shamir"
    return {k: v for k, v in data.items() if v is not None}


def parse(data: dict, path: str = "scenarios/x.yaml"):
    return parse_scenario(data, Path(path))


# ---- the scenario field ------------------------------------------------------------------------

def test_the_shipped_breach_loss_runs_on_three_compute_nodes() -> None:
    sc = load_scenario(BREACH)
    assert sc.parties == SIX
    assert sc.compute_parties == SIX[:3]
    assert sc.input_parties == SIX[3:]
    assert sc.t == 1   # the default threshold follows the compute nodes (n = 3), not the six parties
    assert sc.contributors is None and len(sc.build().inputs) == 6   # all six still contribute


def test_without_compute_every_party_computes() -> None:
    sc = parse(breach(compute=None))
    assert sc.compute_parties == SIX and sc.input_parties == [] and sc.t == 2
    assert sc.computation().input_parties == ()


@pytest.mark.parametrize("compute, threshold, field, problem", [
    (["northwind-bank", "contoso-insurance", "globex"], None, "compute", "'globex' is not one of the parties"),
    (["contoso-insurance", "northwind-bank", "fabrikam-credit"], None, "compute",
     "must list the compute nodes in party order (northwind-bank, contoso-insurance, fabrikam-credit)"),
    (["northwind-bank", "contoso-insurance"], None, "compute", "2 compute nodes, at least 3 are needed"),
    (SIX[:3], 2, "compute", "3 compute nodes cannot run threshold t=2 (needs 2t < 3)"),
    (["northwind-bank", "northwind-bank", "contoso-insurance"], None, "compute", "a name is listed twice"),
])
def test_bad_compute_lists_are_one_line_errors_naming_file_field_and_problem(compute, threshold, field,
                                                                               problem) -> None:
    with pytest.raises(ConfigError) as info:
        parse(breach(compute=compute, threshold=threshold), "scenarios/breach-loss.yaml")
    assert info.value.field == field
    assert info.value.problem.removeprefix("Value error, ") == problem   # pydantic's prefix on field validators
    assert str(info.value).startswith(f"scenarios/breach-loss.yaml: {field}: ")
    assert str(info.value).endswith(problem) and "\n" not in str(info.value)


def test_an_input_only_party_must_contribute() -> None:
    """An organization that would only be asked to consent and deliver nothing is a recipient."""
    with pytest.raises(ConfigError) as info:
        parse(breach(contributors=SIX[:4]))
    assert "input-only party woodgrove-bank owns no input (list it as a recipient instead)" in str(info.value)


def test_an_auction_reserve_may_come_from_an_input_only_party() -> None:
    sc = parse({"name": "auc", "kind": "auction", "parties": ["a", "b", "c", "seller"], "compute": ["a", "b", "c"],
                "recipients": ["seller"], "bidders": ["x1", "x2"],
                "auction": {"type": "first-price", "bit_length": 20, "reserve": {"secret_from": "seller"}}})
    comp = sc.computation()
    assert comp.parties == ("a", "b", "c") and comp.input_parties == ("seller",)
    reserve = next(d for d in comp.circuit.inputs if d.name == "reserve")
    assert reserve.owner == "seller" and reserve.source == cpb.INPUT_SOURCE_NODE
    with pytest.raises(ConfigError, match="auction.reserve.secret_from: 'mallory' is not one of the parties"):
        parse({"name": "auc", "kind": "auction", "parties": ["a", "b", "c"], "recipients": ["a"],
               "bidders": ["x1", "x2"], "auction": {"type": "first-price", "reserve": {"secret_from": "mallory"}}})


# ---- the document and the fingerprint ---------------------------------------------------------

def test_the_document_names_compute_and_input_only_parties_apart() -> None:
    doc = load_scenario(BREACH).computation().document()
    assert doc["parties"] == SIX[:3]
    assert doc["input_parties"] == SIX[3:]
    assert doc["threshold"] == 1
    by_owner = {d["owner"]: d for d in doc["inputs"]}
    assert sorted(by_owner) == sorted(SIX)
    for org in SIX[3:]:   # an input-only party's input is still a node input with its owner and range
        assert by_owner[org] == {"name": f"loss_usd@{org}", "length": 1, "range": ["0", "1000000000000"],
                                 "source": "node", "owner": org, "dataset": "breach-loss", "field": "loss_usd"}
    assert output_feeds(doc)["total"].contributors == 6


def test_who_computes_is_part_of_the_fingerprint() -> None:
    fingerprints = {
        "three compute": parse(breach()).computation().fingerprint(),
        "other three compute": parse(breach(compute=SIX[3:])).computation().fingerprint(),
        "four compute": parse(breach(compute=SIX[:4])).computation().fingerprint(),
        "all compute": parse(breach(compute=None)).computation().fingerprint(),
        "all compute, t=1": parse(breach(compute=None, threshold=1)).computation().fingerprint(),
    }
    assert len(set(fingerprints.values())) == len(fingerprints), fingerprints
    # and the same compute nodes written out in full are the same computation as the default
    assert parse(breach(compute=SIX)).computation().fingerprint() == fingerprints["all compute"]


def test_moving_a_party_between_the_lists_changes_the_fingerprint() -> None:
    comp = parse(breach()).computation()
    moved = Computation(comp.circuit, comp.parties, comp.threshold, input_parties=tuple(reversed(comp.input_parties)))
    assert moved.fingerprint() != comp.fingerprint()   # the order of input-only parties is pinned too


def test_known_answer_with_an_input_only_party() -> None:
    """docs/approving.md: `input_parties` appears, after `inputs`, only when there are input-only parties."""
    b = CircuitBuilder("kat")
    x = b.input("x", "alpha", 1, 0, 10)
    y = b.input("y", "delta", 1, 0, 10)
    b.output("total", b.sum(b.concat([x, y])), ["delta"], description="t")
    c = b.build()
    c.description = "known answer"
    comp = Computation(c, ("alpha", "bravo", "charlie"), 1, input_parties=("delta",))
    text = (
        '{"description":"known answer","dropouts":"within-threshold","format":"parley-computation-v1",'
        '"input_parties":["delta"],'
        '"inputs":[{"dataset":"kat","field":"x","length":1,"name":"x","owner":"alpha","range":["0","10"],'
        '"source":"node"},{"dataset":"kat","field":"y","length":1,"name":"y","owner":"delta","range":["0","10"],'
        '"source":"node"}],"name":"kat","ops":[{"args":["x","y"],"bit_length":0,"consts":[],"ints":[],'
        '"op":"concat","out":"concat_1"},{"args":["concat_1"],"bit_length":0,"consts":[],"ints":[],"op":"sum",'
        '"out":"sum_2"}],"outputs":[{"description":"t","name":"total","public_divisor":"0",'
        '"recipients":["delta"],"value":"sum_2"}],"parties":["alpha","bravo","charlie"],"protocol":{'
        '"comparison":"lsb-exact; masked-bitwise for range-checked operands with bit_length <= 19 - ceil(log2(t+1))",'
        '"dealing":"seeded-aes256-ctr","engine":"shamir",'
        '"field_modulus":"2305843009213693951","statistical_security_bits":40},"threshold":1}')
    assert comp.canonical() == text.encode()
    assert comp.fingerprint() == hashlib.sha256(text.encode()).hexdigest()


def test_the_job_spec_carries_the_input_parties_and_the_node_recomputes_the_same_fingerprint() -> None:
    comp = load_scenario(BREACH).computation()
    spec = comp.job_spec("j", 60.0)
    assert list(spec.parties) == SIX[:3] and list(spec.input_parties) == SIX[3:]
    again = node_pb2.JobSpec.FromString(spec.SerializeToString())
    assert Computation.of_job(again).fingerprint() == spec.fingerprint == comp.fingerprint()
    # a coordinator that drops the input-only list presents another computation
    del again.input_parties[:]
    assert Computation.of_job(again).fingerprint() != spec.fingerprint


def test_plain_words_name_the_input_only_parties() -> None:
    words = "\n".join(describe(load_scenario(BREACH).computation().document()))
    assert "computed by 3 nodes: northwind-bank, contoso-insurance, fabrikam-credit" in words
    assert "input-only: tailspin-payments, woodgrove-bank, litware-lending compute nothing and hold no shares" in words
    assert "woodgrove-bank (input-only) contributes loss_usd" in words


# ---- circuit and liveness rules ---------------------------------------------------------------

def _two_owner_circuit() -> cpb.Circuit:
    b = CircuitBuilder("c")
    x = b.input("x", "a", 1, 0, 10)
    y = b.input("y", "d", 1, 0, 10)
    b.output("s", b.sum(b.concat([x, y])), ["a"])
    return b.build()


@pytest.mark.parametrize("parties, input_parties, message", [
    (["a", "b", "c"], [], "owner 'd' is not a compute party or an input-only party of the job"),
    (["a", "b", "c"], ["d", "d"], "an input-only party is listed twice"),
    (["a", "b", "c", "d"], ["d"], "d cannot be both a compute party and an input-only party"),
    (["a", "b", "c"], ["d", "e"], "input-only party e owns no input"),
])
def test_validate_checks_input_parties(parties, input_parties, message) -> None:
    with pytest.raises(CircuitError, match=message):
        validate(_two_owner_circuit(), parties, input_parties=input_parties)


def test_validate_accepts_an_input_only_owner() -> None:
    assert validate(_two_owner_circuit(), ["a", "b", "c"], input_parties=["d"]).depth == 0


def test_an_input_only_party_is_never_dropped_and_never_needs_to_be_live() -> None:
    # the live set is of compute parties; an input-only owner is not one of them
    assert live_set_problem(["a", "b", "c"], 1, {"a", "d"}, False, "within-threshold", ["a", "b"]) == ""
    assert "cannot run without input owners a" in live_set_problem(["a", "b", "c"], 1, {"a", "d"}, False,
                                                                   "within-threshold", ["b", "c"])
    assert input_parties_problem(["d", "e"], {"b"}) == ""
    assert input_parties_problem(["d", "e"], {"e", "b"}) == "cannot run without input-only party e (its input would be missing)"


# ---- one node's part of a job -----------------------------------------------------------------

async def _run(comp: Computation, values: dict[str, int], held_by: dict[str, set[int]] | None = None):
    """run_job on every compute party over the in-memory exchange: compute parties' inputs as their
    nodes read them, input-only parties' inputs as the shares their nodes would submit, in the
    job's share format (party i holds its share unless held_by[owner] leaves i out)."""
    parties = list(comp.parties)
    n = len(parties)
    spec = comp.job_spec("io-run", timeout_s=60)
    plan = validate(spec.circuit, parties, comp.protocol, comp.input_parties)
    submitted = {d.name: sharing.client_shares(comp.protocol, [values[d.owner]], n, comp.threshold)
                 for d in spec.circuit.inputs if d.owner in comp.input_parties}

    def rows(me: int):
        def client_rows(decl: cpb.InputDecl):
            if decl.owner in comp.input_parties and me in (held_by or {}).get(decl.owner, set(range(n))):
                return {decl.owner: submitted[decl.name][me]}, [decl.owner]
            return {}, []
        return client_rows

    net = MemoryNetwork(n, timeout_s=10)
    exchanges = [net.exchange(i) for i in range(n)]
    own = {p: {d.name: np.array([values[p]], dtype=np.int64)           # checked signed, as read
               for d in spec.circuit.inputs if d.owner == p} for p in parties}
    results = await asyncio.gather(*(run_job(ex, spec, plan, parties, own[parties[i]], rows(i))
                                     for i, ex in enumerate(exchanges)), return_exceptions=True)
    return results, exchanges


async def test_compute_nodes_add_the_submitted_shares_of_input_only_parties() -> None:
    comp = load_scenario(BREACH).computation()
    values = dict(zip(SIX, [12_500_000, 0, 1_645_500, 4_870_000, 930_000, 27_310_000]))
    results, exchanges = await _run(comp, values)
    shares = {i: r.outputs["total"] for i, r in enumerate(results)}
    total = sharing.reconstruct(comp.protocol, shares, comp.threshold)
    assert int(np.asarray(total).reshape(-1)[0]) == sum(values.values()) == 47_255_500
    # key round, node input sharing, the agreement on the input-only parties' inputs: three rounds
    assert [ex.stats.rounds for ex in exchanges] == [3, 3, 3]
    est = await dry_run(comp)
    assert [(p.rounds, p.bytes_sent) for p in est.parties] == [(ex.stats.rounds, ex.stats.bytes_sent)
                                                              for ex in exchanges]


async def test_an_input_held_by_only_some_compute_nodes_is_never_used() -> None:
    comp = load_scenario(BREACH).computation()
    values = {org: 1 for org in SIX}
    results, _ = await _run(comp, values, held_by={"woodgrove-bank": {0, 2}})
    for r in results:
        assert isinstance(r, MissingInput), r
        assert str(r) == "the input of woodgrove-bank did not reach every compute node (missing at party contoso-insurance)"


async def test_no_agreement_round_without_input_only_parties() -> None:
    comp = parse(breach(compute=None)).computation()
    results, exchanges = await _run(comp, {org: 1 for org in SIX})
    assert all(not isinstance(r, BaseException) for r in results)
    assert {ex.stats.rounds for ex in exchanges} == {2}
