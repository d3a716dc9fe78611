"""Fixed point: the numerics of protocols/fixedpoint.py against float64 (on a plaintext model that
errs as much as the real truncation may, tests/unit/fixed_model.py), the range analysis and the
builder (ring choice, refusals naming the op, Shamir's limit, the leakage budget), encoding at the
owner and decoding at the recipient. The same functions on the real 128-bit engine, in-process over
three parties: test_fixedpoint_wide.py."""
from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from mpcnode import circuit
from mpcnode.computation import ranges
from mpcnode.computation.builder import CircuitBuilder, encode_fixed
from mpcnode.inputs import InputError, check_values
from mpcnode.protocols import fixedpoint as fx
from mpcnode.recipient import render
from parley.v1 import circuit_pb2 as cpb

from fixed_model import FixedModel

F = 16
ROUNDINGS = ["random", "low", "high"]


def enc(xs) -> np.ndarray:
    return np.rint(np.asarray(xs, dtype=np.float64) * (1 << F)).astype(np.int64)


def run(coro):
    return asyncio.run(coro)


def decoded(shares) -> np.ndarray:
    return np.array([int(v) for v in shares], dtype=np.float64) / (1 << F)


# ---- reciprocal ------------------------------------------------------------------------------

@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_reciprocal_relative_error_on_its_domain(rounding):
    """<= 2^-12 relative for 2^-16 <= x <= 4 (the documented domain at f = 16, 2 iterations),
    including the smallest positive value and the powers of two where normalization switches."""
    rng = np.random.default_rng(7)
    xs = np.concatenate([rng.uniform(2 ** -16, 4, 3000), np.geomspace(2 ** -16, 4, 2000),
                         2.0 ** np.arange(-16, 3), 2.0 ** np.arange(-16, 3) * (1 - 2 ** -16), [4.0]])
    X = enc(xs)
    X = X[X >= 1]
    M = FixedModel(rounding)
    got = decoded(run(fx.reciprocal(M, "r", M.encode(X), F, (1, int(X.max())))))
    rel = np.abs(got * (X / (1 << F)) - 1)
    assert rel.max() <= 2 ** -12
    assert M.rounds == 7      # normalize, x v, 2 x 2 Newton, the final truncation (model counts)


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_reciprocal_large_divisors_absolute_error(rounding):
    """Beyond the relative domain: |error| <= 2^-15 + 2^-14.2 / x (the documented general bound)."""
    xs = np.concatenate([np.geomspace(4, 2 ** 14, 2000), [2.0 ** 14 - 2 ** -16]])
    X = enc(xs)
    M = FixedModel(rounding)
    got = decoded(run(fx.reciprocal(M, "r", M.encode(X), F, (int(X.min()), int(X.max())))))
    x = X / (1 << F)
    assert np.all(np.abs(got - 1 / x) <= 2 ** -15 + 2 ** -14.2 / x)


def test_reciprocal_more_iterations_are_more_accurate():
    X = enc(np.geomspace(2 ** -10, 1, 500))
    errs = []
    for k in (1, 2, 3):
        M = FixedModel("random")
        got = decoded(run(fx.reciprocal(M, "r", M.encode(X), F, (int(X.min()), int(X.max())), k)))
        errs.append(np.abs(got * (X / (1 << F)) - 1).max())
    assert errs[0] > 2 ** -8 > errs[1] and errs[2] <= errs[1]


def test_reciprocal_refuses_a_range_with_zero_or_negatives():
    for rng in ((0, 100), (-5, 100), (-100, -1)):
        with pytest.raises(fx.FixedPointError, match="must be positive"):
            fx.reciprocal_schedule(rng, F)


# ---- sigmoid ---------------------------------------------------------------------------------

@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_sigmoid_absolute_error_for_all_inputs(rounding):
    """<= 1e-3 everywhere: random, the clipping points +-8 and their neighbours, 0, tiny and huge
    magnitudes up to the range's end."""
    rng = np.random.default_rng(3)
    top = 2.0 ** 40
    xs = np.concatenate([rng.uniform(-12, 12, 4000), rng.uniform(-top, top, 500), np.linspace(-9, 9, 721),
                         [0, 2 ** -16, -2 ** -16, 8, -8, 8 + 2 ** -16, -8 - 2 ** -16, top, -top, 1e6, -1e6]])
    X = enc(xs)
    M = FixedModel(rounding)
    got = decoded(run(fx.sigmoid(M, "s", M.encode(X), F, (-int(top) << F, int(top) << F))))
    exact = 0.5 * (1 + np.tanh(X / (1 << F) / 2))      # = 1/(1+e^-x) without overflow
    assert np.abs(got - exact).max() <= fx.SIG_ERROR
    assert np.abs(got - exact).max() <= 6e-4              # the derived bound, with room to spare


def test_sigmoid_polynomial_error_is_as_documented():
    w = np.linspace(-1, 1, 200001)
    q = np.polynomial.polynomial.polyval(w * w, fx.SIG_COEFFS)
    exact = 0.5 * (1 + np.tanh(4 * w))
    assert np.abs(0.5 + w * q - exact).max() <= 1.9e-4 + 1e-7


# ---- exp -------------------------------------------------------------------------------------

@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("top", [0.25, 3.0, 10.0, 20.0])
def test_exp_relative_error(rounding, top):
    """|result - 2^f e^x| <= 2^f e^x 2^(k - 20.9) + 2, k the number of squarings."""
    xs = np.concatenate([np.linspace(-top, top, 1501), [0, top, -top, 2 ** -16]])
    X = enc(xs)
    rng = (-int(enc([top])[0]), int(enc([top])[0]))
    M = FixedModel(rounding)
    got = np.array([int(v) for v in run(fx.exp(M, "e", M.encode(X), F, rng))], dtype=np.float64)
    exact = np.exp(X / (1 << F)) * (1 << F)
    k = fx.exp_halvings(rng, F)
    assert np.all(np.abs(got - exact) <= exact * 2.0 ** (k - 20.9) + 2)


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("lo", [-1e3, -1e5, -1e7])
def test_exp_of_a_range_reaching_far_below_zero_is_clipped_not_squared(rounding, lo):
    """A declared range far below zero must not raise the number of squarings (k would reach 26 at
    -1e7 and the error bound 2^(k - 20.9) would be meaningless): exp clips x at -exp_floor(f), where
    e^x is below a quarter unit, so k follows the top of the range; the bound and the analysed output
    interval hold for every x, including x far below the clip."""
    xs = np.concatenate([np.linspace(-20, 2, 881), [lo, lo / 2, 2.0, 0.0, -1.0]])
    X = enc(xs)
    rng = (int(enc([lo])[0]), int(enc([2.0])[0]))
    M = FixedModel(rounding)
    got = np.array([int(v) for v in run(fx.exp(M, "e", M.encode(X), F, rng))], dtype=np.float64)
    exact = np.exp(X / (1 << F)) * (1 << F)
    k = fx.exp_halvings(rng, F)
    assert k <= 6
    assert np.all(np.abs(got - exact) <= exact * 2.0 ** (k - 20.9) + 2)
    out_lo, out_hi = fx.exp_schedule(rng, F).out
    assert out_lo <= got.min() and got.max() <= out_hi


def test_exp_refuses_more_fractional_bits_than_its_internal_precision_allows():
    with pytest.raises(fx.FixedPointError, match="f <= 22"):
        fx.exp_schedule((-(1 << 26) // 10, (1 << 26) // 10), 26)


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_reciprocal_output_interval_holds_for_every_iteration_count(iterations):
    xs = np.concatenate([np.linspace(1 / 16, 4, 2001), [4.0, 3.999, 0.5, 1 / 16]])
    X = enc(xs)
    rng = (int(enc([1 / 16])[0]), int(enc([4.0])[0]))
    M = FixedModel("low")
    got = np.array([int(v) for v in run(fx.reciprocal(M, "r", M.encode(X), F, rng, iterations))])
    out_lo, out_hi = fx.reciprocal_schedule(rng, F, iterations).out
    assert out_lo <= got.min() and got.max() <= out_hi


def test_exp_refuses_results_beyond_the_release_range():
    with pytest.raises(fx.FixedPointError, match="e\\^x could reach"):
        fx.exp_schedule((0, 40 << F), F)


# ---- the range analysis and the builder ------------------------------------------------------

def _fx_circuit(lo=-100.0, hi=100.0, length=10):
    b = CircuitBuilder("fx")
    x = b.fixed_input("x", "a", length, lo, hi)
    y = b.fixed_input("y", "b", length, 0.5, 4.0)
    b.output("z", x * y, ["a"])
    b.output("q", x / y, ["a"])
    b.output("s", b.sigmoid(x), ["a"])
    b.output("e", b.exp(y), ["a"])
    b.output("sq", b.square_of_sum(x), ["a"])
    b.output("sel", b.select_fixed(x < y, x, y), ["a"])
    return b


def test_builder_picks_the_128_bit_ring_and_the_node_accepts_it():
    c = _fx_circuit().build("replicated3")
    assert c.ring_bits == 128
    plan = circuit.validate(c, ["a", "b", "c"], "replicated3")
    assert plan.ring_bits == 128
    assert set(plan.operands) == {op.out for op in c.ops if op.kind in ranges.FIXED_OPS}
    assert [o.frac_bits for o in c.outputs] == [16] * 6
    a = ranges.analysis(c, "replicated3")
    assert a.leak_bits <= -40


def test_integer_circuits_stay_in_the_64_bit_ring():
    b = CircuitBuilder("ints")
    x = b.fixed_input("x", "a", 4, -10.0, 10.0)
    b.output("s", (x + x).sum(), ["a"])
    c = b.build("replicated3")
    assert c.ring_bits == 0
    c.ring_bits = 128       # a coordinator asking for more than needed: the node refuses
    with pytest.raises(ranges.RangeError, match="the range analysis picks 64"):
        circuit.validate(c, ["a", "b", "c"], "replicated3")


def test_node_refuses_a_truncating_circuit_declared_64_bit():
    c = _fx_circuit().build("replicated3")
    c.ring_bits = 0
    with pytest.raises(ranges.RangeError, match=r"op 0 \(mul_trunc_1, mul_trunc\): fixed-point truncation needs "
                                                r"the 128-bit ring"):
        circuit.validate(c, ["a", "b", "c"], "replicated3")


def test_overflow_is_refused_naming_the_op():
    b = CircuitBuilder("big")
    x = b.fixed_input("x", "a", 2, -2.0 ** 40, 2.0 ** 40)
    y = x * x          # 2^112 before truncation: fits 128 bits but not the leakage budget
    b.output("y", y * y, ["a"])
    with pytest.raises(ranges.RangeError, match=r"op 0 \(mul_trunc_1, mul_trunc\): the job's truncations could "
                                                r"leak more than 2\^-40"):
        b.build("replicated3")
    b = CircuitBuilder("wrap")
    x = b.fixed_input("x", "a", 2, -2.0 ** 40, 2.0 ** 40)
    p = b.mul(b.mul(x.arr, x.arr), b.mul(x.arr, x.arr))      # integer products: 2^224 would wrap
    b.output("p", p, ["a"])
    with pytest.raises(ranges.RangeError, match=r"op 2 \(mul_3, mul\): its value could reach -?about 2\^224, outside the replicated3 engine.s signed range \|v\| < 2\^127"):
        b.build("replicated3")


def test_leakage_budget_counts_every_element():
    ok = _fx_circuit(length=1000).build("replicated3")
    assert ranges.analysis(ok, "replicated3").leak_bits <= -40
    # the same circuit over a billion elements exceeds the 2^-40 budget: refused, naming the op
    b = CircuitBuilder("many")
    x = b.fixed_input("x", "a", 1 << 30, -1000.0, 1000.0)
    b.output("z", b.sigmoid(x), ["a"])
    with pytest.raises(ranges.RangeError, match=r"op 0 \(sigmoid_1, sigmoid\): the job's truncations could leak"):
        b.build("replicated3")


def test_shamir_refuses_truncation_and_says_why():
    c = _fx_circuit().build()
    with pytest.raises(ranges.RangeError) as err:
        circuit.validate(c, ["a", "b", "c"], "shamir")
    msg = str(err.value)
    assert msg.startswith("op 0 (mul_trunc_1, mul_trunc): truncation is not available on the shamir engine")
    assert "2f = 32" in msg and "40 bits" in msg and "60" in msg and "\n" not in msg


def test_shamir_runs_fixed_point_without_truncation():
    b = CircuitBuilder("fx-shamir")
    x = b.fixed_input("x", "a", 3, -1000.0, 1000.0)
    y = b.fixed_input("y", "b", 3, -1000.0, 1000.0)
    b.output("s", (x + y - 0.5) * 3, ["a"])
    b.output("m", b.select_fixed(x < y, x, y), ["a"])
    c = b.build("shamir")
    assert c.ring_bits == 0
    circuit.validate(c, ["a", "b", "c"], "shamir")


def test_reciprocal_of_a_range_with_zero_is_refused_naming_the_op():
    b = CircuitBuilder("div")
    x = b.fixed_input("x", "a", 3, -1.0, 1.0)
    y = b.fixed_input("y", "b", 3, 0.0, 4.0)
    b.output("q", x / y, ["a"])
    with pytest.raises(ranges.RangeError, match=r"op 0 \(reciprocal_1, reciprocal\): the divisor's range"):
        b.build("replicated3")


# ---- encoding at the owner, decoding at the recipient ----------------------------------------

def test_owner_encodes_and_range_checks_floats():
    decl = cpb.InputDecl(name="x", length=4, lo=encode_fixed(-2.5, F), hi=encode_fixed(2.5, F), frac_bits=F)
    got = check_values("x", [1.5, -2.5, 0.1, 2], decl, "in.yaml")
    assert got.tolist() == [98304, -163840, round(0.1 * 65536), 131072]
    assert check_values("x", np.array([0.5, 1, 2, -1]), decl, "in.npz").tolist() == [32768, 65536, 131072, -65536]
    with pytest.raises(InputError) as err:
        check_values("x", [1.0, 2.6, 0.0, 0.0], decl, "in.yaml")
    assert str(err.value) == "input x: a value lies outside the declared range [-2.5, 2.5] (16 fractional bits)"
    assert "2.6" not in str(err.value) and "in.yaml: x[1]" in err.value.detail
    with pytest.raises(InputError, match="not a finite number"):
        check_values("x", [1.0, float("nan"), 0.0, 0.0], decl, "in.yaml")
    with pytest.raises(InputError, match="expected numbers"):
        check_values("x", [1.0, "2", 0.0, 0.0], decl, "in.yaml")


def test_integer_inputs_still_refuse_floats():
    decl = cpb.InputDecl(name="n", length=1, lo=0, hi=10)
    with pytest.raises(InputError, match="expected integers"):
        check_values("n", [1.5], decl, "in.yaml")


def test_recipient_prints_fixed_point_outputs_as_decimals():
    assert render([98304], {"name": "z", "frac_bits": 16}) == 1.5
    assert render([-32768, 65536 * 3], {"name": "z", "frac_bits": 16}) == [-0.5, 3]
    assert render([98304], {"name": "z", "frac_bits": 16, "public_divisor": "2"}) == 0.75


def test_square_of_a_sum_is_exact_then_truncated_once():
    """(sum x)^2 over 1000 values in [-100, 100]: the sum needs no truncation, the square one,
    with the bound the analysis derives from the sum's range (n max|x|)^2."""
    rng = np.random.default_rng(5)
    xs = rng.uniform(-100, 100, 1000)
    X = enc(xs)
    b = CircuitBuilder("sq")
    x = b.fixed_input("x", "a", 1000, -100.0, 100.0)
    b.output("sq", b.square_of_sum(x), ["a"])
    c = b.build("replicated3")
    plan = circuit.validate(c, ["a", "b", "c"], "replicated3")
    (op,) = [o for o in c.ops if o.kind == cpb.OP_MUL_TRUNC]
    lo, hi = plan.operands[op.out]
    assert hi == (1000 * (100 << F)) ** 2 and lo == -hi
    M = FixedModel("random")
    s = M.encode([int(X.sum())])
    got = run(M.mul_trunc("sq", s, s, F, fx.hull_bits((lo, hi))))
    exact = (X.sum() / (1 << F)) ** 2
    assert abs(int(got[0]) / (1 << F) - exact) <= 2 * 2 ** -F
    assert math.isclose(int(got[0]) / (1 << F), xs.sum() ** 2, rel_tol=1e-6)


@pytest.mark.parametrize("ring_bits", [0, 64, 256])
def test_node_refuses_a_job_whose_ring_bits_disagree(ring_bits):
    """What a node's Prepare runs (jobspec.check_job_spec): a coordinator that declares the
    64-bit ring (or nonsense) for a truncating circuit, with a matching fingerprint, is refused."""
    from mpcnode.circuit import CircuitError
    from mpcnode.computation.spec import Computation
    from mpcnode.jobspec import check_job_spec
    c = _fx_circuit().build("replicated3")
    c.ring_bits = ring_bits
    comp = Computation(c, ("a", "b", "c"), 1, "replicated3", "none")
    spec = comp.job_spec("job-1", 60)
    with pytest.raises(CircuitError, match="ring"):
        check_job_spec(spec, "a", ["b", "c"])
    c.ring_bits = 128
    ok = Computation(c, ("a", "b", "c"), 1, "replicated3", "none").job_spec("job-1", 60)
    assert check_job_spec(ok, "a", ["b", "c"]).plan.ring_bits == 128


def test_truncating_an_input_only_partys_value_is_refused():
    """Nothing checks an input-only organization's input inside MPC, and a truncation is private
    only within its bound: such a circuit is refused, naming the op."""
    b = CircuitBuilder("fx-io")
    x = b.fixed_input("x", "outsider", 3, -10.0, 10.0)
    y = b.fixed_input("y", "a", 3, -10.0, 10.0)
    b.output("p", x * y, ["a"])
    b.output("s", y + y, ["a"])
    c = b.build("replicated3")
    with pytest.raises(circuit.CircuitError, match=r"op 0 \(mul_trunc_1\): a fixed-point op on a value computed from "
                                                   r"an input-only party's input"):
        circuit.validate(c, ["a", "b", "c"], "replicated3", ["outsider"])
    circuit.validate(c, ["a", "b", "outsider"], "replicated3")      # a compute party's own input: checked


def test_recipient_decoding_is_exact_for_every_value():
    """The vectorized decoding (|v| < 2^53) equals the exact fraction; larger values stay exact."""
    from fractions import Fraction
    rng = np.random.default_rng(9)
    v = [int(a) for a in rng.integers(-(1 << 53) + 1, 1 << 53, 5000)] + [(1 << 53) - 1, -(1 << 53) + 1, 0, 1, -1]
    got = render(v, {"name": "z", "frac_bits": 16})
    assert all(Fraction(g) == Fraction(x, 1 << 16) for g, x in zip(got, v))
    assert render([(1 << 62) + 1], {"name": "z", "frac_bits": 16}) == "4611686018427387905/65536"


def test_leakage_counts_broadcast_products_per_element():
    """A length-1 factor times n values truncates n products: the budget counts n."""
    def leak(n: int) -> float:
        b = CircuitBuilder("bc")
        s = b.fixed_input("s", "a", 1, -100.0, 100.0)
        x = b.fixed_input("x", "a", n, -100.0, 100.0)
        b.output("p", s * x, ["a"])
        return ranges.analysis(b.build("replicated3"), "replicated3").leak_bits
    assert leak(1024) == pytest.approx(leak(1) + 10)


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_exp_with_more_fractional_bits_than_its_internal_precision_allows_unshifted(rounding):
    """f = 20, |x| <= 20: x / 2^k needs f + k = 27 > 24 bits, so the reduction is a truncation."""
    f = 20
    xs = np.linspace(-20, 20, 801)
    X = np.rint(xs * (1 << f)).astype(np.int64)
    rng = (-(20 << f), 20 << f)
    k = fx.exp_halvings(rng, f)
    assert f + k > fx.EXP_FRAC
    M = FixedModel(rounding)
    got = np.array([int(v) for v in run(fx.exp(M, "e", M.encode(X), f, rng))], dtype=np.float64)
    exact = np.exp(X / (1 << f)) * (1 << f)
    assert np.all(np.abs(got - exact) <= exact * 2.0 ** (k - 20.9) + 2)


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_reciprocal_of_divisors_wider_than_its_internal_precision(rounding):
    """x up to 2^20 (36 bits encoded > F = 30): the normalized value is truncated to F bits first."""
    xs = np.concatenate([np.geomspace(0.5, 2 ** 20, 1500), [2.0 ** 20]])
    X = enc(xs)
    rng = (int(X.min()), int(X.max()))
    assert fx.bits(rng[1]) > fx.RECIP_FRAC
    M = FixedModel(rounding)
    got = decoded(run(fx.reciprocal(M, "r", M.encode(X), F, rng)))
    x = X / (1 << F)
    assert np.all(np.abs(got - 1 / x) <= 2 ** -15 + 2 ** -14.2 / x)
