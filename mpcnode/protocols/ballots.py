"""Ballots: validity checks, the tally, the winner and a referendum, on any engine.

Written once against the Engine interface (engines/base.py). The zero tests are the engine's:
`equal_zero` (exact, for ballots nobody range-checked) and `equal_zero_bounded` (for ballots whose
entries the nodes range-checked before sharing; Shamir has a cheaper statistically masked test
for them). docs/protocols-comparison.md, "Ballots", states the protocols and their costs.
"""
from __future__ import annotations

import asyncio

import numpy as np

from ..engines.base import Engine, Public, Share
from .selection import argmax_and_max


def _ballot_shape(engine: Engine, label: str, ballots: Share) -> tuple[int, int]:
    shape = engine.value_shape(ballots)
    if len(shape) != 2:
        raise ValueError(f"{label}: ballots must be (N, K), got shape {shape}")
    return shape[0], shape[1]


async def validate_ballots(engine: Engine, label: str, ballots: Share, exactly_one: bool,
                           entry_range: tuple[int, int] | None = None) -> Share:
    """Shares (N,) of 0/1: ballot row i is valid iff every entry is 0 or 1 and, if
    `exactly_one`, the row sums to 1 (approval voting: any number of ones).

    e_k = x_k (x_k - 1) in one round; public random rho_0..rho_K opened from a fresh
    engine.random after the ballots are shared; z = sum_k rho_k e_k (+ rho_K (sum_k x_k - 1))
    and valid = [z == 0]. An invalid ballot is accepted with probability <= 1/p (z is then a
    nonzero linear form in independent uniform rho over F_p); a valid one always is. That needs
    an engine over a prime field (engine.field_modulus); over a ring, `_validate_ring` tests
    every entry exactly instead.
    The squaring round, the coin (random + open) and the comparison masks run concurrently.

    `entry_range` = (lo, hi): the nodes checked lo <= x <= hi for every entry before sharing
    (a node input); then a bounded defect and the engine's bounded zero test are used instead.
    """
    nb, k = _ballot_shape(engine, label, ballots)
    if nb == 0:
        return engine.constant(np.zeros(0, dtype=np.uint64))
    if k == 0:
        raise ValueError(f"{label}: ballots have no options")
    if entry_range is not None:
        return await _validate_bounded(engine, label, ballots, exactly_one, entry_range)
    if engine.field_modulus is None:
        # over a ring a defect such as 2^63 vanishes under every even rho: the random linear
        # combination below is sound over a field only
        return await _validate_ring(engine, label, ballots, exactly_one)
    ncoef = k + 1 if exactly_one else k
    minus_one = engine.encode(-1)

    async def coins() -> Public:
        rho = await engine.random(f"{label}/rho", (ncoef,))
        return await engine.open(f"{label}/rho_open", rho, purpose="public-coins")

    e, rho, masks = await asyncio.gather(
        engine.mul(f"{label}/sq", ballots, engine.add_const(ballots, minus_one)),
        coins(),
        engine.comparison_masks(f"{label}/rand", nb))
    z = engine.sum(engine.mul_const(e, rho[None, :k]), axis=1)
    if exactly_one:
        total = engine.add_const(engine.sum(ballots, axis=1), minus_one)
        z = engine.add(z, engine.mul_const(total, rho[k]))
    return await engine.equal_zero(f"{label}/zero", z, masks=masks)


async def _validate_ring(engine: Engine, label: str, ballots: Share, exactly_one: bool) -> Share:
    """Unchecked ballots on an engine over Z_2^64 (replicated3): x (x - 1) = 0 mod 2^64 exactly for
    x in {0, 1} (one of x, x - 1 is odd, so 2^64 must divide the other), so every entry gets its
    own exact zero test, and with `exactly_one` also sum_k x_k - 1; the K (+1) test bits of a row
    are multiplied together in ceil(log2(K + 1)) rounds. Exact: no error probability.
    Cost: 1 squaring round, one batched zero test of N (K + 1) values, the AND tree."""
    nb, k = _ballot_shape(engine, label, ballots)
    minus_one = engine.encode(-1)
    defects = [await engine.mul(f"{label}/sq", ballots, engine.add_const(ballots, minus_one))]
    if exactly_one:
        defects.append(np.expand_dims(engine.add_const(engine.sum(ballots, axis=1), minus_one), 1))
    bits = await engine.equal_zero(f"{label}/zero", np.concatenate(defects, axis=1))
    level = 0
    while engine.value_shape(bits)[1] > 1:
        width = engine.value_shape(bits)[1]
        half = width // 2
        both = await engine.mul(f"{label}/and{level}", bits[:, :half], bits[:, half:2 * half])
        bits = np.concatenate([both, bits[:, 2 * half:]], axis=1) if width % 2 else both
        level += 1
    return bits[:, 0]


async def _validate_bounded(engine: Engine, label: str, ballots: Share, exactly_one: bool,
                            entry_range: tuple[int, int]) -> Share:
    """Ballots whose entries the nodes range-checked before sharing (lo <= x <= hi): the defect
    d = sum_k x_k (x_k - 1) [+ (sum_k x_k - 1)^2] is a sum of non-negative integers, zero
    exactly for a valid ballot, and at most a known bound, so a bounded zero test suffices."""
    lo, hi = entry_range
    _, k = _ballot_shape(engine, label, ballots)
    minus_one = engine.encode(-1)
    bound = k * max(lo * (lo - 1), hi * (hi - 1))
    # the defect is a sum of products: its local products are summed before the one reduction
    # round, so the round carries one element per ballot instead of K + 1 (as a DOT does)
    d = engine.sum(engine.mul_local(ballots, engine.add_const(ballots, minus_one)), axis=1)
    if exactly_one:
        total = engine.add_const(engine.sum(ballots, axis=1), minus_one)
        d = engine.add(d, engine.mul_local(total, total))
        bound += max(abs(k * lo - 1), abs(k * hi - 1)) ** 2
    return await engine.equal_zero_bounded(f"{label}/zero", await engine.reduce(f"{label}/sq", d), bound)


async def tally(engine: Engine, label: str, ballots: Share, valid: Share) -> tuple[Share, Share]:
    """(counts (K,), invalid (1,)) shares: column sums of valid_i * x_ik over the valid
    ballots only (one multiplication round), and N - sum(valid)."""
    nb, k = _ballot_shape(engine, label, ballots)
    valid = engine.flatten(valid)
    if len(valid) != nb:
        raise ValueError(f"{label}: {len(valid)} validity bits for {nb} ballots")
    counted = await engine.mul(f"{label}/mask", ballots, np.expand_dims(valid, 1))
    counts = engine.sum(counted, axis=0) if nb else engine.constant(np.zeros(k, dtype=np.uint64))
    invalid = engine.sub(engine.constant(engine.encode([nb])), engine.sum(valid, keepdims=True))
    return counts, invalid


async def winner_of(engine: Engine, label: str, counts: Share, bit_length: int | None = None) -> Share:
    """Shares (1,) of the index of the option with the most votes; a tie goes to the
    earliest option (lowest index)."""
    index, _ = await argmax_and_max(engine, label, counts, bit_length)
    return index


async def referendum(engine: Engine, label: str, yes_count: Share, valid_count: Share,
                     bit_length: int | None = None) -> Share:
    """Shares of [2 * yes >= valid]: the proposition passes with at least half of the
    valid votes (an exact half passes). Needs 2 * valid < 2^bit_length (default: the engine's
    maximum)."""
    bl = engine.max_bit_length if bit_length is None else bit_length
    return await engine.greater_equal(label, engine.add(yes_count, yes_count), valid_count, bl)
