"""Comparison and equality on Shamir shares: the Shamir engine's building blocks.

engines/shamir.py exposes these as the Engine's less_than, less_than_select, equal_zero,
equal_zero_bounded and comparison_masks; the protocols built from them (selection, tournaments,
ballots) are engine-independent and live in protocols/selection.py and protocols/ballots.py.

All functions take a Session and a round label first and handle a whole batch per round:
every field operation is vectorized over the batch (and over the bits of every element),
and concurrent sub-protocols get distinct sub-labels ``f"{label}/step"``.

Building blocks
---------------
* Solved random bits (Damgard, Fitzi, Kiltz, Nielsen, Toft, TCC 2006): 61 shared random
  bits r_0..r_60 per element and r = sum 2^i r_i, linear in the bits. Each bit is the
  XOR of t+1 parties' dealt bits (Session.random_bits), so no t parties know it. r is
  uniform on [0, 2^61) = [0, p], i.e. r mod p is at statistical distance 2^-61 from
  uniform on F_p (0 is hit twice).
* bit_lt_public: [c < r] for public c and bitwise-shared r by a divide-and-conquer tree
  over the bits (lt = lt_hi + eq_hi * lt_lo, eq = eq_hi * eq_lo). The products of bit
  pairs r_2k r_2k+1 (input-independent, computed while the masked value is opened) make
  the 2-bit nodes linear, so the tree has 5 rounds on 31 nodes: 30 + 55 products.
* ltz: [x < 0] via Nishide-Ohta's LSB trick (PKC 2007): for |x| < p/2, x < 0 iff
  y = 2x mod p is odd. Open c = y + r; then LSB(y) = c_0 XOR r_0 XOR [c < r] because
  the addition wrapped around p (an odd number) exactly when c < r. This holds for
  every r in [0, p], so the comparison is exact; only the mask is 2^-61 from uniform.
* equal_zero: open c = x + r; x == 0 iff the bits of r equal those of c (or c = 0 and
  r = p), a product of 61 shared equality bits computed by a log-depth product tree
  (pair products + 5 rounds, 60 products). Exact.

Signed values are field elements in the symmetric encoding of field.asfield.
``bit_length`` (1..59) states that the operands satisfy |v| < 2^bit_length; the
protocols do not depend on it beyond the range check (the LSB trick works for every
|x| < p/2 ~ 2^60, so the difference of two 59-bit operands is fine). Inputs must be
range-checked before they are shared: an out-of-range operand gives a wrong bit.

Selecting right after a comparison is fused (less_than_select): select(ltz(x), X, Y) =
Y + a*D + lt*(1-2a)*D with D = X - Y and LSB = a XOR lt, where a*D rides on the first tree
round, so a comparison followed by a selection costs the same number of rounds as a comparison.

equal_zero_bounded: a cheaper zero test for values whose range the nodes enforced (ballots
that are node inputs), with a statistical mask of STATISTICAL_SECURITY bits.
"""
from __future__ import annotations

import asyncio
from typing import NamedTuple, Sequence, Union

import numpy as np

from .. import field
from ..randomness import random_field, random_ring
from .core import Session

BITS = field.BITS                 # 61 bits per solved random value
MAX_BIT_LENGTH = 59               # |operand| < 2^59 keeps differences below p/2
STATISTICAL_SECURITY = 40         # kappa: bits of statistical masks (bounded comparison, bounded zero test)

Solved = tuple[np.ndarray, np.ndarray]   # (r shares (m,), bit shares (BITS, m))

_U = np.uint64
_ONE = _U(1)
_ZERO = _U(0)
_SHIFTS = np.arange(BITS, dtype=np.uint64)[:, None]
_ROT = (np.uint64(BITS) - _SHIFTS) % np.uint64(BITS)   # right shift completing a left rotation


# ---- helpers ------------------------------------------------------------------------

def _check_bit_length(bit_length: int) -> int:
    if isinstance(bit_length, bool) or not isinstance(bit_length, (int, np.integer)) \
            or not 1 <= int(bit_length) <= MAX_BIT_LENGTH:
        raise ValueError(f"bit_length must be an integer in 1..{MAX_BIT_LENGTH}, got {bit_length!r}")
    return int(bit_length)


def _flat(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.uint64)).reshape(-1)


def _one_minus(x: np.ndarray) -> np.ndarray:
    """1 - x for shares (the public 1 is its own share)."""
    return field.sub(np.full(x.shape, _ONE, dtype=np.uint64), x)


def _public_bits(c: np.ndarray, nbits: int = BITS) -> np.ndarray:
    """The low `nbits` bits of public canonical c (m,), LSB first: shape (nbits, m), values 0/1."""
    return (c[None, :] >> _SHIFTS[:nbits]) & _ONE


def _pow2_combine(bits: np.ndarray) -> np.ndarray:
    """sum_i 2^i bits[i] mod p. Multiplying by 2^i mod 2^61-1 is a 61-bit left rotation."""
    rot = (bits << _SHIFTS) & field._P
    rot |= bits >> _ROT           # _ROT[0] = 0 and bits < 2^61, so row 0 stays as is
    return field.sum_all(rot, axis=0)


def take_solved(solved: Solved, start: int, count: int) -> Solved:
    """Elements start..start+count-1 of a batch of solved random bits."""
    r, rb = solved
    return r[start:start + count], rb[:, start:start + count]


def _check_solved(solved: Solved, m: int, what: str) -> Solved:
    r, rb = solved
    if r.shape != (m,) or rb.shape != (BITS, m):
        raise ValueError(f"{what}: precomputed solved bits have shapes {r.shape}, {rb.shape}; "
                         f"expected ({m},) and ({BITS}, {m})")
    return solved


# ---- random solved bits -------------------------------------------------------------

async def random_solved_bits(s: Session, label: str, m: int) -> Solved:
    """m random values r with their shared bits: (r (m,), bits (BITS, m)), bits LSB first.

    r = sum 2^i b_i is uniform on [0, 2^61) = [0, p]; as a field element r mod p is at
    statistical distance 2^-61 from uniform (0 has probability 2^-60). Rounds: those of
    Session.random_bits (one dealing round + ceil(log2(t+1)) XOR rounds).
    """
    if m < 0:
        raise ValueError(f"{label}: negative count {m}")
    if m == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros((BITS, 0), dtype=np.uint64)
    bits = (await s.random_bits(label, BITS * m)).reshape(BITS, m)
    return _pow2_combine(bits), bits


# ---- bitwise comparison with a public value -----------------------------------------

def _paired(nbits: int) -> int:
    """Bits 0..paired-1 form pairs (2k, 2k+1); with an odd count the top bit stays alone
    (61 bits: 30 pairs and bit 60)."""
    return nbits - nbits % 2


async def _pair_products(s: Session, label: str, r_bits: np.ndarray) -> np.ndarray:
    """q_k = r_2k * r_2k+1 for the pairs of the bits: shape (nbits // 2, m), (30, m) for 61 bits.
    Input-independent, so callers run it concurrently with the opening of the masked value
    (no extra round of latency)."""
    paired = _paired(r_bits.shape[0])
    return await s.mul(label, r_bits[0:paired:2], r_bits[1:paired:2])


def _pair_nodes(cb: np.ndarray, r_bits: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lt, eq) of the 2-bit nodes (bits 2k, 2k+1) and of a lone top bit, linear in r and q.

    With public c, eq_i = c_i ? r_i : 1 - r_i and lt_i = (1 - c_i) r_i, so every product in
    lt = lt_h + eq_h lt_l and eq = eq_h eq_l is a public combination of 1, r_l, r_h, q.
    Returns lt and eq of shape (ceil(nbits / 2), m): (31, m) for 61 bits.
    """
    paired = _paired(r_bits.shape[0])
    cl, ch = cb[0:paired:2], cb[1:paired:2]
    rl, rh = r_bits[0:paired:2], r_bits[1:paired:2]
    rl_q = field.sub(rl, q)                                    # (1 - r_h) r_l
    rh_q = field.sub(rh, q)                                    # r_h (1 - r_l)
    eqh_rl = np.where(ch == 1, q, rl_q)                        # eq_h * r_l
    lt = field.add(np.where(ch == 0, rh, _ZERO), np.where(cl == 0, eqh_rl, _ZERO))
    none = _one_minus(field.add(rh, rl_q))                     # (1 - r_h)(1 - r_l)
    eq = np.where(ch == 1, np.where(cl == 1, q, rh_q), np.where(cl == 1, rl_q, none))
    c_top, r_top = cb[paired:], r_bits[paired:]       # the lone top bit, if any
    lt = np.concatenate([lt, np.where(c_top == 0, r_top, _ZERO)])
    eq = np.concatenate([eq, np.where(c_top == 1, r_top, _one_minus(r_top))])
    return lt, eq


async def _lt_tree(s: Session, label: str, cb: np.ndarray, r_bits: np.ndarray, q: np.ndarray,
                   extra: Sequence[tuple[np.ndarray, np.ndarray]] = ()) -> tuple[np.ndarray, list[np.ndarray]]:
    """[c < r] for public c given by its bits cb (nbits, m) and shared bits r (nbits, m) with
    their pair products q; `extra` products ride on the first round.

    The 2-bit nodes are linear given q, so the tree proper starts at ceil(nbits/2) nodes; for
    61 bits: 31 -> 16 -> 8 -> 4 -> 2 -> 1, 5 rounds, 55 products per element. Nodes are kept
    LSB first as arrays (nodes, m). The node holding bit 0 is always a low half, so its eq is
    never needed: `eq` stores nodes 1.. only, which skips one product per level and the
    root's eq for free. With a single node (nbits <= 2) there is no tree round, and the
    `extra` products get a round of their own.
    """
    lt, eq = _pair_nodes(cb, r_bits, q)
    eq = eq[1:]
    extra_out: list[np.ndarray] = []
    if lt.shape[0] == 1 and extra:
        extra_out = await s.mul_many(f"{label}/l0", extra)
    level = 0
    while lt.shape[0] > 1:
        nodes, m = lt.shape
        half = nodes // 2
        eq_hi = eq[0:2 * half:2]               # nodes 1, 3, ..., 2*half - 1
        prods = [field.mul(eq_hi, lt[0:2 * half:2]),                    # eq_hi * lt_lo
                 field.mul(eq_hi[1:], eq[1:2 * half - 1:2])]            # eq_hi * eq_lo, pairs 1..
        if level == 0:
            prods += [field.mul(*np.broadcast_arrays(a, b)) for a, b in extra]
        red = await s.reduce_degree(f"{label}/l{level}", np.concatenate([p.reshape(-1) for p in prods]))
        n_lt = half * m
        n_eq = (half - 1) * m
        new_lt = field.add(lt[1:2 * half:2], red[:n_lt].reshape(half, m))
        new_eq = red[n_lt:n_lt + n_eq].reshape(half - 1, m)
        if level == 0:
            pos = n_lt + n_eq
            for p in prods[2:]:
                extra_out.append(red[pos:pos + p.size].reshape(p.shape))
                pos += p.size
        if nodes % 2:
            new_lt = np.concatenate([new_lt, lt[nodes - 1:]])
            new_eq = np.concatenate([new_eq, eq[nodes - 2:]])
        lt, eq = new_lt, new_eq
        level += 1
    return lt[0], extra_out


async def bit_lt_public(s: Session, label: str, c_public: np.ndarray, r_bits: np.ndarray) -> np.ndarray:
    """Shares of [c < r] for public canonical c (m,) and shared bits of r (BITS, m), LSB first.

    6 rounds: one for the products of bit pairs, then the tree 31 -> 16 -> 8 -> 4 -> 2 -> 1;
    30 + 55 = 85 products per element.
    """
    c = _flat(c_public)
    r_bits = np.asarray(r_bits, dtype=np.uint64)
    if r_bits.shape != (BITS, c.size):
        raise ValueError(f"{label}: r_bits must have shape ({BITS}, {c.size}), got {r_bits.shape}")
    if c.size == 0:
        return np.zeros(0, dtype=np.uint64)
    q = await _pair_products(s, f"{label}/pairs", r_bits)
    lt, _ = await _lt_tree(s, label, _public_bits(c), r_bits, q)
    return lt


# ---- less than zero, fused with selection ------------------------------------------

async def _finish_ltz(s: Session, label: str, a: np.ndarray, cb: np.ndarray, r_bits: np.ndarray,
                      q: np.ndarray, selects: Sequence[tuple[int, np.ndarray, np.ndarray]],
                      bit_range: tuple[int, int] | None) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The common end of both comparison paths, after the opening: b = [x < 0] = a XOR lt with
    a shared bit a that is linear in the opened c, and lt = [c' < r'] for the public bits cb of
    c' and the shared bits r_bits of r' (pair products q). For each (offset, X, Y): b ? X : Y
    on elements offset..offset + len(X) - 1; b[bit_range] if asked.

    b = a + lt (1 - 2a) and b*D = a*D + lt*(D - 2aD) for D = X - Y. The products a*D ride on
    the first tree round, lt*(...) on one final round. b is a bit whatever x is (a and lt are
    bits), so a selection always returns X or Y, also for an operand outside the contract.
    """
    ds = [(off, field.sub(X, Y)) for off, X, Y in selects]
    lt, ads = await _lt_tree(s, f"{label}/tree", cb, r_bits, q, [(a[off:off + d.size], d) for off, d in ds])
    pairs = []
    for (off, d), ad in zip(ds, ads):
        pairs.append((lt[off:off + d.size], field.sub(d, field.add(ad, ad))))
    if bit_range is not None:
        lo, hi = bit_range
        a_b = a[lo:hi]
        pairs.append((lt[lo:hi], field.sub(np.full(a_b.shape, _ONE, dtype=np.uint64), field.add(a_b, a_b))))
    prods = await s.mul_many(f"{label}/final", pairs)
    outs = [field.add(field.add(Y, ad), p) for (_, _, Y), ad, p in zip(selects, ads, prods)]
    bit = None
    if bit_range is not None:
        bit = field.add(a[bit_range[0]:bit_range[1]], prods[-1])
    return outs, bit


async def _ltz_select(s: Session, label: str, x: np.ndarray, solved: Solved,
                      selects: Sequence[tuple[int, np.ndarray, np.ndarray]] = (),
                      bit_range: tuple[int, int] | None = None) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The exact path: b = [x < 0] for flat x, with the fused selections of _finish_ltz.

    LSB(2x) = a XOR lt with a = c_0 XOR r_0 (linear after the opening of c = 2x + r) and
    lt = [c < r] over all 61 bits: 1 open (concurrent with the bit-pair products) + 5 tree
    + 1 final = 7 rounds of latency after the random bits.
    """
    r, rb = solved
    y = field.add(x, x)
    c, q = await asyncio.gather(s.open(f"{label}/open", field.add(y, r)),
                                _pair_products(s, f"{label}/pairs", rb))
    r0 = rb[0]
    a = np.where((c & _ONE) == 1, _one_minus(r0), r0)
    return await _finish_ltz(s, label, a, _public_bits(c), rb, q, selects, bit_range)


# ---- the bounded path: a statistical mask for small declared bit lengths ------------------

class BoundedMasks(NamedTuple):
    """Masks for `count` bounded comparisons of one bit_length k (bounded_applies(k, t)):
    r = sum_{i <= k+1} 2^i b_i + 2^(k+2) R with shared random bits b_0..b_{k+1} and R a sum of
    t+1 dealt uniform STATISTICAL_SECURITY-bit values (random_bounded_masks)."""
    r: np.ndarray      # (count,) shares of r
    bits: np.ndarray   # (k + 2, count) shares of b_0..b_{k+1}, LSB first

    @property
    def bit_length(self) -> int:
        return int(self.bits.shape[0]) - 2


Masks = Union[Solved, BoundedMasks]


def _bounded_fits(bit_length: int, t: int) -> bool:
    """Whether the largest masked value x' + r of a bounded comparison stays below p (no wrap):
    x' <= 2^(k+2) - 1, r <= 2^(k+2) - 1 + 2^(k+2) (t+1) (2^kappa - 1)."""
    span = 1 << (bit_length + 2)
    return (span - 1) + (span - 1) + span * (t + 1) * ((1 << STATISTICAL_SECURITY) - 1) < field.P


def max_bounded_bit_length(t: int) -> int:
    """The largest bit_length the bounded path takes at threshold t: 19 - ceil(log2(t+1)) for
    kappa = 40 (18 at t = 1; 17 at t = 2, 3; 16 at t = 4..7; ...); 0 if none."""
    k = 0
    while k < MAX_BIT_LENGTH and _bounded_fits(k + 1, t):
        k += 1
    return k


def bounded_applies(bit_length: int, t: int) -> bool:
    """Whether less_than at this bit_length runs the bounded path (public: bit_length and t)."""
    return int(bit_length) <= max_bounded_bit_length(t)


def lt_cost(bit_length: int, t: int) -> tuple[int, int]:
    """(rounds, products per element) of one `less_than` with fresh masks at threshold t,
    selections not counted (each adds one product, and at bit_length 1 one round)."""
    nbits = bit_length + 1 if bounded_applies(bit_length, t) else BITS
    rand_bits = bit_length + 2 if nbits < BITS else BITS
    rounds = 1 + t.bit_length() + 1 + 1               # deal, ceil(log2(t+1)) XOR levels, open, final
    products = rand_bits * t + nbits // 2 + 1         # XORs, pair products, final
    nodes = (nbits + 1) // 2
    while nodes > 1:
        half = nodes // 2
        products += 2 * half - 1
        nodes -= half
        rounds += 1
    return rounds, products


async def random_bounded_masks(s: Session, label: str, m: int, bit_length: int) -> BoundedMasks:
    """Masks for m bounded comparisons at `bit_length` (BoundedMasks): k + 2 shared random bits
    (Session.random_bits) and t+1 dealt uniform kappa-bit values (randomness.random_ring) per
    element, dealt in the same round as the bits. Rounds: those of Session.random_bits."""
    if m < 0:
        raise ValueError(f"{label}: negative count {m}")
    if not bounded_applies(bit_length, s.t):
        raise ValueError(f"{label}: bit_length {bit_length} is above the bounded path's "
                         f"{max_bounded_bit_length(s.t)} at t = {s.t}")
    width = bit_length + 2
    if m == 0:
        return BoundedMasks(np.zeros(0, dtype=np.uint64), np.zeros((width, 0), dtype=np.uint64))
    dealers = s.parties[: s.t + 1]
    mine = None
    if s.party in dealers:
        mine = random_ring(m) & np.uint64((1 << STATISTICAL_SECURITY) - 1)
    bits, highs = await asyncio.gather(s.random_bits(f"{label}/bits", width * m),
                                       s.deal(f"{label}/high", {d: m for d in dealers}, mine))
    bits = bits.reshape(width, m)
    high = highs[dealers[0]]
    for d in dealers[1:]:
        high = field.add(high, highs[d])
    return BoundedMasks(field.add(_weighted_sum(bits), field.mul_const(high, 1 << width)), bits)


def _weighted_sum(bits: np.ndarray) -> np.ndarray:
    """sum_i 2^i bits[i] for fewer than 61 rows: the weights are below p, so it is exact."""
    weights = np.uint64(1) << np.arange(bits.shape[0], dtype=np.uint64)
    return field.sum_all(field.mul(bits, weights[:, None]), axis=0)


def _bounded_from_solved(solved: Solved, bit_length: int) -> BoundedMasks:
    """A bounded mask from a solved one (which serves both paths): b_0..b_{k+1} are its low bits,
    R = sum_{j < kappa} 2^j b_{k+2+j}, so r is uniform on [0, 2^(k+2+kappa)), below p for k <= 18."""
    _, rb = solved
    return BoundedMasks(_weighted_sum(rb[: bit_length + 2 + STATISTICAL_SECURITY]), rb[: bit_length + 2])


async def _ltz_select_bounded(s: Session, label: str, x: np.ndarray, masks: BoundedMasks,
                              selects: Sequence[tuple[int, np.ndarray, np.ndarray]] = (),
                              bit_range: tuple[int, int] | None = None) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The bounded path: b = [x < 0] for flat x = a - b with |a|, |b| < 2^k or one of them
    -(2^k), so -2^m < x < 2^m for m = k + 1 (module docstring, "Bounded comparison").

    x' = x + 2^m lies in [1, 2^(m+1)), and x < 0 iff bit m of x' is 0. Open c = x' + r (no wrap
    mod p); then bit m of x' = c_m XOR r_m XOR u with the carry u = [c mod 2^m < r mod 2^m], so
    b = a XOR u for a = NOT(c_m XOR r_m), linear in the shared bit r_m: _finish_ltz with the
    tree over the m low bits. 1 open (concurrent with the pair products) + ceil(log2(ceil(m/2)))
    tree + 1 final rounds.
    """
    m = masks.bit_length + 1
    low, r_m = masks.bits[:m], masks.bits[m]
    shifted = field.add(x, np.full(x.shape, np.uint64(1 << m), dtype=np.uint64))
    c, q = await asyncio.gather(s.open(f"{label}/open", field.add(shifted, masks.r)),
                                _pair_products(s, f"{label}/pairs", low))
    a = np.where(((c >> np.uint64(m)) & _ONE) == 1, r_m, _one_minus(r_m))
    return await _finish_ltz(s, label, a, _public_bits(c, m), low, q, selects, bit_range)


# ---- masks, and the choice of path ----------------------------------------------------

async def comparison_masks(s: Session, label: str, count: int, bit_length: int | None = None) -> Masks:
    """Masks for `count` comparisons made ahead in one batch (the Shamir engine's
    comparison_masks). Without bit_length, or when bit_length is above the bounded path's,
    solved random bits: they serve the exact path, the bounded path at every bit_length, and
    equal_zero. With a bit_length the bounded path takes, BoundedMasks: cheaper (k + 2 bits
    instead of 61), serving only comparisons of that bit_length."""
    if bit_length is not None and bounded_applies(_check_bit_length(bit_length), s.t):
        return await random_bounded_masks(s, label, count, bit_length)
    return await random_solved_bits(s, label, count)


def take_masks(masks: Masks, start: int, count: int) -> Masks:
    """Masks start..start+count-1 of a batch from comparison_masks."""
    if isinstance(masks, BoundedMasks):
        return BoundedMasks(masks.r[start:start + count], masks.bits[:, start:start + count])
    return take_solved(masks, start, count)


async def _masks_for(s: Session, label: str, flat: np.ndarray, solved: Masks | None) -> Solved:
    """The solved random bits masking `flat`: the caller's precomputed ones (checked) or fresh."""
    if isinstance(solved, BoundedMasks):
        raise ValueError(f"{label}: masks made for bounded comparisons of bit_length {solved.bit_length} "
                         "cannot serve this operation; make them without a bit_length")
    if solved is None:
        solved = await random_solved_bits(s, f"{label}/rand", flat.size)
    return _check_solved(solved, flat.size, label)


async def _bounded_masks_for(s: Session, label: str, flat: np.ndarray, bit_length: int,
                             masks: Masks | None) -> BoundedMasks:
    """The bounded masks for `flat`: the caller's (bounded ones of this bit_length, or solved
    ones, checked) or fresh."""
    if masks is None:
        return await random_bounded_masks(s, f"{label}/rand", flat.size, bit_length)
    if not isinstance(masks, BoundedMasks):
        return _bounded_from_solved(_check_solved(masks, flat.size, label), bit_length)
    if masks.bit_length != bit_length or masks.r.shape != (flat.size,) or masks.bits.shape[1:] != (flat.size,):
        raise ValueError(f"{label}: bounded masks for {masks.r.shape} comparisons of bit_length "
                         f"{masks.bit_length}; expected ({flat.size},) of bit_length {bit_length}")
    return masks


async def _compare_select(s: Session, label: str, x: np.ndarray, bit_length: int, masks: Masks | None,
                          selects: Sequence[tuple[int, np.ndarray, np.ndarray]],
                          bit_range: tuple[int, int] | None) -> tuple[list[np.ndarray], np.ndarray | None]:
    """[x < 0] for flat x by the path the public (bit_length, t) picks, with fused selections."""
    if bounded_applies(bit_length, s.t):
        bounded = await _bounded_masks_for(s, label, x, bit_length, masks)
        return await _ltz_select_bounded(s, label, x, bounded, selects, bit_range)
    return await _ltz_select(s, label, x, await _masks_for(s, label, x, masks), selects, bit_range)


async def ltz(s: Session, label: str, x: np.ndarray, bit_length: int, *,
              solved: Masks | None = None) -> np.ndarray:
    """Shares of [x < 0] for shared x = a - b of operands with |a|, |b| < 2^bit_length (or one of
    them -(2^bit_length)), bit_length in 1..59; for bit_length <= max_bounded_bit_length(t) by
    the bounded path, else by the exact one. `solved`: masks from comparison_masks for x.size
    elements (solved ones serve both paths), or made here.

    Rounds after the masks (module docstring, "Cost"): exact 1 open (concurrent with the
    bit-pair products) + 5 tree + 1 = 7; bounded 1 + ceil(log2(ceil((k+1)/2))) + 1.
    """
    _check_bit_length(bit_length)
    x = np.asarray(x, dtype=np.uint64)
    flat = _flat(x)
    if flat.size == 0:
        return np.zeros(x.shape, dtype=np.uint64)
    _, bit = await _compare_select(s, label, flat, bit_length, solved, (), (0, flat.size))
    return bit.reshape(x.shape)


async def less_than(s: Session, label: str, a: np.ndarray, b: np.ndarray, bit_length: int, *,
                    solved: Masks | None = None) -> np.ndarray:
    """Shares of [a < b] for |a|, |b| < 2^bit_length (bit_length in 1..59); see ltz."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    return await ltz(s, label, field.sub(a, b), bit_length, solved=solved)


async def less_than_select(s: Session, label: str, a: np.ndarray, b: np.ndarray, bit_length: int,
                           selects: Sequence[tuple[int, np.ndarray, np.ndarray]] = (), *,
                           keep_bit: tuple[int, int] | None = None,
                           solved: Masks | None = None) -> tuple[list[np.ndarray], np.ndarray | None]:
    """[a < b] for flat a, b with, for each (offset, X, Y), the fused selection
    bit[offset:offset + len(X)] ? X : Y, and bit[lo:hi] if keep_bit = (lo, hi): the rounds of
    one comparison on either path (see _finish_ltz). The Shamir engine's `less_than_select`."""
    _check_bit_length(bit_length)
    x = field.sub(*np.broadcast_arrays(_flat(a), _flat(b)))
    return await _compare_select(s, label, x, bit_length, solved, selects, keep_bit)


async def greater_equal(s: Session, label: str, a: np.ndarray, b: np.ndarray, bit_length: int, *,
                        solved: Masks | None = None) -> np.ndarray:
    """Shares of [a >= b] = 1 - [a < b]."""
    return _one_minus(await less_than(s, label, a, b, bit_length, solved=solved))


# ---- equality -----------------------------------------------------------------------

async def _product_tree(s: Session, label: str, rows: np.ndarray) -> np.ndarray:
    """Product over axis 0 of shared rows (k, m): ceil(log2 k) rounds, k - 1 products per column."""
    level = 0
    while rows.shape[0] > 1:
        k = rows.shape[0]
        half = k // 2
        prod = await s.reduce_degree(f"{label}/l{level}", field.mul(rows[0:2 * half:2], rows[1:2 * half:2]))
        rows = np.concatenate([prod, rows[k - 1:]]) if k % 2 else prod
        level += 1
    return rows[0]


async def equal_zero(s: Session, label: str, x: np.ndarray, *, solved: Solved | None = None) -> np.ndarray:
    """Shares of [x == 0] for any shared field elements x (exact).

    Open c = x + r mod p with r in [0, p]; x == 0 iff r = c as integers, or c = 0 and r = p
    (the all-ones bit pattern). The first is a product of 61 shared equality bits; for the
    (public, rarely present) elements with c = 0 the second test rides along as extra
    columns of the same product tree, and the two exclusive results are added.
    Rounds: random bits (unless `solved`) + 1 open (concurrent with the bit-pair products)
    + 5 product-tree rounds; 30 + 30 products per element after the random bits.
    """
    x = np.asarray(x, dtype=np.uint64)
    flat = _flat(x)
    m = flat.size
    if m == 0:
        return np.zeros(x.shape, dtype=np.uint64)
    r, rb = await _masks_for(s, label, flat, solved)
    c, q = await asyncio.gather(s.open(f"{label}/open", field.add(flat, r)),
                                _pair_products(s, f"{label}/pairs", rb))
    zero = np.flatnonzero(c == 0)          # public: every party takes the same branch
    if zero.size:
        c = np.concatenate([c, np.full(zero.size, np.uint64(field.P), dtype=np.uint64)])
        rb = np.concatenate([rb, rb[:, zero]], axis=1)
        q = np.concatenate([q, q[:, zero]], axis=1)
    _, eq = _pair_nodes(_public_bits(c), rb, q)
    out = await _product_tree(s, f"{label}/prod", eq)
    if zero.size:
        head = out[:m].copy()
        head[zero] = field.add(head[zero], out[m:])
        out = head
    return out.reshape(x.shape)


async def equal(s: Session, label: str, a: np.ndarray, b: np.ndarray, *,
                solved: Solved | None = None) -> np.ndarray:
    """Shares of [a == b] (exact for any field elements)."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    return await equal_zero(s, label, field.sub(a, b), solved=solved)


# ---- bounded zero test: only for values whose range the nodes enforced ----------------

async def equal_zero_bounded(s: Session, label: str, x: np.ndarray, bound: int) -> np.ndarray:
    """Shares of [x == 0] for x that is guaranteed to lie in [0, bound] (e.g. a function of
    inputs whose range the nodes checked before sharing). NOT for unchecked values.

    Open c = x + r_lo + 2^L R with L = bit length of bound, r_lo given by L shared random
    bits and R the sum of t+1 dealt random 40-bit values. Nothing wraps mod p, and
    x = 0 iff the low L bits of c equal r_lo's bits (since 0 <= x < 2^L). The opened c
    hides x statistically (distance < 2^-39 from a value independent of x). Cost: L random
    bits and L-1 products instead of 61 and 60 for equal_zero.
    """
    vals = _flat(x)
    m = vals.size
    width = max(1, int(bound).bit_length())
    if width + STATISTICAL_SECURITY + 2 > field.BITS - 1:
        raise ValueError(f"{label}: bound {bound} too large for a statistical mask; use equal_zero")
    dealers = s.parties[: s.t + 1]
    mine = None
    if s.party in dealers:
        mine = random_field(m) & np.uint64((1 << STATISTICAL_SECURITY) - 1)
    bits, highs = await asyncio.gather(
        s.random_bits(f"{label}/bits", width * m),
        s.deal(f"{label}/high", {d: m for d in dealers}, mine))
    bits = bits.reshape(width, m)
    high = highs[dealers[0]]
    for d in dealers[1:]:
        high = field.add(high, highs[d])
    # shares of sum 2^i r_i: the weights are below 2^width < p, so a shifted sum is exact mod p
    r_lo = field.sum_all(field.mul(bits, (np.uint64(1) << np.arange(width, dtype=np.uint64))[:, None]), axis=0)
    mask = field.add(r_lo, field.mul_const(high, 1 << width))
    c = await s.open(f"{label}/open", field.add(vals, mask))
    cb = (c[None, :] >> np.arange(width, dtype=np.uint64)[:, None]) & _ONE
    # 1 - (c_i XOR r_i): linear in the shared bit r_i because c_i is public
    same = np.where(cb == _ONE, bits, _one_minus(bits))
    return (await _product_tree(s, f"{label}/and", same)).reshape(np.shape(x))
