"""A plaintext model of the wide engine's fixed-point API, for choosing and checking the numerics of
protocols/fixedpoint.py: exact Python integers, and truncations that err by the most the real
protocol may (engines/replicated3_wide.py: floor(z / 2^d) - 1 .. floor(z / 2^d) + 2, i.e. strictly
within 2 units). It also asserts every bound a caller promises (|z| < 2^L for a truncation,
operands within a comparison's bit_length, 0 < x < 2^bits for normalize), so running the real
protocol code on it checks the schedules the range analysis uses. Tests only: never a runtime part."""
from __future__ import annotations

import numpy as np


class FixedModel:
    def __init__(self, rounding: str = "random", seed: int = 1):
        self.rounding = rounding               # "random", "low" (-1) or "high" (+2)
        self.rng = np.random.default_rng(seed)
        self.truncations: list[tuple[int, int]] = []    # (count, bound bits) as performed
        self.rounds = 0

    @staticmethod
    def encode(values) -> np.ndarray:
        return np.array([int(v) for v in np.asarray(values).reshape(-1)], dtype=object)

    def constant(self, p):
        return np.array(p, dtype=object)

    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b

    def neg(self, a):
        return -a

    def add_const(self, a, c):
        return a + c

    def mul_const(self, a, c):
        return a * c

    def mul_local(self, a, b):
        return a * b

    async def reduce(self, label, p):
        self.rounds += 1
        return p

    async def mul(self, label, a, b):
        self.rounds += 1
        return a * b

    async def trunc(self, label, x, d, bound_bits):
        self.rounds += 1
        worst = max(abs(int(v)) for v in x)
        if worst >= 1 << bound_bits:
            raise AssertionError(f"{label}: |x| = 2^{worst.bit_length() - 1}.. exceeds the promised 2^{bound_bits}")
        self.truncations.append((len(x), bound_bits))
        fl = np.array([int(v) >> d for v in x], dtype=object)
        if self.rounding == "low":
            return fl - 1
        if self.rounding == "high":
            return fl + 2
        return fl + self.rng.integers(-1, 3, len(x)).astype(object)

    async def mul_trunc(self, label, a, b, d, bound_bits):
        return await self.trunc(label, a * b, d, bound_bits)

    async def normalize(self, label, x, bits):
        self.rounds += 1
        if not all(0 < int(v) < 1 << bits for v in x):
            raise AssertionError(f"{label}: normalize needs 0 < x < 2^{bits}")
        return np.array([1 << (bits - int(v).bit_length()) for v in x], dtype=object)

    async def less_than(self, label, a, b, bit_length):
        self.rounds += 1
        for v in np.concatenate([a, b]):
            if abs(int(v)) >= 1 << bit_length:
                raise AssertionError(f"{label}: comparison operand beyond 2^{bit_length}")
        return np.array([int(int(x) < int(y)) for x, y in zip(a, b)], dtype=object)
