"""What a prediction job releases besides raw margins (docs/prediction.md, "Probabilities and
classes"): the predicted class, or the probabilities, computed inside MPC from the shares of the
margins (Q, K) that protocols/trees.py evaluates on the 64-bit replicated3 engine. Protocol math
only, against the engine interface; nothing is opened here.

The class (`predicted_class`, the 64-bit engine alone):
* one batched comparison of every ordered pair of classes per query, c_ij = [m_i < m_j]
  (bit_length 62: the owner's node refuses a model whose margins could reach 2^62);
* class k wins iff m_j < m_k for every j < k and m_k >= m_j for every j > k: the first maximum,
  as numpy's argmax and the libraries' predict do; the AND of its K - 1 bits is a product tree
  (ceil(log2(K - 1)) rounds);
* the class = sum k win_k (local). Binary: [0 < m], XGBoost's `prob > 0.5` (a margin of exactly 0
  is class 0).

The probabilities (`probabilities`): the margins are lifted exactly to Z_2^128
(engines/replicated3_wide.py `lift`, around the job's own engine), truncated from the model's
fraction_bits f to PROB_FRAC = 16, and then
* binary: sigmoid (protocols/fixedpoint.py: clip to [-8, 8] and an odd polynomial; error below
  1e-3, of which 3.4e-4 is sigma(8) - 1 for |m| > 8);
* multiclass: softmax, p_k = e^(m_k - max) / sum_j e^(m_j - max), with the maximum from the same
  pairwise comparisons (so every exponent is <= 0 and the sum lies in [1, K]): fixedpoint.exp
  (clips below -(f + 2) ln 2, where e^x is below a quarter of the last place), the reciprocal of
  the sum, one truncating product per class.
The result goes back to the 64-bit engine (downcast, exact) at PROB_FRAC fractional bits.
Error bounds (`PROB_ERROR`) are asserted by tests/unit/test_trees_output.py against the
libraries' own probabilities. The margins' public range is the one every model has (|m| < 2^62 at
f bits, no clip of our own: sigmoid and exp clip inside MPC, and the bounds include it); it fits
the comparisons once at PROB_FRAC bits only for f >= PROB_MIN_FRAC, so fewer bits are refused.
Rounds: `output_cost` (docs/prediction.md).
"""
from __future__ import annotations

import math

import numpy as np

from ..engines.base import Engine, Share
from . import fixedpoint
from .binary import prefix_levels
from .trees import ModelShape

PROB_FRAC = 16                 # fractional bits of a released probability
MARGIN_BITS = 62               # |margin| < 2^62 in encoded units (trees/plain.encode_leaves)
# the margins' public range, 2^62 at f bits, must come within the comparisons' 2^62 once truncated
# to PROB_FRAC bits: a difference of two margins (softmax) needs f - PROB_FRAC >= 2
PROB_MIN_FRAC = PROB_FRAC + 2
PROB_ERROR = {"binary": 1.0e-3, "multiclass": 2.0e-3}


def _pairs(k: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


async def _winners(engine: Engine, label: str, margins: Share, classes: int) -> Share:
    """Shares of win (Q, K): 1 for the first class with the largest margin of each query."""
    q = engine.value_shape(margins)[0]
    pairs = _pairs(classes)
    cols = np.swapaxes(margins, 0, 1)                                       # (K, Q)
    a = np.concatenate([cols[i] for i, _ in pairs])
    b = np.concatenate([cols[j] for _, j in pairs])
    lt = (await engine.less_than(f"{label}/pairs", a, b, MARGIN_BITS)).reshape((len(pairs), q) + engine.share_shape)
    index = {p: n for n, p in enumerate(pairs)}
    factors = []                                # per class, its K - 1 conditions (Q each)
    for k in range(classes):
        conds = [lt[index[(j, k)]] for j in range(k)]                       # m_j < m_k
        conds += [engine.one_minus(lt[index[(k, j)]]) for j in range(k + 1, classes)]   # not m_k < m_j
        factors.append(np.stack(conds))                                     # (K - 1, Q)
    terms = np.stack(factors)                                               # (K, K - 1, Q)
    level = 0
    while terms.shape[1] > 1:                   # a product tree over the conditions, all classes at once
        half = terms.shape[1] // 2
        prod = await engine.mul(f"{label}/and{level}", terms[:, :half], terms[:, half:2 * half])
        terms = np.concatenate([prod, terms[:, 2 * half:]], axis=1)
        level += 1
    return np.swapaxes(terms[:, 0], 0, 1)                                   # (Q, K)


async def predicted_class(engine: Engine, label: str, margins: Share, shape: ModelShape) -> Share:
    """Shares of the class (Q, 1) of each query (module docstring)."""
    q = engine.value_shape(margins)[0]
    if shape.classes == 1:
        if shape.kind == "regression":
            raise ValueError("a regression model has no class")
        zero = engine.constant(engine.encode(np.zeros(q, dtype=np.int64)))
        return (await engine.less_than(f"{label}/sign", zero, margins[:, 0], MARGIN_BITS)).reshape(
            (q, 1) + engine.share_shape)
    win = await _winners(engine, label, margins, shape.classes)
    ks = engine.encode(np.arange(shape.classes, dtype=np.int64))
    return engine.sum(engine.mul_const(win, ks), axis=1).reshape((q, 1) + engine.share_shape)


def _sigmoid_range(f: int) -> fixedpoint.Interval:
    """The public range of a binary margin at PROB_FRAC bits: |margin| < 2^62 at f bits, and the
    truncation to PROB_FRAC errs by < 2 units. No clip of our own: sigmoid clips to [-8, 8]."""
    bound = (1 << (MARGIN_BITS - (f - PROB_FRAC))) + 2
    return -bound, bound


def _softmax_ranges(f: int, k: int) -> tuple[fixedpoint.Interval, int, fixedpoint.Interval]:
    """(range of m_k - max at PROB_FRAC bits, the top of each e^(m_k - max), range of their sum).
    Each difference is <= 0 (+2 units of truncation error) and > -2^63 at f bits; exp clips it
    below -(16 + 2) ln 2 itself. The maximum's own term is e^0 = 2^16 up to its small error, so the
    sum lies in [2^15, K e_hi]."""
    d_range = (-(1 << (MARGIN_BITS + 1 - (f - PROB_FRAC))) - 2, 2)
    e_hi = fixedpoint.exp_schedule(d_range, PROB_FRAC).out[1]
    return d_range, e_hi, (1 << (PROB_FRAC - 1), k * e_hi)


def _lt_rounds(bit_length: int) -> int:
    """Rounds of one replicated3 (or wide) `less_than` at bit_length: 2 + ceil(log2(bl + 1))."""
    return 2 + prefix_levels(bit_length)


def _class_rounds(k: int) -> int:
    """The pairwise comparisons, then the AND tree over each class's K - 1 conditions."""
    return _lt_rounds(MARGIN_BITS) + (math.ceil(math.log2(k - 1)) if k > 2 else 0)


def output_cost(shape: ModelShape, output: str) -> int:
    """Rounds of `predicted_class` (output "class") or `probabilities` (output "probability") from
    the public shape alone, after `trees.evaluate` (its rounds: trees.predict_cost) and before the
    release (one more round). Independent of the number of queries (every step is one batch).
    Each term is the round count the called function documents (engines/replicated3*.py,
    protocols/fixedpoint.py); tests/unit/test_trees_output.py checks the sum against the exchange's
    counter. At f = 32: class 8 + ceil(log2(K - 1)) (8 for a binary model); probability 23
    (binary), 58 + ceil(log2(K - 1)) (multiclass)."""
    k, f = shape.classes, shape.fraction_bits
    if shape.kind == "regression":
        raise ValueError(f"a regression model has no {output}")
    if output == "probability" and f < PROB_MIN_FRAC:
        raise ValueError(f"probabilities need the model's leaves in at least {PROB_MIN_FRAC} fraction bits, not {f}")
    if output == "class":
        return _lt_rounds(MARGIN_BITS) if k == 1 else _class_rounds(k)
    if output != "probability":
        raise ValueError(f"unknown output {output!r}: class or probability")
    scale = 1                                                           # the truncation to PROB_FRAC
    if k == 1:
        lo, hi = _sigmoid_range(f)
        clip = fixedpoint.SIG_CLIP << PROB_FRAC
        sig = _lt_rounds(fixedpoint.hull_bits((min(lo, -clip), max(hi, clip)))) + 1 + 1 + 9 + 1
        return 2 + scale + sig                                          # lift, scale, sigmoid
    d_range, e_hi, sum_range = _softmax_ranges(f, k)
    c = fixedpoint.exp_floor(PROB_FRAC)
    halvings = fixedpoint.exp_halvings(d_range, PROB_FRAC)     # exp's k
    exp = ((_lt_rounds(fixedpoint.hull_bits((min(d_range[0], -c), max(d_range[1], -c)))) + 1 if d_range[0] < -c else 0)
           + (1 if PROB_FRAC + halvings > fixedpoint.EXP_FRAC else 0) + fixedpoint.EXP_DEGREE + max(halvings, 1))
    b = fixedpoint.bits(sum_range[1])
    recip = ((7 + math.ceil(math.log2(b)) + 6) + 1 + (1 if b > fixedpoint.RECIP_FRAC else 0)
             + 2 * fixedpoint.RECIP_ITERATIONS + 1)
    # the maximum's comparisons, lift, the maximum (one product), scale, exp, reciprocal, p = e r
    return _class_rounds(k) + 2 + 1 + scale + exp + recip + 1


def truncation_leak(shape: ModelShape, queries: int) -> int:
    """The sum over every truncation `probabilities` performs for `queries` queries of 2^L, L its
    bound bits: each opened masked value leaks at most 2^(L+3-128) (engines/replicated3_wide.py),
    so a job's total is this times 2^(3-128). computation/ranges.py adds it to the job's budget."""
    f, k = shape.fraction_bits, shape.classes
    if k == 1:
        sched = fixedpoint.sigmoid_schedule(_sigmoid_range(f), PROB_FRAC)
        return queries * ((1 << MARGIN_BITS) + sum(1 << b for b in sched.truncations))
    d_range, e_hi, sum_range = _softmax_ranges(f, k)
    per_class = ((1 << (MARGIN_BITS + 1)) + sum(1 << b for b in fixedpoint.exp_schedule(d_range, PROB_FRAC).truncations)
                 + (1 << (fixedpoint.bits(e_hi) + 18)))
    per_query = sum(1 << b for b in fixedpoint.reciprocal_schedule(sum_range, PROB_FRAC).truncations)
    return queries * (k * per_class + per_query)


def _wide(engine: Engine):
    from ..engines.replicated3_wide import Replicated3WideEngine
    return Replicated3WideEngine.around(engine)


async def probabilities(engine: Engine, label: str, margins: Share, shape: ModelShape) -> tuple[Share, int]:
    """(shares of the probabilities (Q, K) at PROB_FRAC fractional bits on `engine`, PROB_FRAC):
    the sigmoid of a binary model's margin, the softmax of a multiclass model's (module docstring)."""
    if shape.kind == "regression":
        raise ValueError("a regression model has no probability")
    f = shape.fraction_bits
    if f < PROB_MIN_FRAC:
        raise ValueError(f"probabilities need the model's leaves in at least {PROB_MIN_FRAC} fraction bits, not {f}")
    q, k = engine.value_shape(margins)
    wide = _wide(engine)
    if k == 1:
        m = await wide.lift(f"{label}/lift", margins.reshape((q,) + engine.share_shape))
        x = await wide.trunc(f"{label}/scale", m, f - PROB_FRAC, MARGIN_BITS)
        p = await fixedpoint.sigmoid(wide, f"{label}/sigmoid", x, PROB_FRAC, _sigmoid_range(f))
        return wide.downcast(p).reshape((q, 1) + engine.share_shape), PROB_FRAC
    win = await _winners(engine, f"{label}/max", margins, k)
    both = await wide.lift(f"{label}/lift", np.concatenate([margins.reshape((q * k,) + engine.share_shape),
                                                            win.reshape((q * k,) + engine.share_shape)]))
    m, w = both[:q * k].reshape((q, k, 2)), both[q * k:].reshape((q, k, 2))
    top = wide.sum(await wide.mul(f"{label}/top", m, w), axis=1)                     # (Q,): the maximum
    d = wide.sub(m, np.repeat(np.expand_dims(top, 1), k, axis=1)).reshape((q * k, 2))   # <= 0
    d = await wide.trunc(f"{label}/scale", d, f - PROB_FRAC, MARGIN_BITS + 1)
    d_range, e_hi, sum_range = _softmax_ranges(f, k)
    e = await fixedpoint.exp(wide, f"{label}/exp", d, PROB_FRAC, d_range)
    total = wide.sum(e.reshape((q, k, 2)), axis=1)
    r = await fixedpoint.reciprocal(wide, f"{label}/recip", total, PROB_FRAC, sum_range)
    # r <= 2^32 / 2^15: the products e r stay below e_hi 2^17
    p = await wide.mul_trunc(f"{label}/p", e, np.repeat(r, k, axis=0), PROB_FRAC, fixedpoint.bits(e_hi) + 18)
    return wide.downcast(p).reshape((q, k) + engine.share_shape), PROB_FRAC
