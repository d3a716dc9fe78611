"""Input sharing, opening, multiplication and random values for semi-honest Shamir MPC.

The session of the Shamir engine (engines/shamir.py, which subclasses Session): the executor and
the engine-independent protocols reach this code through the Engine interface only.

Model: n parties, threshold t with 2t < n; up to t parties may collude and follow the
protocol (semi-honest). Every array of shares is a uint64 numpy array of field elements,
and every method handles a whole batch in one communication round.
"""
from __future__ import annotations

import asyncio
from typing import Sequence

import numpy as np

from .. import field, shamir
from ..exchange import Exchange
from ..opened import OpenLog
from ..randomness import KeyedStream, random_bits, random_field
from .keys import pairwise_streams


class Session:
    """One party's view of one job: its exchange, n, t, and the protocols over them."""

    def __init__(self, exchange: Exchange, t: int, live: Sequence[int] | None = None):
        """`live`: the parties taking part (default all n). Shares keep their points, so a job can
        run without parties that were down before it started: linear work needs t+1 live
        parties, multiplication 2t+1."""
        if not 2 * t < exchange.n:
            raise ValueError(f"threshold t={t} needs 2t < n={exchange.n} for multiplication")
        self.ex = exchange
        self.party = exchange.party
        self.n = exchange.n
        self.t = t
        self.parties = tuple(sorted(set(range(self.n) if live is None else live)))
        if self.party not in self.parties or len(self.parties) < t + 1 or not set(self.parties) <= set(range(self.n)):
            raise ValueError(f"live parties {list(self.parties)} must include this party and at least t+1={t + 1}")
        # Degree reduction re-shares the degree-2t products of the first 2t+1 live parties.
        self._reducers = self.parties[: 2 * t + 1]
        self._reduce_weights = shamir.lagrange_at_zero(self._reducers)
        self._streams: dict[int, KeyedStream] | None = None
        self._streams_lock = asyncio.Lock()
        self.opened = OpenLog()

    # ---- dealing: the one place where fresh sharings are made and sent ---------------
    def seeded_receivers(self, dealer: int) -> tuple[int, ...]:
        """The t live parties after `dealer` (cyclically) whose shares of its dealings come from
        a seed they share with the dealer instead of a message."""
        pos, m = self.parties.index(dealer), len(self.parties)
        return tuple(self.parties[(pos + 1 + k) % m] for k in range(min(self.t, m - 1)))

    async def establish(self, binding: np.ndarray | None = None) -> None:
        """The session's first round: pairwise keys, and (with `binding`) a check that every live
        party runs the same job. `binding` is a short digest of what this party was asked to run
        (protocols/agreement.py); each party sends it to every other one, and any difference fails
        the session before a single share was dealt. The keys are derived with the digest, so they
        belong to this job only."""
        await self._pair_streams(binding)

    async def _pair_streams(self, binding: np.ndarray | None = None) -> dict[int, KeyedStream]:
        """Agree on a secret key with every other party (one round, once per session): the
        lower id picks it and sends it over the mutually authenticated channel."""
        if self._streams is None:
            async with self._streams_lock:
                if self._streams is None:
                    self._streams = await pairwise_streams(self.ex, self.party, self.parties, binding)
        return self._streams

    async def deal(self, label: str, sizes: dict[int, int], values: np.ndarray | None) -> dict[int, np.ndarray]:
        """One round in which every dealer d in `sizes` deals fresh degree-t shares of sizes[d]
        values (ours are `values` if we deal). Returns {dealer: our flat share}.

        A dealing polynomial is fixed by the secret at 0 and by pseudo-random values at the t
        seeded receivers' points, drawn from the keys they share with the dealer; only the
        other n-1-t parties get a message. Any t parties still see t values that are
        independent of the secret: those from seeds they hold are pseudo-random, and the
        others are masked by seed values they do not know.
        """
        streams = await self._pair_streams()
        send: dict[int, np.ndarray] = {}
        out: dict[int, np.ndarray] = {}
        if self.party in sizes:
            if values is None or values.size != sizes[self.party]:
                raise ValueError(f"{label}: dealer must supply {sizes[self.party]} values")
            flat = values.reshape(-1)
            seeded = self.seeded_receivers(self.party)
            seeds = [streams[j].field(_stream_label(label, self.party, j), flat.size) for j in seeded]
            for k in self.parties:
                if k in seeded:
                    continue
                weights = _dealing_weights(seeded, k)
                share = field.mul_const(flat, weights[0])
                for w, seed in zip(weights[1:], seeds):
                    share = field.add(share, field.mul_const(seed, w))
                if k == self.party:
                    out[k] = share
                else:
                    send[k] = share
        expect = [d for d in sizes if d != self.party and self.party not in self.seeded_receivers(d)]
        got = await self.ex.round(label, send, expect)
        for d, size in sizes.items():
            if d == self.party:
                continue
            if d in got:
                out[d] = _checked_shape(got[d], (size,), label, d)
            else:
                out[d] = streams[d].field(_stream_label(label, d, self.party), size)
        return out

    # ---- input --------------------------------------------------------------------
    async def share_from(self, label: str, owner: int, values: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
        """Owner secret-shares canonical `values`; everyone returns their own share (shape `shape`)."""
        if self.party == owner and (values is None or values.shape != tuple(shape)):
            raise ValueError(f"{label}: owner must supply values of shape {shape}")
        size = int(np.prod(shape, dtype=np.int64))
        got = await self.deal(label, {owner: size}, values if self.party == owner else None)
        return got[owner].reshape(shape)

    async def share_from_many(self, label: str, values_by_owner: dict[int, np.ndarray | None],
                              shapes: dict[int, tuple[int, ...]]) -> dict[int, np.ndarray]:
        """Several owners share at once, in one round."""
        mine = None
        if self.party in shapes:
            mine = values_by_owner.get(self.party)
            if mine is None or mine.shape != tuple(shapes[self.party]):
                raise ValueError(f"{label}: owner must supply values of shape {shapes[self.party]}")
        sizes = {o: int(np.prod(shape, dtype=np.int64)) for o, shape in shapes.items()}
        got = await self.deal(label, sizes, mine)
        return {o: got[o].reshape(shapes[o]) for o in shapes}

    # ---- opening --------------------------------------------------------------------
    async def open(self, label: str, x: np.ndarray, to: Sequence[int] | None = None, *,
                   purpose: str | None = None) -> np.ndarray | None:
        """Reveal x to the parties in `to` (default: all). Others return None. Recorded in
        `opened` with its purpose (engines/base.py OPEN_PURPOSES).

        Recipients check that all n shares lie on one degree-t polynomial, so a single
        inconsistent share is detected rather than silently producing a wrong value.
        """
        to = tuple(self.parties if to is None else to)
        self.opened.note(label, x.size, purpose, to)
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
        """Degree-2t shares in, fresh degree-t shares of the same values out (one dealing round)."""
        if len(self._reducers) < 2 * self.t + 1:
            raise ValueError(f"multiplication needs 2t+1={2 * self.t + 1} live parties, "
                             f"{len(self.parties)} are live")
        shape = d.shape
        flat = d.reshape(-1)
        mine = None
        if self.party in self._reducers:
            mine = field.mul_const(flat, self._reduce_weights[self._reducers.index(self.party)])
        got = await self.deal(label, {r: flat.size for r in self._reducers}, mine)
        acc = got[self._reducers[0]]
        for r in self._reducers[1:]:
            acc = field.add(acc, got[r])
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


def _stream_label(label: str, dealer: int, receiver: int) -> bytes:
    return f"{label}|{dealer}>{receiver}".encode()


def _dealing_weights(seeded: tuple[int, ...], k: int) -> tuple[int, ...]:
    """Weights giving f(point(k)) from f(0) and f at the dealer's seeded receivers."""
    return shamir.interpolation_weights((0, *(shamir.point(j) for j in seeded)), shamir.point(k))


def xor_from_product(a: np.ndarray, b: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """a XOR b = a + b - 2ab for bits."""
    return field.sub(field.add(a, b), field.add(ab, ab))


def _cat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate([a.reshape(-1) for a in arrays])


def _checked_shape(arr: np.ndarray, shape: tuple[int, ...], label: str, sender: int) -> np.ndarray:
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"round {label!r}: party {sender} sent {arr.size} elements, expected {shape}")
    return arr.reshape(shape)
