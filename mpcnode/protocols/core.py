"""Input sharing, opening, multiplication and random values for semi-honest Shamir MPC.

Model: n parties, threshold t with 2t < n; up to t parties may collude and follow the
protocol (semi-honest). Every array of shares is a uint64 numpy array of field elements,
and every method handles a whole batch in one communication round.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import field, shamir
from ..exchange import Exchange
from ..randomness import random_bits, random_field


class Session:
    """One party's view of one job: its exchange, n, t, and the protocols over them."""

    def __init__(self, exchange: Exchange, t: int):
        if not 2 * t < exchange.n:
            raise ValueError(f"threshold t={t} needs 2t < n={exchange.n} for multiplication")
        self.ex = exchange
        self.party = exchange.party
        self.n = exchange.n
        self.t = t
        self.parties = tuple(range(self.n))
        # Degree reduction re-shares the degree-2t products of the first 2t+1 parties.
        self._reducers = tuple(range(2 * t + 1))
        self._reduce_weights = shamir.lagrange_at_zero(self._reducers)

    # ---- input --------------------------------------------------------------------
    async def share_from(self, label: str, owner: int, values: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
        """Owner secret-shares canonical `values`; everyone returns their own share (shape `shape`)."""
        if self.party == owner:
            if values is None or values.shape != tuple(shape):
                raise ValueError(f"{label}: owner must supply values of shape {shape}")
            shares = shamir.share(values, self.n, self.t)
            await self.ex.round(label, {j: shares[j] for j in self.parties if j != owner}, [])
            return shares[owner]
        got = await self.ex.round(label, {}, [owner])
        return _checked_shape(got[owner], shape, label, owner)

    async def share_from_many(self, label: str, values_by_owner: dict[int, np.ndarray | None],
                              shapes: dict[int, tuple[int, ...]]) -> dict[int, np.ndarray]:
        """Several owners share at once, in one round."""
        send: dict[int, list[np.ndarray]] = {j: [] for j in self.parties if j != self.party}
        mine: dict[int, np.ndarray] = {}
        if self.party in shapes:
            values = values_by_owner.get(self.party)
            if values is None or values.shape != tuple(shapes[self.party]):
                raise ValueError(f"{label}: owner must supply values of shape {shapes[self.party]}")
            shares = shamir.share(values.reshape(-1), self.n, self.t)
            for j in send:
                send[j].append(shares[j])
            mine[self.party] = shares[self.party].reshape(shapes[self.party])
        others = [o for o in shapes if o != self.party]
        got = await self.ex.round(label, {j: _cat(v) for j, v in send.items() if v}, others)
        for o in others:
            mine[o] = _checked_shape(got[o], (int(np.prod(shapes[o], dtype=np.int64)),), label, o).reshape(shapes[o])
        return mine

    # ---- opening --------------------------------------------------------------------
    async def open(self, label: str, x: np.ndarray, to: Sequence[int] | None = None) -> np.ndarray | None:
        """Reveal x to the parties in `to` (default: all). Others return None.

        Recipients check that all n shares lie on one degree-t polynomial, so a single
        inconsistent share is detected rather than silently producing a wrong value.
        """
        to = tuple(self.parties if to is None else to)
        send = {j: x for j in to if j != self.party}
        expect = [i for i in self.parties if i != self.party] if self.party in to else []
        got = await self.ex.round(label, send, expect)
        if self.party not in to:
            return None
        got[self.party] = x
        for i, arr in got.items():
            _checked_shape(arr, x.shape, label, i)
        return shamir.reconstruct_checked(got, self.t)

    # ---- multiplication -----------------------------------------------------------
    async def mul(self, label: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Elementwise product of two shared arrays in one round (GRR degree reduction).

        Each party's local product is a degree-2t share; the first 2t+1 parties re-share
        their product, pre-weighted by its Lagrange coefficient, with fresh degree-t
        sharings, and every party adds what it receives (Gennaro, Rabin, Rabin, PODC 1998).
        """
        a, b = np.broadcast_arrays(a, b)
        return await self.reduce_degree(label, field.mul(a, b))

    async def reduce_degree(self, label: str, d: np.ndarray) -> np.ndarray:
        shape = d.shape
        flat = d.reshape(-1)
        send: dict[int, np.ndarray] = {}
        mine = np.zeros_like(flat)
        if self.party in self._reducers:
            weight = self._reduce_weights[self._reducers.index(self.party)]
            sub = shamir.share(field.mul_const(flat, weight), self.n, self.t)
            send = {j: sub[j] for j in self.parties if j != self.party}
            mine = sub[self.party]
        expect = [i for i in self._reducers if i != self.party]
        got = await self.ex.round(label, send, expect)
        acc = mine
        for i in expect:
            acc = field.add(acc, _checked_shape(got[i], flat.shape, label, i))
        return acc.reshape(shape)

    async def mul_many(self, label: str, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Several independent products in one round."""
        prods = [field.mul(*np.broadcast_arrays(a, b)) for a, b in pairs]
        if not prods:
            return []
        flat = await self.reduce_degree(label, _cat([p.reshape(-1) for p in prods]))
        out, pos = [], 0
        for p in prods:
            out.append(flat[pos:pos + p.size].reshape(p.shape))
            pos += p.size
        return out

    # ---- randomness ---------------------------------------------------------------
    async def random(self, label: str, shape: tuple[int, ...]) -> np.ndarray:
        """Shares of uniform field elements no t parties know: the sum of t+1 parties' dealings."""
        dealers = self.parties[: self.t + 1]
        shares = await self.share_from_many(
            label, {self.party: random_field(shape)} if self.party in dealers else {},
            {d: tuple(shape) for d in dealers})
        acc = shares[dealers[0]]
        for d in dealers[1:]:
            acc = field.add(acc, shares[d])
        return acc

    async def random_bits(self, label: str, count: int) -> np.ndarray:
        """Shares of `count` uniform bits: the XOR of t+1 parties' shared bits.

        XOR(a, b) = a + b - 2ab costs one multiplication; the t+1 contributions are folded
        pairwise in ceil(log2(t+1)) rounds after one dealing round.
        """
        dealers = self.parties[: self.t + 1]
        shares = await self.share_from_many(
            f"{label}/deal", {self.party: random_bits(count)} if self.party in dealers else {},
            {d: (count,) for d in dealers})
        layer = [shares[d] for d in dealers]
        level = 0
        while len(layer) > 1:
            pairs = [(layer[k], layer[k + 1]) for k in range(0, len(layer) - 1, 2)]
            prods = await self.mul_many(f"{label}/xor{level}", pairs)
            nxt = [xor_from_product(a, b, ab) for (a, b), ab in zip(pairs, prods)]
            if len(layer) % 2:
                nxt.append(layer[-1])
            layer = nxt
            level += 1
        return layer[0]


def xor_from_product(a: np.ndarray, b: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """a XOR b = a + b - 2ab for bits."""
    return field.sub(field.add(a, b), field.add(ab, ab))


def _cat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate([a.reshape(-1) for a in arrays])


def _checked_shape(arr: np.ndarray, shape: tuple[int, ...], label: str, sender: int) -> np.ndarray:
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"round {label!r}: party {sender} sent {arr.size} elements, expected {shape}")
    return arr.reshape(shape)
