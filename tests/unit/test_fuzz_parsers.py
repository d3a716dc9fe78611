"""Fuzzing every config, scenario and input parser with hostile files (hypothesis).

Targets: mpcnode.computation.scenario.parse_scenario_text / load_scenario, mpcnode.config.load_node_config,
coordinator.config.load_coordinator_config and mpcnode.inputs.load_node_inputs (YAML and .npz).

Inputs: random bytes and unicode, YAML-looking noise, random prefixes of valid files, valid files
with random edits, valid documents with one field replaced by a hostile value, oversized files
(long strings, huge lists, deep nesting, files beyond the size cap), alias bombs ("billion
laughs", merge-key bombs, cyclic aliases) and corrupt .npz archives (truncated, bit-flipped,
pickles, wrong dtypes, archives whose header claims a huge array, deflate bombs).

Property, for every call: it returns, or raises the documented error (ConfigError, or InputError
for input files) whose message is one non-empty line of bounded length; it uses little CPU time
(CPU, not wall clock, so that other test processes on the machine do not make it flaky); and the
whole module never grows the process by more than a bounded amount of memory.

PARLEY_FUZZ_SCALE=10 runs ten times as many examples (`make soak` does).
"""
from __future__ import annotations

import io
import os
import resource
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from coordinator.config import load_coordinator_config
from mpcnode.computation.scenario import load_scenario, parse_scenario_text
from mpcnode.config import load_node_config
from mpcnode.configfile import MAX_ALIAS_EXPANSION, MAX_YAML_BYTES, ConfigError
from mpcnode.inputs import InputError, load_node_inputs
from parley.v1 import circuit_pb2 as cpb

REPO = Path(__file__).resolve().parents[2]
SCALE = float(os.environ.get("PARLEY_FUZZ_SCALE", "1"))
CPU_BUDGET_S = 3.0          # per call, CPU seconds; the densest file at the size cap takes about 1.5 s alone,
                            # 2 s on a loaded machine; a super-linear parser would take 10x
MAX_MESSAGE = 3000          # ConfigError clips path, field and problem; InputError clips to 1500
MEMORY_GROWTH_MB = 600      # the whole module, by the high-water mark of the resident set


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


# ---- valid seeds ----------------------------------------------------------------------------------

SCENARIOS: list[dict] = [
    {"name": "payroll", "kind": "average", "parties": ["org-a", "org-b", "org-c"], "protocol": "shamir",
     "input": {"name": "salary", "range": [0, 1000000], "length": 2}, "recipients": ["org-a", "regulator"],
     "threshold": 1, "timeout_s": 60, "contributors": ["org-a", "org-b"]},
    {"name": "sum", "kind": "total", "parties": ["a", "b", "c", "d", "e"], "input": {"name": "x", "range": [-5, 5]},
     "recipients": ["a"], "input_window_s": 3, "description": "a total"},
    {"name": "auc", "kind": "auction", "parties": ["a", "b", "c"], "protocol": "shamir", "recipients": ["a", "seller"],
     "bidders": ["x", "y", "z"], "auction": {"type": "second-price", "bit_length": 40, "min_bid": 1,
                                             "max_bid": 1000, "reserve": {"secret_from": "b"}}},
    {"name": "poll", "kind": "vote", "parties": ["a", "b", "c"], "protocol": "shamir", "recipients": ["a"],
     "vote": {"options": ["yes", "no"], "output": "referendum", "approval": False},
     "voters": {"prefix": "v-", "count": 25}},
    {"name": "chair", "kind": "vote", "parties": ["a", "b", "c"], "protocol": "shamir", "recipients": ["a"],
     "vote": {"options": ["x", "y", "z"], "output": "winner", "approval": True}, "voters": ["v1", "v2", "v3"]},
]
SCENARIO_TEXTS = [yaml.safe_dump(s, sort_keys=False) for s in SCENARIOS] + [
    p.read_text() for p in sorted((REPO / "scenarios").glob("*.yaml"))]

NODE = {
    "organization": "org-a", "listen": "127.0.0.1:7001",
    "tls": {"ca": "ca.pem", "cert": "org-a.pem", "key": "org-a.key"},
    "peers": {"org-b": "127.0.0.1:7002", "org-c": "127.0.0.1:7003"}, "data_dir": "data",
    "inputs": {"payroll": "payroll.yaml", "big": "/abs/big.npz"},
    "policy": {"approvals": [{"fingerprint": "ab" * 32, "max_runs": 2, "expires": "2030-01-01T00:00:00Z"}],
               "min_threshold": 1, "min_contributors": 2, "coordinators": ["coordinator"], "input_clients": ["*"]},
    "rpc_timeout_s": 5, "round_timeout_s": 9.5, "max_message_mb": 64,
}
COORDINATOR = {
    "identity": "coordinator", "listen": "127.0.0.1:7000",
    "tls": {"ca": "ca.pem", "cert": "coordinator.pem", "key": "coordinator.key"},
    "nodes": {"org-a": "127.0.0.1:7001", "org-b": "127.0.0.1:7002"}, "operators": ["operator"],
    "database": "coordinator.sqlite3", "rpc_timeout_s": 10, "prepare_timeout_s": 2, "poll_interval_s": 0.1,
}
INPUT = {"salary": [1, 2, 3], "bonus": 7, "other": "ignored"}
DECLS = [cpb.InputDecl(name="salary@org-a", key="salary", owner="org-a", length=3, lo=0, hi=1000,
                       source=cpb.INPUT_SOURCE_NODE),
         cpb.InputDecl(name="bonus", owner="org-a", length=1, lo=-10, hi=10, source=cpb.INPUT_SOURCE_NODE)]

KINDS = {
    "scenario": [*SCENARIO_TEXTS],
    "node": [yaml.safe_dump(NODE, sort_keys=False), yaml.safe_dump(NODE, default_flow_style=True)],
    "coordinator": [yaml.safe_dump(COORDINATOR, sort_keys=False)],
    "input": [yaml.safe_dump(INPUT, sort_keys=False), "salary: [0, 1000, 5]\nbonus: -10\n"],
}
FIELD_NAMES = sorted({k for d in [*SCENARIOS, NODE, COORDINATOR, INPUT, NODE["policy"], NODE["tls"],
                                  SCENARIOS[0]["input"], SCENARIOS[2]["auction"], SCENARIOS[3]["vote"]]
                      for k in d} | {"kind", "prefix", "count", "public", "secret_from", "<<"})


def test_the_seeds_are_valid(tmp_path: Path) -> None:
    """The mutations below start from files that parse: otherwise truncating them proves little."""
    for i, text in enumerate(SCENARIO_TEXTS):   # beside the shipped files: a prediction names its model's
        parse_scenario_text(text, REPO / "scenarios" / f"seed-{i}.yaml")
    for kind in ("node", "coordinator", "input"):
        for i, text in enumerate(KINDS[kind]):
            path = tmp_path / f"{kind}-{i}.yaml"
            path.write_text(text)
            if kind == "node":
                load_node_config(path)
            elif kind == "coordinator":
                load_coordinator_config(path)
            else:
                load_node_inputs(path, DECLS, "payroll")


# ---- the property -----------------------------------------------------------------------------------

_RSS_START_KB = 0


@pytest.fixture(scope="module", autouse=True)
def _rss_at_module_start():
    """The high-water mark when this module's tests start, not when pytest imported it: tests of
    other modules that run in between (a 10^5-sample statistical test, say) may raise it, and
    that is not this module's growth."""
    global _RSS_START_KB
    _RSS_START_KB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def bounded(call: Callable[[], Any], expected: type[Exception], budget_s: float = CPU_BUDGET_S) -> str | None:
    """Run a parser call: it may succeed or raise `expected` with a one-line message; nothing else, and
    within the CPU budget. Returns the error message (None on success)."""
    cpu, wall = time.process_time(), time.monotonic()
    message = None
    try:
        call()
    except expected as exc:
        message = str(exc)
        if isinstance(exc, InputError):
            # the public reason (sent to the coordinator) is one line without the file's path;
            # the checks below read the node-local detail, which names file, field and value
            assert "\n" not in message and "/" not in message, message
            message = exc.detail
        assert message, f"{type(exc).__name__} with an empty message"
        assert len(message.splitlines()) == 1, f"not one line: {message[:500]!r}"
        assert len(message) <= MAX_MESSAGE, f"{len(message)} characters: {message[:300]!r}..."
    used = time.process_time() - cpu
    assert used < budget_s, f"took {used:.2f}s of CPU ({time.monotonic() - wall:.2f}s wall): {message!r}"
    return message


PARSERS = ["load_scenario", "load_node_config", "load_coordinator_config", "load_node_inputs", "parse_scenario_text"]


def parse_all(tmp_path: Path, content: bytes | str, only: list[str] | None = None) -> list[str | None]:
    """Feed the same content to every YAML parser (as a file, and as submitted text for scenarios)."""
    raw = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
    path = tmp_path / "fuzzed.yaml"
    path.write_bytes(raw)
    text = content if isinstance(content, str) else raw.decode("utf-8", "replace")
    calls = {"load_scenario": (lambda: load_scenario(path), ConfigError),
             "load_node_config": (lambda: load_node_config(path), ConfigError),
             "load_coordinator_config": (lambda: load_coordinator_config(path), ConfigError),
             "load_node_inputs": (lambda: load_node_inputs(path, DECLS, "payroll"), InputError),
             "parse_scenario_text": (lambda: parse_scenario_text(text, "submitted.yaml"), ConfigError)}
    return [bounded(*calls[name]) for name in (only or PARSERS)]


# ---- strategies -------------------------------------------------------------------------------------

YAML_PUNCT = list("{}[]:,-?&*!|>'\"#%@`\n\t <=~.") + ["\n  ", ": ", "- ", "&a ", "*a", "!!int ", "!!str ",
                                                     "!!binary ", "!!timestamp ", "<<: ", "---\n", "...\n"]
seed_texts = st.sampled_from([t for texts in KINDS.values() for t in texts])


@st.composite
def truncated(draw: st.DrawFn) -> str:
    text = draw(seed_texts)
    return text[:draw(st.integers(0, len(text)))]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    chars = list(draw(seed_texts))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(chars)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        piece = draw(st.sampled_from(YAML_PUNCT) | st.text(max_size=3))
        if action == "insert":
            chars[pos:pos] = list(piece)
        elif action == "delete":
            del chars[pos:pos + draw(st.integers(1, 20))]
        elif action == "replace":
            chars[pos:pos + 1] = list(piece)
        else:
            start = draw(st.integers(0, len(chars)))
            chars[pos:pos] = chars[start:start + draw(st.integers(1, 200))]
    return "".join(chars)


yamlish = st.lists(st.sampled_from(YAML_PUNCT) | st.sampled_from(FIELD_NAMES) | st.text(max_size=4),
                   max_size=120).map("".join)

hostile_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2 ** 70), 2 ** 70),
    st.integers(2 ** 59 - 3, 2 ** 59 + 3), st.integers(-(2 ** 63) - 2, -(2 ** 63) + 2),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["", " ", "*", "../../etc/passwd", "\x00", "a\nb", "127.0.0.1:99999", "::1", ":",
                     "host:port", "org-a", "Org_A", "x" * 64, "2024-13-45", "0x" + "f" * 40, "~", "null",
                     "1e400", "-0", ".inf", "\u202e", "\ud7ff"]),
    st.integers(1, 12).map(lambda k: "x" * (10 ** 5 // k)),   # long strings, still under the size cap
)
hostile_values = st.recursive(hostile_scalars,
                              lambda inner: st.lists(inner, max_size=6)
                              | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), inner, max_size=6),
                              max_leaves=30)


def _paths(doc: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def one_field_hostile(draw: st.DrawFn) -> str:
    """A valid document with one value (or key) replaced: exercises pydantic and the semantic checks."""
    doc = yaml.safe_load(draw(seed_texts))
    path = draw(st.sampled_from(_paths(doc)))
    value = draw(hostile_values | st.sampled_from(["drop", "huge list", "unknown key"]))
    if not path:
        return yaml.safe_dump(value if value not in ("drop", "huge list", "unknown key") else [], allow_unicode=True)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    if value == "drop":
        del parent[last]
    elif value == "huge list":
        parent[last] = list(range(draw(st.integers(100, 3000))))
    elif value == "unknown key" and isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=300))] = 1
    else:
        parent[last] = value
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=draw(st.booleans()), width=10 ** 6)


# ---- the tests --------------------------------------------------------------------------------------

@fuzz_settings(150)
@given(content=st.binary(max_size=3000))
def test_random_bytes(tmp_path: Path, content: bytes) -> None:
    parse_all(tmp_path, content)


@fuzz_settings(150)
@given(content=st.text(max_size=2000))
def test_random_unicode(tmp_path: Path, content: str) -> None:
    parse_all(tmp_path, content)


@fuzz_settings(250)
@given(content=yamlish)
def test_yaml_looking_noise(tmp_path: Path, content: str) -> None:
    parse_all(tmp_path, content)


@fuzz_settings(200)
@given(content=truncated())
def test_truncated_valid_files(tmp_path: Path, content: str) -> None:
    parse_all(tmp_path, content)


@fuzz_settings(200)
@given(content=mutated())
def test_mutated_valid_files(tmp_path: Path, content: str) -> None:
    parse_all(tmp_path, content)


@fuzz_settings(150)
@given(content=one_field_hostile())
def test_valid_files_with_one_hostile_field(tmp_path: Path, content: str) -> None:
    parse_all(tmp_path, content)


@fuzz_settings(40)
@given(kind=st.sampled_from(["long string", "long key", "huge flow list", "huge block list", "many keys",
                             "deep flow", "deep block", "deep mixed", "many documents", "long line of noise"]),
       size=st.integers(1, 2 * MAX_YAML_BYTES), parser=st.sampled_from(PARSERS))
def test_oversized(tmp_path: Path, kind: str, size: int, parser: str) -> None:
    """Sizes up to twice the cap: below it the file is parsed and judged, above it refused unread."""
    n = size
    content = {
        "long string": lambda: "name: " + "x" * n + "\n",
        "long key": lambda: "x" * n + ": 1\n",
        "huge flow list": lambda: "parties: [" + ",".join(["a"] * (n // 2)) + "]\n",
        "huge block list": lambda: "salary:\n" + "- 1\n" * (n // 4),
        "many keys": lambda: "".join(f"k{i}: {i}\n" for i in range(n // 10)),
        "deep flow": lambda: "a: " + "[" * (n % 5000) + "]" * (n % 5000) + "\n",
        "deep block": lambda: "".join("  " * i + f"k{i}:\n" for i in range(n % 400)),
        "deep mixed": lambda: "- " * (n % 3000) + "{a: [" * (n % 50) + "1" + "]}" * (n % 50) + "\n",
        "many documents": lambda: "a: 1\n---\n" * (n // 9),
        "long line of noise": lambda: "".join(chr(33 + (i * 7919) % 90) for i in range(n)),
    }[kind]()
    [message] = parse_all(tmp_path, content, only=[parser])
    if len(content.encode()) > MAX_YAML_BYTES:
        assert message and "the limit for YAML files" in message, message


def billion_laughs(levels: int, fanout: int) -> str:
    lines = ["l0: &l0 [lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int, fanout: int) -> str:
    lines = ["m0: &m0 {a: 1, b: 2}"]
    for i in range(1, levels + 1):
        lines.append(f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * fanout) + f"], k{i}: {i}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text", [
    billion_laughs(9, 10), billion_laughs(30, 2), billion_laughs(60, 3),
    merge_bomb(12, 10), merge_bomb(40, 2),
    "a: &a [*a]\n", "a: &a {b: *a}\n", "a: &a {<<: *a}\n", "a: &x [&y [*x, *y]]\n",
    # aliases inside a scenario's own fields: pydantic would walk every expanded copy
    "name: x\nkind: vote\nparties: &p [a, b, c]\nprotocol: shamir\nrecipients: *p\nvote: {options: [y, n], output: tally}\n"
    + billion_laughs(8, 10).replace("l8:", "voters:"),
    # in an input file, where the error message would repr() the 10^9-element value
    billion_laughs(8, 10) + "salary: [1, 2, 3]\nbonus: [*l8]\n",
], ids=["laughs-9x10", "laughs-30x2", "laughs-60x3", "merge-12x10", "merge-40x2",
        "cycle-list", "cycle-map", "cycle-merge", "cycle-nested", "in-scenario", "in-input-file"])
def test_alias_bombs_are_refused_fast(tmp_path: Path, text: str) -> None:
    messages = parse_all(tmp_path, text)
    assert all(m and ("aliases expand" in m or "refers to a node that contains it" in m) for m in messages), messages


def test_modest_aliases_still_work(tmp_path: Path) -> None:
    """Anchors that a person writes (a shared list or mapping) load as before."""
    text = yaml.safe_dump(SCENARIOS[0], sort_keys=False).replace("recipients:\n- org-a\n- regulator\n",
                                                                 "recipients: &r\n- org-a\n- regulator\n")
    assert "&r" in text
    assert parse_scenario_text(text + "description: *r\n".replace("*r", "shared"), "x.yaml").recipients == [
        "org-a", "regulator"]
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(NODE, sort_keys=False).replace("tls:\n", "tls: &t\n"))
    load_node_config(path)
    path.write_text("a: &a [1, 2, 3]\nsalary: *a\nbonus: 1\n")
    assert [int(v) for v in load_node_inputs(path, DECLS, "payroll")["salary@org-a"]] == [1, 2, 3]
    # 3 x 10^4 copies of a small list: well within MAX_ALIAS_EXPANSION
    assert MAX_ALIAS_EXPANSION >= 10_000
    path.write_text("a: &a [1, 2, 3]\nb: [" + ", ".join(["*a"] * 2000) + "]\nsalary: *a\nbonus: 1\n")
    load_node_inputs(path, DECLS, "payroll")


def test_densest_file_at_the_size_cap_is_parsed_within_budget(tmp_path: Path) -> None:
    """The worst case the size cap allows: the most tokens per byte, every parser."""
    n = MAX_YAML_BYTES - 100
    for text in ["salary: [" + ",".join(["1"] * (n // 2 - 8)) + "]\n",
                 ("- " + "[" * 8 + "]" * 8 + "\n") * (n // 20)]:
        assert len(text) <= MAX_YAML_BYTES
        path = tmp_path / "dense.yaml"
        path.write_text(text)
        bounded(lambda: load_node_inputs(path, DECLS, "payroll"), InputError, budget_s=2 * CPU_BUDGET_S)


def test_a_file_that_never_ends_is_not_read_to_the_end() -> None:
    """A config path pointing at a device (or a growing file) is read up to the cap, then refused."""
    message = bounded(lambda: load_node_config(Path("/dev/zero")), ConfigError)
    assert message and "the limit for YAML files" in message


def test_odd_paths(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    for path in [tmp_path / "dir.yaml", tmp_path / "missing.yaml", tmp_path / ("x" * 300 + ".yaml"),
                 tmp_path / "a\nb.yaml"]:
        for call, err in [(lambda: load_scenario(path), ConfigError), (lambda: load_node_config(path), ConfigError),
                          (lambda: load_node_inputs(path, DECLS, "s"), InputError),
                          (lambda: load_node_inputs(path.with_suffix(".npz"), DECLS, "s"), InputError)]:
            assert bounded(call, err)


# ---- .npz node inputs -------------------------------------------------------------------------------

def npz_bytes(arrays: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


GOOD_NPZ = npz_bytes({"salary": np.array([1, 2, 3], dtype=np.int64), "bonus": np.array([7], dtype=np.int32)})
GOOD_NPZ_Z = npz_bytes({"salary": np.array([1, 2, 3], dtype=np.uint16), "bonus": np.array([-7])}, compressed=True)


def npy_header(shape: tuple, dtype: str = "<i8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def zip_of(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def load_npz(tmp_path: Path, content: bytes) -> str | None:
    path = tmp_path / "inputs.npz"
    path.write_bytes(content)
    return bounded(lambda: load_node_inputs(path, DECLS, "payroll"), InputError)


def test_good_npz_loads(tmp_path: Path) -> None:
    for content in (GOOD_NPZ, GOOD_NPZ_Z):
        path = tmp_path / "good.npz"
        path.write_bytes(content)
        got = load_node_inputs(path, DECLS, "payroll")
        assert [int(v) for v in got["salary@org-a"]] == [1, 2, 3]


@fuzz_settings(200)
@given(data=st.data())
def test_npz_corrupted(tmp_path: Path, data: st.DataObject) -> None:
    base = bytearray(data.draw(st.sampled_from([GOOD_NPZ, GOOD_NPZ_Z])))
    how = data.draw(st.sampled_from(["truncate", "flip", "splice", "random"]))
    if how == "truncate":
        content = bytes(base[:data.draw(st.integers(0, len(base)))])
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 10))):
            i = data.draw(st.integers(0, len(base) - 1))
            base[i] ^= 1 << data.draw(st.integers(0, 7))
        content = bytes(base)
    elif how == "splice":
        i = data.draw(st.integers(0, len(base)))
        content = bytes(base[:i]) + data.draw(st.binary(max_size=64)) + bytes(base[i:])
    else:
        content = data.draw(st.binary(max_size=2000))
    load_npz(tmp_path, content)


HUGE = 10 ** 12
NPZ_CASES = {
    "a .npy, not an archive": npy_header((3,)) + np.arange(3, dtype="<i8").tobytes(),
    "a pickle": b"\x80\x04\x95" + b"\x00" * 40,
    "an object array (pickle inside)": zip_of({"salary.npy": npy_header((3,), "|O") + b"\x80\x04N."}),
    "floats": npz_bytes({"salary": np.array([1.0, 2.0, 3.0]), "bonus": np.array([1])}),
    "strings": npz_bytes({"salary": np.array(["a", "b", "c"]), "bonus": np.array([1])}),
    "2-D": npz_bytes({"salary": np.ones((3, 1), dtype=np.int64), "bonus": np.array([1])}),
    "0-D": npz_bytes({"salary": np.array(5), "bonus": np.array([1])}),
    "structured": npz_bytes({"salary": np.zeros(3, dtype=[("a", "<i8")]), "bonus": np.array([1])}),
    "complex": npz_bytes({"salary": np.zeros(3, dtype=np.complex128), "bonus": np.array([1])}),
    "out of range": npz_bytes({"salary": np.array([1, 2, 1001]), "bonus": np.array([1])}),
    "uint64 beyond int64": npz_bytes({"salary": np.array([1, 2, 2 ** 64 - 1], dtype=np.uint64),
                                      "bonus": np.array([1])}),
    "missing member": npz_bytes({"salary": np.array([1, 2, 3])}),
    "raw member without .npy": zip_of({"salary": b"x" * 100, "bonus.npy": npy_header((1,)) + b"\x00" * 8}),
    "header claims a huge array": zip_of({"salary.npy": npy_header((HUGE,)) + b"\x00" * 64,
                                          "bonus.npy": npy_header((1,)) + b"\x00" * 8}),
    "header claims a huge 2-D array": zip_of({"salary.npy": npy_header((HUGE, HUGE)) + b"\x00" * 64}),
    "header shape right, data short": zip_of({"salary.npy": npy_header((3,)) + b"\x00" * 9,
                                              "bonus.npy": npy_header((1,)) + b"\x00" * 8}),
    "garbage header": zip_of({"salary.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': 'xx'}\n" + b"\x00" * 8}),
    "huge header length": zip_of({"salary.npy": b"\x93NUMPY\x02\x00\xff\xff\xff\x7f" + b" " * 100}),
    "unknown version": zip_of({"salary.npy": b"\x93NUMPY\x09\x00\x10\x00" + b" " * 100}),
    "empty zip": zip_of({}),
    "empty file": b"",
}


@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_npz_hostile(tmp_path: Path, case: str) -> None:
    message = load_npz(tmp_path, NPZ_CASES[case])
    assert message, f"{case}: accepted"
    assert str(tmp_path / "inputs.npz") in message


def test_npz_deflate_bomb_is_not_inflated(tmp_path: Path) -> None:
    """A member whose header is right but which inflates to 256 MB: only the declared 3 values are read."""
    path = tmp_path / "inputs.npz"
    zeros = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("salary.npy", "w", force_zip64=True) as f:
            f.write(npy_header((3,)) + np.array([1, 2, 3], dtype="<i8").tobytes())
            for _ in range(256):
                f.write(zeros)
        z.writestr("bonus.npy", npy_header((1,)) + np.array([4], dtype="<i8").tobytes())
    assert path.stat().st_size < 2 << 20
    got: dict = {}
    bounded(lambda: got.update(load_node_inputs(path, DECLS, "payroll")), InputError)
    assert [int(v) for v in got["salary@org-a"]] == [1, 2, 3]


@fuzz_settings(60)
@given(text=st.text(min_size=1, max_size=50))
def test_submitted_scenario_path_is_clipped(text: str) -> None:
    """The coordinator puts the client-chosen scenario_path into its error; a hostile one stays one line."""
    assume(text.strip())
    bounded(lambda: parse_scenario_text("kind: [", text * 10_000), ConfigError)


def test_memory_stayed_bounded() -> None:
    """Runs last in this module: no bomb above grew the process by more than MEMORY_GROWTH_MB."""
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - _RSS_START_KB) / 1024
    assert grown_mb < MEMORY_GROWTH_MB, f"the process grew by {grown_mb:.0f} MB"
