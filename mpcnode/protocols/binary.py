"""The boolean layer of the replicated3 engine: XOR shares of packed words, AND, A2B with a
Kogge-Stone adder, bit injection, the sign bit and the zero test. Protocol math only: every round
is an engine method (`reshare_planar`, `cross_and`, `cross_and_rot`, `cross_inject` of
engines/replicated3.py and its cross rounds, engines/replicated3_cross.py).

Boolean shares are replicated XOR shares: words w = w_0 ^ w_1 ^ w_2, party i holds (w_i, w_{i+1}).
Inside this module they are PLANAR, shape (2, m) (row 0 = w_i, row 1 = w_{i+1}), so that every
word operation runs on contiguous rows; `layout` / `planar` convert to and from the (m, 2)
layout of mpcnode/replicated.py. One uint64 word per value, bit k of the word = bit k of the
value (LSB = bit 0), so a shift of the word moves carries.

Protocols (Mohassel, Rindal, ABY3, CCS 2018, sections 5.1-5.4; Kogge, Stone, IEEE TC 1973)
-------------------------------------------------------------------------------------------
* AND of words: z_i = x_i & (y_i ^ y_{i+1}) ^ x_{i+1} & y_i is a 3-out-of-3 XOR sharing of
  x & y; `engine.reshare_planar(xor=True)` adds a XOR zero-sharing and sends z_i to party i - 1: one
  round, one word per AND per party.
* Split A2B. For an arithmetic x = x_0 + x_1 + x_2, party 0 holds s = x_0 + x_1 and parties 1
  and 2 both hold y = x_2, so x = s + y needs ONE two-operand adder. `engine.cross_and` gives
  [s] and the generate word [g] = [s & y] in one round (4 words per value); [y] = (0, 0, y) and
  the propagate word p = s ^ y are local.
* Kogge-Stone prefix: G <- G ^ (P & (G << k)), P <- P & (P << k) for k = 1, 2, 4, ...; XOR is OR
  here because a group cannot both generate and propagate. One round per level, 2 ANDs per level
  (1 at the last level). After L levels G at bit i is the carry out of bits max(0, i-2^L+1)..i,
  and the sum is p ^ (G << 1).
* Sign of d = a - b for |a|, |b| < 2^l (one of them may be -(2^l)): d fits l + 2 signed bits,
  so sign = bit l + 1 of s + y = p_{l+1} ^ G_l, which needs the carry over the l + 1 bits
  0..l: L = ceil(log2(l + 1)) levels.
* Zero test: x == 0 iff s == -y, i.e. iff every bit of e = NOT(s) ^ (-y) is 1: an AND-tree
  within the word (e & rot32(e), then >> 16, ... >> 1), no adder. Its first level is computed
  in the cross round itself (`engine.cross_and_rot`: party 0 knows NOT(s), parties 1 and 2 know
  -y), so the zero test has 1 + 5 AND rounds.
* Bit injection (B2A of one bit): b = b_0 ^ b_1 ^ b_2 with u = b_0 ^ b_1 at party 0 and b_2 at
  parties 1 and 2; u ^ b_2 = u (1 - 2 b_2) + b_2 is linear in u once b_2 is known, so
  `engine.cross_inject` makes it in one round (4 elements per bit).

* Sign on packed lanes (less_than_bits, less_than_lanes): the sign needs only the carry out of
  bits 0..l, so each value's low bits go through the cross round as a w-bit lane (w = the power
  of two >= l + 1; 64 / w lanes a word) and a carry tree of log2(w) levels halves the lanes at
  each level and sends only dense words: about 4.9 words per value for l = 31 against the
  prefix adder's 31, the same rounds. Its bits can stay XOR-shared and packed (tree paths).

Rounds: A2B 7; less_than 2 + ceil(log2(l + 1)) (l = 1: 3, l = 32 or 62: 8); equal_zero 7.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..engines.replicated3 import Replicated3Engine

Share = np.ndarray
_U = np.uint64
_ONE = _U(1)
WORD_BITS = 64


# ---- local operations on XOR shares (planar) ---------------------------------------------------

def planar(x: Share) -> Share:
    """(m, 2) layout -> planar (2, m)."""
    return np.ascontiguousarray(np.moveaxis(x, -1, 0))


def layout(x: Share) -> Share:
    """Planar (2, m) -> the (m, 2) layout of mpcnode/replicated.py."""
    return np.ascontiguousarray(np.moveaxis(x, 0, -1))


def and_local(x: Share, y: Share, out: np.ndarray | None = None) -> np.ndarray:
    """The 3-out-of-3 XOR sharing z_i = x_i & (y_i ^ y_{i+1}) ^ x_{i+1} & y_i of x & y
    (written into `out`, shape (m,), if given)."""
    z = np.bitwise_xor(y[0], y[1], out=out)
    z &= x[0]
    z ^= x[1] & y[0]
    return z


def extract_bit(x: Share, k: int) -> Share:
    """XOR shares of bit k of each word, as 0/1 words."""
    return (x >> _U(k)) & _ONE


def component2_share(party: int, y: np.ndarray | None, size: int) -> Share:
    """The sharing (0, 0, y) of words y known to parties 1 and 2 (component 2): no communication,
    valid for XOR and for arithmetic sharing."""
    out = np.zeros((2, size), dtype=_U)
    if party == 1:
        out[1] = y
    elif party == 2:
        out[0] = y
    return out


def own_split(party: int, x: Share) -> np.ndarray:
    """This party's part of split_sum for shares x of any shape (..., 2): s = x_0 + x_1 at party
    0, y = x_2 at parties 1 and 2."""
    return x[..., 0] + x[..., 1] if party == 0 else x[..., 1 if party == 1 else 0]


def split_sum(party: int, x: Share) -> tuple[np.ndarray | None, np.ndarray | None]:
    """For a flat arithmetic share x (m, 2): (s = x_0 + x_1 at party 0, else None;
    y = x_2 at parties 1 and 2, else None), so that x = s + y."""
    if party == 0:
        return x[:, 0] + x[:, 1], None
    return None, np.ascontiguousarray(x[:, 1] if party == 1 else x[:, 0])


# ---- rounds ---------------------------------------------------------------------------------

async def and_words(engine: "Replicated3Engine", label: str, x: Share, y: Share) -> Share:
    """x & y on XOR-shared words: one round, one word per AND per party."""
    return await engine.reshare_planar(label, and_local(x, y), xor=True)


async def prefix_carries(engine: "Replicated3Engine", label: str, g: Share, p: Share, levels: int) -> Share:
    """Kogge-Stone: after `levels` rounds, G at bit i = the carry out of bits
    max(0, i - 2^levels + 1)..i of the sum whose generate and propagate words are g and p."""
    G, P = np.array(g, copy=True), p
    m = g.shape[1]
    z = np.empty(2 * m, dtype=_U)          # the local ANDs of one level, reshared in one round
    for level in range(levels):
        k = _U(1 << level)
        if level == levels - 1:
            G ^= await engine.reshare_planar(f"{label}/ks{level}", and_local(P, G << k, out=z[:m]), xor=True)
        else:
            and_local(P, G << k, out=z[:m])
            and_local(P, P << k, out=z[m:])
            both = await engine.reshare_planar(f"{label}/ks{level}", z, xor=True)
            G ^= both[:, :m]
            P = both[:, m:]
    return G


async def _split_adder(engine: "Replicated3Engine", label: str, x: Share) -> tuple[Share, Share]:
    """(g, p) words of s + y where x = s + y (split_sum): one cross round."""
    s, y = split_sum(engine.party, x)
    s_sh, g = await engine.cross_and(f"{label}/cross", s, y)
    p = s_sh ^ component2_share(engine.party, y, len(x))
    return g, p


async def a2b(engine: "Replicated3Engine", label: str, x: Share) -> Share:
    """Flat arithmetic shares (m, 2) -> planar XOR shares (2, m) of the same 64-bit words: 7 rounds
    (the cross round and 6 prefix levels)."""
    g, p = await _split_adder(engine, label, x)
    G = await prefix_carries(engine, f"{label}/add", g, p, 6)
    return p ^ (G << _ONE)


async def inject_bit(engine: "Replicated3Engine", label: str, b: Share) -> Share:
    """Planar XOR shares (2, m) of 0/1 words -> arithmetic shares (m, 2) of the same bits: one
    round."""
    party = engine.party
    u = (b[0] ^ b[1]) if party == 0 else None
    y = None if party == 0 else b[1] if party == 1 else b[0]
    return await engine.cross_inject(f"{label}/b2a", u, y)


def prefix_levels(bit_length: int) -> int:
    """Kogge-Stone levels for the sign of a - b with |a|, |b| < 2^bit_length."""
    return max(1, math.ceil(math.log2(bit_length + 1)))


async def less_than_zero(engine: "Replicated3Engine", label: str, d: Share, bit_length: int,
                         into: Any = None) -> Share:
    """Arithmetic shares of [d < 0] for flat d (m, 2) with -2^(l+1) < d < 2^(l+1), l = bit_length
    <= 62: the sign bit l + 1 of the split sum. Rounds: 1 + prefix_levels(l) + 1. `into`: the
    engine whose ring receives the bit (its `cross_inject`; default `engine`: the wide engine
    passes itself, engines/replicated3_wide.py)."""
    g, p = await _split_adder(engine, label, d)
    G = await prefix_carries(engine, f"{label}/add", g, p, prefix_levels(bit_length))
    k = bit_length + 1
    sign = extract_bit(p, k) ^ extract_bit(G, k - 1)
    return await inject_bit(into or engine, label, sign)


# ---- the sign by a carry tree on packed lanes (less_than_lanes) ----------------------------------

# _HALVES[h]: the low h bits of every 2h-bit field of a word
_HALVES = {1: 0x5555555555555555, 2: 0x3333333333333333, 4: 0x0F0F0F0F0F0F0F0F,
           8: 0x00FF00FF00FF00FF, 16: 0x0000FFFF0000FFFF, 32: 0x00000000FFFFFFFF}


def lane_width(bit_length: int) -> int:
    """The lane of `less_than_lanes`: the carry out of bits 0..l needs l + 1 bits, rounded
    up to a power of two so that the carry tree halves every lane at every level."""
    return 1 << max(0, math.ceil(math.log2(bit_length + 1)))


def _lanes(x: np.ndarray, width: int) -> np.ndarray:
    """The low `width` bits of each word of x (any shape, taken in C order; size a multiple of 64)
    packed 64 / width to a word (value i at bits width*(i % (64/width))), each lane in bit-reversed
    order: lane bit q holds the value's bit rev(q) (q's log2(width) index bits reversed), so
    that at every level of the carry tree the more significant bit of each adjacent pair
    (2i + 1, 2i) sits in the upper half of the lane, at the same offset as the other in the
    lower half, and the combined group i lands at rev(i) of the half-width lane (_carry_tree)."""
    if width >= 8:
        w = x.astype(np.dtype(f"<u{width // 8}"), order="C").reshape(-1).view("<u8")
    else:
        per = WORD_BITS // width
        w = np.bitwise_or.reduce((x & _U((1 << width) - 1)).reshape(-1, per)
                                 << (np.arange(per, dtype=_U) * _U(width)), axis=1)
    w = np.array(w, dtype=_U)
    _reverse_lanes(w, width)
    return w


def _pack_lanes(party: int, own: np.ndarray, width: int, bit_length: int) -> np.ndarray:
    """The cross round's words for this party's split parts `own` (length a multiple of 64): the
    lanes (_lanes) with bits l+1..w-1 set to propagate (s = 1 at party 0, y = 0 at parties 1 and
    2), values in the order that makes the carry tree's results come out in value order (lane
    i = F (T K + k) + f carries value 64 k + f w + T, F = 64 / w lanes a word, K = values / 64:
    after the tree word k bit b = value 64 k + b), then K words of the values' bits l + 1 in
    value order. In blocks of _BLOCK_VALUES values (a cache-blocked transpose)."""
    K = len(own) // WORD_BITS
    per = WORD_BITS // width
    low = _U((1 << (bit_length + 1)) - 1)
    if width < 8:                                   # no numpy dtype for the lane: the plain path
        v = own | ~low if party == 0 else own & low
        return np.concatenate([_lanes(v.reshape(K, per, width).transpose(2, 0, 1), width),
                               pack_bits((own >> _U(bit_length + 1)) & _ONE)])
    out = np.empty(K * width + K, dtype=_U)
    lanes = out[:K * width].view(f"<u{width // 8}").reshape(width, K, per)
    values = own.reshape(K, per, width)
    step = max(1, _BLOCK_VALUES // WORD_BITS)
    for k0 in range(0, K, step):
        k1 = min(K, k0 + step)
        blk = values[k0:k1]
        out[K * width + k0:K * width + k1] = pack_bits((blk.reshape(-1) >> _U(bit_length + 1)) & _ONE)
        if bit_length + 1 < width:
            blk = blk | ~low if party == 0 else blk & low
        lanes[:, k0:k1, :] = blk.transpose(2, 0, 1)              # truncated to the lane's width
    _reverse_lanes(out[:K * width], width)
    return out


def _reverse_lanes(w: np.ndarray, width: int) -> None:
    """Bit-reverse the lane index within every width-bit lane of the words w, in place (_lanes)."""
    levels = width.bit_length() - 1
    for i in range(levels // 2):          # swap lane-index bits i and levels-1-i: delta swaps
        a, b = i, levels - 1 - i
        d = _U((1 << b) - (1 << a))
        mask = _U(sum(1 << q for q in range(WORD_BITS) if (q >> a) & 1 and not (q >> b) & 1))
        for j in range(0, len(w), _BLOCK):
            x = w[j:j + _BLOCK]
            t = x >> d
            t ^= x
            t &= mask
            x ^= t
            t <<= d
            x ^= t


_BLOCK_VALUES = 1 << 16

# Words per block of a carry-tree level's local work: a block's temporaries stay in the cache and
# come from reused heap memory, where whole-batch temporaries (millions of words) cost a page
# fault per 4 KiB; measured on a level of 3.2 M words: 0.11 s (0.26 s cold) -> 0.05 s.
_BLOCK = 1 << 14


def _level_ands(G: Share, P: Share, m: np.uint64, k: np.uint64, last: bool, z: np.ndarray) -> None:
    """The local ANDs of a carry-tree level into z: P_hi & G_lo (then, unless last, P_hi & P_lo)
    of each lane, the second half's results moved into the upper halves of the first's, so
    z[:half] (and z[half:]) are dense."""
    half = G.shape[1] // 2
    for i in range(0, half, _BLOCK):
        j = min(half, i + _BLOCK)
        hi_p1, hi_p2 = P[:, i:j] >> k, P[:, half + i:half + j] >> k
        for x, off in ((G, 0),) if last else ((G, 0), (P, half)):
            lo = and_local(hi_p1, x[:, i:j])
            lo &= m
            up = and_local(hi_p2, x[:, half + i:half + j])
            up &= m
            up <<= k
            np.bitwise_or(lo, up, out=z[off + i:off + j])


def _level_carries(G: Share, r: Share, m: np.uint64, k: np.uint64) -> Share:
    """G of the next level: G_hi of the first half's lanes moved to their lower halves, the second
    half's left in the upper halves (G & ~m), XOR the reshared ANDs r[:, :half]."""
    half = G.shape[1] // 2
    out = np.empty((2, half), dtype=_U)
    for i in range(0, half, _BLOCK):
        j = min(half, i + _BLOCK)
        blk = out[:, i:j]
        np.right_shift(G[:, i:j], k, out=blk)
        blk &= m
        blk |= G[:, half + i:half + j] & ~m
        blk ^= r[:, i:j]
    return out


async def _carry_tree(engine: "Replicated3Engine", label: str, g: Share, p: Share, width: int) -> Share:
    """XOR shares (2, n / width) of the carry out of every width-bit lane of the packed words with
    generate g and propagate p (planar (2, n), lanes bit-reversed): log2(width) rounds. Each level
    combines the upper half (hi) and lower half (lo) of every lane, G = G_hi ^ P_hi & G_lo and
    P = P_hi & P_lo, on only the bits still needed, and moves the results of the words of the
    second half of the array into the upper halves of those of the first, so every message is
    dense: a level of n words sends n words per party (n / 2 at the last), where a Kogge-Stone
    level sends 2 n whatever the level. Where each lane's carry ends up: sign_bits.
    Masks commute with the local AND (and_local(x, y) & m = and_local(x, y & m)), so each AND is
    masked once, on its result; the local work runs in cache-sized blocks (_BLOCK)."""
    G, P = g, p
    h, level = width // 2, 0
    while h >= 1:
        m, k = _U(_HALVES[h]), _U(h)
        half = G.shape[1] // 2
        last = h == 1
        z = np.empty(half if last else 2 * half, dtype=_U)
        _level_ands(G, P, m, k, last, z)
        r = await engine.reshare_planar(f"{label}/tree{level}", z, xor=True)
        G, P = _level_carries(G, r, m, k), r[:, half:]
        h, level = h // 2, level + 1
    return G


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """0/1 values (length a multiple of 64) -> words: value 64 k + b at bit b of word k."""
    return np.packbits(bits.astype(np.uint8).reshape(-1, WORD_BITS), axis=1, bitorder="little").view("<u8").reshape(-1)


def unpack_bits(words: np.ndarray) -> np.ndarray:
    """The inverse of pack_bits: 0/1 uint64 values, 64 per word."""
    return ((words.reshape(-1)[:, None] >> np.arange(WORD_BITS, dtype=_U)) & _ONE).reshape(-1)


def _split_difference(party: int, a: Share, b: Share, view: np.ndarray) -> None:
    """This party's part of the split sum of a - b (split_sum), for shares a, b (..., 2) of
    broadcastable value shapes, written into `view` (of the broadcast shape): s = (a_0 + a_1) -
    (b_0 + b_1) at party 0, y = a_2 - b_2 at parties 1 and 2. No (..., 2) difference is formed:
    b is usually one threshold per row."""
    if party == 0:
        np.add(a[..., 0], a[..., 1], out=view)
        view -= b[..., 0] + b[..., 1]
    else:
        slot = 1 if party == 1 else 0
        np.subtract(a[..., slot], b[..., slot], out=view)


async def less_than_bits(engine: "Replicated3Engine", label: str, a: Share, b: Share, bit_length: int) -> Share:
    """XOR shares, planar (2, R, ceil(C / 64)), of the bits [a < b] = [a - b < 0] packed 64 to a
    word along all value axes but the first (R rows of C values after broadcasting; value j of a
    row at bit j % 64 of word j // 64; the bits past C are not results), for |a|, |b| < 2^l,
    l = bit_length <= 62. Rounds: 1 + prefix_levels(l), as less_than_zero without its injection.

    Only the carry out of bits 0..l of the split sum s + y of a - b is needed (the sign is bit
    l + 1 = s_(l+1) ^ y_(l+1) ^ carry), so each value's low bits travel as a lane of
    w = lane_width(l) bits, 64 / w lanes per word, through the cross round, and a carry tree
    (_carry_tree) halves the bits at every level. Bits l+1..w-1 of a lane are set to propagate
    (s = 1, y = 0) so the carry passes them unchanged. Bit l + 1 of s and of y rides in the cross
    round as words of packed bits (XOR shares of s_(l+1) ^ y_(l+1), like the lanes' propagate
    words). The values enter the lanes in the order that makes the tree's result words come out
    packed in value order. Only bits 0..l+1 of a - b are read, so a and b need to be right only
    mod 2^(l+2). Every message is masked as in less_than_zero (cross round, XOR zero-sharings):
    nothing is opened and no message depends on a or b. Elements sent: `lanes_cost`."""
    shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    own, view = split_rows(shape)
    _split_difference(engine.party, a, b, view)
    compare = sign_bits(engine, label, own, bit_length)
    del a, b, view, own                             # sign_bits consumes own; the caller may drop a, b
    return await compare


def split_rows(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(zeros (R, C rounded up to 64), a view of it of the value shape `shape` (R, ...)): where
    a party puts its part of the split sum for `sign_bits` (only the row stride differs)."""
    rows = shape[0] if shape else 1
    cols = int(np.prod(shape[1:], dtype=np.int64)) if shape else 1
    own = np.zeros((rows, -(-max(cols, 1) // WORD_BITS) * WORD_BITS), dtype=_U)
    return own, (np.reshape(own[:, :cols], shape, copy=False) if shape else own[0, :1].reshape(()))


async def sign_bits(engine: "Replicated3Engine", label: str, own: np.ndarray, bit_length: int) -> Share:
    """less_than_bits from this party's part of the split sum d = s + y (s at party 0, y at
    parties 1 and 2; `own` (R, C) with C a multiple of 64, consumed) of values d with
    -2^(l+1) < d < 2^(l+1): XOR shares (2, R, C / 64) of the packed bits [d < 0]."""
    party = engine.party
    rows, padded = own.shape
    width = lane_width(bit_length)
    both = _pack_lanes(party, own.reshape(-1), width, bit_length)
    del own
    n = len(both) * width // (width + 1)            # lane words; then one word of bits l + 1 per 64 values
    p, g = await engine.cross_and(f"{label}/cross", both if party == 0 else None, None if party == 0 else both)
    if party:                                       # p = s ^ y: y is component 2 (slot 1 at party 1, 0 at 2)
        p[1 if party == 1 else 0] ^= both
    del both
    carry = await _carry_tree(engine, f"{label}/tree", g[:, :n], p[:, :n], width)
    carry ^= p[:, n:]
    return carry.reshape(2, rows, padded // WORD_BITS)


def xor_public(party: int, x: Share, c: np.ndarray) -> Share:
    """x ^ c for planar XOR shares x and public words c: c goes into component 0 (party 0's slot 0,
    party 2's slot 1)."""
    out = np.array(x, copy=True)
    slot = {0: 0, 2: 1}.get(party)
    if slot is not None:
        out[slot] ^= c
    return out


async def inject_packed(engine: "Replicated3Engine", label: str, words: Share, cols: int) -> Share:
    """Arithmetic shares (R * cols, 2) of the bits packed in planar XOR shares (2, R, W) (bit j of
    a row at bit j % 64 of word j // 64; the first `cols` of each row): one round, 4 elements
    per bit (engine.cross_inject)."""
    party = engine.party
    rows = words.shape[1]
    own = words[0] ^ words[1] if party == 0 else words[1] if party == 1 else words[0]
    bits = unpack_bits(own).reshape(rows, -1)[:, :cols].reshape(-1)
    if party == 0:
        return await engine.cross_inject(f"{label}/b2a", bits, None)
    return await engine.cross_inject(f"{label}/b2a", None, bits)


async def less_than_lanes(engine: "Replicated3Engine", label: str, a: Share, b: Share, bit_length: int) -> Share:
    """Arithmetic shares (m, 2) of [a < b], flat over the broadcast value shape: less_than_bits
    on one row, then the bit injection (1 round, 4 elements per value). Same rounds as
    less_than_zero; for l = 31 about 9 elements per value against less_than_zero's 35."""
    m = int(np.prod(np.broadcast_shapes(a.shape[:-1], b.shape[:-1]), dtype=np.int64))
    bits = await less_than_bits(engine, label, a.reshape((1,) + a.shape), b.reshape((1,) + b.shape), bit_length)
    return await inject_packed(engine, label, bits, m)


def bits_cost(rows: int, cols: int, bit_length: int) -> int:
    """Ring elements (8 bytes each) the three parties send together in less_than_bits for R rows of
    C values: the cross round 4 per packed word (the lanes, then the words of bit l + 1), the tree
    n (two halves of n / 2 words) per party at each level of n words but the last (n / 2: G
    only)."""
    if rows * cols == 0:
        return 0
    width = lane_width(bit_length)
    k = rows * -(-cols // WORD_BITS)                # result words: every row rounded up to 64 values
    n = k * width                                   # lane words
    cross, tree, h = 4 * (n + k), 0, width // 2
    while h >= 1:
        tree += n // 2 if h == 1 else n
        n, h = n // 2, h // 2
    return cross + 3 * tree


def lanes_cost(count: int, bit_length: int) -> int:
    """Ring elements the three parties send together in less_than_lanes for `count` values."""
    return bits_cost(1, count, bit_length) + 4 * count


async def random_coins(engine: "Replicated3Engine", label: str, thresholds: np.ndarray, lam: int,
                       const_slot: int | None) -> Share:
    """Arithmetic shares (m, 2) of [u < T] for public T (0 <= T <= 2^lam, lam <= 62) and u the
    low lam bits of a pseudo-random XOR-shared word (uniform, unknown to any one party): bit lam
    of u + c, c = -T mod 2^(lam+1) public, so the adder's g = u & c and p = u ^ c are local (c
    XORed into component 0, held at `const_slot`). Rounds: prefix_levels(lam) + 1 (the
    injection); per coin one PRF word, prefix ANDs and 4 injection elements, instead of lam
    injected random bits and a comparison."""
    t = np.asarray(thresholds, dtype=np.int64).reshape(-1).astype(_U)
    m = len(t)
    a, b = engine.prf_components("rcoin", label, m)
    mask = _U((1 << lam) - 1)
    u = np.stack([a & mask, b & mask])
    c = (_U(0) - t) & _U((1 << (lam + 1)) - 1)
    g = u & c
    p = u.copy()
    if const_slot is not None:
        p[const_slot] ^= c
    G = await prefix_carries(engine, f"{label}/add", g, p, prefix_levels(lam))
    coin = extract_bit(p, lam) ^ extract_bit(G, lam - 1)
    return await inject_bit(engine, label, coin)


async def equal_zero(engine: "Replicated3Engine", label: str, x: Share) -> Share:
    """Arithmetic shares of [x == 0] for flat x (m, 2), exact on Z_2^64: x == 0 iff s == -y,
    i.e. iff every bit of e = NOT(s) ^ (-y) is 1. The first AND-tree level e & rot32(e) comes
    out of the cross round (engine.cross_and_rot) with no shares of e, then five more levels
    (>> 16, 8, 4, 2, 1) and the injection: 1 + 5 + 1 = 7 rounds."""
    s, y = split_sum(engine.party, x)
    e = await engine.cross_and_rot(f"{label}/cross", None if s is None else ~s, None if y is None else -y, 32)
    width = WORD_BITS // 2
    level = 1
    while width > 1:
        width //= 2
        e = await and_words(engine, f"{label}/and{level}", e, e >> _U(width))
        level += 1
    return await inject_bit(engine, label, extract_bit(e, 0))
