"""Client input checks, after submission closed: which client rows count, and in which order.

Input clients are not trusted: a client may skip the client library's range check, or give the
nodes shares that do not fit together. The nodes therefore check every row themselves, inside
MPC, and exclude (not fail on) a row that is

* missing: not held by every live node (protocols/agreement.py agree_on_presence names the nodes
  without it);
* inconsistent: its sharing is not a valid sharing (Engine.consistent_rows: Shamir's degree
  check, replicated3's comparison of the duplicated components);
* out of range: one of its values lies outside the declared [lo, hi] (rows_in_range below).

The accepted rows are then ordered by a hash no single party can steer (row_order). Everything
here is engine-independent: the engine supplies consistent_rows and the exact upper_half test.

Exact range test (rows_in_range)
--------------------------------
Let D be the plaintext domain (F_p, or Z_2^64), H its "lower half" ([0, (p-1)/2] for F_p,
[0, 2^63) for Z_2^64) and U = D minus H. Engine.upper_half gives [y in U] exactly for every y in
D. For a client value x (any element of D) and the declared bounds lo <= hi with
w = hi - lo < |H| (circuit.py keeps |lo|, |hi| < 2^59, so w < 2^60 < |H| on both engines):

    x in [lo, hi]  <=>  y1 = x - lo in H  and  y2 = hi - x in H.

=> If x = lo + d with 0 <= d <= w, then y1 = d and y2 = w - d, both in [0, w], inside H.
<= Suppose x is not in [lo, hi]. Then y1 = x - lo, as an element of D read as an integer in
   [0, |D|), is not in [0, w]. If y1 is in U the test already fails. Otherwise y1 lies in
   (w, |H|) (the case y1 in (hi - lo, p/2) of the issue), and y2 = w - y1 mod |D| =
   |D| + w - y1 (as w - y1 < 0), so |D| - |H| + w < y2 <= |D| - 1. Every integer above
   |D| - |H| in [0, |D|) is in U (min U = |H|, and |H| = |D| - |H| + 1 for F_p, |D| - |H| for
   Z_2^64), and w >= 0: y2 is in U, and the test fails.
No assumption on x is made: it holds for (p - 1)/2 + k, p - 1, 2^63 + k and 2^64 - 1 alike. So
2 upper-half tests per value, every value of every row of every client input in ONE batch.

A row is valid iff none of its 2L bits is set: f = sum of its bits lies in [0, 2L] for sure (a
sum of exact bits), so the engine's bounded zero test (equal_zero_bounded) applies, and the one
bit per row [f == 0] is opened to the live nodes (purpose "input-check"). It says only "this
client's input is out of range", which an honest client's never is.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..engines.base import Engine, Share


@dataclass(frozen=True)
class Exclusion:
    """A client row that did not count, and why (public: names and a reason, never a value)."""
    credential: str
    input: str
    reason: str          # "not held by <nodes>", "inconsistent shares" or "out of range"


INCONSISTENT = "inconsistent shares"
OUT_OF_RANGE = "out of range"


async def rows_in_range(engine: Engine, label: str, batches: Sequence[tuple[Share, int, int]]) -> list[np.ndarray]:
    """For each (rows, lo, hi) in `batches` (rows: an (m, L) + share_shape batch of client rows),
    a bool array (m,): every value of the row lies in [lo, hi] (exact, see the module docstring).
    Every row of every batch in one upper-half batch, one bounded zero test and one opening to
    the live parties (purpose input-check); no round when there is no row."""
    counts = [int(rows.shape[0]) for rows, _, _ in batches]
    if sum(counts) == 0:
        return [np.ones(0, dtype=bool) for _ in batches]
    diffs, widths = [], []
    for rows, lo, hi in batches:
        flat = engine.flatten(rows)
        diffs.append(engine.add_const(flat, engine.encode(-int(lo))))          # x - lo
        diffs.append(engine.add_const(engine.neg(flat), engine.encode(int(hi))))  # hi - x
        widths.append(int(np.prod(engine.value_shape(rows)[1:], dtype=np.int64)))
    bits = await engine.upper_half(f"{label}/half", np.concatenate(diffs))
    fails, pos = [], 0
    for m, width in zip(counts, widths):
        size = m * width
        low, high = bits[pos:pos + size], bits[pos + size:pos + 2 * size]
        pos += 2 * size
        per_value = engine.add(low, high).reshape((m, width) + tuple(engine.share_shape))
        fails.append(engine.sum(per_value, axis=1))       # in [0, 2 * width]
    bound = 2 * max(widths)
    zero = await engine.equal_zero_bounded(f"{label}/zero", np.concatenate(fails), bound)
    ok = await engine.open(f"{label}/open", zero, purpose="input-check")
    out, pos = [], 0
    for m in counts:
        out.append(np.asarray(ok[pos:pos + m]) == 1)
        pos += m
    return out


def row_order(coins: np.ndarray, job_id: str, input_name: str, credentials: Sequence[str]) -> list[int]:
    """The agreed order of the accepted rows of one client input: indices into `credentials`,
    sorted by sha256(coins, job id, input name, credential). `coins` are public coins the live
    nodes drew jointly after submission closed, so no node, coordinator or client could know
    the order when the shares were sent, and every live node computes the same one. Equal
    values (two equal highest bids) are therefore ordered by a coin flip nobody controlled,
    not by arrival."""
    seed = np.asarray(coins, dtype="<u8").tobytes()

    def key(i: int) -> bytes:
        h = hashlib.sha256(b"parley-row-order-v1\0" + seed)
        for part in (job_id, input_name, credentials[i]):
            raw = part.encode()
            h.update(len(raw).to_bytes(4, "big") + raw)
        return h.digest()

    return sorted(range(len(credentials)), key=key)
