"""Fixed-point non-linear functions on the 128-bit replicated engine: reciprocal, exp, sigmoid.

Protocol math only: written against the wide engine's API (engines/replicated3_wide.py:
`trunc`, `mul_trunc`, `normalize`, `mul`, `less_than` and the linear ops), never the network.

A fixed-point value x with f fractional bits is the integer X = round(x * 2^f) (docs/protocols.md,
"Fixed-point numbers"). Every truncation below is the engine's masked-open truncation: it never
fails, errs by less than 2 units in the last place, costs one round, and requires |operand| < 2^L
for a public L; each opened element leaks at most 2^(L+3-128) (statistical distance), and a job's
sum over all its truncations must stay <= 2^-40. So each function comes in two halves:

* `*_schedule(...)`: the truncations it will perform for one element, as a list of bound bits L,
  and its output interval, from the operand's interval alone. computation/ranges.py uses this to
  bound values, count the job's leakage and refuse what does not fit; the executor passes the
  same interval, so the bounds used at run time are the ones analysed.
* the async protocol, which uses exactly those bounds.

The numeric constants (initial approximation, polynomial coefficients, iteration counts) were
chosen with plaintext models that reproduce the truncation error's worst case
(tests/unit/test_fixedpoint.py), which also assert every error bound stated here.

Costs below count rounds, and bytes for the three parties together per input element
(engines/replicated3_wide.py table; one wide element is 16 bytes): a truncating product 64, a
truncation 32, a product 48.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Interval = tuple[int, int]

# Reciprocal (Newton-Raphson): internal fractional bits, default iterations, initial approximation.
RECIP_FRAC = 30                  # internal precision F: 2F + 3 bits stay within the leakage budget
RECIP_ITERATIONS = 2
RECIP_C0, RECIP_C1 = 2.9142, 2.0  # y0 = 2.9142 - 2a: max |1 - a y0| = 0.0858 on [0.5, 1)
RECIP_EPS0 = 0.0858
MAX_NORMALIZE_BITS = 62          # normalize works on the narrow engine: 0 < x < 2^62

# exp: e^x = (e^(x / 2^k))^(2^k), Taylor polynomial of degree EXP_DEGREE on |t| <= 1/4.
EXP_FRAC = 24
EXP_DEGREE = 6
EXP_MAX_OUT_BITS = 62            # e^x * 2^f must fit the 64-bit release (and comparisons)

# sigmoid: clip to [-8, 8], then 1/2 + w q(w^2) with w = x/8, q of degree 9 (minimax fit of
# sigma(8w) - 1/2 on [-1, 1], Lawson iterations; error 1.9e-4), evaluated with SIG_FRAC bits.
SIG_FRAC = 24
SIG_CLIP = 8
SIG_COEFFS = (1.9953567828459793, -10.20175839608917, 53.94136595488965, -219.58439961155355,
              629.6960109246172, -1221.1533586361982, 1552.423054934328, -1233.2147390134942,
              553.646989809355, -107.04904783389954)
SIG_ERROR = 1.0e-3               # the documented bound for every input (asserted by the tests)


class FixedPointError(ValueError):
    """The operand's range does not allow the function (the message names the reason)."""


@dataclass(frozen=True)
class Schedule:
    """What one function does to each element: the bound bits of each of its truncations (in
    order) and the interval of its (encoded) result."""
    truncations: tuple[int, ...]
    out: Interval


def bits(v: int) -> int:
    """The least L with |v| < 2^L."""
    return abs(v).bit_length()


def hull_bits(iv: Interval) -> int:
    return max(bits(iv[0]), bits(iv[1]))


def trunc_bound(iv: Interval, d: int) -> int:
    """The bound bits L of a truncation by 2^d of values in iv (the engine needs d <= L)."""
    return max(hull_bits(iv), d, 1)


def trunc_interval(iv: Interval, d: int) -> Interval:
    """The result of a truncation by 2^d of a value in iv: within 2 units of x / 2^d."""
    return (iv[0] >> d) - 2, -((-iv[1]) >> d) + 2


# ---- reciprocal ------------------------------------------------------------------------------

def reciprocal_schedule(x: Interval, f: int, iterations: int = RECIP_ITERATIONS) -> Schedule:
    """1/x for x in the encoded interval `x` (f fractional bits). The range must be positive:
    x >= 1 encoded (x >= 2^-f), so a zero or negative divisor is refused before the job runs
    (negate a negative divisor's range in the circuit instead); and x < 2^62."""
    lo, hi = x
    if lo < 1:
        raise FixedPointError(f"the divisor's range [{lo}, {hi}] (encoded) must be positive: 1/x is defined for "
                              f"x >= 2^-{f} only")
    B = bits(hi)
    if B > MAX_NORMALIZE_BITS:
        raise FixedPointError(f"the divisor could reach 2^{B - 1} (encoded), beyond the 2^{MAX_NORMALIZE_BITS} "
                              "the normalization handles")
    if not 1 <= iterations <= 6:
        raise FixedPointError(f"{iterations} Newton iterations: 1 to 6 are allowed")
    F = RECIP_FRAC
    t: list[int] = []
    if B > F:
        t.append(B)                                  # a (scale 2^B) -> scale 2^F
    for _ in range(iterations):
        t += [2 * F + 2, 2 * F + 3]                  # a*y, then y*(2 - a*y): |y| <= 2 + slack
    d = F + B - 2 * f
    if d > 0:
        t.append(F + B + 1)                          # y * v back to f fractional bits
    one = 1 << (2 * f)
    # Newton from y0 approaches 1/a from below: relative error <= eps0^(2^k), plus < 2^-25 from the
    # internal truncations; the result never exceeds 2^f / x by more than its last truncation
    eps = RECIP_EPS0 ** (2 ** iterations) + 2.0 ** -25
    out = (math.floor(one / hi * (1 - eps) * (1 - 2.0 ** -40)) - 3, -(-one // lo) + 3)
    return Schedule(tuple(t), out)


async def reciprocal(E: Any, label: str, x: np.ndarray, f: int, x_range: Interval,
                     iterations: int = RECIP_ITERATIONS) -> np.ndarray:
    """Shares of round(2^f / x) (fixed point, f bits) for shares of x (f bits), x in x_range.

    Method (Catrina-Saxena FC 2010 section 3.4; Aly-Smart ACNS 2019): normalize, v =
    2^(B-1-msb(x)) (engine `normalize`), so a = x v / 2^B is in [0.5, 1); the linear initial
    approximation y0 = 2.9142 - 2a (relative error eps0 <= 0.0858); `iterations` Newton-Raphson
    steps y <- y (2 - a y), each squaring the relative error, computed with F = 30 internal
    fractional bits; then 1/x = y v 2^(f - B), truncated to f bits.
    Error: |result - 2^f/x| <= eps0^(2^k) 2^f / x + 2 units (plus < 2^-25 relative from the internal
    truncations), k = iterations. At k = 2, f = 16: relative error <= 2^-14.2 + 2^-15 x, so
    <= 2^-12 for 2^-16 <= x <= 4, the documented domain (the sum allows up to 6; larger x:
    absolute error <= 2^-15 + 2^-14.2 / x).
    Rounds: normalize (engine: 7 + ceil(log2 B) + 6, 18-19 for B > 16) + 1 (x v) + [1 if B > 30]
    + 2k + 1: 24 at k = 2 for 16 < B <= 30. Bytes (all parties, per element; engines/
    replicated3_wide.py table): normalize 752-832, 48 for x v, 64 per Newton product and for the
    last one: about 1.1 KB; measured over 3 nodes, 560 bytes per node per element for the whole
    job (docs/performance.md; measured with the engine's earlier costs: 96 per truncating product,
    normalize 928-1064 bytes and 2 rounds fewer)."""
    sched = reciprocal_schedule(x_range, f, iterations)
    F, B = RECIP_FRAC, bits(x_range[1])
    bounds = list(sched.truncations)
    v = await E.normalize(f"{label}/norm", x, B)
    a = await E.mul(f"{label}/xv", x, v)                      # in [2^(B-1), 2^B): exact integers
    if B > F:
        a = await E.trunc(f"{label}/a", a, B - F, bounds.pop(0))
    elif B < F:
        a = E.mul_const(a, E.encode(np.array([1 << (F - B)], dtype=np.int64)))
    y = E.add_const(E.mul_const(a, E.encode(np.array([-int(RECIP_C1)], dtype=np.int64))),
                    E.encode(np.array([round(RECIP_C0 * (1 << F))], dtype=np.int64)))
    two = E.encode(np.array([2 << F], dtype=np.int64))
    for i in range(iterations):
        ay = await E.mul_trunc(f"{label}/it{i}a", a, y, F, bounds.pop(0))
        e = E.add_const(E.neg(ay), two)                       # 2 - a y
        y = await E.mul_trunc(f"{label}/it{i}b", y, e, F, bounds.pop(0))
    d = F + B - 2 * f
    if d > 0:
        return await E.mul_trunc(f"{label}/out", y, v, d, bounds.pop(0))
    yv = await E.mul(f"{label}/out", y, v)
    return E.mul_const(yv, E.encode(np.array([1 << -d], dtype=np.int64))) if d < 0 else yv


# ---- exp -------------------------------------------------------------------------------------

def exp_floor(f: int) -> int:
    """The encoded c below which exp clips its operand: e^(-c / 2^f) < 2^-(f+2), a quarter of the
    result's last place, so clipping at -c changes the result by less than one unit; and it keeps
    the range reduction's k (and so its error) independent of how negative the declared range is."""
    return math.ceil((f + 2) * math.log(2) * (1 << f))


def _exp_interval(x: Interval, f: int) -> Interval:
    """The operand's interval after the clip at -exp_floor(f)."""
    return max(x[0], -exp_floor(f)), max(x[1], -exp_floor(f))


def exp_halvings(x: Interval, f: int) -> int:
    """k with |x| / 2^f / 2^k <= 1/4 over the clipped interval."""
    lo, hi = _exp_interval(x, f)
    m = max(abs(lo), abs(hi))
    return max(0, bits(m) - f + 2)


def _exp_relative_error(k: int) -> float:
    """The documented relative error of the internal value before the last truncation."""
    return 2.0 ** (k - 20.9)


def exp_schedule(x: Interval, f: int) -> Schedule:
    """e^x for x in the encoded interval (f fractional bits): bounded by e^(hi) 2^f < 2^62."""
    lo, hi = x
    if f > EXP_FRAC - 2:
        raise FixedPointError(f"exp needs f <= {EXP_FRAC - 2} fractional bits, not {f}")
    if max(abs(lo), abs(hi)).bit_length() > MAX_NORMALIZE_BITS:
        raise FixedPointError(f"the operand could reach 2^{max(abs(lo), abs(hi)).bit_length() - 1} (encoded), "
                              f"beyond the comparisons' 2^{MAX_NORMALIZE_BITS}")
    hi_real = hi / (1 << f)
    if hi_real * math.log2(math.e) + f > EXP_MAX_OUT_BITS - 1:
        raise FixedPointError(f"e^x could reach about 2^{int(hi_real * math.log2(math.e)) + f} (encoded) for x up to "
                              f"{hi_real:g}, beyond 2^{EXP_MAX_OUT_BITS - 1}")
    k, F = exp_halvings(x, f), EXP_FRAC
    rel = _exp_relative_error(k)
    if rel > 2.0 ** -10:
        raise FixedPointError(f"exp of x up to {hi_real:g} needs {k} squarings, whose relative error 2^{k - 20.9:.1f} "
                              "exceeds 2^-10")
    clo, chi = _exp_interval(x, f)
    t: list[int] = []
    if f + k > F:
        t.append(bits(max(abs(clo), abs(chi))))     # t = x / 2^k at F bits
    # Horner on |t| <= 1/4 with coefficients <= 1: |p t| < 2^(2F), one per degree
    t += [2 * F + 1] * EXP_DEGREE
    # squarings: y_j = e^(x / 2^(k - j)) (1 + rel), the last one truncated straight to f bits
    top = max(chi / (1 << f), 0.0)
    for j in range(k):
        y_max = math.exp(top / 2 ** (k - j)) * (1 + rel)
        t.append(2 * F + 1 + 2 * math.ceil(math.log2(y_max) if y_max > 1 else 0))
    if k == 0:
        t.append(F + 2)                                           # p to f bits
    out_hi = math.ceil(math.exp(chi / (1 << f)) * (1 << f) * (1 + rel)) + 3
    return Schedule(tuple(t), (-3, out_hi))


async def exp(E: Any, label: str, x: np.ndarray, f: int, x_range: Interval) -> np.ndarray:
    """Shares of about 2^f e^(x / 2^f) for shares of x (f fractional bits), x in x_range.

    Method: first, if the declared range reaches below -c = -exp_floor(f) (about -(f + 2) ln 2),
    one comparison and one product clip x at -c (e^-c is below a quarter unit of the result); then
    range reduction e^x = (e^(x/2^k))^(2^k) with k the least integer making |x / 2^k| <= 1/4 over
    the clipped range (free: x / 2^k is x read with f + k fractional bits),
    the degree-6 Taylor polynomial of e^t by Horner with F = 24 internal fractional bits (truncation
    error 1.2e-8 < 2^-26), then k squarings, the last one truncated straight to f bits.
    Error: relative 2^k (2^-26 + 8 * 2^-24) on the internal value, then 2 units of the result's last
    place: |result - 2^f e^x| <= 2^f e^x 2^(k - 20.9) + 2 (asserted by the tests at f = 16); k is
    refused above 10 (relative error 2^-10), f above 22.
    Rounds: [the comparison + 1 for the clip] + [1] + 6 + max(k, 1). Bytes (all parties, per element): 32 per truncation, 64 per
    truncating product: about 64 (6 + k)."""
    sched = exp_schedule(x_range, f)
    F, k = EXP_FRAC, exp_halvings(x_range, f)
    bounds = list(sched.truncations)
    c = exp_floor(f)
    if x_range[0] < -c:      # x + [x < -c] (-c - x): one comparison, one product
        floor = E.constant(E.encode(np.full(len(x), -c, dtype=np.int64)))
        below = await E.less_than(f"{label}/clip", x, floor, hull_bits((min(x_range[0], -c), max(x_range[1], -c))))
        x = E.add(x, await E.mul(f"{label}/clipped", below, E.sub(floor, x)))
    if f + k > F:
        t = await E.trunc(f"{label}/t", x, f + k - F, bounds.pop(0))
    else:
        t = E.mul_const(x, E.encode(np.array([1 << (F - f - k)], dtype=np.int64)))
    coeff = [round((1 << F) / math.factorial(i)) for i in range(EXP_DEGREE + 1)]
    p = None
    for i in range(EXP_DEGREE - 1, -1, -1):
        if p is None:    # the leading coefficient is public: a local product, then a truncation
            pt = await E.trunc(f"{label}/h{i}", E.mul_const(t, E.encode(np.array([coeff[EXP_DEGREE]], dtype=np.int64))),
                               F, bounds.pop(0))
        else:
            pt = await E.mul_trunc(f"{label}/h{i}", p, t, F, bounds.pop(0))
        p = E.add_const(pt, E.encode(np.array([coeff[i]], dtype=np.int64)))
    if k == 0:
        return await E.trunc(f"{label}/out", p, F - f, bounds.pop(0))
    for j in range(k):
        d = F if j < k - 1 else 2 * F - f
        p = await E.mul_trunc(f"{label}/sq{j}", p, p, d, bounds.pop(0))
    return p


# ---- sigmoid ---------------------------------------------------------------------------------

def _sig_sum() -> float:
    return sum(abs(c) for c in SIG_COEFFS)


def sigmoid_schedule(x: Interval, f: int) -> Schedule:
    """sigmoid of x in the encoded interval (f fractional bits); any |x| < 2^62 encoded (the
    comparisons run on the narrow engine)."""
    m = max(abs(x[0]), abs(x[1]), SIG_CLIP << f)
    if bits(m) > MAX_NORMALIZE_BITS:
        raise FixedPointError(f"the operand could reach 2^{bits(m) - 1} (encoded), beyond the comparisons' 2^62")
    F = SIG_FRAC
    if f + 3 > F:
        raise FixedPointError(f"sigmoid needs f <= {F - 3} fractional bits, not {f}")
    total = math.ceil(_sig_sum()) + 1
    t = [2 * F + 1]                                  # u = w^2, |w| <= 1
    t += [bits(total << (2 * F)) + 1] * (len(SIG_COEFFS) - 1)   # Horner: |p| <= sum |c|, |u| <= 1
    t.append(bits(total << (2 * F)) + 1)             # w q(u), straight to f bits
    return Schedule(tuple(t), (-3, (1 << f) + 3))


async def sigmoid(E: Any, label: str, x: np.ndarray, f: int, x_range: Interval) -> np.ndarray:
    """Shares of about 2^f / (1 + e^(-x / 2^f)) for shares of x (f fractional bits), any x in x_range.

    Method (piecewise, as SecureML / CrypTen approximate it, with one polynomial piece): ONE
    batched comparison gives [x < -8] and [8 < x]; one round of products clips x to [-8, 8]; then
    sigmoid(x) ~ 1/2 + w q(w^2) with w = x / 8 and q of degree 9 (an odd polynomial of degree 19,
    minimax fit, max error 1.9e-4 on [-8, 8]), evaluated by Horner with F = 24 internal bits.
    Error: 1.9e-4 (fit) + 3.4e-4 (1 - sigmoid(8), for |x| > 8) + < 2^-15 (truncations) < 6e-4,
    for every x in the range, below the documented 1e-3.
    Rounds: the comparison (engine `less_than`) + 1 (clip) + 1 (w^2) + 9 (Horner) + 1 (w q).
    Bytes (all parties, per element): two comparisons (360 each), the clip 48, then 64 per
    truncating product (10) and 32 for the first Horner step: about 1.4 KB; measured over 3 nodes,
    656 bytes per node per element for the whole job (docs/performance.md; measured when a
    truncating product sent 96 bytes)."""
    sched = sigmoid_schedule(x_range, f)
    F, n = SIG_FRAC, len(x)
    bounds = list(sched.truncations)
    K = SIG_CLIP << f
    bl = hull_bits((min(x_range[0], -K), max(x_range[1], K)))
    k_sh = E.constant(E.encode(np.full(n, K, dtype=np.int64)))
    neg_k = E.neg(k_sh)
    both = await E.less_than(f"{label}/clip", np.concatenate([x, k_sh]), np.concatenate([neg_k, x]), bl)
    below, above = both[:n], both[n:]
    # x + [x > 8](8 - x) + [x < -8](-8 - x): one round for both products
    prods = E.add(E.mul_local(above, E.sub(k_sh, x)), E.mul_local(below, E.sub(neg_k, x)))
    xc = E.add(x, await E.reduce(f"{label}/clipped", prods))
    w = E.mul_const(xc, E.encode(np.array([1 << (F - f - 3)], dtype=np.int64)))   # x/8 at F bits, exact
    u = await E.mul_trunc(f"{label}/u", w, w, F, bounds.pop(0))
    coeff = [round(c * (1 << F)) for c in SIG_COEFFS]
    p = None
    for i in range(len(coeff) - 2, -1, -1):
        if p is None:    # the leading coefficient is public: a local product, then a truncation
            pu = await E.trunc(f"{label}/h{i}", E.mul_const(u, E.encode(np.array([coeff[-1]], dtype=np.int64))),
                               F, bounds.pop(0))
        else:
            pu = await E.mul_trunc(f"{label}/h{i}", p, u, F, bounds.pop(0))
        p = E.add_const(pu, E.encode(np.array([coeff[i]], dtype=np.int64)))
    s = await E.mul_trunc(f"{label}/out", w, p, 2 * F - f, bounds.pop(0))
    return E.add_const(s, E.encode(np.array([1 << (f - 1)], dtype=np.int64)))
