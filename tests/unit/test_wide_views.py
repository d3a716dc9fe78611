"""What the truncation of the wide engine opens (engines/replicated3_wide.py, docs/protocols.md
"The wide ring Z_2^128"): every party learns c = x + 2^L + r, and the privacy bound says that for
|x| < 2^L two different x give distributions of c within 2^(L + 3 - 128) of each other.

The test records c at one party (its `_trunc_finish` sees it) for M truncations of one value and
of another, and compares the two histograms of c's top bits with the chi-square test of
tests/unit/views.py. At L = 61 (distance <= 2^-64) nothing may tell them apart. At L = 125, where
the bound allows up to a constant distance because the mask is only 3 x 2^126 wide, the same test
must tell them apart: the test can fail, and the bound is where the protocol says it is."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mpcnode import ring128 as R
from mpcnode.engines.replicated3_wide import Replicated3WideEngine
from mpcnode.exchange import MemoryNetwork
from tests.unit.views import Z_ALARM, _chi2_z

M = 40_000


def opened_c(value: int, L: int, observer: int, fused: bool, monkeypatch) -> np.ndarray:
    """The c that `observer` learns in M truncations of `value` (shared by another party)."""
    seen: list[np.ndarray] = []
    real = Replicated3WideEngine._trunc_finish

    def record(self, c, r0, r1, d, L_, shape):
        if self.party == observer:
            seen.append(R.pack(*c))
        return real(self, c, r0, r1, d, L_, shape)

    monkeypatch.setattr(Replicated3WideEngine, "_trunc_finish", record)
    owner = (observer + 1) % 3
    net = MemoryNetwork(3, timeout_s=120)
    engines = [Replicated3WideEngine(net.exchange(i)) for i in range(3)]

    async def body(e):
        await e.establish()
        vals = R.from_ints([value] * M) if e.party == owner else None
        x = (await e.share_inputs("in", {owner: vals}, {owner: (M,)}))[owner]
        if fused:                         # value * 1 through the fused product
            one = e.constant(e.encode(np.ones(M, dtype=np.int64)))
            await e.mul_trunc("mt", x, one, 8, L)
        else:
            await e.trunc("t", x, 8, L)

    async def main():
        await asyncio.gather(*(body(e) for e in engines))

    asyncio.run(main())
    monkeypatch.undo()
    return seen[0]


def top_bits_z(a: np.ndarray, b: np.ndarray, bits: int = 5) -> float:
    ha = np.bincount((a["hi"] >> np.uint64(64 - bits)).astype(np.int64), minlength=1 << bits)
    hb = np.bincount((b["hi"] >> np.uint64(64 - bits)).astype(np.int64), minlength=1 << bits)
    return _chi2_z(ha, hb)


@pytest.mark.parametrize("fused", [False, True], ids=["trunc", "mul_trunc"])
@pytest.mark.parametrize("observer", [0, 2])
def test_the_opened_value_does_not_tell_two_inputs_apart_within_the_bound(fused, observer, monkeypatch) -> None:
    L = 61
    a = opened_c(0, L, observer, fused, monkeypatch)
    b = opened_c((1 << L) - 1, L, observer, fused, monkeypatch)
    c = opened_c(-(1 << L) + 1, L, observer, fused, monkeypatch)
    assert top_bits_z(a, b) < Z_ALARM and top_bits_z(b, c) < Z_ALARM


def test_the_same_comparison_tells_them_apart_beyond_the_bound(monkeypatch) -> None:
    L = 125                        # allowed by the no-wrap condition, but 2^(L+3-128) = 1: no privacy
    a = opened_c(-(1 << L) + 1, L, 0, True, monkeypatch)
    b = opened_c((1 << L) - 1, L, 0, True, monkeypatch)
    assert top_bits_z(a, b) > Z_ALARM


def test_party_1_receives_nothing_in_a_truncation_and_the_others_one_value_per_peer() -> None:
    from tests.unit.views import RecordingExchange

    net = MemoryNetwork(3, timeout_s=60)
    exchanges = [RecordingExchange(net, i) for i in range(3)]
    engines = [Replicated3WideEngine(ex) for ex in exchanges]

    async def body(e):
        await e.establish()
        x = await e.random("x", (100,))
        await e.trunc("t", x, 8, 61)
        await e.mul_trunc("mt", x, x, 8, 121)

    async def main():
        await asyncio.gather(*(body(e) for e in engines))

    asyncio.run(main())
    got = {i: sorted((label, sender, arr.size) for (label, sender), arr in ex.received.items() if label in ("t", "mt"))
           for i, ex in enumerate(exchanges)}
    assert got[1] == []
    assert got[0] == [("mt", 1, 200), ("mt", 2, 200), ("t", 1, 200)]
    assert got[2] == [("mt", 0, 200), ("mt", 1, 200), ("t", 0, 200)]
