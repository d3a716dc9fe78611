"""Protocols of the wide engine (engines/replicated3_wide.py) beyond arithmetic: the exact zero
test and sign bit on all 128 bits, `normalize` for a reciprocal's first approximation, and the
exact `lift` from Z_2^64. The first three run the narrow engine's boolean rounds
(protocols/binary.py: cross rounds, ANDs of XOR-shared words, the Kogge-Stone prefix) on the
limbs and inject their final bits into Z_2^128 with the wide engine's `cross_inject`. Protocol
math only: every round is an engine method. Rounds and bytes: docs/protocols.md, "The wide ring
Z_2^128".
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import ring128 as R
from . import binary

if TYPE_CHECKING:
    from ..engines.replicated3_wide import Replicated3WideEngine

Share = np.ndarray
_U = np.uint64
LIFT_BITS = 62                     # lift is exact for y in [-2^62, 2^62)



def _split_words(me: int, x: Share, zero_test: bool) -> tuple[tuple[int, ...], int, np.ndarray | None,
                                                                np.ndarray | None]:
    """x = s + y with s = x_0 + x_1 at party 0 and y = x_2 at parties 1 and 2, as two 64-bit words
    per element (low words, then high words): (value shape, m elements, party 0's words or None,
    the others' words or None). For the zero test party 0 holds NOT(s) and the others -y."""
    x = np.asarray(x)
    flat = x.reshape(-1, 2)
    if me == 0:
        s = R.add(flat[:, 0], flat[:, 1])
        w = np.concatenate([s["lo"], s["hi"]])
        return x.shape[:-1], flat.shape[0], (~w if zero_test else w), None
    y = flat[:, 1] if me == 1 else flat[:, 0]
    y = R.neg(y) if zero_test else y
    return x.shape[:-1], flat.shape[0], None, np.concatenate([y["lo"], y["hi"]])

async def equal_zero(engine: "Replicated3WideEngine", label: str, x: Share) -> Share:
    """[x == 0] exact on all of Z_2^128: x = s + y (s at party 0, y = x_2 at parties 1, 2) is 0
    iff every bit of the two words of e = NOT(s) ^ (-y) is 1. The narrow engine's cross round
    gives e & rot32(e) for both words at once, one AND folds the high word into the low one,
    then five AND levels and the injection into Z_2^128: 8 rounds."""
    shape, m, sw, yw = _split_words(engine.party, x, zero_test=True)
    e = await engine.narrow.cross_and_rot(f"{label}/cross", sw, yw, 32)
    e = await binary.and_words(engine.narrow, f"{label}/limbs", np.ascontiguousarray(e[:, :m]),
                               np.ascontiguousarray(e[:, m:]))
    width, level = 32, 1
    while width > 1:
        width //= 2
        e = await binary.and_words(engine.narrow, f"{label}/and{level}", e, e >> _U(width))
        level += 1
    bit = await binary.inject_bit(engine, label, binary.extract_bit(e, 0))
    return bit.reshape(shape + (2,))


async def upper_half(engine: "Replicated3WideEngine", label: str, x: Share) -> Share:
    """Bit 127 of each element, exact for every element: the sign bit of s + y over 128 bits,
    by a Kogge-Stone adder over the two-word value (shifts carry across the limbs): the cross
    round, 7 prefix levels and the injection: 9 rounds, nothing opened."""
    shape, m, sw, yw = _split_words(engine.party, x, zero_test=False)
    me = engine.party
    s_sh, g = await engine.narrow.cross_and(f"{label}/cross", sw, yw)
    p = s_sh ^ binary.component2_share(me, yw, 2 * m)
    G, P = g.copy(), p
    for level in range(7):
        k = 1 << level
        Gs, Ps = _shl128(G, k, m), _shl128(P, k, m)
        if level == 6:
            G ^= await binary.and_words(engine.narrow, f"{label}/ks{level}", P, Gs)
        else:
            both = await engine.narrow.reshare_planar(
                f"{label}/ks{level}", np.concatenate([binary.and_local(P, Gs), binary.and_local(P, Ps)]), xor=True)
            G ^= both[:, :2 * m]
            P = both[:, 2 * m:]
    # bit 127 of s + y = p_127 ^ carry into 127 = p_127 ^ G_126 (high word bits 63 and 62)
    sign = ((p[:, m:] >> _U(63)) ^ (G[:, m:] >> _U(62))) & _U(1)
    bit = await binary.inject_bit(engine, label, sign)
    return bit.reshape(shape + (2,))


async def normalize(engine: "Replicated3WideEngine", label: str, x: Share, bits: int) -> Share:
    """For 0 < x < 2^bits (bits <= 62): shares of v = 2^(bits - 1 - msb(x)), so that x v is in
    [2^(bits - 1), 2^bits). Downcast; A2B (7 rounds); prefix-OR towards the low bits over the
    word (ceil(log2 bits) AND rounds, a | b = a ^ b ^ (a & b)); the one-hot word
    y ^ (y >> 1) (local); the (at most 6) bits of q = bits - 1 - msb(x) as parities of the
    one-hot word under public masks (local: parity is linear over XOR shares); those bits
    injected into Z_2^64 (1 round); v = prod_k (1 + q_k (2^(2^k) - 1)) by a product tree (3
    rounds); v lifted into Z_2^128 (2 rounds). Rounds: 7 + ceil(log2 bits) + 1 + 3 + 2 (= 19 for
    bits = 62). Out of range, v is wrong (x = 0 has an empty one-hot word: v = 1)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= int(bits) <= engine.max_bit_length:
        raise ValueError(f"normalize: bits must be an integer in 1..{engine.max_bit_length}, got {bits!r}")
    bits = int(bits)
    x = np.asarray(x)
    shape = x.shape[:-1]
    flat = engine.downcast(x).reshape(-1, 2)
    m = flat.shape[0]
    w = await binary.a2b(engine.narrow, f"{label}/a2b", flat)
    if bits < 64:
        w = w & _U((1 << bits) - 1)          # bits above are 0 for x in range; keep them out
    k, level = 1, 0
    while k < bits:
        sh = w >> _U(k)
        w = w ^ sh ^ await binary.and_words(engine.narrow, f"{label}/or{level}", w, sh)
        k, level = 2 * k, level + 1
    onehot = w ^ (w >> _U(1))
    nbits = max(1, (bits - 1).bit_length())
    code = np.empty((2, nbits * m), dtype=_U)
    for j in range(nbits):        # one public mask per code bit (<= 6), each a vector op on m words
        mask = _U(sum(1 << p for p in range(bits) if ((bits - 1 - p) >> j) & 1))
        code[:, j * m:(j + 1) * m] = np.bitwise_count(onehot & mask) & _U(1)
    # v <= 2^61 fits the narrow ring exactly: the bits, the product tree and its elements there
    # cost half the bytes of wide ones, and one exact lift at the end (2 rounds, 80 bytes) is
    # cheaper than 6 wide injections and 5 wide products (1064 -> 832 bytes per value)
    narrow = engine.narrow
    q = (await binary.inject_bit(narrow, f"{label}/code", code)).reshape(nbits, m, 2)
    # 1 + q_j (2^(2^j) - 1) = q_j 2^(2^j) - q_j + 1: a shift, no multiplication
    factors = [narrow.add_const(narrow.sub(q[j] << _U(1 << j), q[j]), narrow.encode(1)) for j in range(nbits)]
    level = 0
    while len(factors) > 1:
        pairs = [(factors[i], factors[i + 1]) for i in range(0, len(factors) - 1, 2)]
        prods = await narrow.mul_many(f"{label}/prod{level}", pairs)
        factors = prods + ([factors[-1]] if len(factors) % 2 else [])
        level += 1
    return (await lift(engine, f"{label}/lift", factors[0])).reshape(shape + (2,))


def _shl128(w: np.ndarray, k: int, m: int) -> np.ndarray:
    """Planar XOR-shared 128-bit values as (2, 2m) words [low words | high words], shifted left by
    k <= 64 bits across the limbs (a local operation on each share)."""
    lo, hi = w[:, :m], w[:, m:]
    out = np.empty_like(w)
    if k == 64:                           # numpy (like C) leaves a shift by the word size undefined
        out[:, :m] = 0
        out[:, m:] = lo
        return out
    out[:, :m] = lo << _U(k)
    out[:, m:] = (hi << _U(k)) | (lo >> _U(64 - k))
    return out


async def lift(engine: "Replicated3WideEngine", label: str, y: Share) -> Share:
    """A narrow share y (Z_2^64, value in [-2^62, 2^62)) -> a wide share of the same signed
    value, exactly. y' = y + 2^62 is in [0, 2^63). Party 0 knows a = y'_0 + y'_1 mod 2^64 and
    parties 1 and 2 know b = y'_2; as integers a + b = y' + w 2^64 with w in {0, 1}, and
    because bit 63 of y' is 0, w = msb(a) OR msb(b). Party 0 input-shares a and alpha =
    msb(a) into Z_2^128 (one round); b and beta = msb(b) are component 2 at no cost; w =
    alpha + beta - alpha beta (one multiplication round). Result a + b - 2^64 w - 2^62."""
    y = np.asarray(y, dtype=_U)
    shape = y.shape[:-1]
    flat = engine.narrow.add_const(y.reshape(-1, 2), engine.narrow.encode(1 << LIFT_BITS))
    s, b = binary.split_sum(engine.party, flat)
    m = flat.shape[0]
    me = engine.party
    mine = None
    if me == 0:
        mine = R.from_uint64(np.concatenate([s, s >> _U(63)]))
    shared = (await engine.share_inputs(f"{label}/a", {0: mine}, {0: (2 * m,)}))[0]
    a_sh, alpha = shared[:m], shared[m:]
    comp2 = R.zeros((2, m, 2))                 # (b, beta) as the sharing (0, 0, .)
    if me != 0:
        comp2[:, :, 1 if me == 1 else 0] = R.from_uint64(np.stack([b, b >> _U(63)]))
    b_sh, beta = comp2[0], comp2[1]
    ab = await engine.mul(f"{label}/or", alpha, beta)
    w = engine.sub(engine.add(alpha, beta), ab)
    out = engine.sub(engine.add(a_sh, b_sh), R.shl(w, 64))
    out = engine.add_const(out, engine.encode(-(1 << LIFT_BITS)))
    return out.reshape(shape + (2,))
