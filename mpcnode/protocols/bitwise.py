"""Bitwise building blocks on shared bits against a public value: the comparison tree shared by
both comparison paths of protocols/compare.py, and a product tree for zero tests.

All functions take a Session and a round label first and handle a whole batch per round,
vectorized over the batch and over the bits (arrays (nbits, m), LSB first).

* bit_lt_public / lt_tree: [c < r] for public c and bitwise-shared r, a divide-and-conquer tree
  (lt = lt_hi + eq_hi * lt_lo, eq = eq_hi * eq_lo) whose 2-bit nodes are linear given the
  input-independent pair products q = r_2k r_2k+1 (computed while the masked value is opened).
  For 61 bits: 30 pair products, then 31 -> 16 -> 8 -> 4 -> 2 -> 1 in 5 rounds, 55 products; for
  N = ceil(nbits/2) nodes, ceil(log2 N) rounds and sum over the levels of 2 floor(nodes/2) - 1.
* xor_lt_select: b = a XOR [c < r] for a shared bit a, with selections b ? X : Y fused into the
  tree's rounds (compare.py's comparisons end with it).
* product_tree: the product of k shared rows in ceil(log2 k) rounds.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import field
from .core import Session

BITS = field.BITS

_U = np.uint64
_ONE = _U(1)
_ZERO = _U(0)
_SHIFTS = np.arange(BITS, dtype=np.uint64)[:, None]


def _flat(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.uint64)).reshape(-1)


def one_minus(x: np.ndarray) -> np.ndarray:
    """1 - x for shares (the public 1 is its own share)."""
    return field.sub(np.full(x.shape, _ONE, dtype=np.uint64), x)


def public_bits(c: np.ndarray, nbits: int = BITS) -> np.ndarray:
    """The low `nbits` bits of public canonical c (m,), LSB first: shape (nbits, m), values 0/1."""
    return (c[None, :] >> _SHIFTS[:nbits]) & _ONE


def _paired(nbits: int) -> int:
    """Bits 0..paired-1 form pairs (2k, 2k+1); with an odd count the top bit stays alone
    (61 bits: 30 pairs and bit 60)."""
    return nbits - nbits % 2


async def pair_products(s: Session, label: str, r_bits: np.ndarray) -> np.ndarray:
    """q_k = r_2k * r_2k+1 for the pairs of the bits: shape (nbits // 2, m), (30, m) for 61 bits.
    Input-independent, so callers run it concurrently with the opening of the masked value
    (no extra round of latency)."""
    paired = _paired(r_bits.shape[0])
    return await s.mul(label, r_bits[0:paired:2], r_bits[1:paired:2])


def pair_nodes(cb: np.ndarray, r_bits: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    none = one_minus(field.add(rh, rl_q))                      # (1 - r_h)(1 - r_l)
    eq = np.where(ch == 1, np.where(cl == 1, q, rh_q), np.where(cl == 1, rl_q, none))
    c_top, r_top = cb[paired:], r_bits[paired:]                # the lone top bit, if any
    lt = np.concatenate([lt, np.where(c_top == 0, r_top, _ZERO)])
    eq = np.concatenate([eq, np.where(c_top == 1, r_top, one_minus(r_top))])
    return lt, eq


async def lt_tree(s: Session, label: str, cb: np.ndarray, r_bits: np.ndarray, q: np.ndarray,
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
    lt, eq = pair_nodes(cb, r_bits, q)
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
    q = await pair_products(s, f"{label}/pairs", r_bits)
    lt, _ = await lt_tree(s, label, public_bits(c), r_bits, q)
    return lt


async def xor_lt_select(s: Session, label: str, a: np.ndarray, cb: np.ndarray, r_bits: np.ndarray,
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
    lt, ads = await lt_tree(s, f"{label}/tree", cb, r_bits, q, [(a[off:off + d.size], d) for off, d in ds])
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


async def product_tree(s: Session, label: str, rows: np.ndarray) -> np.ndarray:
    """Product over axis 0 of shared rows (k, m): ceil(log2 k) rounds, k - 1 products per column."""
    level = 0
    while rows.shape[0] > 1:
        k = rows.shape[0]
        half = k // 2
        prod = await s.reduce_degree(f"{label}/l{level}", field.mul(rows[0:2 * half:2], rows[1:2 * half:2]))
        rows = np.concatenate([prod, rows[k - 1:]]) if k % 2 else prod
        level += 1
    return rows[0]
