"""View tests: what one corrupted party receives does not depend on the other parties' inputs.

Tests against plaintext pass even for an insecure engine (a product without re-randomization,
dealing without fresh randomness, masks that are too short). These tests look at the messages
instead: one party, corrupted and semi-honest, records everything it receives while the two
others input values and the engine multiplies, compares or tests them for zero; the run is repeated
with other inputs, and a chi-square test on small features of every message (tests/unit/views.py)
must not tell the two runs apart. Each test also breaks the protocol on purpose and checks that
the same comparison then does tell them apart, so a test that cannot fail would show.

False alarms: each feature alarms at z > 5.5 (one-sided p ~ 1.9e-8), a few hundred features per
test: below 1e-5 per test.

Observers 0 and 2 are both tried: in the replicated engine's comparison rounds the parties play
different roles (party 0 holds x_0 + x_1, parties 1 and 2 hold x_2).
"""
from __future__ import annotations

import numpy as np
import pytest

from mpcnode.engines.base import Engine
from tests.unit.views import alarms, distinguisher, view_of

M = 40_000          # elements per run: every feature cell holds hundreds of samples
OBSERVER = 0




def body_for(op: str, a: int, b: int, observer: int = OBSERVER):
    """The two parties other than the observer input M copies of a and of b: the observer's view
    may depend on its own input, never on theirs."""
    p, q = (observer + 1) % 3, (observer + 2) % 3

    async def body(e: Engine) -> np.ndarray:
        vals = {p: e.encode(np.full(M, a, dtype=np.int64)), q: e.encode(np.full(M, b, dtype=np.int64))}
        shares = await e.share_inputs("in", {e.party: vals[e.party]} if e.party in vals else {},
                                      {p: (M,), q: (M,)})
        x, y = shares[p], shares[q]
        if op == "mul":
            z = await e.mul("mul", x, y)
        elif op == "less_than":
            z = await e.less_than("lt", x, y, 32)
        else:
            z = await e.equal("eq", x, y)
        # the result goes to one other party only: the observer's view ends with the protocol itself
        await e.open("out", z, to=[p], purpose="output")
        return np.stack([e.flatten(x), e.flatten(y)], axis=1).reshape(M, -1)
    return body


CASES = [("mul", (0, 0), (123456789, -987654321)),
         ("less_than", (0, 0), (-(2 ** 31 - 1), 2 ** 31 - 1)),
         ("equal_zero", (5, 5), (0, 2 ** 31))]


@pytest.mark.parametrize("protocol", ["shamir", "replicated3"])
@pytest.mark.parametrize("op, first, second", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("observer", [0, 2])
def test_a_corrupted_party_sees_the_same_distribution_for_different_inputs(protocol, op, first, second, observer):
    va = view_of(protocol, 3, 1, observer, M, body_for(op, *first, observer))
    vb = view_of(protocol, 3, 1, observer, M, body_for(op, *second, observer))
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


def test_replicated_product_without_rerandomization_is_caught(monkeypatch):
    """An insecure replicated engine: the zero-sharing that re-randomizes every product (and every
    AND) is all zeros, so party 0 receives z_1 = x_1 y_1 + x_1 y_2 + x_2 y_1 in the clear. Products
    still come out right (the zero-sharing sums to zero either way)."""
    from mpcnode.engines.replicated3 import Replicated3Engine

    def no_zero_sharing(self, label, size, xor=False, out=None):
        self._prf("xzero" if xor else "zero", label, size)        # keep the label bookkeeping
        z = np.zeros(size, dtype=np.uint64) if out is None else out
        z[...] = 0
        return z

    monkeypatch.setattr(Replicated3Engine, "zero_sharing", no_zero_sharing)
    va = view_of("replicated3", 3, 1, 0, M, body_for("mul", 0, 0))
    vb = view_of("replicated3", 3, 1, 0, M, body_for("mul", 123456789, -987654321))
    assert alarms(distinguisher(va, vb)) != {}


def test_replicated_a2b_without_refresh_is_caught(monkeypatch):
    """An insecure replicated engine: the masks of the cross round that turns party 0's sum
    s = x_0 + x_1 into XOR shares are zeros, so party 2 receives s and, holding x_2, the value.
    The comparison still comes out right."""
    from mpcnode.engines.replicated3 import Replicated3Engine

    real = Replicated3Engine._masks

    def zero_masks(self, purpose, label, size):
        W, V = real(self, purpose, label, size)
        return (None if W is None else np.zeros_like(W)), (None if V is None else np.zeros_like(V))

    monkeypatch.setattr(Replicated3Engine, "_masks", zero_masks)
    va = view_of("replicated3", 3, 1, 2, M, body_for("less_than", 0, 0, 2))
    vb = view_of("replicated3", 3, 1, 2, M, body_for("less_than", -(2 ** 31 - 1), 2 ** 31 - 1, 2))
    assert alarms(distinguisher(va, vb)) != {}
