"""Which protocol a computation runs under (computation/protocol.py): the default rule, each
protocol's requirements, and the refusals at scenario load, in Prepare's checks and in the
coordinator's plan check."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from coordinator.jobplan import JobPlan
from mpcnode.computation import spec as spec_mod
from mpcnode.computation.builder import CircuitBuilder
from mpcnode.computation.protocol import default_dropouts, default_protocol, protocol_problem
from mpcnode.computation.scenario import load_scenario, parse_scenario_text
from mpcnode.computation.spec import PROTOCOLS, Computation
from mpcnode.configfile import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _total(parties: list[str], **extra: object) -> str:
    return yaml.safe_dump({"name": "pay", "kind": "total", "parties": parties, "recipients": [parties[0]],
                           "input": {"name": "salary", "range": [0, 100]}, **extra}, sort_keys=False)


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as err:
        parse_scenario_text(text, "sc.yaml")
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_the_default_rule() -> None:
    assert default_protocol(3) == "replicated3"
    assert [default_protocol(n) for n in (4, 5, 7, 11)] == ["shamir"] * 4
    assert default_dropouts("replicated3") == "none"
    assert default_dropouts("shamir") == "within-threshold"


def test_replicated3_requirements() -> None:
    assert protocol_problem("replicated3", 3, 1, "none") == ""
    assert protocol_problem("replicated3", 4, 1, "none").startswith("protocol: replicated3 runs with exactly 3")
    assert protocol_problem("replicated3", 3, 2, "none").startswith("threshold: replicated3 runs with t = 1")
    assert protocol_problem("replicated3", 3, 1, "within-threshold").startswith(
        "dropouts: replicated3 needs every party")
    assert protocol_problem("shamir", 7, 3, "within-threshold") == ""


def test_four_or_more_parties_default_to_shamir_and_the_document_says_so() -> None:
    sc = parse_scenario_text(_total(["a", "b", "c", "d"]), "sc.yaml")
    assert (sc.protocol, sc.protocol_name, sc.dropout_rule) == (None, "shamir", "within-threshold")
    comp = sc.computation()
    assert (comp.protocol, comp.dropouts) == ("shamir", "within-threshold")
    assert comp.document()["protocol"]["engine"] == "shamir"
    # stating the default is the same computation
    assert parse_scenario_text(_total(["a", "b", "c", "d"], protocol="shamir"), "sc.yaml").computation(
    ).fingerprint() == comp.fingerprint()


def test_three_parties_default_to_replicated3() -> None:
    text = _total(["a", "b", "c"])
    if "replicated3" in PROTOCOLS:
        sc = parse_scenario_text(text, "sc.yaml")
        assert (sc.protocol_name, sc.dropout_rule) == ("replicated3", "none")
        assert sc.computation().document()["protocol"]["engine"] == "replicated3"
    else:   # until the engine is registered, the default names itself and the way out
        assert _error(text) == ("sc.yaml: protocol: 'replicated3' (the default for 3 compute parties) is not "
                                "supported (supported: shamir); to run Shamir, state protocol: shamir")
    sc = parse_scenario_text(_total(["a", "b", "c"], protocol="shamir"), "sc.yaml")
    assert (sc.protocol_name, sc.dropout_rule) == ("shamir", "within-threshold")


def test_an_unknown_protocol_is_one_line_naming_file_field_and_problem() -> None:
    assert _error(_total(["a", "b", "c", "d"], protocol="spdz")).startswith(
        "sc.yaml: protocol: 'spdz' is not supported (supported: ")


@pytest.mark.parametrize("extra, field, problem", [
    ({"parties": ["a", "b", "c", "d"]}, "protocol", "replicated3 runs with exactly 3 compute parties, this "
                                                    "computation has 4"),
    ({"dropouts": "within-threshold"}, "dropouts", "replicated3 needs every party to take part (dropouts: none), "
                                                   "got 'within-threshold'"),
])
def test_replicated3_with_what_it_cannot_run_is_refused_at_load(extra: dict, field: str, problem: str) -> None:
    parties = extra.pop("parties", ["a", "b", "c"])
    assert _error(_total(parties, protocol="replicated3", **extra)) == f"sc.yaml: {field}: {problem}"


def test_every_shipped_scenario_states_its_protocol() -> None:
    for path in sorted((REPO / "scenarios").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        assert data.get("protocol") in PROTOCOLS, path
        assert load_scenario(path).computation().protocol == data["protocol"]


def test_the_protocol_is_part_of_the_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The document's protocol entry is protocol_parameters(the computation's protocol): another
    engine name gives another document, hence another fingerprint (whatever engines exist)."""
    b = CircuitBuilder("one")
    b.output("x", b.sum(b.input("x", "a", 2, 0, 9)), ["a"])
    seen = []

    def parameters(engine: str) -> dict:
        seen.append(engine)
        return {"engine": engine}

    monkeypatch.setattr(spec_mod, "protocol_parameters", parameters)
    one = Computation(b.build(), ("a", "b", "c"), 1, protocol="shamir", dropouts="none")
    other = Computation(b.build(), ("a", "b", "c"), 1, protocol="replicated3", dropouts="none")
    assert one.document()["protocol"] == {"engine": "shamir"}
    assert other.document()["protocol"] == {"engine": "replicated3"}
    assert one.fingerprint() != other.fingerprint()
    assert "replicated3" in seen


def test_the_coordinator_refuses_a_plan_the_nodes_would_refuse() -> None:
    b = CircuitBuilder("plan")
    x = b.input("x", "a", 1, -(1 << 40), 1 << 40)
    b.output("sq", b.mul(x, x), ["a"])
    wraps = JobPlan("plan", b.build(), ["a", "b", "c", "d"], 1, 30.0)
    with pytest.raises(ValueError, match=r"op 0 \(mul_1, mul\): its value could reach -about 2\^80, outside the shamir"):
        wraps.check()
    ok = CircuitBuilder("plan")
    ok.output("x", ok.input("x", "a", 1, 0, 5), ["a"])
    JobPlan("plan", ok.build(), ["a", "b", "c", "d"], 1, 30.0).check()
    with pytest.raises(ValueError, match="protocol: replicated3 runs with exactly 3"):
        JobPlan("plan", ok.build(), ["a", "b", "c", "d"], 1, 30.0, protocol="replicated3", dropouts="none").check()
    with pytest.raises(ValueError, match="'spdz' is not supported"):
        JobPlan("plan", ok.build(), ["a", "b", "c", "d"], 1, 30.0, protocol="spdz").check()


def test_plain_words_name_an_engine_without_a_field(monkeypatch: pytest.MonkeyPatch) -> None:
    from mpcnode.computation.describe import describe

    monkeypatch.setattr(spec_mod, "protocol_parameters", lambda engine: {"engine": engine, "ring": "Z_2^64"})
    b = CircuitBuilder("one")
    b.output("x", b.sum(b.input("x", "a", 2, 0, 9)), ["a"])
    doc = Computation(b.build(), ("a", "b", "c"), 1, protocol="replicated3", dropouts="none").document()
    assert "protocol: replicated3 (ring Z_2^64), semi-honest, honest majority" in describe(doc)
