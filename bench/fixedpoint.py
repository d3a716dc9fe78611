"""Fixed-point workloads of `make bench` (issue 13): real node processes on localhost (the same
Cluster as every other Parley line, bench/parley_bench.py), replicated3 with its 128-bit ring, 3
compute nodes, timed from submission until the recipient holds the reconstructed result.

* fxp_mul: n products x * y of fixed-point inputs (f = 16) in [-100, 100], one round;
* fxp_recip: n reciprocals 1/y, y in [1/16, 4] (the reciprocal's relative-error domain at f = 16);
* fxp_sigmoid: n sigmoids of x in [-16, 16], one in a hundred of magnitude up to 10^6.

The inputs are drawn on the fixed-point grid (multiples of 2^-16), so the error printed against
float64 is the computation's own, not the input's rounding; the owner still encodes them from
float64 (inputs.py). The result is checked against the documented bounds: a workload whose error
exceeds them fails.
"""
from __future__ import annotations

import numpy as np

from mpcnode.computation.builder import CircuitBuilder
from mpcnode.protocols import fixedpoint

from .parley_bench import PARTIES, RECIPIENT, Figures, Setup, run_circuit

F = 16
WORKLOADS = {"fxp_mul": 1_000_000, "fxp_recip": 100_000, "fxp_sigmoid": 100_000}
# the bound each line is held to (docs/protocols.md "Fixed-point numbers")
BOUNDS = {"fxp_mul": 2.0 ** -15, "fxp_recip": 2.0 ** -12, "fxp_sigmoid": fixedpoint.SIG_ERROR}
ERROR_KIND = {"fxp_mul": "max_abs_err", "fxp_recip": "max_rel_err", "fxp_sigmoid": "max_abs_err"}
SETUP = Setup("replicated3", 3)


def _grid(values: np.ndarray) -> np.ndarray:
    return np.rint(values * (1 << F)) / (1 << F)


def workload(name: str, n: int, seed: int = 13):
    """(circuit, float inputs of party 0, output name, float64 reference)."""
    rng = np.random.default_rng(seed)
    b = CircuitBuilder(f"bench-{name}")
    owner = PARTIES[0]
    if name == "fxp_mul":
        x, y = _grid(rng.uniform(-100, 100, n)), _grid(rng.uniform(-100, 100, n))
        fx, fy = b.fixed_input("x", owner, n, -100.0, 100.0, F), b.fixed_input("y", owner, n, -100.0, 100.0, F)
        b.output("out", fx * fy, [RECIPIENT])
        return b.build("replicated3"), {"x": x, "y": y}, "out", x * y
    if name == "fxp_recip":
        y = _grid(rng.uniform(1 / 16, 4, n))
        y[:2] = [1 / 16, 4.0]
        fy = b.fixed_input("y", owner, n, 1 / 16, 4.0, F)
        b.output("out", b.reciprocal(fy), [RECIPIENT])
        return b.build("replicated3"), {"y": y}, "out", 1 / y
    x = _grid(rng.uniform(-16, 16, n))
    huge = rng.random(n) < 0.01
    x[huge] = _grid(rng.uniform(-1e6, 1e6, int(huge.sum())))
    fx_ = b.fixed_input("x", owner, n, -1e6, 1e6, F)
    b.output("out", b.sigmoid(fx_), [RECIPIENT])
    return b.build("replicated3"), {"x": x}, "out", 0.5 * (1 + np.tanh(x / 2))


async def run_fixed(name: str, n: int) -> tuple[Figures, float]:
    """The figures and the error (absolute or relative, ERROR_KIND) against float64."""
    circuit, data, output, want = workload(name, n)
    figs = await run_circuit(circuit, data, output, SETUP)
    got = np.array(figs.result, dtype=np.float64) / (1 << F)
    err = np.abs(got - want)
    worst = float((err / np.abs(want)).max() if ERROR_KIND[name] == "max_rel_err" else err.max())
    if not worst <= BOUNDS[name]:
        raise RuntimeError(f"{name}: error {worst:.3g} exceeds the documented {BOUNDS[name]:.3g}")
    return figs, worst
