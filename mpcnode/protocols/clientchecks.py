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

Inputs declared [0, 1] (ballot entries) take a cheaper exact test instead, x(x - 1) == 0
(_bit_rows): over F_p one zero test per row of a random combination, over Z_2^64 one per value.

A row is valid iff all its bits are 1: a product tree over them, every row of every input in
one multiplication round per level, and the one bit per row is opened to the live nodes (purpose
"input-check"). It says only "this client's input is out of range", which an honest client's
never is.
"""
from __future__ import annotations

import asyncio
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
    Inputs with [lo, hi] = [0, 1] (ballots) take the cheaper exact bit test (_bit_ok), all
    others the two upper-half tests (_range_ok); the two run concurrently, each over all its
    rows in one batch. Then one AND tree over every row's bits (_all_ones) and one opening of
    one bit per row to the live parties (purpose input-check). No round when there is no row."""
    counts = [int(rows.shape[0]) for rows, _, _ in batches]
    if sum(counts) == 0:
        return [np.ones(0, dtype=bool) for _ in batches]
    is_bit = [(int(lo), int(hi)) == (0, 1) for _, lo, hi in batches]
    ranged = [b for b, bit in zip(batches, is_bit) if not bit]
    bits = [rows for (rows, _, _), bit in zip(batches, is_bit) if bit]
    ranged_ok, bits_ok = await asyncio.gather(_range_ok(engine, f"{label}/range", ranged),
                                              _bit_ok(engine, f"{label}/bits", bits))
    per_batch = [(bits_ok if bit else ranged_ok).pop(0) for bit in is_bit]     # back in batch order
    ok = await engine.open(f"{label}/open", await _all_ones(engine, f"{label}/and", per_batch),
                           purpose="input-check")
    ok = np.asarray(ok) == 1
    bounds = np.cumsum([0] + counts)
    return [ok[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


async def _range_ok(engine: Engine, label: str, batches: Sequence[tuple[Share, int, int]]) -> list[Share]:
    """Per batch, shares of the bits (m, 2L): [x - lo in the lower half] and [hi - x in the lower
    half] for every value x of every row (module docstring), all batches in one upper_half."""
    if not any(len(rows) for rows, _, _ in batches):
        return [engine.constant(np.zeros((len(rows), 0), dtype=np.uint64)) for rows, _, _ in batches]
    diffs = []
    for rows, lo, hi in batches:
        flat = engine.flatten(rows)
        diffs.append(engine.add_const(flat, engine.encode(-int(lo))))            # x - lo
        diffs.append(engine.add_const(engine.neg(flat), engine.encode(int(hi))))  # hi - x
    ok = engine.one_minus(await engine.upper_half(f"{label}/half", np.concatenate(diffs)))
    out, pos = [], 0
    for rows, _, _ in batches:
        m, width = len(rows), int(np.prod(engine.value_shape(rows)[1:], dtype=np.int64))
        low, high = ok[pos:pos + m * width], ok[pos + m * width:pos + 2 * m * width]
        pos += 2 * m * width
        out.append(np.concatenate([low.reshape((m, width) + tuple(engine.share_shape)),
                                   high.reshape((m, width) + tuple(engine.share_shape))], axis=1))
    return out


async def _bit_ok(engine: Engine, label: str, batches: Sequence[Share]) -> list[Share]:
    """Per batch, shares of bits that are all 1 iff every value of the row is 0 or 1, exact, by
    e = x(x - 1), which is 0 iff x is 0 or 1 in F_p (a field has no zero divisors) and in Z_2^64
    (x and x - 1 are consecutive, so one is odd; 2^64 | x(x - 1) forces the other to be 0).
    * Field: (m, 1), one exact zero test per ROW of z = sum_k r_k e_k, with public coins r drawn
      now (after the shares are fixed; purpose public-coins): if some e_k != 0, z = 0 with
      probability 1/p. 1 product per value + 1 zero test per row.
    * Ring: (m, L), one exact zero test per value: a random combination is not sound over
      Z_2^64 (e_k = 2^63 vanishes under every even r_k)."""
    if not any(len(rows) for rows in batches):
        return [engine.constant(np.zeros((len(rows), 0), dtype=np.uint64)) for rows in batches]
    widths = [int(np.prod(engine.value_shape(rows)[1:], dtype=np.int64)) for rows in batches]
    x = np.concatenate([engine.flatten(rows) for rows in batches])
    square = engine.mul(f"{label}/sq", x, engine.add_const(x, engine.encode(-1)))
    shape = tuple(engine.share_shape)
    out, pos = [], 0
    if engine.field_modulus is not None:
        async def coins() -> np.ndarray:
            return await engine.open(f"{label}/coins", await engine.random(f"{label}/rand", (max(widths),)),
                                     purpose="public-coins")
        e, r = await asyncio.gather(square, coins())
        z = []
        for rows, w in zip(batches, widths):
            part = e[pos:pos + len(rows) * w].reshape((len(rows), w) + shape)
            pos += len(rows) * w
            z.append(engine.sum(engine.mul_const(part, r[:w]), axis=1))
        zero = await engine.equal_zero(f"{label}/zero", np.concatenate(z))
        bounds = np.cumsum([0] + [len(rows) for rows in batches])
        return [zero[a:b].reshape((b - a, 1) + shape) for a, b in zip(bounds[:-1], bounds[1:])]
    zero = await engine.equal_zero(f"{label}/zero", await square)
    for rows, w in zip(batches, widths):
        out.append(zero[pos:pos + len(rows) * w].reshape((len(rows), w) + shape))
        pos += len(rows) * w
    return out


async def _all_ones(engine: Engine, label: str, batches: Sequence[Share]) -> Share:
    """Shares of [every bit of the row is 1] for each row of every (m_i, w_i) batch of bits,
    concatenated: a product tree, all rows of all batches in one multiplication round per level
    (narrower rows padded with ones): ceil(log2(max w_i)) rounds, w - 1 products per row."""
    width = max(int(b.shape[1]) for b in batches)
    shape = tuple(engine.share_shape)
    x = np.concatenate([b if b.shape[1] == width else np.concatenate(
        [b, engine.constant(engine.encode(np.ones((len(b), width - b.shape[1]), dtype=np.int64)))], axis=1)
        for b in batches])
    level = 0
    while x.shape[1] > 1:
        half = x.shape[1] // 2
        prod = await engine.mul(f"{label}/{level}", x[:, :half], x[:, half:2 * half])
        x = np.concatenate([prod, x[:, 2 * half:]], axis=1) if x.shape[1] % 2 else prod
        level += 1
    return x.reshape((len(x),) + shape)


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
