"""Selection and tournaments: select, argmax (with the max) and the top two, on any engine.

Written once against the Engine interface (engines/base.py): every comparison is an
`engine.less_than_select`, so the selections by the comparison's bit ride on the comparison's
rounds when the engine fuses them (Shamir does: docs/protocols-comparison.md), and cost one more
multiplication round otherwise. Shares are handled through the engine only: structural numpy on
the leading value axis, arithmetic by engine methods.

Tie rules: the earliest maximum wins; top_two's second is the highest value among the others, so
it equals the max when the top value is tied (Vickrey price).
"""
from __future__ import annotations

import numpy as np

from ..engines.base import Engine, Share


async def select(engine: Engine, label: str, bit: Share, a: Share, b: Share) -> Share:
    """bit ? a : b = b + bit (a - b) for a shared bit: one multiplication round."""
    a, b = np.broadcast_arrays(a, b)
    return engine.add(b, await engine.mul(label, bit, engine.sub(a, b)))


def _pairs(v: Share, half: int) -> tuple[Share, Share]:
    """The left and right blocks of the first `half` pairs of a tournament level."""
    return v[0:2 * half:2], v[1:2 * half:2]


def _carry(new: Share, old: Share) -> Share:
    """Append the unpaired last block of an odd level."""
    return np.concatenate([new, old[-1:]]) if len(old) % 2 else new


def _indices(engine: Engine, n: int, tags: np.ndarray | None = None) -> Share:
    """Shares of the public indices 0..n-1, or of the public `tags` (one per value) when given:
    the tournament carries whatever public payload it starts with, at no extra cost (the carried
    index is selected by the same comparison bits as the value), so the opened index can name a
    row by its client instead of by its position."""
    if tags is None:
        return engine.constant(engine.encode(np.arange(n, dtype=np.int64)))
    tags = np.asarray(tags, dtype=np.int64).reshape(-1)
    if len(tags) != n:
        raise ValueError(f"{len(tags)} row tags for {n} values")
    return engine.constant(engine.encode(tags))


async def argmax_and_max(engine: Engine, label: str, x: Share, bit_length: int | None = None,
                         tags: np.ndarray | None = None) -> tuple[Share, Share]:
    """(index, max) of shared x (n >= 1 values, any value shape, read flat), each of length 1.
    With public `tags` (n int64), the index returned is the maximum's tag instead of its position.

    The index is 0-based and that of the FIRST maximum: the left block of every pair wins unless
    it is strictly smaller, and the left block holds the earlier indices. Tournament of
    ceil(log2 n) levels, each one batched less_than_select [L < R] ? R : L for values and indices;
    n - 1 comparisons, whose masks are made in one batch up front. bit_length defaults to the
    engine's maximum.
    """
    bl = engine.check_bit_length(engine.max_bit_length if bit_length is None else bit_length)
    vals = engine.flatten(x)
    n = len(vals)
    if n == 0:
        raise ValueError(f"{label}: argmax of an empty array")
    idx = _indices(engine, n, tags)
    masks = await engine.comparison_masks(f"{label}/rand", n - 1, bl)
    used, level = 0, 0
    while len(vals) > 1:
        half = len(vals) // 2
        lv, rv = _pairs(vals, half)
        li, ri = _pairs(idx, half)
        (nv, ni), _ = await engine.less_than_select(f"{label}/l{level}", lv, rv, bl, [(0, rv, lv), (0, ri, li)],
                                                    masks=engine.take_masks(masks, used, half))
        used += half
        vals, idx = _carry(nv, vals), _carry(ni, idx)
        level += 1
    return idx, vals


def _top_two_comparisons(n: int) -> int:
    """Comparisons top_two makes for n values: half per pair at the first level, three per pair
    after it, and one at the end (2(n - 1) in all)."""
    total, size, level = 0, n, 0
    while size > 1:
        half = size // 2
        total += half if level == 0 else 3 * half
        size -= half
        level += 1
    return total + (1 if n > 1 else 0)


async def top_two(engine: Engine, label: str, x: Share, bit_length: int | None = None,
                  tags: np.ndarray | None = None) -> tuple[Share, Share, Share]:
    """(index_of_max, max, second_max) of shared x (n >= 1 values, read flat), each of length 1.
    With public `tags` (n int64), index_of_max is the maximum's tag instead of its position.

    Ties: the earliest maximum wins, and second_max is the highest value among the others, so it
    equals max when the top value is tied. For n = 1 the second is the sentinel "minus infinity"
    -(2^bit_length): every engine's less_than is exact against it for |v| < 2^bit_length
    (engines/base.py).

    Tournament where a block keeps (max, idx, u, v) with second = max(u, v) left unresolved:
    merging L and R compares [L.max < R.max] together with u vs v of both children in one batch;
    the selections give the new max/idx and both children's seconds s_L, s_R; the new block has
    v = loser's max (linear: L.max + R.max - max) and u = winner's second = select(b, s_L, s_R)
    (one more round). 2(n - 1) comparisons in all, their masks made in one batch up front.
    """
    bl = engine.check_bit_length(engine.max_bit_length if bit_length is None else bit_length)
    mx = engine.flatten(x)
    n = len(mx)
    if n == 0:   # the executor answers an empty tournament itself (Executor._empty_tournament)
        raise ValueError(f"{label}: top_two of an empty array")
    sentinel = engine.constant(engine.encode(np.full(n, -(1 << bl), dtype=np.int64)))
    idx = _indices(engine, n, tags)
    if n == 1:
        return idx, mx.copy(), sentinel
    u = sentinel
    v = u.copy()
    total = _top_two_comparisons(n)
    masks = await engine.comparison_masks(f"{label}/rand", total, bl)
    used, level = 0, 0
    while len(mx) > 1:
        half = len(mx) // 2
        lm, rm = _pairs(mx, half)
        li, ri = _pairs(idx, half)
        lab = f"{label}/l{level}"
        if level == 0:     # children are single elements: their seconds are the sentinel
            (nm, ni), _ = await engine.less_than_select(lab, lm, rm, bl, [(0, rm, lm), (0, ri, li)],
                                                        masks=engine.take_masks(masks, used, half))
            used += half
            nu = u[:half]
        else:
            lu, ru = _pairs(u, half)
            lvv, rvv = _pairs(v, half)
            # one batch: [L.max < R.max], [L.u < L.v], [R.u < R.v]
            (nm, ni, s_l, s_r), b = await engine.less_than_select(
                lab, np.concatenate([lm, lu, ru]), np.concatenate([rm, lvv, rvv]), bl,
                [(0, rm, lm), (0, ri, li), (half, lvv, lu), (2 * half, rvv, ru)], keep_bit=(0, half),
                masks=engine.take_masks(masks, used, 3 * half))
            used += 3 * half
            # b = [L.max < R.max]: R won, so the winner's second is s_R
            nu = await select(engine, f"{lab}/second", b, s_r, s_l)
        nv = engine.sub(engine.add(lm, rm), nm)        # the loser's max
        mx, idx, u, v = _carry(nm, mx), _carry(ni, idx), _carry(nu, u), _carry(nv, v)
        level += 1
    (second,), _ = await engine.less_than_select(f"{label}/last", u, v, bl, [(0, v, u)],
                                                 masks=engine.take_masks(masks, used, 1))
    used += 1
    if used != total:   # the count above and the tournament must agree, or masks were reused
        raise RuntimeError(f"{label}: used {used} comparison masks, made {total}")
    return idx, mx, second
