"""What a node opens in a job (mpcnode/opened.py) matches what docs/security-model.md says is opened.

Every demo scenario is dry-run among all its parties (computation/cost.py runs the real job code,
mpcnode/jobrun.py, over the in-memory exchange); each party's log of openings must hold only the
purposes the docs table lists, every opening must state one, and the outputs at the end must be
exactly the computation's outputs, each to the recipients it names. For circuits of plain
comparisons the number of masked values is one per compared element: a protocol that opened an
unmasked or extra value would change the count or the purpose.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from mpcnode.computation.builder import CircuitBuilder
from mpcnode.computation.cost import estimate
from mpcnode.computation.scenario import load_scenario
from mpcnode.computation.spec import Computation
from mpcnode.opened import OPEN_PURPOSES

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))


def documented_purposes() -> set[str]:
    text = (REPO / "docs" / "security-model.md").read_text()
    section = text.split("## What a node opens", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| ([a-z-]+) \|", section, flags=re.M)) - {"purpose"}


def test_the_docs_table_lists_exactly_the_purposes_the_code_knows() -> None:
    assert documented_purposes() == set(OPEN_PURPOSES)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_demo_scenario_opens_only_documented_purposes_and_its_outputs(path: Path) -> None:
    computation = load_scenario(path).computation()
    cost = estimate(computation)
    opened = list(cost.opened)
    assert opened or computation.circuit.keep, "a job opens at least its outputs (a `model` job keeps instead)"
    assert {o.purpose for o in opened} <= documented_purposes()
    assert all(o.count >= 0 for o in opened)
    outputs = [o for o in opened if o.purpose == "output"]
    # outputs come last, one per circuit output, to exactly its recipients
    assert opened[len(opened) - len(outputs):] == outputs
    assert [(o.label, o.to) for o in outputs] == [
        (f"output/{out.name}", tuple(out.recipients)) for out in computation.circuit.outputs]
    # nothing but outputs is opened to anyone outside the compute parties
    everyone = tuple(range(len(computation.parties)))
    for o in opened[:len(opened) - len(outputs)]:
        # a truncation's masked value goes to parties 0 and 2 only (engines/replicated3_wide.py)
        assert o.to == everyone or (o.purpose == "truncation" and set(o.to) < set(everyone)), o


def _comparison_job(n_values: int, *, with_eq: bool) -> Computation:
    parties = ["p0", "p1", "p2"]
    b = CircuitBuilder("comparisons")
    x = b.input("x", owner="p0", length=n_values, lo=-1000, hi=1000)
    y = b.input("y", owner="p1", length=n_values, lo=-1000, hi=1000)
    lt = b.lt(x, y, bit_length=11)
    b.output("lt", b.sum(lt), recipients=["p2"])
    if with_eq:
        b.output("eq", b.sum(b.eq(x, y)), recipients=["p0", "p1"])
    return Computation(circuit=b.build(), parties=tuple(parties), threshold=1)


@pytest.mark.parametrize("with_eq", [False, True])
def test_a_comparison_opens_one_masked_value_per_compared_element(with_eq: bool) -> None:
    cost = estimate(_comparison_job(37, with_eq=with_eq))
    masked = [o for o in cost.opened if o.purpose == "masked-comparison"]
    assert sum(o.count for o in masked) == 37 * (2 if with_eq else 1)
    assert [o for o in cost.opened if o.purpose not in ("masked-comparison", "output")] == []
    assert [o.count for o in cost.opened if o.purpose == "output"] == ([1, 1] if with_eq else [1])
