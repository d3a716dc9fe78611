"""The wide replicated3 engine: the same three-party replicated sharing over Z_2^128, for
fixed-point circuits whose values need more than 64 bits (issue 13; docs/protocols.md "The wide
ring Z_2^128").

Elements are mpcnode/ring128.py's R128 (two uint64 limbs per element), so a share is the usual
value axes + (2,) components, party i holding (x_i, x_{i+1}) as in engines/replicated3.py, whose
module docstring describes the keys, the input sharing, multiplication and opening: this engine
runs the same protocols on 128-bit elements. It wraps a narrow `Replicated3Engine` on the SAME
exchange with the same pairwise keys (one `establish`) and the same `opened` log; its own PRF tags
start with "w128:" and its round labels are the caller's (sub-steps delegated to the narrow engine
get sub-labels), so the two never reuse a key+label or a round (also when built `around` a job's).

What is new here (the contract the fixed-point layer codes against)
---------------------------------------------------------------------
* `trunc` / `mul_trunc` / `reduce_trunc`: x / 2^d by a masked opening that never wraps (Catrina
  and Saxena, FC 2010, with the three-component mask of replicated sharing), error in (-2, 2)
  units of the last place, one round; statistical privacy 2^(L + 3 - 128) per value for
  |x| < 2^L (`trunc_leak_bits`).
* `downcast` (local) and `lift` (exact for [-2^62, 2^62), two rounds) between Z_2^64 and Z_2^128.
* comparisons downcast (operands fit 62 bits: `max_bit_length`) and run the narrow boolean
  circuits, whose final bit injection goes straight into Z_2^128 (`cross_inject` here): the
  same rounds as the narrow engine. `equal_zero` and `upper_half` are exact on all 128 bits.
* `normalize`: shares of 2^(bits - 1 - msb(x)), the scale of a reciprocal's first guess.

Costs: docs/protocols.md, "The wide ring Z_2^128" (one element = 16 bytes).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .. import ring128 as R
from ..exchange import Exchange, ProtocolViolation
from ..protocols import binary, wide
from .base import Engine, Public, Share
from .replicated3 import MAX_BIT_LENGTH, Replicated3Engine
from .replicated3_cross import _OWN_SLOTS

_U = np.uint64
RING_BITS = 128
MASK_BITS = RING_BITS - 2          # each mask component r_j is uniform in [0, 2^126)
MAX_TRUNC_BOUND = RING_BITS - 3    # |x| < 2^L with L <= 125 keeps x + 2^L + r below 2^128
LIFT_BITS = wide.LIFT_BITS         # lift is exact for y in [-2^62, 2^62)
# the holders of component 0, which carries public constants: the only parties that need the c of
# a truncation (its public part goes into component 0), so only they receive it
C0_HOLDERS = (0, 2)
_TWO64 = R.from_ints([1 << 64])[0]


def trunc_leak_bits(bound_bits: int, count: int) -> float:
    """log2 of the statistical distance a job's truncations may leak: `count` truncations of values
    with |x| < 2^bound_bits each open x + 2^L + r where the one component a party does not know is
    uniform on [0, 2^126), so each is within 2^(L + 1) / 2^126 = 2^(L + 3 - 128) of a value that
    does not depend on x; summed over the job (a union bound): log2(count) + L + 3 - 128. The
    builder keeps this <= -40 (e.g. L <= 61 for count <= 2^24)."""
    if count <= 0:
        return -math.inf
    return math.log2(count) + bound_bits + 3 - RING_BITS


class Replicated3WideEngine(Engine):
    """One party's side of a three-party replicated-sharing job over Z_2^128."""

    name = "replicated3"
    share_shape: tuple[int, ...] = (2,)
    field_modulus = None
    max_bit_length = MAX_BIT_LENGTH
    ring_bits = RING_BITS

    def __init__(self, exchange: Exchange, t: int = 1, live: Sequence[int] | None = None):
        self._bind(Replicated3Engine(exchange, t, live))

    @classmethod
    def around(cls, narrow: Replicated3Engine) -> "Replicated3WideEngine":
        """A wide engine over a 64-bit job's own engine, for one step in Z_2^128 and back (a tree
        model's probabilities: protocols/treeoutput.py)."""
        wide = cls.__new__(cls)
        wide._bind(narrow)
        return wide

    def _bind(self, narrow: Replicated3Engine) -> None:      # its exchange, parties, keys, opened log
        self.narrow, self.ex, self.opened = narrow, narrow.exchange, narrow.opened
        self.party, self.n, self.t, self.parties = narrow.party, narrow.n, narrow.t, narrow.parties
        self.prev, self.next = narrow.prev, narrow.next
        self._prf_labels: set[bytes] = set()

    @property
    def exchange(self) -> Exchange:
        return self.ex

    # ---- keys, randomness, rounds ------------------------------------------------------------
    async def establish(self, binding: np.ndarray | None = None) -> None:
        """The narrow engine's key round: both engines draw from the same pairwise keys."""
        await self.narrow.establish(binding)

    def _prf(self, purpose: str, label: str, size: int, slots: tuple[int, ...] = (0, 1)) -> list[np.ndarray | None]:
        """[F(K_party, l), F(K_party+1, l)] as R128 elements for l = "w128:purpose|label" (only the
        `slots` asked for): the components of the pseudo-random sharing named l. Once per label."""
        keys, tag = self._claim(purpose, label)
        return [keys[k].ring(tag, 2 * size).view(R.R128) if k in slots else None for k in (0, 1)]

    def _claim(self, purpose: str, label: str) -> tuple[tuple, bytes]:
        """(the pairwise key streams, the PRF tag "w128:purpose|label"), refusing a tag used before."""
        keys = self.narrow._keys
        if keys is None:
            raise RuntimeError("replicated3 (wide): keys are not established (call establish first)")
        tag = f"w128:{purpose}|{label}".encode()
        if tag in self._prf_labels:
            raise ValueError(f"replicated3 (wide): randomness label {tag.decode()!r} used twice")
        self._prf_labels.add(tag)
        return keys, tag

    def _prf_limbs(self, purpose: str, label: str, size: int,
                   slots: tuple[int, ...] = (0, 1)) -> tuple[R.Limbs | None, R.Limbs | None]:
        """As `_prf` (both slots), as contiguous limb pairs for the hot paths (the stream's first
        `size` words are the low limbs; a different but equally uniform reading of the PRF)."""
        keys, tag = self._claim(purpose, label)
        out: list[R.Limbs | None] = []
        for k in (0, 1):
            w = keys[k].ring(tag, 2 * size) if k in slots else None
            out.append(None if w is None else (w[:size], w[size:]))
        return out[0], out[1]

    async def _round_limbs(self, label: str, send: dict[int, R.Limbs], expect: Sequence[int],
                           size: int) -> dict[int, R.Limbs]:
        """One exchange round of limb pairs, sent planar (all low limbs, then all high limbs)."""
        words = {j: np.concatenate(x) for j, x in send.items()}
        got = await self.ex.round(label, words, expect)
        out = {}
        for j, w in got.items():
            if w.size != 2 * size:
                raise ProtocolViolation(f"round {label!r}: party {j} sent {w.size} words, expected {2 * size}")
            w = w.reshape(-1)
            out[j] = (w[:size], w[size:])
        return out

    def _pack_share(self, c0: R.Limbs, c1: R.Limbs, shape: tuple[int, ...]) -> Share:
        """A share (shape + (2,)) from the limb pairs of its two components."""
        out = R.empty(shape + (2,))
        flat = out.reshape(-1, 2)
        flat[:, 0]["lo"], flat[:, 0]["hi"] = c0
        flat[:, 1]["lo"], flat[:, 1]["hi"] = c1
        return out

    async def _ready(self) -> None:
        await self.narrow._prf_ready()

    def zero_sharing(self, label: str, size: int) -> np.ndarray:
        """This party's part of a 3-out-of-3 arithmetic sharing of zero over Z_2^128."""
        a, b = self._prf("zero", label, size)
        return R.sub(a, b)

    async def _round(self, label: str, send: dict[int, np.ndarray], expect: Sequence[int],
                     size: int) -> dict[int, np.ndarray]:
        """One exchange round of R128 arrays (sent as their uint64 limb words); every received
        array must hold `size` elements."""
        got = await self.ex.round(label, {j: R.to_words(a).reshape(-1) for j, a in send.items()}, expect)
        out = {}
        for j, words in got.items():
            if words.size != 2 * size:
                raise ProtocolViolation(f"round {label!r}: party {j} sent {words.size} words, expected {2 * size}")
            out[j] = R.from_words(words)
        return out

    # ---- input and output ------------------------------------------------------------------
    async def share_inputs(self, label: str, values_by_owner: dict[int, Public | None],
                           shapes: dict[int, tuple[int, ...]]) -> dict[int, Share]:
        """As the narrow engine: owner o sends x_o = v - F(K_{o+1}) to party o - 1; one round,
        one element (16 bytes) per value."""
        await self._ready()
        sizes = {o: int(np.prod(shape, dtype=np.int64)) for o, shape in shapes.items()}
        me = self.party
        send: dict[int, np.ndarray] = {}
        out: dict[int, Share] = {}
        if me in shapes:
            v = values_by_owner.get(me)
            if v is None or np.shape(v) != tuple(shapes[me]):
                raise ValueError(f"{label}: owner must supply values of shape {shapes[me]}")
            r = self._prf("in", f"{label}|{me}", sizes[me], (1,))[1]
            x_o = R.sub(R.encode(np.asarray(v)).reshape(-1), r)
            send[self.prev] = x_o
            out[me] = np.stack([x_o, r], axis=-1)
        expect = [o for o in shapes if o == self.next]
        got = await self._round(label, send, expect, sizes.get(self.next, 0))
        for o, size in sizes.items():
            if o == me:
                continue
            if o == self.next:
                out[o] = np.stack([R.zeros(size), got[o]], axis=-1)
            else:
                r = self._prf("in", f"{label}|{o}", size, (0,))[0]
                out[o] = np.stack([r, R.zeros(size)], axis=-1)
        return {o: out[o].reshape(tuple(shapes[o]) + (2,)) for o in shapes}

    async def open(self, label: str, x: Share, to: Sequence[int] | None = None, *,
                   purpose: str | None = None) -> Public | None:
        """As the narrow engine: each recipient gets its missing component from both holders and
        checks that they agree. Returns R128 values (ring128.to_signed_ints / to_float decode)."""
        to = tuple(sorted(set(self.parties if to is None else to)))
        x = np.asarray(x)
        if x.dtype != R.R128 or x.shape[-1:] != (2,):
            raise ValueError(f"{label}: not a wide replicated share, shape {x.shape} dtype {x.dtype}")
        size = int(np.prod(x.shape[:-1], dtype=np.int64))
        self.opened.note(label, size, purpose, to)
        send = {}
        if self.prev in to:
            send[self.prev] = np.ascontiguousarray(x[..., 1]).reshape(-1)
        if self.next in to:
            send[self.next] = np.ascontiguousarray(x[..., 0]).reshape(-1)
        expect = [self.next, self.prev] if self.party in to else []
        got = await self._round(label, send, expect, size)
        if self.party not in to:
            return None
        a, b = got[self.next], got[self.prev]
        if not np.array_equal(R.to_words(a), R.to_words(b)):
            lo, hi = sorted((self.next, self.prev))
            raise ProtocolViolation(f"round {label!r}: parties {lo} and {hi} sent different values of the "
                                    f"component they both hold (one of them is inconsistent)")
        return R.add(R.add(x[..., 0], x[..., 1]), a.reshape(x.shape[:-1]))

    # ---- public values and linear operations ------------------------------------------------
    def encode(self, values: np.ndarray | int | list[int]) -> Public:
        """Signed Python ints or int64 arrays -> R128 (fixed-point encodings come from the caller)."""
        return R.encode(values)

    def constant(self, values: Public) -> Share:
        """c as the sharing (c, 0, 0)."""
        c = R.encode(values)
        out = R.zeros(c.shape + (2,))
        slot = self._const_slot()
        if slot is not None:
            out[..., slot] = c
        return out

    def _const_slot(self) -> int | None:
        return {0: 0, 2: 1}.get(self.party)

    def add(self, a: Share, b: Share) -> Share:
        return R.add(a, b)

    def sub(self, a: Share, b: Share) -> Share:
        return R.sub(a, b)

    def neg(self, a: Share) -> Share:
        return R.neg(a)

    def add_const(self, a: Share, c: Public) -> Share:
        c = R.encode(c)
        shape = np.broadcast_shapes(a.shape[:-1], c.shape)
        out = np.array(np.broadcast_to(a, shape + (2,)))
        slot = self._const_slot()
        if slot is not None:
            out[..., slot] = R.add(out[..., slot], c)
        return out

    def mul_const(self, a: Share, c: Public) -> Share:
        """a * c for a share; for a local product (no component axis) c must be a scalar."""
        return R.mul(a, R.encode(c)[..., None])

    def sum(self, a: Share, axis: int = 0, keepdims: bool = False) -> Share:
        return R.sum(a, axis=axis, keepdims=keepdims)

    # ---- multiplication -------------------------------------------------------------------
    def mul_local(self, a: Share, b: Share) -> np.ndarray:
        """z_i = x_i (y_i + y_{i+1}) + x_{i+1} y_i, a 3-out-of-3 sharing of a * b."""
        return R.pack(*self._mul_local_limbs(a, b))

    @staticmethod
    def _mul_local_limbs(a: Share, b: Share) -> R.Limbs:
        a0, a1, b0 = R.split(a[..., 0]), R.split(a[..., 1]), R.split(b[..., 0])
        z = R.l_mul(a0, R.l_add(b0, R.split(b[..., 1])))
        R.l_add(z, R.l_mul(a1, b0), out=z)
        return z

    async def reduce(self, label: str, products: np.ndarray) -> Share:
        """Add a fresh zero-sharing, send z_i to party i - 1: one round, one element per value
        per party."""
        await self._ready()
        z = np.asarray(products)
        f0, f1 = self._prf_limbs("zero", label, z.size)
        mine = R.l_sub(f0, f1)
        R.l_add(mine, R.split(z.reshape(-1)), out=mine)
        got = await self._round_limbs(label, {self.prev: mine}, [self.next], z.size)
        return self._pack_share(mine, got[self.next], z.shape)

    async def mul(self, label: str, a: Share, b: Share) -> Share:
        return await self.reduce(label, self.mul_local(a, b))


    # ---- randomness -----------------------------------------------------------------------
    async def random(self, label: str, shape: tuple[int, ...]) -> Share:
        """r_j = F(K_j, "w128:rand|label"): no communication."""
        await self._ready()
        size = int(np.prod(shape, dtype=np.int64))
        a, b = self._prf("rand", label, size)
        return np.stack([a, b], axis=-1).reshape(tuple(shape) + (2,))

    async def random_bits(self, label: str, count: int) -> Share:
        """Bit 0 of a pseudo-random boolean sharing, injected into Z_2^128: one round."""
        await self._ready()
        a, b = self.narrow._prf("w128-rbit", label, count)
        return await binary.inject_bit(self, label, np.stack([a & _U(1), b & _U(1)]))

    async def cross_inject(self, label: str, u: np.ndarray | None, b: np.ndarray | None) -> Share:
        """The narrow engine's bit injection (Replicated3Engine.cross_inject) with 128-bit
        components: party 0 knows bits u, parties 1 and 2 bits b; shares of u ^ b = u (1 - 2b) + b
        in one round, 4 elements (64 bytes) per bit. W (1 - 2b) is W or -W."""
        await self._ready()
        me = self.party
        size = (u if me == 0 else b).size
        W = None if me == 2 else self._prf_limbs("iw", label, size, (1 if me == 0 else 0,))[1 if me == 0 else 0]
        V = None if me == 1 else self._prf_limbs("iv", label, size, (0 if me == 0 else 1,))[0 if me == 0 else 1]
        c = self._prf_limbs("ic", label, size, _OWN_SLOTS[me])
        zero = np.zeros(size, dtype=_U)
        if me == 0:
            uu = (u, zero)
            await self._round_limbs(label, {2: R.l_add(uu, W), 1: R.l_add(uu, V)}, [], 0)
            return self._pack_share(c[0], c[1], (size,))
        def signed(w: R.Limbs) -> R.Limbs:                           # w (1 - 2b): w or -w
            return R.l_cond_neg(w, b)

        mask, mine = (W, c[0]) if me == 1 else (V, c[1])
        other = 2 if me == 1 else 1
        got = await self._round_limbs(label, {other: R.l_add(signed(mask), mine)}, [0, other], size)
        m = R.l_sub(signed(got[0]), got[other])
        R.l_add(m, R.l_sub((b, zero), mine), out=m)
        return self._pack_share(mine, m, (size,)) if me == 1 else self._pack_share(m, mine, (size,))

    # ---- between the rings ----------------------------------------------------------------
    def downcast(self, x: Share) -> Share:
        """The narrow share of x mod 2^64 (the low limb of every component): local, exact for x in
        the signed 64-bit range."""
        return np.ascontiguousarray(np.asarray(x)["lo"])

    async def lift(self, label: str, y: Share) -> Share:
        """A narrow share y (Z_2^64, value in [-2^62, 2^62)) -> a wide share of the same signed
        value, exactly (protocols/wide.py): 2 rounds."""
        return await wide.lift(self, label, y)

    # ---- truncation ---------------------------------------------------------------------
    def _trunc_mask(self, label: str, size: int) -> tuple[R.Limbs, R.Limbs]:
        """This party's two mask components (r_party, r_party+1), each uniform in [0, 2^126)
        (the top two bits of a PRF element cleared), as limb pairs."""
        r0, r1 = self._prf_limbs("tmask", label, size)
        for r in (r0, r1):
            r[1][...] &= _U((1 << (MASK_BITS - 64)) - 1)
        return r0, r1

    @staticmethod
    def _check_trunc(d: int, bound_bits: int) -> tuple[int, int]:
        for name, v in (("d", d), ("bound_bits", bound_bits)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"trunc: {name} must be an int, got {v!r}")
        d, L = int(d), int(bound_bits)
        if not 0 <= d <= L <= MAX_TRUNC_BOUND:
            raise ValueError(f"trunc: need 0 <= d <= bound_bits <= {MAX_TRUNC_BOUND}, got d={d}, bound_bits={L}")
        return d, L

    async def trunc(self, label: str, x: Share, d: int, bound_bits: int) -> Share:
        """x / 2^d with an error in (-2, 2) units of the last place, for |x| < 2^bound_bits (the
        caller's range contract: outside it the result is wrong and the opening may leak), d the
        same for the whole batch. One round: every party adds its two mask components to its two
        components; only parties 0 and 2 (C0_HOLDERS) need c, and each gets the masked component
        it lacks from a holder (party 1 sends x_2 + r_2 to party 0, party 0 sends x_1 + r_1 to
        party 2); the sum of the three masked components plus 2^L is c = x + 2^L + r. A recipient
        learns c and nothing else; party 1 learns nothing. 2 elements per value (32 bytes) in
        total; recorded in `opened` as purpose "truncation", to parties 0 and 2. d = 0 returns x
        itself (no round)."""
        d, L = self._check_trunc(d, bound_bits)
        if d == 0:          # nothing to cut: the masked opening would only add an error of -1
            return np.array(x)
        await self._ready()
        x = np.asarray(x)
        shape = x.shape[:-1]
        flat = x.reshape(-1, 2)
        size = flat.shape[0]
        r0, r1 = self._trunc_mask(label, size)
        m0 = R.l_add(R.split(flat[:, 0]), r0)
        m1 = R.l_add(R.split(flat[:, 1]), r1)
        self.opened.note(label, size, "truncation", C0_HOLDERS)
        # party i's slot 1 is the component party i - 1 lacks
        send = {self.prev: m1} if self.prev in C0_HOLDERS else {}
        got = await self._round_limbs(label, send, [self.next] if self.party in C0_HOLDERS else [], size)
        c = None
        if self.party in C0_HOLDERS:
            c = R.l_add(m0, m1, out=m0)
            R.l_add(c, got[self.next], out=c)
            R.l_add(c, R.l_const(1 << L), out=c)
        return self._trunc_finish(c, r0, r1, d, L, shape)

    async def reduce_trunc(self, label: str, products: np.ndarray, d: int, bound_bits: int) -> Share:
        """(local products) / 2^d, i.e. reduce then trunc in ONE round: each party has
        c_i = z_i + alpha_i + r_i (its product part, a zero-sharing part and its first mask
        component) and sends it to those of parties 0 and 2 (C0_HOLDERS, the only ones that need
        c) it is not; they add the three c_i and 2^L. alpha hides each c_i; their sum is
        x + 2^L + r as in `trunc`; party 1 learns nothing. 4 elements per value (64 bytes) in
        total: party 1 sends 2, parties 0 and 2 one each. |sum of products| < 2^bound_bits is the caller's contract. d = 0 is a
        plain `reduce` (exact, nothing opened)."""
        z = np.asarray(products)
        if self._check_trunc(d, bound_bits)[0] == 0:      # d = 0: a plain reduce
            return await self.reduce(label, z)
        return await self._reduce_trunc_limbs(label, R.split(z.reshape(-1)), z.shape, d, bound_bits)

    async def _reduce_trunc_limbs(self, label: str, z: R.Limbs, shape: tuple[int, ...], d: int,
                                  bound_bits: int) -> Share:
        d, L = self._check_trunc(d, bound_bits)
        await self._ready()
        size = z[0].size
        f0, f1 = self._prf_limbs("zero", label, size)
        r0, r1 = self._trunc_mask(label, size)
        mine = R.l_sub(f0, f1)
        R.l_add(mine, (z[0].reshape(-1), z[1].reshape(-1)), out=mine)
        R.l_add(mine, r0, out=mine)
        self.opened.note(label, size, "truncation", C0_HOLDERS)
        to = [j for j in C0_HOLDERS if j != self.party]
        expect = [j for j in self.parties if j != self.party] if self.party in C0_HOLDERS else []
        got = await self._round_limbs(label, {j: mine for j in to}, expect, size)
        c = None
        if self.party in C0_HOLDERS:
            c = R.l_add(mine, got[self.prev])
            R.l_add(c, got[self.next], out=c)
            R.l_add(c, R.l_const(1 << L), out=c)
        return self._trunc_finish(c, r0, r1, d, L, shape)

    def _trunc_finish(self, c: R.Limbs | None, r0: R.Limbs, r1: R.Limbs, d: int, L: int,
                      shape: tuple[int, ...]) -> Share:
        """From the opened c = x + 2^L + r (an integer below 2^128, no wrap; None at party 1, which
        holds no component 0): the sharing with component j = -floor(r_j / 2^d) and the public
        floor(c / 2^d) - 2^(L - d) - 1 on component 0. Its value is floor(x / 2^d) + e - 1 with
        e in {0..3} (the carries of four fractional parts), so within (-2, 2) of x / 2^d."""
        c0, c1 = R.l_neg(R.l_shr(r0, d)), R.l_neg(R.l_shr(r1, d))
        slot = self._const_slot()
        if slot is not None and c is not None:
            public = R.l_sub(R.l_shr(c, d), R.l_const((1 << (L - d)) + 1))
            if slot == 0:
                c0 = R.l_add(c0, public)
            else:
                c1 = R.l_add(c1, public)
        return self._pack_share(c0, c1, shape)

    async def mul_trunc(self, label: str, a: Share, b: Share, d: int, bound_bits: int) -> Share:
        """(a * b) / 2^d in one round (reduce_trunc of the local products); |a * b| < 2^bound_bits."""
        if self._check_trunc(d, bound_bits)[0] == 0:
            return await self.mul(label, a, b)
        z = self._mul_local_limbs(a, b)
        return await self._reduce_trunc_limbs(label, z, z[0].shape, d, bound_bits)

    def trunc_leak_bits(self, bound_bits: int, count: int) -> float:
        """See the module function `trunc_leak_bits`."""
        return trunc_leak_bits(bound_bits, count)

    # ---- comparison and equality --------------------------------------------------------
    async def comparison_masks(self, label: str, count: int, bit_length: int | None = None) -> None:
        """No preprocessing (as the narrow engine)."""
        return None

    def take_masks(self, masks: None, start: int, count: int) -> None:
        return None

    async def less_than(self, label: str, a: Share, b: Share, bit_length: int, *,
                        masks: None = None) -> Share:
        """[a < b] for |a|, |b| < 2^bit_length <= 2^62: a - b fits 64 signed bits, so the narrow
        sign circuit runs on the downcast difference and injects its bit into Z_2^128: the same
        2 + ceil(log2(bit_length + 1)) rounds as the narrow engine."""
        bl = self.check_bit_length(bit_length)
        a, b = np.broadcast_arrays(a, b)
        d = self.downcast(self.sub(a, b))
        shape = d.shape[:-1]
        bit = await binary.less_than_zero(self.narrow, label, d.reshape(-1, 2), bl, into=self)
        return bit.reshape(shape + (2,))

    async def equal_zero(self, label: str, x: Share, *, masks: None = None) -> Share:
        """[x == 0] exact on all of Z_2^128 (protocols/wide.py): 8 rounds."""
        return await wide.equal_zero(self, label, x)

    # ---- client input checks ------------------------------------------------------------
    async def consistent_rows(self, label: str, rows: Share) -> np.ndarray:
        """The narrow check on the limbs: a wide row (m, L, 2) is the narrow row (m, 2L, 2) of its
        low and high limbs, and two holders agree on an element iff they agree on both limbs.
        (Client rows of a wide job are shared in Z_2^64 and checked by the narrow engine itself,
        mpcnode/jobrun.py; this serves wide rows.)"""
        rows = np.asarray(rows)
        m = rows.shape[0]
        words = R.to_words(rows.reshape(m, -1, 2))                # (m, L, 2 components, 2 limbs)
        narrow = np.ascontiguousarray(np.moveaxis(words, 3, 2)).reshape(m, -1, 2)
        return await self.narrow.consistent_rows(label, narrow)

    async def upper_half(self, label: str, x: Share) -> Share:
        """Bit 127 of each element, exact for every element (protocols/wide.py): 9 rounds, nothing
        opened."""
        return await wide.upper_half(self, label, x)

    # ---- normalization for reciprocals ----------------------------------------------------
    async def normalize(self, label: str, x: Share, bits: int) -> Share:
        """For 0 < x < 2^bits (bits <= 62): shares of v = 2^(bits - 1 - msb(x)), so that x v is in
        [2^(bits - 1), 2^bits) (protocols/wide.py). 7 + ceil(log2 bits) + 6 rounds (19 for
        bits = 62)."""
        return await wide.normalize(self, label, x, bits)
