"""A test-only engine whose shares hold TWO field elements per value, to prove that the executor
and the engine-independent protocols (selection, ballots) never look inside a share.

A PairEngine share of shape S has shape S + (2,): components (c0, c1) with c0 + c1 = the party's
Shamir share, c1 arbitrary. That is the layout of the coming replicated engine (share_shape
(2,)), and like it, adding a public constant touches one component only; a local product is one
element per value (no component axis), as a replicated engine's three-out-of-three product is.
Any caller that does arithmetic on raw shares, flattens with x.reshape(-1) or indexes x[:, None]
gets wrong values or a shape error here. Every round is the wrapped Shamir engine's, so the
protocols stay correct and the traffic counters stay meaningful; the comparison masks are the
Shamir engine's opaque ones. `less_than_select` and `equal_zero_bounded` are NOT overridden, so
the Engine base class's generic versions run.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from mpcnode import field
from mpcnode.engines import ShamirEngine
from mpcnode.engines.base import Engine
from mpcnode.exchange import Exchange

_SPLIT = np.random.default_rng(20260611)     # the c1 components: any values will do


class PairEngine(Engine):
    name = "pair-test"
    share_shape = (2,)
    field_modulus = field.P

    def __init__(self, exchange: Exchange, t: int, live: Sequence[int] | None = None):
        self.inner = ShamirEngine(exchange, t, live)
        self.party, self.n, self.t, self.parties = self.inner.party, self.inner.n, self.inner.t, self.inner.parties
        self.max_bit_length = self.inner.max_bit_length

    @property
    def exchange(self) -> Exchange:
        return self.inner.exchange

    # ---- the layout: split a Shamir share into two components, join them back -------------
    def split(self, s: np.ndarray) -> np.ndarray:
        c1 = _SPLIT.integers(0, field.P, size=np.shape(s), dtype=np.uint64)
        return np.stack([field.sub(s, c1), c1], axis=-1)

    def join(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 0 or x.shape[-1] != 2:
            raise ValueError(f"not a pair share: shape {x.shape}")
        return field.add(x[..., 0], x[..., 1])

    # ---- interface ------------------------------------------------------------------------
    async def establish(self, binding: np.ndarray | None = None) -> None:
        await self.inner.establish(binding)

    async def share_inputs(self, label, values_by_owner, shapes):
        got = await self.inner.share_inputs(label, values_by_owner, shapes)
        return {o: self.split(s) for o, s in got.items()}

    async def open(self, label, x, to=None, *, purpose=None):
        return await self.inner.open(label, self.join(x), to, purpose=purpose)

    @property
    def opened(self):
        return self.inner.opened

    def encode(self, values):
        return field.asfield(values)

    def constant(self, values):
        values = np.asarray(values, dtype=np.uint64)
        return np.stack([values, np.zeros_like(values)], axis=-1)

    def add(self, a, b):
        return field.add(a, b)

    def sub(self, a, b):
        return field.sub(a, b)

    def neg(self, a):
        return field.neg(a)

    def add_const(self, a, c):
        c0 = field.add(a[..., 0], np.asarray(c, dtype=np.uint64))
        return np.stack([c0, np.broadcast_to(a[..., 1], c0.shape)], axis=-1)

    def mul_const(self, a, c):
        return field.mul(a, np.asarray(c, dtype=np.uint64)[..., None])

    def sum(self, a, axis=0, keepdims=False):
        total = field.sum_all(a, axis=axis)
        return np.expand_dims(total, axis) if keepdims else total

    def mul_local(self, a, b):
        ja, jb = np.broadcast_arrays(self.join(a), self.join(b))
        return field.mul(ja, jb)

    async def reduce(self, label, products):
        return self.split(await self.inner.reduce(label, products))

    async def mul(self, label, a, b):
        return await self.reduce(label, self.mul_local(a, b))

    async def mul_many(self, label, pairs):
        prods = [self.mul_local(a, b) for a, b in pairs]
        if not prods:
            return []
        flat = await self.reduce(label, np.concatenate([p.reshape(-1) for p in prods]))
        out, pos = [], 0
        for p in prods:
            out.append(flat[pos:pos + p.size].reshape(p.shape + (2,)))
            pos += p.size
        return out

    async def random(self, label, shape):
        return self.split(await self.inner.random(label, shape))

    async def random_bits(self, label, count):
        return self.split(await self.inner.random_bits(label, count))

    async def comparison_masks(self, label, count, bit_length=None):
        return await self.inner.comparison_masks(label, count, bit_length)

    def take_masks(self, masks, start, count):
        return self.inner.take_masks(masks, start, count)

    async def less_than(self, label, a, b, bit_length, *, masks=None):
        return self.split(await self.inner.less_than(label, self.join(a), self.join(b), bit_length, masks=masks))

    async def equal_zero(self, label, x, *, masks=None):
        return self.split(await self.inner.equal_zero(label, self.join(x), masks=masks))

    async def consistent_rows(self, label, rows):
        return await self.inner.consistent_rows(label, self.join(rows))

    async def upper_half(self, label, x):
        return self.split(await self.inner.upper_half(label, self.join(x)))


def shamir_share(engine: Engine, x: np.ndarray) -> np.ndarray:
    """The Shamir share behind an engine's share (to reconstruct results outside the protocol)."""
    return engine.join(x) if isinstance(engine, PairEngine) else x
