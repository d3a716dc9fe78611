"""Fixed point on the real 128-bit replicated engine, in-process: three parties over
MemoryNetwork run the node's own job code (jobrun.run_job: the engine the job's ring_bits asks
for, the executor and its fixed-point dispatch, fixedexec.py), and the recipients' Z_2^64 output
shares are reconstructed here. Results are compared with float64 within the documented bounds
(docs/protocols.md "Fixed-point numbers"), on random, boundary and adversarial values."""
from __future__ import annotations

import asyncio

import numpy as np

from mpcnode import replicated
from mpcnode.circuit import validate
from mpcnode.computation.builder import CircuitBuilder
from mpcnode.computation.spec import Computation
from mpcnode.exchange import MemoryNetwork
from mpcnode.inputs import check_values
from mpcnode.jobrun import run_job
from mpcnode.protocols import fixedpoint

PARTIES = ["a", "b", "c"]
F = 16


def grid(v) -> np.ndarray:
    return np.rint(np.asarray(v, dtype=np.float64) * (1 << F)) / (1 << F)


def run(circuit, data: dict[str, dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], int]:
    """{output: decoded floats}, and the rounds party 0 used. `data`: {party: {input: floats}},
    encoded the way a node encodes its own file (inputs.check_values)."""
    comp = Computation(circuit, tuple(PARTIES), 1, "replicated3", "none")
    spec = comp.job_spec("fx-job", timeout_s=60)
    plan = validate(spec.circuit, PARTIES, "replicated3")
    decls = {d.name: d for d in circuit.inputs}
    net = MemoryNetwork(3, timeout_s=60)
    exchanges = [net.exchange(i) for i in range(3)]

    def mine(p: str) -> dict[str, np.ndarray]:
        return {k: check_values(k, v, decls[k], "test") for k, v in data.get(p, {}).items()}

    async def main():
        return await asyncio.gather(*(run_job(ex, spec, plan, PARTIES, mine(p), lambda d: ({}, []))
                                      for p, ex in zip(PARTIES, exchanges)))

    results = asyncio.run(main())
    out = {}
    for o in circuit.outputs:
        shares = {i: r.outputs[o.name] for i, r in enumerate(results)}
        ints = replicated.to_signed(replicated.reconstruct_checked(shares))
        out[o.name] = ints.astype(np.float64) / (1 << o.frac_bits)
    return out, exchanges[0].stats.rounds


def test_products_random_and_at_the_declared_bounds():
    rng = np.random.default_rng(1)
    n = 2000
    x, y = grid(rng.uniform(-1000, 1000, n)), grid(rng.uniform(-1000, 1000, n))
    x[:4], y[:4] = [-1000, 1000, -1000, 2 ** -16], [-1000, 1000, 1000, -(2 ** -16)]
    b = CircuitBuilder("fx-mul")
    fx, fy = b.fixed_input("x", "a", n, -1000.0, 1000.0), b.fixed_input("y", "b", n, -1000.0, 1000.0)
    b.output("p", fx * fy, ["a"])
    b.output("q", fx * 0.75, ["a"])
    b.output("s", b.square_of_sum(fx[:100]), ["a"])
    out, _ = run(b.build("replicated3"), {"a": {"x": x}, "b": {"y": y}})
    assert np.abs(out["p"] - x * y).max() < 2 ** -15
    assert np.abs(out["q"] - x * 0.75).max() < 2 ** -15
    assert abs(out["s"][0] - x[:100].sum() ** 2) < 2 ** -15


def test_one_level_of_fixed_point_products_costs_one_round():
    """Two MUL_TRUNC ops of the same level are one reduce_trunc: the same rounds as one."""
    def circ(two: bool):
        b = CircuitBuilder("fx-fuse")
        fx, fy = b.fixed_input("x", "a", 10, -10.0, 10.0), b.fixed_input("y", "b", 10, -10.0, 10.0)
        b.output("p", fx * fy, ["a"])
        if two:
            b.output("q", fx * fx, ["a"])
        return b.build("replicated3")
    data = {"a": {"x": grid(np.linspace(-10, 10, 10))}, "b": {"y": grid(np.linspace(10, -10, 10))}}
    _, one = run(circ(False), data)
    out, two = run(circ(True), data)
    assert two == one
    assert np.abs(out["q"] - data["a"]["x"] ** 2).max() < 2 ** -15


def test_reciprocal_and_division_near_zero_and_at_the_top():
    rng = np.random.default_rng(2)
    y = grid(np.concatenate([rng.uniform(2 ** -16, 4, 500), 2.0 ** np.arange(-16, 3), [4.0, 2 ** -16 * 3]]))
    n = len(y)
    x = grid(rng.uniform(-8, 8, n))
    b = CircuitBuilder("fx-div")
    fy = b.fixed_input("y", "b", n, 2.0 ** -16, 4.0)
    fx = b.fixed_input("x", "a", n, -8.0, 8.0)
    b.output("r", b.reciprocal(fy), ["a"])
    b.output("d", fx / fy, ["a"])
    out, _ = run(b.build("replicated3"), {"a": {"x": x}, "b": {"y": y}})
    assert np.abs(out["r"] * y - 1).max() <= 2 ** -12
    assert np.all(np.abs(out["d"] - x / y) <= np.abs(x) / y * 2 ** -12 + 2 ** -14)


def test_sigmoid_every_magnitude():
    rng = np.random.default_rng(3)
    top = float(2 ** 30)
    x = grid(np.concatenate([rng.uniform(-12, 12, 1000), rng.uniform(-top, top, 100),
                             [0, 8, -8, 8 + 2 ** -16, -8 - 2 ** -16, top, -top, 2 ** -16]]))
    b = CircuitBuilder("fx-sig")
    b.output("s", b.sigmoid(b.fixed_input("x", "a", len(x), -top, top)), ["a"])
    out, _ = run(b.build("replicated3"), {"a": {"x": x}})
    assert np.abs(out["s"] - 0.5 * (1 + np.tanh(x / 2))).max() <= fixedpoint.SIG_ERROR


def test_exp_relative_error():
    x = grid(np.concatenate([np.linspace(-10, 10, 801), [10.0, -10.0, 0.0]]))
    b = CircuitBuilder("fx-exp")
    b.output("e", b.exp(b.fixed_input("x", "a", len(x), -10.0, 10.0)), ["a"])
    out, _ = run(b.build("replicated3"), {"a": {"x": x}})
    k = fixedpoint.exp_halvings((-10 << F, 10 << F), F)
    exact = np.exp(x)
    assert np.all(np.abs(out["e"] - exact) <= exact * 2.0 ** (k - 20.9) + 2 * 2 ** -16)


def test_exp_of_a_range_far_below_zero_on_the_engine():
    """The clip at -exp_floor(f) runs on the real engine: values far below it give about 0."""
    x = grid(np.array([2.0, 1.0, 0.0, -1.0, -12.0, -13.0, -5e4, -1e5]))
    b = CircuitBuilder("fx-exp-low")
    b.output("e", b.exp(b.fixed_input("x", "a", len(x), -1e5, 2.0)), ["a"])
    out, _ = run(b.build("replicated3"), {"a": {"x": x}})
    k = fixedpoint.exp_halvings((int(-1e5) << F, 2 << F), F)
    exact = np.exp(x)
    assert np.all(np.abs(out["e"] - exact) <= exact * 2.0 ** (k - 20.9) + 2 * 2 ** -16)


def test_integer_ops_on_fixed_values_in_the_wide_ring():
    """compare and select on fixed values next to products: the comparisons run on the narrow
    engine inside the 128-bit job."""
    x, y = grid([-2.5, 0.0, 3.25, 7.0]), grid([1.0, -1.0, 3.25, 9.5])
    b = CircuitBuilder("fx-sel")
    fx, fy = b.fixed_input("x", "a", 4, -10.0, 10.0), b.fixed_input("y", "b", 4, -10.0, 10.0)
    prod = fx * fy
    b.output("m", b.select_fixed(fx[0] < fy[0], prod[:2], fx[:2] + fy[:2]), ["a"])
    b.output("lt", fx.lt(fy), ["a"])
    out, _ = run(b.build("replicated3"), {"a": {"x": x}, "b": {"y": y}})
    assert out["lt"].tolist() == [1, 0, 0, 1]
    assert np.abs(out["m"] - (x * y)[:2]).max() < 2 ** -15


def test_truncating_small_values_by_many_bits():
    """d larger than the operand's bits: the bound becomes d (the engine needs d <= L); x / 2^20
    of values below 2^18 encoded is 0 or within 2 units of it."""
    x = grid([0.0, 1.5, -2.0, 3.99])
    b = CircuitBuilder("fx-small")
    fx = b.fixed_input("x", "a", 4, -4.0, 4.0)
    from mpcnode.computation.builder import Fixed
    b.output("t", Fixed(b.trunc(fx.arr, 20), 0), ["a"])
    out, _ = run(b.build("replicated3"), {"a": {"x": x}})
    assert np.all(np.abs(out["t"] - np.floor(x * 2 ** F / 2 ** 20)) <= 2)
