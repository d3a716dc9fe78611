"""Malformed scenario, node, coordinator and input files: ONE line naming the file, the field and the problem."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from coordinator.config import load_coordinator_config
from mpcnode.computation.scenario import load_scenario, parse_scenario_text
from mpcnode.config import load_node_config
from mpcnode.configfile import ConfigError
from mpcnode.inputs import InputError, load_node_inputs
from parley.v1 import circuit_pb2 as cpb

REPO = Path(__file__).resolve().parents[2]

SCENARIO = {
    "name": "payroll",
    "kind": "average",
    "parties": ["org-a", "org-b", "org-c"],
    "protocol": "shamir",
    "input": {"name": "salary", "range": [0, 1000000]},
    "recipients": ["org-a", "regulator"],
}


def one_line(exc: BaseException, path: Path | str, field: str, reason: str) -> None:
    """str(exc) is `<path>: <field>: <problem>` on one line, and the problem matches `reason`."""
    text = str(exc)
    assert "\n" not in text and "\r" not in text, text
    prefix = f"{path}: {field}: "
    assert text.startswith(prefix), f"{text!r} does not start with {prefix!r}"
    assert re.search(reason, text[len(prefix):], re.IGNORECASE), f"{reason!r} not in {text!r}"
    if isinstance(exc, ConfigError):
        assert (exc.path, exc.field) == (str(path), field)


def write(tmp_path: Path, name: str, content: object) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return path


def with_(base: dict, **changes: object) -> dict:
    out = {k: v for k, v in base.items() if k not in changes or changes[k] is not DROP}
    out.update({k: v for k, v in changes.items() if v is not DROP})
    return out


DROP = object()

SCENARIO_CASES = {
    "missing field": (with_(SCENARIO, recipients=DROP), "recipients", r"required field is missing"),
    "missing kind": (with_(SCENARIO, kind=DROP), "kind", r"required field is missing"),
    "unknown kind": (with_(SCENARIO, kind="lottery"), "kind", r"'lottery'.*total"),
    "wrong type (list)": (with_(SCENARIO, parties="org-a"), "parties", r"valid list"),
    "wrong type (number)": (with_(SCENARIO, timeout_s="soon"), "timeout_s", r"valid number"),
    "wrong type (mapping)": (with_(SCENARIO, input=[1, 2]), "input", r"valid dictionary"),
    "unknown field": (with_(SCENARIO, colour="red"), "colour", r"unknown field"),
    "unknown nested field": (with_(SCENARIO, input={"name": "salary", "range": [0, 9], "unit": "usd"}),
                             "input.unit", r"unknown field"),
    "range lo > hi": (with_(SCENARIO, input={"name": "salary", "range": [10, 0]}), "input.range",
                      r"lower bound 10 is above upper bound 0"),
    "range too wide": (with_(SCENARIO, input={"name": "salary", "range": [0, 2**60]}), "input.range",
                       r"2\^59"),
    "range not a pair": (with_(SCENARIO, input={"name": "salary", "range": [1]}), "input.range[1]", r"required"),
    "total could overflow": (with_(SCENARIO, input={"name": "salary", "range": [0, 2**58]}), "input.range",
                             r"total of all inputs could exceed"),
    "threshold too big": (with_(SCENARIO, threshold=2), "threshold", r"t=2 needs 2t < 3"),
    "threshold zero": (with_(SCENARIO, threshold=0), "threshold", r"greater than or equal to 1"),
    "bad identity name": (with_(SCENARIO, parties=["org-a", "Org_B", "org-c"]), "parties", r"'Org_B' is not a valid"),
    "bad recipient name": (with_(SCENARIO, recipients=["the regulator"]), "recipients", r"not a valid identity"),
    "party listed twice": (with_(SCENARIO, parties=["org-a", "org-b", "org-a"]), "parties", r"listed twice"),
    "too few parties": (with_(SCENARIO, parties=["org-a", "org-b"]), "parties", r"at least 3"),
    "contributor not a party": (with_(SCENARIO, kind="total", contributors=["org-z"]), "contributors",
                                r"'org-z' is not one of the parties"),
    "bad scenario name": (with_(SCENARIO, name="Pay Roll"), "name", r"pattern"),
    "bad input name": (with_(SCENARIO, input={"name": "Salary!", "range": [0, 1]}), "input.name", r"pattern"),
    "auction field": ({"name": "auc", "kind": "auction", "parties": ["a", "b", "c"], "recipients": ["a"],
                       "protocol": "shamir", "bidders": ["x", "y"], "auction": {"type": "third-price"}}, "auction.type", r"first-price"),
    "empty file": ("", "(top level)", r"expected a mapping"),
    "only a comment": ("# nothing here\n", "(top level)", r"expected a mapping"),
    "list instead of mapping": ("- name: payroll\n- kind: total\n", "(top level)", r"expected a mapping"),
    "scalar instead of mapping": ("payroll\n", "(top level)", r"expected a mapping"),
    "invalid YAML (bracket)": ("name: payroll\nparties: [a, b\nkind: total\n", r"line 3, column 5",
                               r"invalid YAML"),
    "invalid YAML (indent)": ("name: payroll\n  kind: : total\n", "line 2, column 7", r"invalid YAML: mapping values"),
    "invalid YAML (tab)": ("name: payroll\n\tkind: total\n", "line 2, column 1", r"invalid YAML"),
    "invalid YAML (control char)": ("name: pay\x00roll\n", "(file)", r"invalid YAML: unacceptable character"),
    "key with a newline": ('"col\\nour": red\n' + yaml.safe_dump(SCENARIO), "col our", r"unknown field"),
    # a misspelling is named, with the closest known field, before the right field is called missing
    "misspelled field": (with_(SCENARIO, recipients=DROP, recipents=["org-a"]), "recipents",
                         r"^unknown field 'recipents' \(did you mean 'recipients'\?\)$"),
    "misspelled nested field": (with_(SCENARIO, input={"name": "salary", "rnage": [0, 9]}), "input.rnage",
                                r"^unknown field 'rnage' \(did you mean 'range'\?\)"),
    "misspelled auction field": ({"name": "auc", "kind": "auction", "parties": ["a", "b", "c"], "recipients": ["a"],
                                  "protocol": "shamir", "biders": ["x", "y"]}, "biders",
                                 r"^unknown field 'biders' \(did you mean 'bidders'\?\)"),
}


@pytest.mark.parametrize("case", list(SCENARIO_CASES))
def test_scenario_file_errors_are_one_line(tmp_path: Path, case: str) -> None:
    content, field, reason = SCENARIO_CASES[case]
    path = write(tmp_path, "scenario.yaml", content)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    if case == "key with a newline":  # the field itself holds a newline; the message must still be one line
        assert "\n" not in str(info.value) and "col our: unknown field" in str(info.value)
        return
    one_line(info.value, path, field, reason)


@pytest.mark.parametrize("case", ["missing field", "threshold too big", "invalid YAML (bracket)",
                                  "invalid YAML (control char)", "empty file", "list instead of mapping"])
def test_submitted_scenario_text_errors_are_one_line(case: str) -> None:
    """The coordinator parses the submitted text (not a file); the same rule holds."""
    content, field, reason = SCENARIO_CASES[case]
    text = content if isinstance(content, str) else yaml.safe_dump(content)
    with pytest.raises(ConfigError) as info:
        parse_scenario_text(text, "submitted/payroll.yaml")
    one_line(info.value, "submitted/payroll.yaml", field, reason)


def test_missing_scenario_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_scenario(tmp_path / "nope.yaml")
    one_line(info.value, tmp_path / "nope.yaml", "(file)", "file not found")


def test_the_shipped_scenarios_load() -> None:
    paths = sorted((REPO / "scenarios").glob("*.yaml"))
    assert paths
    for p in paths:
        load_scenario(p)


NODE = {
    "organization": "org-a",
    "listen": "127.0.0.1:7001",
    "tls": {"ca": "ca.pem", "cert": "org-a.pem", "key": "org-a.key"},
    "peers": {"org-b": "127.0.0.1:7002", "org-c": "127.0.0.1:7003"},
    "data_dir": "data",
    "inputs": {"payroll": "payroll.yaml"},
    "policy": {"approvals": [{"fingerprint": "ab" * 32, "max_runs": 3}], "min_threshold": 1},
}

NODE_CASES = {
    "missing field": (with_(NODE, data_dir=DROP), "data_dir", r"required field is missing"),
    "missing nested field": (with_(NODE, tls={"ca": "ca.pem", "cert": "x.pem"}), "tls.key", r"required field"),
    "wrong type": (with_(NODE, listen=[1, 2]), "listen", r"valid string"),
    "wrong type (mapping)": (with_(NODE, peers=["org-b"]), "peers", r"valid dictionary"),
    "wrong type (number)": (with_(NODE, round_timeout_s="slow"), "round_timeout_s", r"valid number"),
    "number out of range": (with_(NODE, round_timeout_s=-1), "round_timeout_s", r"greater than 0"),
    "too large": (with_(NODE, max_message_mb=5000), "max_message_mb", r"less than or equal to 2000"),
    "unknown field": (with_(NODE, colour="red"), "colour", r"^unknown field 'colour'$"),
    "misspelled field": (with_(NODE, organization=DROP, organisation="org-a"), "organisation",
                         r"^unknown field 'organisation' \(did you mean 'organization'\?\)$"),
    "misspelled policy field": (with_(NODE, policy={"aprovals": []}), "policy.aprovals",
                                r"^unknown field 'aprovals' \(did you mean 'approvals'\?\)$"),
    "unknown policy field": (with_(NODE, policy={"approvals": [], "everything": True}), "policy.everything",
                             r"unknown field"),
    "policy wrong type": (with_(NODE, policy={"approvals": "all"}), "policy.approvals", r"valid list"),
    "approval by scenario name": (with_(NODE, policy={"scenarios": ["payroll"]}), "policy.scenarios",
                                  r"approval by scenario name was removed"),
    "union of recipients": (with_(NODE, policy={"recipients": ["org-a"]}), "policy.recipients",
                            r"recipients belong to each approved computation"),
    "approval without source": (with_(NODE, policy={"approvals": [{"max_runs": 2}]}), "policy.approvals[0]",
                                r"exactly one of fingerprint or scenario_file"),
    "approval with both sources": (with_(NODE, policy={"approvals": [{"fingerprint": "ab" * 32,
                                                                     "scenario_file": "s.yaml"}]}),
                                   "policy.approvals[0]", r"exactly one of fingerprint or scenario_file"),
    "bad fingerprint": (with_(NODE, policy={"approvals": [{"fingerprint": "payroll"}]}),
                        "policy.approvals[0].fingerprint", r"should match pattern"),
    "expiry without zone": (with_(NODE, policy={"approvals": [{"fingerprint": "ab" * 32,
                                                              "expires": "2027-01-01T00:00:00"}]}),
                            "policy.approvals[0]", r"time zone"),
    "min_threshold zero": (with_(NODE, policy={"min_threshold": 0}), "policy.min_threshold", r"greater than or equal to 1"),
    "bad identity": (with_(NODE, organization="Org_A"), "organization", r"'Org_A' is not a valid identity"),
    "bad peer identity": (with_(NODE, peers={"Org B": "127.0.0.1:1"}), "peers", r"not a valid identity"),
    "bad peer address": (with_(NODE, peers={"org-b": "nowhere"}), "peers", r"address 'nowhere' must be host:port"),
    "bad listen": (with_(NODE, listen="localhost"), "listen", r"must be host:port"),
    "empty file": ("", "(top level)", r"expected a mapping.*NoneType"),
    "list instead of mapping": ("- organization: org-a\n", "(top level)", r"expected a mapping.*list"),
    "invalid YAML": ("organization: org-a\npeers: {org-b: 1\n", "line 3, column 1", r"invalid YAML"),
}


@pytest.mark.parametrize("case", list(NODE_CASES))
def test_node_config_errors_are_one_line(tmp_path: Path, case: str) -> None:
    content, field, reason = NODE_CASES[case]
    path = write(tmp_path, "node.yaml", content)
    with pytest.raises(ConfigError) as info:
        load_node_config(path)
    one_line(info.value, path, field, reason)


def test_a_good_node_config_resolves_paths_next_to_the_file(tmp_path: Path) -> None:
    cfg = load_node_config(write(tmp_path, "node.yaml", NODE))
    assert cfg.tls.ca == tmp_path / "ca.pem" and cfg.data_dir == tmp_path / "data"
    assert cfg.inputs == {"payroll": tmp_path / "payroll.yaml"}
    assert cfg.policy.coordinators == ["coordinator"]


@pytest.mark.parametrize("content,field,reason", [
    ({"listen": "127.0.0.1:1", "tls": {"ca": "a", "cert": "b", "key": "c"}, "database": "db"}, "nodes",
     r"required field is missing"),
    ({"listen": "127.0.0.1:1", "tls": {"ca": "a", "cert": "b", "key": "c"}, "database": "db", "nodes": {},
      "operator": ["x"]}, "operator", r"unknown field"),
    ({"listen": "127.0.0.1:1", "tls": {"ca": "a", "cert": "b", "key": "c"}, "database": "db", "nodes": {},
      "poll_interval_s": 0}, "poll_interval_s", r"greater than 0"),
])
def test_coordinator_config_errors_are_one_line(tmp_path: Path, content: dict, field: str, reason: str) -> None:
    path = write(tmp_path, "coordinator.yaml", content)
    with pytest.raises(ConfigError) as info:
        load_coordinator_config(path)
    one_line(info.value, path, field, reason)


# ---- an organization's input file -----------------------------------------------------------------

def decl(name: str = "salary", length: int = 1, lo: int = 0, hi: int = 1000, key: str = "") -> cpb.InputDecl:
    return cpb.InputDecl(name=name, owner="org-a", length=length, lo=lo, hi=hi, source=cpb.INPUT_SOURCE_NODE, key=key)


INPUT_CASES = {
    "a string": ("salary: lots\n", [decl()], "salary[0]", r"expected an integer, got str 'lots'"),
    "a float": ("salary: 12.5\n", [decl()], "salary[0]", r"expected an integer, got float 12.5"),
    "a bool": ("salary: true\n", [decl()], "salary[0]", r"expected an integer, got bool"),
    "a null": ("salary:\n", [decl()], "salary[0]", r"expected an integer, got NoneType"),
    "above the range": ("salary: 1001\n", [decl()], "salary[0]", r"value 1001 outside the declared range \[0, 1000\]"),
    "below the range": ("salary: [5, -1]\n", [decl(length=2)], "salary[1]", r"value -1 outside"),
    "wrong length": ("salary: [1, 2, 3]\n", [decl(length=2)], "salary", r"expected 2 value\(s\), got 3"),
    "missing key": ("wage: 10\n", [decl()], "salary", r"required input is missing"),
    "missing key (custom key)": ("salary: 10\n", [decl(name="salary@org-a", key="pay")], "pay",
                                 r"required input is missing"),
    "not a mapping": ("- 10\n", [decl()], None, r"expected a mapping"),
    "invalid YAML": ("salary: [1\n", [decl()], "line 2, column 1", r"invalid YAML"),
}


@pytest.mark.parametrize("case", list(INPUT_CASES))
def test_node_input_file_errors_name_the_file_and_field(tmp_path: Path, case: str) -> None:
    """The node's own log gets file, field and value (`detail`); the public reason, which travels to
    the coordinator in a refusal, names the input or dataset and the rule only."""
    content, decls, field, reason = INPUT_CASES[case]
    path = write(tmp_path, "payroll.yaml", content)
    with pytest.raises(InputError) as info:
        load_node_inputs(path, decls, "payroll")
    detail, public = info.value.detail, str(info.value)
    if field is None:
        assert "\n" not in detail and detail.startswith(f"{path}: ") and re.search(reason, detail)
    else:
        one_line(ConfigError(path, field, "x"), path, field, "x")  # the shape of the detail line
        assert detail.startswith(f"{path}: {field}: ") and re.search(reason, detail), detail
    assert "\n" not in public and str(tmp_path) not in public, public
    for secret in ("lots", "12.5", "1001", "-1", "[1, 2, 3]", "wage", "line 2"):
        assert secret not in public, (secret, public)
    assert re.search(r"(input|dataset) '?[a-z]+'?", public), public


def test_node_input_file_missing_or_not_configured(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_node_inputs(tmp_path / "gone.yaml", [decl()], "payroll")
    assert info.value.detail.startswith(f"{tmp_path / 'gone.yaml'}: (file): ")
    assert "gone.yaml" not in str(info.value) and "dataset 'payroll'" in str(info.value)
    with pytest.raises(InputError, match="dataset 'payroll': no input file is configured for it"):
        load_node_inputs(None, [decl()], "payroll")
    assert load_node_inputs(None, [], "payroll") == {}  # nothing owned, nothing read


def test_good_node_inputs_are_read_as_signed_integers(tmp_path: Path) -> None:
    """Signed int64: the job's engine encodes them (field or ring), jobrun.run_job."""
    path = write(tmp_path, "payroll.yaml", "salary: [0, -5, 1000]\nother: ignored\n")
    got = load_node_inputs(path, [decl(length=3, lo=-5)], "payroll")
    assert got["salary"].dtype == np.int64
    assert [int(v) for v in got["salary"]] == [0, -5, 1000]


# ---- the command lines -------------------------------------------------------------------------

def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_node_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", with_(NODE, colour="red"))
    proc = _run(["-m", "mpcnode", "--config", str(path)], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"error: {path}: colour: unknown field 'colour'\n"
    assert proc.stdout == ""


def test_node_cli_missing_certificates_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "node.yaml", NODE)  # valid config; the TLS files do not exist
    proc = _run(["-m", "mpcnode", "--config", str(path)], tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: tls: cannot read certificate material")


def test_coordinator_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, "coordinator.yaml", "listen: [\n")
    proc = _run(["-m", "coordinator", "serve", "--config", str(path)], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert re.fullmatch(rf"error: {re.escape(str(path))}: line 2, column 1: invalid YAML: [^\n]+\n", proc.stderr)


def test_certs_cli_reports_a_bad_scenario_in_one_line(tmp_path: Path) -> None:
    scen = tmp_path / "scenarios"
    scen.mkdir()
    bad = write(scen, "payroll.yaml", with_(SCENARIO, threshold=2))
    proc = _run(["-m", "mpcnode.certs", "--out", str(tmp_path / "certs"), "--orgs-from", str(scen)], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == f"error: {bad}: threshold: t=2 needs 2t < 3 parties\n"


def test_the_size_limit_suggests_npz_only_for_node_inputs(tmp_path: Path) -> None:
    """A scenario or config file over 128 KiB cannot become an .npz file; a node input file can."""
    big = "# " + "x" * (128 * 1024) + "\n"
    for loader in (load_scenario, load_node_config):
        with pytest.raises(ConfigError) as info:
            loader(write(tmp_path, "big.yaml", big))
        one_line(info.value, tmp_path / "big.yaml", "(file)", r"^larger than 128 KiB, the limit for YAML files$")
    with pytest.raises(ConfigError) as info:
        parse_scenario_text(big, "submitted/big.yaml")
    assert "npz" not in str(info.value)
    with pytest.raises(InputError) as info:
        load_node_inputs(write(tmp_path, "inputs.yaml", big), [cpb.InputDecl(name="salary")], "payroll")
    assert "larger than 128 KiB" in info.value.detail and "belong in .npz files" in info.value.detail


def test_node_refuses_a_certificate_of_another_name(tmp_path: Path) -> None:
    """organization: org-a with org-b's certificate: exit 2 at start-up, one line naming the file,
    the field and both names (instead of serving and timing out later as 'unreachable')."""
    from mpcnode.certs import ensure

    ensure(tmp_path / "certs", ["org-a", "org-b"])
    cfg = with_(NODE, listen="127.0.0.1:0", tls={"ca": "certs/ca.pem", "cert": "certs/org-b.pem",
                                                 "key": "certs/org-b.key"})
    path = write(tmp_path, "node.yaml", cfg)
    proc = _run(["-m", "mpcnode", "--config", str(path)], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (f"error: {path}: organization: 'org-a' differs from the name in its certificate "
                           f"{tmp_path / 'certs' / 'org-b.pem'} ('org-b')\n")


def test_coordinator_submit_of_a_bad_scenario_exits_2_before_connecting(tmp_path: Path) -> None:
    bad = write(tmp_path, "payroll.yaml", with_(SCENARIO, recipients=DROP, recipents=["org-a"]))
    # no coordinator listens on port 9 and no certificate exists: the scenario is refused first
    proc = _run(["-m", "coordinator", "submit", str(bad), "--coordinator", "127.0.0.1:9",
                 "--certs", str(tmp_path / "none")], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"error: {bad}: recipents: unknown field 'recipents' (did you mean 'recipients'?)\n"


VOTE = {"name": "poll", "kind": "vote", "parties": ["org-a", "org-b", "org-c"], "protocol": "shamir",
        "recipients": ["org-a"], "voters": ["v1", "v2"], "vote": {"options": ["red", "blue"], "output": "tally"}}


@pytest.mark.parametrize("options,reason", [
    (["red", "invalid"], r"'invalid' is a key of the result"),
    (["red", "blue", "red"], r"'red' listed twice"),
])
def test_vote_options_cannot_collide_with_each_other_or_result_keys(tmp_path: Path, options, reason) -> None:
    path = write(tmp_path, "poll.yaml", with_(VOTE, vote={"options": options, "output": "tally"}))
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    one_line(info.value, path, "vote.options", reason)
