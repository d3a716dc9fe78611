"""The cross rounds of the replicated3 engine: the one-round steps of its boolean layer
(protocols/binary.py), where party 0 knows one operand in the clear (a sum of two components) and
parties 1 and 2 know the other (the third component). A mixin of engines/replicated3.py's
Replicated3Engine, kept apart so that the engine module holds sharing, multiplication and the
engine interface, and this one the correlated-randomness tricks that make A2B, the zero test and
bit injection cheap (costs in each docstring; rounds and labels as in the engine).
"""
from __future__ import annotations

import numpy as np

from ..exchange import ProtocolViolation
from .base import Share

_U = np.uint64
# In a cross round the output components g_0 = F(K_0) and g_1 = F(K_1) are pseudo-random: party 0
# holds both (slots 0, 1), party 1 holds g_1 (slot 0), party 2 holds g_0 (slot 1).
_OWN_SLOTS = {0: (0, 1), 1: (0,), 2: (1,)}


class CrossRounds:
    """Needs the engine's `party`, `ex`, `_prf` and `_prf_ready` (engines/replicated3.py)."""

    async def cross_and(self, label: str, s: np.ndarray | None, y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Party 0 knows words s, parties 1 and 2 know words y (flat, same length). One round
        gives XOR shares, planar (2, m) as in binary.py, of s and of s & y:

        [s] = (s ^ W, W, 0) with W = F(K_1) (parties 0, 1): party 0 sends s ^ W to party 2.
        [s & y] = (g0, g1, g2) with g_j = F(K_j), g2 = (s & y) ^ g0 ^ g1: party 0 also sends
        s ^ V (V = F(K_0), parties 0, 2) to party 1; party 1 sends (W & y) ^ g1 to party 2 and
        party 2 sends (V & y) ^ g0 to party 1. Then party 2 has ((s ^ W) & y) ^ (W & y) ^ g1 ^ g0
        = g2 and party 1 likewise. Every message is masked by a key its recipient lacks.
        Cost: 4 words per value (party 0: 2, parties 1 and 2: 1)."""
        await self._prf_ready()
        me = self.party
        size = (s if me == 0 else y).size
        W, V = self._masks("x", label, size)     # W on K_1 (parties 0, 1), V on K_0 (parties 0, 2)
        g = self._prf("xg", label, size, _OWN_SLOTS[me])
        if me == 0:
            sw = s ^ W
            await self.ex.round(label, {2: sw, 1: s ^ V}, [])
            return np.stack([sw, W]), np.stack([g[0], g[1]])
        zero = np.zeros(size, dtype=_U)
        if me == 1:
            got = await self.ex.round(label, {2: (W & y) ^ g[0]}, [0, 2])
            sv = _checked(got[0], size, label, 0)                          # s ^ V
            g2 = (sv & y) ^ _checked(got[2], size, label, 2) ^ g[0]
            return np.stack([W, zero]), np.stack([g[0], g2])
        got = await self.ex.round(label, {1: (V & y) ^ g[1]}, [0, 1])
        sw = _checked(got[0], size, label, 0)                              # s ^ W
        g2 = (sw & y) ^ _checked(got[1], size, label, 1) ^ g[1]
        return np.stack([zero, sw]), np.stack([g2, g[1]])

    async def cross_and_rot(self, label: str, a: np.ndarray | None, y: np.ndarray | None, r: int) -> np.ndarray:
        """Party 0 knows words a, parties 1 and 2 know words y: XOR shares (planar) of f = e & rot_r(e)
        for e = a ^ y (rot_r: rotate right by r bits) in one round, no shares of e needed.

        With W = F(K_1) (parties 0, 1) and A = a ^ W: (A ^ y) & rot(A ^ y) = f ^ C0 ^ C1, where
        C0 = a & rot W ^ W & rot a ^ W & rot W (party 0) and C1 = y & rot W ^ W & rot y (party 1).
        Party 0 sends A and C0 ^ M (M = F(K_1)) to party 2, party 1 sends C1 ^ M ^ g1; party 2
        then has g2 = f ^ g0 ^ g1. Party 1 gets the same with V = F(K_0) from parties 0 and 2.
        Result (g0, g1, g2) with g_j = F(K_j). 6 words per value (party 0: 4)."""
        await self._prf_ready()
        me = self.party
        size = (a if me == 0 else y).size
        W, V = self._masks("r", label, size)
        M, M2 = self._masks("rm", label, size)           # M on K_1, M2 on K_0
        g = self._prf("rg", label, size, _OWN_SLOTS[me])
        rot = _U(r)
        back = _U(64 - r)

        def rotr(w: np.ndarray) -> np.ndarray:
            return (w >> rot) | (w << back)

        def own_part(w: np.ndarray) -> np.ndarray:       # C0 for mask w
            rw = rotr(w)
            return (a & rw) ^ (w & rotr(a)) ^ (w & rw)

        def their_part(w: np.ndarray) -> np.ndarray:     # C1 for mask w
            return (y & rotr(w)) ^ (w & rotr(y))

        def fold(masked: np.ndarray, c0: np.ndarray, c1: np.ndarray, g_other: np.ndarray) -> np.ndarray:
            e = masked ^ y
            return (e & rotr(e)) ^ c0 ^ c1 ^ g_other

        if me == 0:
            await self.ex.round(label, {2: np.concatenate([a ^ W, own_part(W) ^ M]),
                                        1: np.concatenate([a ^ V, own_part(V) ^ M2])}, [])
            return np.stack([g[0], g[1]])
        if me == 1:
            got = await self.ex.round(label, {2: their_part(W) ^ M ^ g[0]}, [0, 2])
            msg = _checked(got[0], 2 * size, label, 0)
            g2 = fold(msg[:size], msg[size:], _checked(got[2], size, label, 2), g[0])
            return np.stack([g[0], g2])
        got = await self.ex.round(label, {1: their_part(V) ^ M2 ^ g[1]}, [0, 1])
        msg = _checked(got[0], 2 * size, label, 0)
        g2 = fold(msg[:size], msg[size:], _checked(got[1], size, label, 1), g[1])
        return np.stack([g2, g[1]])

    async def cross_inject(self, label: str, u: np.ndarray | None, b: np.ndarray | None) -> Share:
        """Party 0 knows bits u, parties 1 and 2 know bits b (flat 0/1 words): arithmetic shares
        of u ^ b = u (1 - 2b) + b in one round, by the same correlation as cross_and:
        components c_j = F(K_j) for j = 0, 1 and c2 = u ^ b - c0 - c1; party 0 sends u + W to
        party 2 and u + V to party 1; party 1 sends W (1 - 2b) + c1 to party 2, party 2 sends
        V (1 - 2b) + c0 to party 1. 4 elements per bit."""
        await self._prf_ready()
        me = self.party
        size = (u if me == 0 else b).size
        W, V = self._masks("i", label, size)
        c = self._prf("ic", label, size, _OWN_SLOTS[me])
        if me == 0:
            np.add(W, u, out=W)                                     # the masks are this round's own
            np.add(V, u, out=V)
            await self.ex.round(label, {2: W, 1: V}, [])
            return np.stack(c, axis=-1)
        # in place and in cache-sized blocks: batches of leaf indicators run to millions of bits,
        # and whole-batch temporaries cost a page fault per 4 KiB
        mask, mine = (W, c[0]) if me == 1 else (V, c[1])
        peer = 2 if me == 1 else 1
        for i in range(0, size, _BLOCK):
            blk = mask[i:i + _BLOCK]
            blk *= _one_minus_twice(b[i:i + _BLOCK])                 # 1 - 2b mod 2^64
            blk += mine[i:i + _BLOCK]
        got = await self.ex.round(label, {peer: mask}, [0, peer])
        from0, from_peer = _checked(got[0], size, label, 0), _checked(got[peer], size, label, peer)
        out = np.empty((size, 2), dtype=_U)
        own_slot = 0 if me == 1 else 1
        for i in range(0, size, _BLOCK):
            j = min(size, i + _BLOCK)
            m = from0[i:j] * _one_minus_twice(b[i:j])
            m -= from_peer[i:j]
            m += b[i:j]
            m -= mine[i:j]
            out[i:j, 1 - own_slot] = m
            out[i:j, own_slot] = mine[i:j]
        return out

    async def reduce_to_split(self, label: str, z: np.ndarray) -> np.ndarray:
        """A 3-out-of-3 sharing z (local products, any shape) of x = z_0 + z_1 + z_2 -> the split
        form of binary.split_sum, x = s + y with s at party 0 and y at parties 1 and 2 (returned,
        shape of z), in one round: y = R = F(K_2) (the key of parties 1 and 2), party 1 sends
        z_1 + M and party 2 sends z_2 - R - M (M = F(K_2) too) to party 0, which adds them to z_0.
        Party 0 sees two values masked by M and R + M, unknown to it; parties 1 and 2 receive
        nothing. 2 elements per value (a reduction to replicated shares sends 3, and a comparison
        would then form the split from them locally)."""
        await self._prf_ready()
        me = self.party
        z = np.asarray(z, dtype=_U)
        size = z.size
        if me == 0:
            got = await self.ex.round(label, {}, [1, 2])
            s = z.reshape(-1) + _checked(got[1], size, label, 1)
            s += _checked(got[2], size, label, 2)
            return s.reshape(z.shape)
        slot = 1 if me == 1 else 0                       # K_2: party 1's slot 1, party 2's slot 0
        r = self._prf("sy", label, size, (slot,))[slot]
        m = self._prf("sm", label, size, (slot,))[slot]
        msg = z.reshape(-1) + m if me == 1 else z.reshape(-1) - r - m
        await self.ex.round(label, {0: msg}, [])
        return r.reshape(z.shape)

    def _masks(self, purpose: str, label: str, size: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(W, V) of a cross round: W = F(K_1) for parties 0 and 1, V = F(K_0) for parties 0 and 2
        (None where this party lacks the key)."""
        me = self.party
        W = None if me == 2 else self._prf(purpose + "w", label, size, (1 if me == 0 else 0,))[1 if me == 0 else 0]
        V = None if me == 1 else self._prf(purpose + "v", label, size, (0 if me == 0 else 1,))[0 if me == 0 else 1]
        return W, V


_BLOCK = 1 << 14


def _one_minus_twice(b: np.ndarray) -> np.ndarray:
    """1 - 2b mod 2^64 for 0/1 words b."""
    out = b << _U(1)
    return np.subtract(_U(1), out, out=out)


def _checked(arr: np.ndarray, size: int, label: str, sender: int) -> np.ndarray:
    if arr.size != size:
        raise ProtocolViolation(f"round {label!r}: party {sender} sent {arr.size} elements, expected {size}")
    return arr.reshape(-1)
