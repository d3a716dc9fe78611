"""What one corrupted party sees, for the view tests (test_views.py).

`view_of` runs a protocol among all parties of an engine in one process over the in-memory
exchange and records, for one observing party, every message it receives (per round label and
sender) and its own shares of the inputs. `distinguisher` turns two such views, taken with two
different inputs, into a two-sample chi-square statistic on small features of every message: the
low two bits of up to two values per element jointly with the low two bits of the observer's own
input shares (64 cells), and the top three bits (8 cells). For a secure protocol both views come
from the same distribution whatever the inputs, so the statistic stays small; a protocol that
forgot to re-randomize or masked too little gives itself away in one of these cells.

No scipy here: the chi-square tail uses the Wilson-Hilferty normal approximation, and a feature
counts as distinguishing when its z-score exceeds Z_ALARM = 5.5 (one-sided p ~ 1.9e-8 per
feature; with at most a few hundred features per test the false-alarm rate stays below 1e-5).
"""
from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping

import numpy as np

from mpcnode.engines import engine_for
from mpcnode.engines.base import Engine
from mpcnode.exchange import MemoryExchange, MemoryNetwork

Z_ALARM = 5.5


class RecordingExchange(MemoryExchange):
    """A memory exchange that keeps what its party receives."""

    def __init__(self, net: MemoryNetwork, party: int):
        super().__init__(net, party)
        self.received: dict[tuple[str, int], np.ndarray] = {}

    async def round(self, label, send, expect):
        got = await super().round(label, send, expect)
        for sender, arr in got.items():
            self.received[(label, sender)] = np.asarray(arr, dtype=np.uint64).copy()
        return got


@dataclass
class View:
    messages: dict[tuple[str, int], np.ndarray]
    own: np.ndarray                    # (M, k) the observer's own input shares, k words per element
    elements: int
    extra: dict = field(default_factory=dict)


def view_of(protocol: str, n: int, t: int, observer: int, elements: int,
            body: Callable[[Engine], Awaitable[np.ndarray]]) -> View:
    """Run body(engine) on every party; body returns the party's own input shares (M values, any
    component axes) for the features. Returns the observer's view."""
    net = MemoryNetwork(n, timeout_s=600)
    exchanges = [RecordingExchange(net, i) for i in range(n)]
    engines = [engine_for(protocol, ex, t) for ex in exchanges]

    async def main():
        return await asyncio.gather(*(body(e) for e in engines))

    owns = asyncio.run(main())
    own = np.asarray(owns[observer], dtype=np.uint64).reshape(elements, -1)
    return View(exchanges[observer].received, own, elements)


def _chi2_z(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample chi-square on two count vectors of equal totals, as a Wilson-Hilferty z-score."""
    keep = (a + b) > 0
    a, b = a[keep].astype(float), b[keep].astype(float)
    df = len(a) - 1
    if df < 1:
        return 0.0
    stat = float(np.sum((a - b) ** 2 / (a + b)))
    k = 2.0 / (9.0 * df)
    return ((stat / df) ** (1.0 / 3.0) - (1.0 - k)) / math.sqrt(k)


def _features(words: np.ndarray, own: np.ndarray) -> dict[str, np.ndarray]:
    """Small categorical features of one message, per element (see the module docstring): for
    every pair of the observer's own input-share words (up to 4 words, 6 pairs), their low two
    bits jointly with the low two bits of the message's first word (64 cells); and the top three
    bits of the message's first word (8 cells)."""
    msg = (words[:, 0] & np.uint64(3)).astype(np.int64)
    low = (own[:, :4] & np.uint64(3)).astype(np.int64)
    out = {"top3": (words[:, 0] >> np.uint64(61)).astype(np.int64)}
    cols = low.shape[1]
    if cols == 1:
        out["low-joint"] = low[:, 0] * 4 + msg
    for c1 in range(cols):
        for c2 in range(c1 + 1, cols):
            out[f"low-joint{c1}{c2}"] = (low[:, c1] * 4 + low[:, c2]) * 4 + msg
    return out


def distinguisher(a: View, b: View) -> dict[str, float]:
    """{feature name: z-score} over every message both views hold with at least one word per
    element; plus the observer's own shares alone."""
    if a.elements != b.elements:
        raise ValueError("views of different sizes")
    m = a.elements
    scores: dict[str, float] = {}
    pairs = [("own", a.own, b.own)]
    for key in sorted(set(a.messages) & set(b.messages)):
        x, y = a.messages[key], b.messages[key]
        if x.size != y.size or x.size < m or x.size % m:
            continue
        pairs.append((f"{key[0]}<-{key[1]}", x.reshape(m, -1), y.reshape(m, -1)))
    for name, x, y in pairs:
        fx, fy = _features(x, a.own), _features(y, b.own)
        for feat in fx:
            size = int(max(fx[feat].max(), fy[feat].max())) + 1
            scores[f"{name}:{feat}"] = _chi2_z(np.bincount(fx[feat], minlength=size),
                                               np.bincount(fy[feat], minlength=size))
    return scores


def alarms(scores: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in scores.items() if v > Z_ALARM}
