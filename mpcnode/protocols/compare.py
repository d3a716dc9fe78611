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
* bit_lt_public (protocols/bitwise.py): [c < r] for public c and bitwise-shared r by a
  divide-and-conquer tree over the bits (lt = lt_hi + eq_hi * lt_lo, eq = eq_hi * eq_lo). The
  products of bit pairs r_2k r_2k+1 (input-independent, computed while the masked value is
  opened) make the 2-bit nodes linear, so for 61 bits the tree has 5 rounds on 31 nodes:
  30 + 55 products.
* ltz, exact path: [x < 0] via Nishide-Ohta's LSB trick (PKC 2007): for |x| < p/2, x < 0 iff
  y = 2x mod p is odd. Open c = y + r; then LSB(y) = c_0 XOR r_0 XOR [c < r] because
  the addition wrapped around p (an odd number) exactly when c < r. This holds for
  every r in [0, p], so the comparison is exact; only the mask is 2^-61 from uniform.
* ltz, bounded path (below): the same shape on k + 1 bits instead of 61, with a mask that
  hides x statistically instead of perfectly.
* equal_zero: open c = x + r; x == 0 iff the bits of r equal those of c (or c = 0 and
  r = p), a product of 61 shared equality bits computed by a log-depth product tree
  (pair products + 5 rounds, 60 products). Exact.

Signed values are field elements in the symmetric encoding of field.asfield.
``bit_length`` k (1..59) states that the operands satisfy |v| < 2^k, or that one of them is
-(2^k) (top_two's "minus infinity"); so the difference x = a - b has |x| < 2^(k+1). It is a
range contract, checked for form only: inputs must be range-checked before they are shared.
On the exact path (k > max_bounded_bit_length(t)) the LSB trick works for every |x| < p/2, and
an out-of-range operand only gives a wrong bit. On the bounded path it also weakens the mask's
hiding (see below). On both paths the result is always a bit.

Bounded comparison (Catrina and de Hoogh, SCN 2010, "LTZ via Mod2m", with the sign bit
taken by XOR instead of the truncation's division)
-----------------------------------------------------------------------------------------
For k <= max_bounded_bit_length(t) = 19 - ceil(log2(t+1)) (18 at t = 1, 17 at t = 2, 3):

* shift: x' = x + 2^(k+1) lies in [1, 2^(k+2)), and x < 0 iff bit k+1 of x' is 0.
* mask: r = sum_{i <= k+1} 2^i b_i + 2^(k+2) R, with k + 2 shared random bits b_i
  (Session.random_bits) and R = R_1 + ... + R_{t+1}, the values of t+1 dealers, each drawn
  uniformly from [0, 2^kappa) by randomness.random_ring (kappa = STATISTICAL_SECURITY = 40) and
  shared in the round that deals the bits (random_bounded_masks). Solved random bits also serve
  (_bounded_from_solved: r = sum_{i < k+2+kappa} 2^i b_i).
* opened: c = x' + r, an integer below p: x' + r <= 2 (2^(k+2) - 1) + 2^(k+2) (t+1) (2^kappa - 1)
  < p exactly for k <= 19 - ceil(log2(t+1)) (_bounded_fits), so nothing wraps.
* result: with m = k + 1 and the carry u = [c mod 2^m < r mod 2^m] (bit_lt_public's tree on
  the m low bits), bit m of x' is c_m XOR b_m XOR u (x' has no bit above m), so
  [x < 0] = NOT(c_m XOR b_m) XOR u: a XOR of a bit linear in b_m and the tree's bit, the same
  end as the exact path (bitwise.xor_lt_select), so selections fuse the same way. Exact
  (no error probability) for operands within the contract.
* why the opening is safe: for any t parties at least one bit dealer and one high-part dealer
  is honest, so U = sum_{i <= k+1} 2^i b_i + 2^(k+2) R_h (R_h an honest dealer's value) is
  uniform on [0, 2^(k+2+kappa)) given everything those parties see except c, and the other
  dealers' values only shift c by an amount independent of U and x. For two inputs x', x'' the
  distributions of x' + U and x'' + U are at statistical distance |x' - x''| / 2^(k+2+kappa)
  < 2^-kappa = 2^-40: c is within 2^-40 of a value that does not depend on x (per opened value;
  N comparisons add up to N 2^-40). The random bits are those of Session.random_bits (shares
  of XORs of t+1 dealt bits); no bit and no mask comes from anywhere but mpcnode/randomness.py.
* out-of-range operands: the bit stays a bit, but it is the sign of x' mod 2^(k+2), not of x: a
  chosen out-of-range bid can turn a comparison into a threshold test of an honest bid, and a
  selection can carry a huge value into the next opening. So the bounded path is for range-checked
  operands only: the executor compares anything computed from input-only organizations' inputs
  (client inputs are range-checked inside MPC before the circuit) at `engine.exact_bit_length(k)`,
  which is above this path's limit (circuit.range_checked decides which values are checked).

Cost
----
Per element, with fresh masks, at n parties and threshold t (lt_cost gives rounds and products;
seeded dealing sends one element from a dealer to each of the n - 1 - t parties that do not
share its seed; totals over all parties):

* exact: random bits 1 + ceil(log2(t+1)) rounds, then 1 open (concurrent with the pair
  products) + 5 tree + 1 final = 9 rounds at t = 1. Products 61 t (XORs) + 30 + 55 + 1
  = 147 at t = 1. Bytes 8 (n-1-t) [61 (t+1) + 147 (2t+1)] + 8 n (n-1): 4552 at n = 3
  (1517 per party).
* bounded (k + 1 = m, N = ceil(m/2) tree nodes): the same random-bit rounds (the high part is
  dealt alongside), then 1 open + ceil(log2 N) tree + 1 final: 8 rounds at k = 16, t = 1.
  Products (k+2) t + floor(m/2) + sum over the tree levels of (2 floor(nodes/2) - 1) + 1:
  39 at k = 16, 20 at k = 8, t = 1. Bytes 8 (n-1-t) [(k+3)(t+1) + products (2t+1)] + 8 n (n-1):
  1288 at k = 16, n = 3 (429 per party).
* a fused selection adds one product per selected element to the final round on both paths
  (and, on the bounded path at k = 1, whose tree has no round, one round for a*D).
* comparison_masks moves the random bits (and the high part) ahead, in one batch.

Selecting right after a comparison is fused (less_than_select): select(ltz(x), X, Y) =
Y + a*D + lt*(1-2a)*D with D = X - Y and ltz = a XOR lt, where a*D rides on the first tree
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
from .bitwise import bit_lt_public  # noqa: F401  (re-exported: part of this module's API)
from .bitwise import one_minus, pair_nodes, pair_products, product_tree, public_bits, xor_lt_select
from .core import Session

BITS = field.BITS                 # 61 bits per solved random value
MAX_BIT_LENGTH = 59               # |operand| < 2^59 keeps differences below p/2
STATISTICAL_SECURITY = 40         # kappa: bits of statistical masks (bounded comparison, bounded zero test)

Solved = tuple[np.ndarray, np.ndarray]   # (r shares (m,), bit shares (BITS, m))

_U = np.uint64
_ONE = _U(1)
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


# ---- less than zero, fused with selection ------------------------------------------

async def _ltz_select(s: Session, label: str, x: np.ndarray, solved: Solved,
                      selects: Sequence[tuple[int, np.ndarray, np.ndarray]] = (),
                      bit_range: tuple[int, int] | None = None) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The exact path: b = [x < 0] for flat x, with the fused selections of xor_lt_select.

    LSB(2x) = a XOR lt with a = c_0 XOR r_0 (linear after the opening of c = 2x + r) and
    lt = [c < r] over all 61 bits: 1 open (concurrent with the bit-pair products) + 5 tree
    + 1 final = 7 rounds of latency after the random bits.
    """
    r, rb = solved
    y = field.add(x, x)
    c, q = await asyncio.gather(s.open(f"{label}/open", field.add(y, r), purpose="masked-comparison"),
                                pair_products(s, f"{label}/pairs", rb))
    r0 = rb[0]
    a = np.where((c & _ONE) == 1, one_minus(r0), r0)
    return await xor_lt_select(s, label, a, public_bits(c), rb, q, selects, bit_range)


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
    b = a XOR u for a = NOT(c_m XOR r_m), linear in the shared bit r_m: xor_lt_select with the
    tree over the m low bits. 1 open (concurrent with the pair products) + ceil(log2(ceil(m/2)))
    tree + 1 final rounds.
    """
    m = masks.bit_length + 1
    low, r_m = masks.bits[:m], masks.bits[m]
    shifted = field.add(x, np.full(x.shape, np.uint64(1 << m), dtype=np.uint64))
    c, q = await asyncio.gather(s.open(f"{label}/open", field.add(shifted, masks.r), purpose="masked-comparison"),
                                pair_products(s, f"{label}/pairs", low))
    a = np.where(((c >> np.uint64(m)) & _ONE) == 1, r_m, one_minus(r_m))
    return await xor_lt_select(s, label, a, public_bits(c, m), low, q, selects, bit_range)


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
    one comparison on either path (see xor_lt_select). The Shamir engine's `less_than_select`."""
    _check_bit_length(bit_length)
    x = field.sub(*np.broadcast_arrays(_flat(a), _flat(b)))
    return await _compare_select(s, label, x, bit_length, solved, selects, keep_bit)


async def greater_equal(s: Session, label: str, a: np.ndarray, b: np.ndarray, bit_length: int, *,
                        solved: Masks | None = None) -> np.ndarray:
    """Shares of [a >= b] = 1 - [a < b]."""
    return one_minus(await less_than(s, label, a, b, bit_length, solved=solved))


# ---- equality -----------------------------------------------------------------------

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
    c, q = await asyncio.gather(s.open(f"{label}/open", field.add(flat, r), purpose="masked-comparison"),
                                pair_products(s, f"{label}/pairs", rb))
    zero = np.flatnonzero(c == 0)          # public: every party takes the same branch
    if zero.size:
        c = np.concatenate([c, np.full(zero.size, np.uint64(field.P), dtype=np.uint64)])
        rb = np.concatenate([rb, rb[:, zero]], axis=1)
        q = np.concatenate([q, q[:, zero]], axis=1)
    _, eq = pair_nodes(public_bits(c), rb, q)
    out = await product_tree(s, f"{label}/prod", eq)
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
    c = await s.open(f"{label}/open", field.add(vals, mask), purpose="masked-zero-test")
    cb = (c[None, :] >> np.arange(width, dtype=np.uint64)[:, None]) & _ONE
    # 1 - (c_i XOR r_i): linear in the shared bit r_i because c_i is public
    same = np.where(cb == _ONE, bits, one_minus(bits))
    return (await product_tree(s, f"{label}/and", same)).reshape(np.shape(x))
