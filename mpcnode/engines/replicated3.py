"""The replicated3 engine: semi-honest three-party replicated secret sharing over Z_2^64.

Araki, Furukawa, Lindell, Nof, Ohara (CCS 2016) for sharing and multiplication; Mohassel and
Rindal, ABY3 (CCS 2018) for the boolean layer and the conversions (protocols/binary.py). Three
parties, one of which may be corrupted (t = 1), all three live: with replicated sharing a missing
party takes a component with it, so there are no dropouts.

Layout (mpcnode/replicated.py): x = x_0 + x_1 + x_2 mod 2^64 and party i holds (x_i, x_{i+1}) as
the last axis of its share ([..., 0], [..., 1]); component j is held by parties j and j - 1.
Boolean (XOR) shares have the same layout with XOR for +, 64 bits packed per uint64 word.

Keys and correlated randomness
------------------------------
`establish` agrees on one AES key per pair of parties in one round (the lower id picks it; every
party also sends the binding digest to both others and checks theirs). Key K_j is the key of the
pair (j, j - 1), i.e. of the two holders of component j: party i holds K_i (slot 0, shared with
party i - 1) and K_{i+1} (slot 1, shared with party i + 1), so component j's pseudo-random value
F(K_j, label) is computed by exactly its two holders. From it, with no communication:
* a random sharing: r_j = F(K_j, "rand|label");
* an arithmetic zero-sharing (3-out-of-3): a_i = F(K_i, l) - F(K_{i+1}, l), a_0 + a_1 + a_2 = 0;
* a boolean zero-sharing: a_i = F(K_i, l) ^ F(K_{i+1}, l).
Every PRF label is "purpose|round label", and a label is refused if used twice (no key+label is
ever used for two purposes or twice).

Protocols and costs (per value; "el" = one 8-byte ring element or 64-bit word)
------------------------------------------------------------------------------
op                        rounds                  sent in total (all parties)
share_inputs              1                       1 el per value (owner -> party owner-1)
open (to all)             1                       6 el (each recipient gets its missing
                                                  component from both holders, and checks)
open to k parties         1                       2k el
mul / reduce / AND word   1                       3 el (1 per party)
reduce_to_split           1                       2 el (local products to binary's split form)
random                    0                       0
random_bits               1                       4 el per bit (bit injection)
A2B (64-bit)              1 + 6 = 7               4 + 5 * 6 + 3 = 37 el
less_than (bit_length l)  2 + ceil(log2(l + 1))   4 el + (L - 1) * 6 el + 3 el + 4 el
  l = 1 / 32 / 62         3 / 8 / 8               11 / 41 / 41 el
less_than_lanes (l = 31)  7                       about 8.9 el (packed lanes, a carry tree:
                                                  binary.less_than_lanes, lanes_cost)
equal_zero                1 + 5 + 1 = 7           6 + 5 * 3 + 4 = 25 el
less_than_select          the comparison + 1      + 3 el per selected value
comparison_masks          0 (no preprocessing: everything is derived from the pairwise keys)

Input sharing: owner o sets x_{o+1} = F(K_{o+1}, "in|label"), known to party o + 1 already,
x_{o+2} = 0, and sends x_o = v - x_{o+1} to party o - 1 (= o + 2). No single party's two
components depend on v (party o + 1 sees (r, 0), party o + 2 sees (0, v - r) with r unknown to
it), and a later open reveals only the value: a recipient's missing component is fixed by the
value and the two it holds.

Multiplication: the local product z_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i is a 3-out-of-3
sharing of xy; reduce adds a zero-sharing and sends z_i to party i - 1, giving (z_i, z_{i+1}).
"""
from __future__ import annotations

import asyncio
from typing import Sequence

import numpy as np

from .. import replicated
from ..exchange import Exchange, ProtocolViolation
from ..opened import OpenLog
from ..protocols import binary
from ..protocols.keys import pairwise_streams
from ..randomness import KeyedStream
from .base import Engine, Public, Share
from .replicated3_cross import CrossRounds, _checked

_U = np.uint64
MAX_BIT_LENGTH = 62        # |a|, |b| < 2^62 keeps a - b inside the signed 64-bit range


class Replicated3Engine(CrossRounds, Engine):
    """One party's side of a three-party replicated-sharing job (see the module docstring)."""

    name = "replicated3"
    share_shape: tuple[int, ...] = (2,)
    field_modulus = None
    max_bit_length = MAX_BIT_LENGTH

    def __init__(self, exchange: Exchange, t: int = 1, live: Sequence[int] | None = None):
        if exchange.n != 3:
            raise ValueError(f"replicated3 runs with exactly 3 parties, the job has {exchange.n}")
        if t != 1:
            raise ValueError(f"replicated3 tolerates exactly t=1 corrupted party, the job asks t={t}")
        parties = tuple(sorted(set(range(3) if live is None else live)))
        if parties != (0, 1, 2):
            raise ValueError(f"replicated3 needs all three parties live (no dropouts with replicated "
                             f"sharing), live: {list(parties)}")
        self.ex = exchange
        self.party = exchange.party
        self.n, self.t, self.parties = 3, 1, parties
        self.prev = (self.party - 1) % 3            # shares K_party (slot 0) with us
        self.next = (self.party + 1) % 3            # shares K_party+1 (slot 1) with us
        self._keys: tuple[KeyedStream, KeyedStream] | None = None
        self._keys_lock = asyncio.Lock()
        self._prf_labels: set[bytes] = set()
        self.opened = OpenLog()

    @property
    def exchange(self) -> Exchange:
        return self.ex

    # ---- keys and correlated randomness --------------------------------------------------
    async def establish(self, binding: np.ndarray | None = None) -> None:
        """One round: a key per pair (the lower id picks it) and, with `binding`, a check that
        both other parties send the same digest; ProtocolViolation before anything is dealt."""
        await self._streams(binding)

    async def _streams(self, binding: np.ndarray | None = None) -> tuple[KeyedStream, KeyedStream]:
        """(stream of K_party: slot 0, shared with prev; stream of K_party+1: slot 1, with next)."""
        if self._keys is None:
            async with self._keys_lock:
                if self._keys is None:
                    streams = await pairwise_streams(self.ex, self.party, self.parties, binding,
                                                     b"parley-replicated3-v1")
                    self._keys = (streams[self.prev], streams[self.next])
        return self._keys

    def _prf(self, purpose: str, label: str, shape: tuple[int, ...] | int,
             slots: tuple[int, ...] = (0, 1)) -> list[np.ndarray | None]:
        """[F(K_party, l), F(K_party+1, l)] for l = purpose|label (only the `slots` asked for,
        None for the others): this party's components of the pseudo-random sharing named l.
        Each label is used once per job."""
        if self._keys is None:
            raise RuntimeError("replicated3: keys are not established (call establish first)")
        tag = f"{purpose}|{label}".encode()
        if tag in self._prf_labels:
            raise ValueError(f"replicated3: randomness label {tag.decode()!r} used twice")
        self._prf_labels.add(tag)
        return [self._keys[k].ring(tag, shape) if k in slots else None for k in (0, 1)]

    async def _prf_ready(self) -> None:
        if self._keys is None:
            await self._streams()

    def zero_sharing(self, label: str, size: int, xor: bool = False, out: np.ndarray | None = None) -> np.ndarray:
        """This party's part of a 3-out-of-3 sharing of zero (arithmetic, or XOR with xor=True),
        written into `out` if given."""
        a, b = self._prf("xzero" if xor else "zero", label, size)
        return (np.bitwise_xor if xor else np.subtract)(a, b, out=a if out is None else out)

    def prf_components(self, purpose: str, label: str, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Pseudo-random (F(K_party), F(K_party+1)) for a protocol step (binary.py)."""
        return self._prf(purpose, label, size)

    # ---- input and output ------------------------------------------------------------------
    async def share_inputs(self, label: str, values_by_owner: dict[int, Public | None],
                           shapes: dict[int, tuple[int, ...]]) -> dict[int, Share]:
        """Every owner o sends x_o = v - F(K_{o+1}) to party o - 1 only; x_{o+1} comes from the
        key party o + 1 shares with o, and x_{o+2} = 0. One round, one element per value."""
        await self._prf_ready()
        sizes = {o: int(np.prod(shape, dtype=np.int64)) for o, shape in shapes.items()}
        send: dict[int, np.ndarray] = {}
        out: dict[int, Share] = {}
        me = self.party
        if me in shapes:
            v = values_by_owner.get(me)
            if v is None or np.shape(v) != tuple(shapes[me]):
                raise ValueError(f"{label}: owner must supply values of shape {shapes[me]}")
            r = self._prf("in", f"{label}|{me}", sizes[me], (1,))[1]       # x_{o+1}, on the key with next
            x_o = np.asarray(v, dtype=_U).reshape(-1) - r
            send[self.prev] = x_o
            out[me] = np.stack([x_o, r], axis=-1)
        expect = [o for o in shapes if o == self.next]       # owner o sends to o - 1: to us if o is next
        got = await self.ex.round(label, send, expect)
        for o, size in sizes.items():
            if o == me:
                continue
            if o == self.next:          # we are o - 1: we hold (x_{o+2}, x_o) = (0, received)
                x_o = _checked(got[o], size, label, o)
                out[o] = np.stack([np.zeros(size, dtype=_U), x_o], axis=-1)
            else:                       # we are o + 1: we hold (x_{o+1}, x_{o+2}) = (F(K_{o+1}), 0)
                r = self._prf("in", f"{label}|{o}", size, (0,))[0]
                out[o] = np.stack([r, np.zeros(size, dtype=_U)], axis=-1)
        return {o: out[o].reshape(tuple(shapes[o]) + (2,)) for o in shapes}

    async def open(self, label: str, x: Share, to: Sequence[int] | None = None, *,
                   purpose: str | None = None) -> Public | None:
        """Each recipient r gets its missing component x_{r+2} from both of its holders (party
        r + 1 sends slot 1, party r + 2 slot 0) and checks that they agree. Recorded in `opened`
        with its purpose (mpcnode/opened.py)."""
        to = tuple(sorted(set(self.parties if to is None else to)))
        x = np.asarray(x, dtype=_U)
        if x.shape[-1:] != (2,):
            raise ValueError(f"{label}: not a replicated share, shape {x.shape}")
        self.opened.note(label, int(np.prod(x.shape[:-1], dtype=np.int64)), purpose, to)
        send = {}
        if self.prev in to:                     # prev misses x_{prev+2} = x_{party+1}: our slot 1
            send[self.prev] = np.ascontiguousarray(x[..., 1]).reshape(-1)
        if self.next in to:                     # next misses x_{next+2} = x_party: our slot 0
            send[self.next] = np.ascontiguousarray(x[..., 0]).reshape(-1)
        expect = [self.next, self.prev] if self.party in to else []
        got = await self.ex.round(label, send, expect)
        if self.party not in to:
            return None
        size = int(np.prod(x.shape[:-1], dtype=np.int64))
        a = _checked(got[self.next], size, label, self.next)
        b = _checked(got[self.prev], size, label, self.prev)
        if not np.array_equal(a, b):
            lo, hi = sorted((self.next, self.prev))
            raise ProtocolViolation(f"round {label!r}: parties {lo} and {hi} sent different values of the "
                                    f"component they both hold (one of them is inconsistent)")
        total = x[..., 0] + x[..., 1]
        total += a.reshape(total.shape)
        return total

    # ---- public values and linear operations ------------------------------------------------
    def encode(self, values: np.ndarray | int | list[int]) -> Public:
        return replicated.encode(values)

    def constant(self, values: Public) -> Share:
        """c as the sharing (c, 0, 0) (replicated.constant)."""
        return replicated.constant(values, self.party)

    def _const_slot(self) -> int | None:
        """Where this party holds component 0 (which carries public constants)."""
        return {0: 0, 2: 1}.get(self.party)

    def add(self, a: Share, b: Share) -> Share:
        return np.add(a, b, dtype=_U)

    def sub(self, a: Share, b: Share) -> Share:
        return np.subtract(a, b, dtype=_U)

    def neg(self, a: Share) -> Share:
        return np.negative(a, dtype=_U)

    def add_const(self, a: Share, c: Public) -> Share:
        c = np.asarray(c, dtype=_U)
        shape = np.broadcast_shapes(a.shape[:-1], c.shape)
        out = np.array(np.broadcast_to(a, shape + (2,)), dtype=_U)
        slot = self._const_slot()
        if slot is not None:
            out[..., slot] += c
        return out

    def mul_const(self, a: Share, c: Public) -> Share:
        """a * c for a share; for a local product (no component axis) c must be a scalar."""
        return np.multiply(a, np.asarray(c, dtype=_U)[..., None], dtype=_U)

    def sum(self, a: Share, axis: int = 0, keepdims: bool = False) -> Share:
        a = np.asarray(a, dtype=_U)
        k = a.shape[axis]
        if 1 < k <= 16 and axis > 0:
            # a short inner axis (a ballot's K entries): adding its slices beats numpy's strided
            # reduction about 1.5x on (N, K, 2) shares
            lead = (slice(None),) * axis
            out = a[lead + (0,)].copy()
            for j in range(1, k):
                np.add(out, a[lead + (j,)], out=out)
            return np.expand_dims(out, axis) if keepdims else out
        return np.sum(a, axis=axis, dtype=_U, keepdims=keepdims)

    # ---- multiplication -------------------------------------------------------------------
    def mul_local(self, a: Share, b: Share) -> np.ndarray:
        """z_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i = x_i (y_i + y_{i+1}) + x_{i+1} y_i."""
        a0, a1, b0, b1 = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
        z = np.add(b0, b1)
        if z.shape == np.broadcast_shapes(z.shape, a0.shape):
            np.multiply(z, a0, out=z)
        else:
            z = np.multiply(z, a0)
        t = np.multiply(a1, b0)
        if t.shape == z.shape:
            z += t
        else:
            z = z + t
        return z

    def matmul_local(self, a: Share, b: Share, bits: int = 64) -> np.ndarray:
        """z_i = A_i (B_i + B_{i+1}) + A_{i+1} B_i = [A_i | A_{i+1}] [B_i + B_{i+1}; B_i]: one matrix
        product over Z_2^64 (replicated.ring_matmul). With bits < 64 the products are right only
        mod 2^bits (upper bits 0), so their reduction shares the product mod 2^bits: for a caller
        that reads only the low bits (tree keys: the comparison reads bits 0..32), at a third of
        the cost for bits <= 34."""
        left = np.concatenate([a[..., 0], a[..., 1]], axis=1)
        right = np.concatenate([np.add(b[..., 0], b[..., 1]), b[..., 0]], axis=0)
        return replicated.ring_matmul(left, right, bits)

    async def reduce(self, label: str, products: np.ndarray) -> Share:
        """Add a fresh zero-sharing, send z_i to party i - 1, return (z_i, z_{i+1}): one round,
        one element per product per party."""
        return await self.reshare(label, products, xor=False)

    async def reshare(self, label: str, z: np.ndarray, xor: bool) -> Share:
        """A 3-out-of-3 sharing z (arithmetic, or XOR with xor=True) -> replicated shares in the
        (..., 2) layout: one round."""
        z = np.asarray(z, dtype=_U)
        mine, got = await self._reshare(label, z.reshape(-1), xor)
        return np.stack([mine, got], axis=-1).reshape(z.shape + (2,))

    async def reshare_planar(self, label: str, z: np.ndarray, xor: bool) -> np.ndarray:
        """As `reshare` for flat z, but the result planar (2, m): row 0 = slot 0, row 1 = slot 1
        (contiguous rows for the word operations of binary.py)."""
        z = np.asarray(z, dtype=_U).reshape(-1)
        out = np.empty((2, z.size), dtype=_U)
        _, got = await self._reshare(label, z, xor, out[0])
        out[1] = got
        return out

    async def _reshare(self, label: str, z: np.ndarray, xor: bool,
                       out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(z_i + alpha_i, z_{i+1} + alpha_{i+1}): add a fresh zero-sharing, send ours to party
        i - 1, receive party i + 1's. Ours is written into `out` if given."""
        await self._prf_ready()
        mine = self.zero_sharing(label, z.size, xor, out)
        if xor:
            mine ^= z
        else:
            mine += z
        got = await self.ex.round(label, {self.prev: mine}, [self.next])
        return mine, _checked(got[self.next], z.size, label, self.next)

    async def mul(self, label: str, a: Share, b: Share) -> Share:
        return await self.reduce(label, self.mul_local(a, b))


    # ---- randomness -----------------------------------------------------------------------
    async def random(self, label: str, shape: tuple[int, ...]) -> Share:
        """r_j = F(K_j, "rand|label"): no communication."""
        await self._prf_ready()
        size = int(np.prod(shape, dtype=np.int64))
        a, b = self._prf("rand", label, size)
        return np.stack([a, b], axis=-1).reshape(tuple(shape) + (2,))

    async def random_bits(self, label: str, count: int) -> Share:
        """Bit 0 of a pseudo-random boolean sharing (no communication), injected into the ring
        (binary.inject_bit): one round, 4 elements per bit."""
        await self._prf_ready()
        a, b = self._prf("rbit", label, count)
        return await binary.inject_bit(self, label, np.stack([a & _U(1), b & _U(1)]))

    async def random_coins(self, label: str, thresholds: np.ndarray, lam: int) -> Share:
        """[r < T] from pseudo-random XOR-shared words (no bit injection per random bit):
        binary.random_coins, prefix_levels(lam) + 1 rounds."""
        await self._prf_ready()
        return await binary.random_coins(self, label, thresholds, lam, self._const_slot())

    # ---- comparison and equality: protocols/binary.py ---------------------------------------
    async def comparison_masks(self, label: str, count: int, bit_length: int | None = None) -> None:
        """No preprocessing: every comparison draws its correlated randomness from the pairwise
        keys under its own round labels, so there is nothing to make ahead."""
        return None

    def take_masks(self, masks: None, start: int, count: int) -> None:
        return None

    async def less_than(self, label: str, a: Share, b: Share, bit_length: int, *,
                        masks: None = None) -> Share:
        """[a < b] = sign(a - b) by binary.less_than_zero: 2 + ceil(log2(bit_length + 1)) rounds."""
        bl = self.check_bit_length(bit_length)
        a, b = np.broadcast_arrays(a, b)
        d = self.sub(a, b)
        shape = self.value_shape(d)
        bit = await binary.less_than_zero(self, label, self.flatten(d), bl)
        return bit.reshape(shape + (2,))

    async def less_than_lanes(self, label: str, a: Share, b: Share, bit_length: int) -> Share:
        """[a < b] as `less_than`, same rounds, by binary.less_than_lanes: the carry tree on packed
        lanes sends about a quarter of the elements at bit_length 31 (binary.lanes_cost)."""
        bl = self.check_bit_length(bit_length)
        a, b = np.asarray(a, dtype=_U), np.asarray(b, dtype=_U)
        shape = np.broadcast_shapes(self.value_shape(a), self.value_shape(b))
        bit = await binary.less_than_lanes(self, label, a, b, bl)
        return bit.reshape(shape + (2,))

    async def equal_zero(self, label: str, x: Share, *, masks: None = None) -> Share:
        """[x == 0] for every x in Z_2^64 by binary.equal_zero: 7 rounds."""
        shape = self.value_shape(x)
        bit = await binary.equal_zero(self, label, self.flatten(x))
        return bit.reshape(shape + (2,))


    # ---- client input checks ------------------------------------------------------------
    async def consistent_rows(self, label: str, rows: Share) -> np.ndarray:
        """Do the two holders of each component of a client's row hold the same copy? One round.

        Party i holds (x_i, x_{i+1}) of each row; party i - 1 holds x_i too (its second
        component) and party i + 1 holds x_{i+1} (its first). Each party sends its first
        components to party i - 1 and its second to party i + 1, which compare them with their
        own copy; then every party sends every other one flag per row (its verdict), and a row
        passes only if all three verdicts are clean, so every party gets the same answer. The
        components themselves are sent, not a hash: the receiver already holds that component
        (a hash would hide nothing more), and the check then needs no hashing of m * L words.
        A client that gave the two holders different copies would make the row's value depend
        on which pair of parties reconstructs it (a tally's products would carry a random
        error); nodes are semi-honest, so a difference proves the client lied. Rounds: 2
        (components, then verdicts), concurrent with nothing else."""
        rows = np.asarray(rows, dtype=_U)
        m = rows.shape[0]
        if m == 0:
            return np.ones(0, dtype=bool)
        comp = rows.reshape(m, -1, 2)
        first = np.ascontiguousarray(comp[..., 0]).reshape(-1)
        second = np.ascontiguousarray(comp[..., 1]).reshape(-1)
        got = await self.ex.round(f"{label}/components", {self.prev: first, self.next: second},
                                  [self.prev, self.next])
        from_prev = _checked(got[self.prev], first.size, label, self.prev).reshape(m, -1)   # prev's second: our first
        from_next = _checked(got[self.next], first.size, label, self.next).reshape(m, -1)   # next's first: our second
        bad = (np.any(from_prev != comp[..., 0], axis=1) | np.any(from_next != comp[..., 1], axis=1)).astype(_U)
        others = [self.prev, self.next]
        verdicts = await self.ex.round(f"{label}/verdicts", {j: bad for j in others}, others)
        for j in others:
            bad = bad | _checked(verdicts[j], m, f"{label}/verdicts", j)
        return bad == 0

    async def upper_half(self, label: str, x: Share) -> Share:
        """Bit 63 of each 64-bit word, exact for every word: binary.less_than_zero at bit_length
        62 takes the sign bit 63 = p_63 ^ G_62 of the split sum s + y, the carry over bits 0..62
        by a full 6-level prefix adder, so it is bit 63 of (s + y) mod 2^64 = x whatever x is.
        Opens nothing. 8 rounds."""
        shape = self.value_shape(x)
        bit = await binary.less_than_zero(self, label, self.flatten(x), MAX_BIT_LENGTH)
        return bit.reshape(shape + (2,))
