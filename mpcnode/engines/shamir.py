"""The Shamir engine: semi-honest honest-majority Shamir sharing over F_p, p = 2^61 - 1.

It is `protocols.core.Session` (dealing, input sharing, opening, GRR multiplication, random
values and bits, the key round) seen through the Engine interface, with the comparison and
equality protocols of `protocols.compare`. This module adds no protocol of its own: it names
today's Shamir code by the interface's methods, so rounds, bytes and labels are exactly those of
the Session and compare functions it calls.

A share is one field element per value (share_shape = ()), so the linear operations are the
field's (mpcnode/field.py), and a public constant c is its own share: the constant polynomial c.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import field, shamir
from ..exchange import Exchange, ProtocolViolation
from ..protocols import compare
from ..protocols.core import Session
from .base import Engine, Public, Selection, Share


class ShamirEngine(Session, Engine):
    """`Session` (which supplies establish, open, mul, mul_many, random and random_bits
    unchanged) plus the rest of the Engine interface. Also a Session, so the Shamir-specific
    protocol modules (protocols/compare.py) take it directly."""

    name = "shamir"
    share_shape: tuple[int, ...] = ()
    field_modulus = field.P
    max_bit_length = compare.MAX_BIT_LENGTH      # |v| < 2^59 keeps differences below p/2

    @property
    def exchange(self) -> Exchange:
        return self.ex

    async def share_inputs(self, label: str, values_by_owner: dict[int, Public | None],
                           shapes: dict[int, tuple[int, ...]]) -> dict[int, Share]:
        return await self.share_from_many(label, values_by_owner, shapes)

    # ---- public values and linear operations: the field's ------------------------------
    def encode(self, values: np.ndarray | int | list[int]) -> Public:
        return field.asfield(values)

    def constant(self, values: Public) -> Share:
        return np.asarray(values, dtype=np.uint64)

    def add(self, a: Share, b: Share) -> Share:
        return field.add(a, b)

    def sub(self, a: Share, b: Share) -> Share:
        return field.sub(a, b)

    def neg(self, a: Share) -> Share:
        return field.neg(a)

    def add_const(self, a: Share, c: Public) -> Share:
        return field.add(a, np.asarray(c, dtype=np.uint64))

    def mul_const(self, a: Share, c: Public) -> Share:
        return field.mul(a, np.asarray(c, dtype=np.uint64))

    def sum(self, a: Share, axis: int = 0, keepdims: bool = False) -> Share:
        total = field.sum_all(a, axis=axis)
        return np.expand_dims(total, axis) if keepdims else total

    # ---- multiplication: a local product is a degree-2t sharing --------------------------
    def mul_local(self, a: Share, b: Share) -> Share:
        return field.mul(*np.broadcast_arrays(a, b))

    async def reduce(self, label: str, products: Share) -> Share:
        return await self.reduce_degree(label, products)

    # ---- comparison and equality: protocols/compare.py -----------------------------------
    async def comparison_masks(self, label: str, count: int, bit_length: int | None = None) -> compare.Masks:
        """Solved random bits (serve every comparison and equal_zero), or with a bit_length that
        takes the bounded path (bit_length <= compare.max_bounded_bit_length(t)) the cheaper
        compare.BoundedMasks, which serve only comparisons of that bit_length."""
        return await compare.comparison_masks(self, label, count, bit_length)

    def take_masks(self, masks: compare.Masks, start: int, count: int) -> compare.Masks:
        return compare.take_masks(masks, start, count)

    async def less_than(self, label: str, a: Share, b: Share, bit_length: int, *,
                        masks: compare.Masks | None = None) -> Share:
        """Exact (LSB trick) above compare.max_bounded_bit_length(t), statistically masked at or
        below it (compare.py, "Bounded comparison")."""
        return await compare.less_than(self, label, a, b, bit_length, solved=masks)

    async def equal_zero(self, label: str, x: Share, *, masks: compare.Masks | None = None) -> Share:
        return await compare.equal_zero(self, label, x, solved=masks)

    async def less_than_select(self, label: str, a: Share, b: Share, bit_length: int,
                               selects: Sequence[Selection] = (), *, keep_bit: tuple[int, int] | None = None,
                               masks: compare.Masks | None = None) -> tuple[list[Share], Share | None]:
        """Fused on both paths: the selections ride on the comparison's own rounds
        (bitwise.xor_lt_select)."""
        return await compare.less_than_select(self, label, a, b, bit_length, selects, keep_bit=keep_bit,
                                              solved=masks)

    def exact_bit_length(self, bit_length: int) -> int:
        """Above the bounded path's limit: unchecked operands take the exact LSB protocol, whose
        opened value is uniform for every operand below p/2 (the bounded path's mask hides only
        operands within the range; out of it, a chosen bid could probe an honest one)."""
        return min(self.max_bit_length, max(bit_length, compare.max_bounded_bit_length(self.t) + 1))

    async def equal_zero_bounded(self, label: str, x: Share, bound: int) -> Share:
        """A statistically masked opening of x (compare.equal_zero_bounded): L random bits and
        L - 1 products for bound < 2^L instead of 61 and 60."""
        return await compare.equal_zero_bounded(self, label, x, bound)

    # ---- client input checks -------------------------------------------------------------
    async def consistent_rows(self, label: str, rows: Share) -> np.ndarray:
        """Degree check of the clients' sharings, per row (3 rounds for the whole batch).

        The parties draw L public coins r (a fresh random sharing, opened: purpose public-coins)
        only now, after submission closed, so no client can aim its error at them. Each party
        computes s_c = sum_k r_k x_{c,k} + rho_c with rho a fresh random degree-t sharing per row
        and sends its share of s to every other live party (one round, purpose input-check). A
        row passes iff the live shares of s_c lie on a polynomial of degree <= t. If some x_{c,k}
        is off every degree-t polynomial, the combination is off it except with probability 1/p
        (its syndrome is a nonzero linear form in r); rho_c has syndrome zero. s_c is uniform
        (rho_c is, and no t parties know it), and its shares are a uniform degree-t sharing of
        it, so nothing about x leaks. With only t + 1 live parties there is nothing to compare
        (any t + 1 points lie on a degree-t polynomial): every row passes."""
        rows = np.asarray(rows, dtype=np.uint64)
        m = rows.shape[0]
        width = int(np.prod(rows.shape[1:], dtype=np.int64))
        if m == 0 or len(self.parties) <= self.t + 1:
            return np.ones(m, dtype=bool)
        rand = await self.random(f"{label}/rand", (width + m,))
        coins = await self.open(f"{label}/coins", rand[:width], purpose="public-coins")
        mixed = field.sum_all(field.mul(rows.reshape(m, width), np.broadcast_to(coins, (m, width)).copy()), axis=1)
        s = field.add(mixed, rand[width:])
        self.opened.note(f"{label}/open", m, "input-check", self.parties)
        others = [j for j in self.parties if j != self.party]
        got = await self.ex.round(f"{label}/open", {j: s for j in others}, others)
        got[self.party] = s
        for j, arr in got.items():
            if arr.shape != s.shape:
                raise ProtocolViolation(f"round {label}/open: party {j} sent {arr.size} values, expected {m}")
        return shamir.on_polynomial(got, self.t)

    async def upper_half(self, label: str, x: Share) -> Share:
        """The exact LSB path at the largest bit length: compare.ltz computes LSB(2x mod p), and
        for any x in F_p, 2x mod p is odd iff 2x >= p, i.e. iff x > (p - 1) / 2. The path's mask
        is uniform whatever x holds (protocols/compare.py), so nothing leaks either."""
        if compare.bounded_applies(compare.MAX_BIT_LENGTH, self.t):     # never: the bounded path is <= 18 bits
            raise RuntimeError("upper_half needs the exact comparison path")
        return await compare.ltz(self, label, np.asarray(x, dtype=np.uint64), compare.MAX_BIT_LENGTH)
