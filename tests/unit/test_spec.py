"""The canonical computation document, its fingerprint, and consent decisions on it (no network).

What must hold: the fingerprint covers everything that decides what can leak (a change to any of
it changes the fingerprint), another implementation can recompute it from the documented form
(a known-answer test written out by hand here), a client refuses a document that is not
canonical, and a node's admission refuses what its policy does not cover.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mpcnode.admission import Admission, Approved
from mpcnode.computation.builder import CircuitBuilder
from mpcnode.computation.describe import describe
from mpcnode.computation.scenario import load_scenario, parse_scenario
from mpcnode.computation.spec import (COMPARISON, STATISTICAL_SECURITY_BITS, Computation, SpecError, output_feeds,
                                      parse_document)
from mpcnode.config import NodeConfig
from mpcnode.errors import Denied
from mpcnode.protocols import compare
from parley.v1 import circuit_pb2 as cpb

REPO = Path(__file__).resolve().parents[2]
PARTIES = ("alpha", "bravo", "charlie")


def known() -> Computation:
    b = CircuitBuilder("kat")
    x = b.input("x", "alpha", 1, 0, 10)
    b.client_input("votes", ["c1", "c2"], 2, 0, 1)
    b.output("total", b.sum(x), ["alpha"], description="t")
    c = b.build()
    c.description = "known answer"
    return Computation(c, PARTIES, 1)


def test_known_answer_recomputed_by_hand() -> None:
    """The canonical form spelled out as docs/approving.md specifies it: keys sorted, no spaces,
    big integers as decimal strings, the client list by count and sha256 of its canonical JSON."""
    clients = hashlib.sha256(b'["c1","c2"]').hexdigest()
    text = (
        '{"description":"known answer","dropouts":"within-threshold","format":"parley-computation-v1",'
        '"inputs":[{"dataset":"kat","field":"x","length":1,"name":"x","owner":"alpha","range":["0","10"],'
        '"source":"node"},{"clients":{"count":2,"sha256":"' + clients + '"},"length":2,"name":"votes",'
        '"range":["0","1"],"source":"clients"}],"name":"kat","ops":[{"args":["x"],"bit_length":0,"consts":[],'
        '"ints":[],"op":"sum","out":"sum_1"}],"outputs":[{"description":"t","name":"total","public_divisor":"0",'
        '"recipients":["alpha"],"value":"sum_1"}],"parties":["alpha","bravo","charlie"],"protocol":{'
        '"comparison":"lsb-exact; masked-bitwise for range-checked operands with bit_length <= 19 - ceil(log2(t+1))",'
        '"dealing":"seeded-aes256-ctr","engine":"shamir",'
        '"field_modulus":"2305843009213693951","statistical_security_bits":40},"threshold":1}')
    assert known().canonical() == text.encode()
    assert known().fingerprint() == hashlib.sha256(text.encode()).hexdigest()


def test_statistical_parameter_matches_the_protocol() -> None:
    assert STATISTICAL_SECURITY_BITS == compare.STATISTICAL_SECURITY


def test_comparison_parameter_states_the_threshold_the_code_uses() -> None:
    """The document's rule "bit_length <= 19 - ceil(log2(t+1))" (for range-checked operands,
    circuit.range_checked) is what compare picks the bounded path by, for every threshold
    (ceil(log2(t+1)) = t.bit_length() for t >= 1)."""
    assert COMPARISON == "lsb-exact; masked-bitwise for range-checked operands with bit_length <= 19 - ceil(log2(t+1))"
    for t in range(1, 300):
        assert compare.max_bounded_bit_length(t) == 19 - t.bit_length(), t
    assert [compare.max_bounded_bit_length(t) for t in (1, 2, 3, 4, 7, 8)] == [18, 17, 17, 16, 16, 15]


def _with(change) -> Computation:
    comp = known()
    out = change(comp)
    return out if isinstance(out, Computation) else comp


CHANGES = {
    "circuit name": lambda c: setattr(c.circuit, "name", "kat2"),
    "description": lambda c: setattr(c.circuit, "description", "other words"),
    "input bound": lambda c: setattr(c.circuit.inputs[0], "hi", 11),
    "input owner": lambda c: setattr(c.circuit.inputs[0], "owner", "bravo"),
    "input field": lambda c: setattr(c.circuit.inputs[0], "key", "y"),
    "input dataset": lambda c: setattr(c.circuit.inputs[0], "dataset", "other-dataset"),
    "client added": lambda c: c.circuit.inputs[1].clients.append("c3"),
    "client renamed": lambda c: c.circuit.inputs[1].clients.__setitem__(0, "c9"),
    "op kind": lambda c: setattr(c.circuit.ops[0], "kind", cpb.OP_NEG),
    "op constant": lambda c: c.circuit.ops[0].consts.append(1),
    "op bit length": lambda c: setattr(c.circuit.ops[0], "bit_length", 3),
    "extra op": lambda c: c.circuit.ops.add(out="extra", kind=cpb.OP_NEG, args=["x"]),
    "recipient added": lambda c: c.circuit.outputs[0].recipients.append("bravo"),
    "output name": lambda c: setattr(c.circuit.outputs[0], "name", "sum"),
    "public divisor": lambda c: setattr(c.circuit.outputs[0], "public_divisor", 4),
    "output description": lambda c: setattr(c.circuit.outputs[0], "description", "x"),
    "party order": lambda c: Computation(c.circuit, ("bravo", "alpha", "charlie"), 1),
    "party replaced": lambda c: Computation(c.circuit, ("alpha", "bravo", "delta"), 1),
    "threshold": lambda c: Computation(c.circuit, c.parties, 2),
    "dropout rule": lambda c: Computation(c.circuit, c.parties, 1, dropouts="none"),
}


@pytest.mark.parametrize("what", sorted(CHANGES))
def test_fingerprint_changes_when_anything_that_can_leak_changes(what: str) -> None:
    assert _with(CHANGES[what]).fingerprint() != known().fingerprint()


def test_what_does_not_change_the_fingerprint() -> None:
    """Job id, timeouts and deadlines decide when, not what: one approval covers several runs."""
    a = known().job_spec("job-1", 30.0, 0.0)
    b = known().job_spec("job-2", 600.0, 1e9)
    assert a.fingerprint == b.fingerprint == known().fingerprint()


def test_an_unsupported_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="protocol: 'spdz' is not supported"):
        Computation(known().circuit, PARTIES, 1, protocol="spdz").fingerprint()


def test_every_shipped_scenario_has_a_stable_fingerprint() -> None:
    for path in sorted((REPO / "scenarios").glob("*.yaml")):
        assert load_scenario(path).computation().fingerprint() == load_scenario(path).computation().fingerprint()


# ---- what a client accepts --------------------------------------------------------------------------

def test_client_accepts_only_the_canonical_form() -> None:
    canonical = known().canonical()
    doc, fp = parse_document(canonical)
    assert fp == known().fingerprint() and doc["name"] == "kat"
    for bad, why in [
        (canonical.replace(b'{"description"', b'{ "description"'), "canonical"),                 # a space
        (canonical.replace(b'"threshold":1}', b'"threshold":1,"threshold":2}'), "duplicate key"),  # shadowed key
        (canonical.replace(b"parley-computation-v1", b"parley-computation-v0"), "format"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "format"),
    ]:
        with pytest.raises(SpecError, match=why):
            parse_document(bad)


# ---- contributors and words -------------------------------------------------------------------------

RAISE = REPO / "scenarios" / "raise-average.yaml"


def _raise_variant(**changes: object):
    import yaml

    data = yaml.safe_load(RAISE.read_text())
    data.update(changes)
    return parse_scenario(data, Path("variant.yaml"))


def test_output_feeds_count_contributors() -> None:
    honest = output_feeds(load_scenario(RAISE).computation().document())
    assert {k: v.contributors for k, v in honest.items()} == {"total": 4, "average": 4}
    attack = output_feeds(_raise_variant(kind="total", contributors=["bob"], recipients=["alice"])
                          .computation().document())
    assert attack["total"].owners == ("bob",) and attack["total"].contributors == 1
    auction = output_feeds(load_scenario(REPO / "scenarios" / "spectrum-auction.yaml").computation().document())
    assert auction["result"].owners == ("spectrum-regulator",) and auction["result"].clients == 4


def test_words_name_every_contributor_recipient_and_the_threshold() -> None:
    for path in sorted((REPO / "scenarios").glob("*.yaml")):
        sc = load_scenario(path)
        text = "\n".join(describe(sc.computation().document()))
        for name in sc.recipients + sc.parties:
            assert name in text, (path.name, name)
        assert f"t={sc.t}" in text
    words = describe(load_scenario(REPO / "scenarios" / "strike-referendum.yaml").computation().document())
    assert any("only whether YES got at least half" in w for w in words)


# ---- admission ----------------------------------------------------------------------------------------

def _admission(policy: dict, runs: int = 0, org: str = "bob") -> Admission:
    cfg = NodeConfig.model_validate({
        "organization": org, "listen": "127.0.0.1:1", "tls": {"ca": "a", "cert": "b", "key": "c"},
        "peers": {}, "data_dir": "d", "policy": policy})
    approvals = [Approved(a["fingerprint"], "", a.get("expires"), a.get("max_runs")) for a in policy.get("approvals", [])]
    return Admission(cfg, approvals, lambda fp: runs)


def _check(adm: Admission, comp: Computation) -> Approved:
    return adm.check(comp, comp.document(), comp.fingerprint())


def test_admission_needs_the_exact_fingerprint() -> None:
    honest = load_scenario(RAISE).computation()
    attack = _raise_variant(kind="total", contributors=["bob"], recipients=["alice"]).computation()
    adm = _admission({"approvals": [{"fingerprint": honest.fingerprint()}]})
    assert _check(adm, honest).fingerprint == honest.fingerprint()
    with pytest.raises(Denied, match=r"bob has not approved computation [0-9a-f]{16}\.\.\."):
        _check(adm, attack)


def test_admission_limits_expiry_and_runs() -> None:
    comp = load_scenario(RAISE).computation()
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    with pytest.raises(Denied, match="expired"):
        _check(_admission({"approvals": [{"fingerprint": comp.fingerprint(), "expires": past}]}), comp)
    with pytest.raises(Denied, match=r"allows 2 run\(s\), all used"):
        _check(_admission({"approvals": [{"fingerprint": comp.fingerprint(), "max_runs": 2}]}, runs=2), comp)
    assert _check(_admission({"approvals": [{"fingerprint": comp.fingerprint(), "max_runs": 2}]}, runs=1), comp)


def test_admission_floors_hold_whatever_was_approved() -> None:
    comp = _raise_variant(kind="total", contributors=["bob"], recipients=["alice"]).computation()
    approved = {"approvals": [{"fingerprint": comp.fingerprint()}]}
    with pytest.raises(Denied, match="at least 2 contributors .* output 'total' has 1"):
        _check(_admission({**approved, "min_contributors": 2}), comp)
    assert _check(_admission({**approved, "min_contributors": 2}, org="alice"), comp)   # alice's data feeds nothing
    with pytest.raises(Denied, match=r"requires threshold t >= 2, the job has t = 1"):
        _check(_admission({**approved, "min_threshold": 2}), comp)


def test_insecure_approval_of_anything_must_be_asked_for_by_name() -> None:
    comp = known()
    with pytest.raises(Denied):
        _check(_admission({}), comp)
    assert _check(_admission({"approve_any_computation_insecure": True}), comp).note == "approve_any_computation_insecure"


def test_an_auction_can_name_a_large_bidder_population_by_prefix_and_count() -> None:
    """The 128 KiB scenario limit no longer caps an auction at ~16,000 listed bidders; the document
    pins the expanded population by its content hash, as it does for voters."""
    import yaml

    data = yaml.safe_load((REPO / "scenarios" / "art-auction.yaml").read_text())
    data["bidders"] = {"prefix": "bidder-", "count": 200_000}
    sc = parse_scenario(data, Path("big-auction.yaml"))
    assert len(sc.bidder_names) == 200_000 and sc.bidder_names[0] == "bidder-000001"
    doc = sc.computation().document()
    bids = next(d for d in doc["inputs"] if d["name"] == "bids")
    assert bids["clients"]["count"] == 200_000
    smaller = parse_scenario({**data, "bidders": {"prefix": "bidder-", "count": 199_999}}, Path("b.yaml"))
    assert smaller.computation().fingerprint() != sc.computation().fingerprint()
    with pytest.raises(Exception, match="at least two bidders"):
        parse_scenario({**data, "bidders": {"prefix": "bidder-", "count": 1}}, Path("c.yaml"))


def test_a_client_listed_twice_is_refused() -> None:
    """Listed twice, one client's row would count twice under an approved fingerprint (the document
    shows the population only by count and hash)."""
    from mpcnode.circuit import CircuitError, validate

    comp = known()
    comp.circuit.inputs[1].clients.append("c1")
    with pytest.raises(CircuitError, match="input votes: a client is listed twice"):
        validate(comp.circuit, list(PARTIES))


def test_words_show_how_much_an_output_opens_whatever_its_description_claims() -> None:
    """A circuit that opens every bid under an auction's render note: the description still says
    "only the winner and the price", but the words also say 8 values are opened, from the structure."""
    sc = load_scenario(REPO / "scenarios" / "art-auction.yaml")
    comp = sc.computation()
    comp.circuit.outputs[0].value = "bids"
    words = "\n".join(describe(comp.document()))
    assert "learn 'result' (8 values opened), described as: whether the item sold" in words
    honest = "\n".join(describe(sc.computation().document()))
    assert "learn 'result' (3 values opened)" in honest and "; not who took part;" in honest


def test_revealing_participants_is_in_the_fingerprint_and_the_words() -> None:
    sc = load_scenario(REPO / "scenarios" / "art-auction.yaml")
    told = sc.model_copy(update={"reveal_participants": True})
    assert told.computation().fingerprint() != sc.computation().fingerprint()
    assert "and which listed clients' inputs counted" in "\n".join(describe(told.computation().document()))
    # the auction's tournament carries row tags: part of the document
    assert any(op.get("tags") == "bids" for op in sc.computation().document()["ops"])


def test_interactive_op_names_match_the_circuit_module() -> None:
    from mpcnode.circuit import INTERACTIVE
    from mpcnode.computation.spec import INTERACTIVE_OPS

    assert {cpb.OpKind.Name(k).removeprefix("OP_").lower() for k in INTERACTIVE} == INTERACTIVE_OPS


def test_one_live_set_rule() -> None:
    from mpcnode.computation.liveness import live_set_problem

    five = ["a", "b", "c", "d", "e"]
    assert live_set_problem(five, 2, {"a"}, True, "within-threshold", five) == ""
    assert "needs 5 with t=2" in live_set_problem(five, 2, {"a"}, True, "within-threshold", five[:4])
    assert live_set_problem(five, 2, {"a"}, False, "within-threshold", five[:3]) == ""   # t+1 for sums
    assert "input owners e" in live_set_problem(five, 2, {"e"}, False, "within-threshold", five[:4])
    assert "all its parties only" in live_set_problem(five, 2, set(), False, "none", five[:4])
    assert "distinct parties" in live_set_problem(five, 2, set(), False, "within-threshold", ["a", "a", "b"])
    assert "distinct parties" in live_set_problem(five, 2, set(), False, "within-threshold", ["a", "b", "z"])
