"""DP scenarios without nodes: the builder's noise, sensitivity and clipping, the `dp:` block's
one-line errors, and dpcheck refusing a release its noise does not back (the check every node
runs in circuit.validate)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from mpcnode.circuit import CircuitError, validate
from mpcnode.computation import dp as dpm
from mpcnode.computation.builder import CircuitBuilder
from mpcnode.computation.scenario import parse_scenario
from mpcnode.configfile import ConfigError
from mpcnode.dp import accounting
from mpcnode.executor import Executor
from tests.conftest import ENGINES_UNDER_TEST
from tests.unit.local_mpc import mpc
from parley.v1 import circuit_pb2 as cpb

PARTIES = ["a", "b", "c"]


def total(**dp) -> dict:
    return {"name": "t", "kind": "total", "parties": PARTIES, "input": {"name": "x", "range": [-10 ** 6, 10 ** 6]},
            "recipients": ["a"], "dp": {"unit": "organization", "epsilon": "1", "clip": [0, 100], **dp}}


def vote(output: str = "tally", **dp) -> dict:
    return {"name": "v", "kind": "vote", "parties": PARTIES, "vote": {"options": ["x", "y", "z"], "output": output},
            "voters": {"prefix": "p-", "count": 10}, "recipients": ["a"],
            "dp": {"unit": "client", "epsilon": "1/2", **dp}}


def release(sc) -> cpb.DpRelease:
    return sc.build().outputs[0].dp


@pytest.mark.parametrize("relation,sens", [("add-remove", 100), ("replace-one", 100)])
def test_total_sensitivity_from_clip(relation: str, sens: int) -> None:
    sc = parse_scenario(total(relation=relation), Path("t.yaml"))
    rel = release(sc)
    assert rel.sensitivity == sens and rel.scale == str(sens) and rel.rho == "1/2"
    noise = next(op for op in sc.build().ops if op.kind == cpb.OP_NOISE).noise
    assert noise.mechanism == "discrete-laplace" and noise.scale == rel.scale and noise.source == "distributed"


def test_total_replace_one_with_negative_clip() -> None:
    sc = parse_scenario(total(relation="replace-one", clip=[-30, 50]), Path("t.yaml"))
    assert release(sc).sensitivity == 80
    sc = parse_scenario(total(clip=[-30, 50]), Path("t.yaml"))
    assert release(sc).sensitivity == 50


@pytest.mark.parametrize("relation,approval,sens", [("add-remove", False, 1), ("replace-one", False, 2),
                                                     ("add-remove", True, 3), ("replace-one", True, 4)])
def test_tally_sensitivity(relation: str, approval: bool, sens: int) -> None:
    data = vote(relation=relation)
    data["vote"]["approval"] = approval
    rel = release(parse_scenario(data, Path("v.yaml")))
    assert rel.sensitivity == sens and accounting.parse_exact(rel.scale) == sens * 2


def test_winner_is_report_noisy_max_in_mpc() -> None:
    sc = parse_scenario(vote("winner", relation="replace-one"), Path("v.yaml"))
    rel = release(sc)
    assert rel.mechanism == "one-sided-geometric" and rel.scale == "4"     # 2 * 1 / (1/2)
    noise = next(op for op in sc.build().ops if op.kind == cpb.OP_NOISE).noise
    assert noise.source == "mpc"


@pytest.mark.parametrize("data,field", [
    (total(clip=None), "dp.clip"), (total(unit="client"), "dp.unit"), (total(epsilon="x"), "dp.epsilon"),
    (total(epsilon="0"), "dp.epsilon"), (vote(unit="organization"), "dp.unit"), (vote("referendum"), "dp"),
    (total(delta="2"), "dp.delta"), (total(noise="somewhere"), "dp.noise")])
def test_dp_block_errors_are_one_line(data: dict, field: str) -> None:
    if data["kind"] == "vote" and data["vote"]["output"] == "referendum":
        data["vote"]["options"] = ["yes", "no"]
    with pytest.raises(ConfigError) as info:
        parse_scenario(data, Path("s.yaml"))
    assert "\n" not in str(info.value) and field in str(info.value), str(info.value)


def tampered(change) -> cpb.Circuit:
    c = parse_scenario(total(), Path("t.yaml")).build()
    change(c)
    return c


def _noise(c):
    return next(op for op in c.ops if op.kind == cpb.OP_NOISE).noise


@pytest.mark.parametrize("change,words", [
    (lambda c: setattr(_noise(c), "scale", "10"), "but its noise op adds"),
    (lambda c: (setattr(_noise(c), "scale", "10"), setattr(c.outputs[0].dp, "scale", "10")), "is below the"),
    (lambda c: setattr(c.outputs[0].dp, "epsilon", "2"), "rho"),
    (lambda c: (setattr(c.outputs[0].dp, "epsilon", "1/2"), setattr(c.outputs[0].dp, "rho", "1/8")), "is below the"),
    (lambda c: setattr(c.outputs[0].dp, "std", "1"), "std"),
    (lambda c: setattr(c.outputs[0].dp, "post_processing", True), "post-processing"),
    (lambda c: setattr(c.outputs[0], "value", c.ops[-2].out), "not the result of a noise op"),
])
def test_nodes_refuse_a_release_its_noise_does_not_back(change, words: str) -> None:
    with pytest.raises(CircuitError, match=words):
        validate(tampered(change), PARTIES, "shamir")


def test_untampered_validates() -> None:
    validate(tampered(lambda c: None), PARTIES, "shamir")


def test_noise_bound_in_range_analysis() -> None:
    from mpcnode.computation import ranges
    c = parse_scenario(total(noise="mpc"), Path("t.yaml")).build()
    env = ranges.analyse(c, "shamir")
    lo, hi = env[c.outputs[0].value].hull()
    nlo, nhi = dpm.noise_bound(_noise(c))
    assert nhi > 0 and nlo == -nhi
    assert hi >= 3 * 10 ** 6 + nhi    # the clip's loose analysed bound plus the noise's hard bound


@pytest.mark.parametrize("engine", ENGINES_UNDER_TEST)
def test_clip_inside_mpc(engine: str) -> None:
    """Contributions below, inside and far above [0, 100], from a party whose input nobody
    range-checks (an input-only party's: the exact comparison path), come out clipped."""
    b = CircuitBuilder("clip")
    x = b.input("x", "a", 6, -10 ** 9, 10 ** 9)
    b.output("y", dpm.clip(b, x, 0, 100, dpm.bits_for(10 ** 9)), ["a"])
    circuit = b.build(engine)
    plan = validate(circuit, PARTIES, engine)
    data = np.array([-5, 0, 50, 100, 150, 10 ** 9], dtype=np.int64)

    async def body(e):
        ex = Executor(e, circuit, plan.__class__(plan.levels, plan.depth, frozenset(), plan.ring_bits, plan.operands))
        shares = await ex.share_node_inputs(PARTIES, {"x": e.encode(data)} if e.party == 0 else {})
        return (await ex.run(shares))["y"]

    opened, _ = mpc(3, body, engine=engine)
    assert opened.tolist() == [0, 0, 50, 100, 100, 100]


def test_release_states_the_implementations_delta() -> None:
    """From shared bits the coins' precision costs a delta (dpnoise's MpcPlan); distributed noise
    its samplers' truncation. The release states an upper bound, and a scenario's dp.delta caps it."""
    mpc_rel = release(parse_scenario(total(noise="mpc"), Path("t.yaml")))
    dist_rel = release(parse_scenario(total(), Path("t.yaml")))
    assert 0 < accounting.parse_exact(dist_rel.delta) < accounting.parse_exact(mpc_rel.delta) < Fraction(1, 10 ** 9)
    with pytest.raises(ConfigError, match="dp.delta"):
        parse_scenario(total(noise="mpc", delta="1e-20"), Path("t.yaml"))


def _survey(*epsilons: str) -> cpb.Circuit:
    c = cpb.Circuit(name="survey")
    c.inputs.add(name="ans", length=1, lo=0, hi=1, source=cpb.INPUT_SOURCE_CLIENTS, clients=[f"c{i}" for i in range(5)])
    c.ops.add(out="s", kind=cpb.OP_SUM, args=["ans"])
    for i, eps in enumerate(epsilons):
        o = c.outputs.add(name=f"o{i}", value="s", recipients=["regulator"])
        o.dp.CopyFrom(cpb.DpRelease(unit="client", relation="replace-one", epsilon=eps, mechanism="randomized-response"))
    return c


def test_randomized_response_epsilon_is_one_and_bounded() -> None:
    """A coordinator must not pair a harmless-looking RR promise with one whose epsilon makes the
    clients (who flip with the job's one epsilon) flip nothing: nodes refuse two different RR
    epsilons and any above 20, and so does the client library before it shares an answer."""
    from mpcnode.client import SubmitError, rr_epsilon
    validate(_survey("1/2", "1/2"), ["ash", "birch", "cedar"], "replicated3")
    for bad, words in ((("1000", "1/2"), "different epsilons"), (("1000",), "above 20")):
        with pytest.raises(CircuitError, match=words):
            validate(_survey(*bad), ["ash", "birch", "cedar"], "replicated3")
    doc = lambda *eps: {"outputs": [{"dp": {"mechanism": "randomized-response", "epsilon": e}} for e in eps]}  # noqa: E731
    assert rr_epsilon(doc("1/2", "1/2")) == "1/2"
    for bad in (("1000", "1/2"), ("1000",), ("0",), ("x",)):
        with pytest.raises(SubmitError):
            rr_epsilon(doc(*bad))
