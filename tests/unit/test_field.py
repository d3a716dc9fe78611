"""F_p arithmetic (p = 2^61 - 1) on uint64 arrays, checked against Python integers."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mpcnode import field

P = field.P
EDGES = [0, 1, 2, P - 2, P - 1, (1 << 32) - 1, 1 << 32, (1 << 32) + 1, (1 << 61) - 2, (1 << 60), (1 << 29),
         (P - 1) // 2, (P + 1) // 2]
elements = st.one_of(st.sampled_from(EDGES), st.integers(0, P - 1))
vectors = st.lists(elements, min_size=1, max_size=40)
signed = st.one_of(st.sampled_from([0, 1, -1, field.MAX_SIGNED - 1, -(field.MAX_SIGNED - 1), P, -P, P - 1, -(P - 1),
                                    P + 1, -(P + 1), (1 << 63) - 1, -(1 << 63) + 1, 1 << 62, -(1 << 62)]),
                   st.integers(-(1 << 63) + 1, (1 << 63) - 1))


def arr(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def ints(a: np.ndarray) -> list[int]:
    assert a.dtype == np.uint64
    return [int(v) for v in a.reshape(-1)]


def canonical(a: np.ndarray) -> bool:
    return a.dtype == np.uint64 and (a.size == 0 or int(a.max()) < P)


def test_modulus_is_the_mersenne_prime() -> None:
    assert P == 2**61 - 1
    assert pow(3, P - 1, P) == 1 and pow(5, P - 1, P) == 1  # Fermat witnesses


@given(vectors, st.data())
def test_add_sub_mul_neg_match_python(xs: list[int], data: st.DataObject) -> None:
    ys = data.draw(st.lists(elements, min_size=len(xs), max_size=len(xs)))
    a, b = arr(xs), arr(ys)
    for got, want in [(field.add(a, b), [(x + y) % P for x, y in zip(xs, ys)]),
                      (field.sub(a, b), [(x - y) % P for x, y in zip(xs, ys)]),
                      (field.mul(a, b), [(x * y) % P for x, y in zip(xs, ys)]),
                      (field.neg(a), [(-x) % P for x in xs])]:
        assert canonical(got)
        assert ints(got) == want
    # inputs are not modified in place
    assert ints(a) == xs and ints(b) == ys


@pytest.mark.parametrize("x", EDGES)
@pytest.mark.parametrize("y", EDGES)
def test_edge_values_all_pairs(x: int, y: int) -> None:
    a, b = arr([x]), arr([y])
    assert ints(field.add(a, b)) == [(x + y) % P]
    assert ints(field.sub(a, b)) == [(x - y) % P]
    assert ints(field.mul(a, b)) == [(x * y) % P]


@given(vectors, elements)
def test_mul_const_and_broadcast(xs: list[int], c: int) -> None:
    assert ints(field.mul_const(arr(xs), c)) == [(x * c) % P for x in xs]
    assert ints(field.mul_const(arr(xs), -c)) == [(-x * c) % P for x in xs]
    assert ints(field.mul(arr(xs), np.uint64(c))) == [(x * c) % P for x in xs]


@given(vectors)
def test_sum_all_and_dot(xs: list[int]) -> None:
    a = arr(xs)
    assert int(field.sum_all(a)) == sum(xs) % P
    assert int(field.dot(a, a)) == sum(x * x for x in xs) % P


def test_sum_all_of_many_max_values_does_not_wrap() -> None:
    a = np.full(1_000_003, P - 1, dtype=np.uint64)
    assert int(field.sum_all(a)) == (1_000_003 * (P - 1)) % P
    assert field.sum_all(np.zeros(0, dtype=np.uint64)).shape == ()
    assert int(field.sum_all(np.zeros(0, dtype=np.uint64))) == 0


def test_sum_of_a_million_48_bit_values_is_exact() -> None:
    rng = np.random.default_rng(1)
    v = rng.integers(-(1 << 47), 1 << 47, size=1_000_000, dtype=np.int64)
    v[:1000] = (1 << 47) - 1  # push the partial sums toward the edge
    enc = field.asfield(v)
    total = int(field.to_signed(field.sum_all(enc)))
    assert total == sum(int(x) for x in v)
    assert abs(total) < field.MAX_SIGNED
    # unsigned 48-bit values: the true sum (~2^68) exceeds 64 bits; mod p it must still be exact
    u = rng.integers(0, 1 << 48, size=1_000_000, dtype=np.uint64)
    assert int(field.sum_all(u)) == sum(int(x) for x in u) % P


def test_sum_all_along_an_axis() -> None:
    rng = np.random.default_rng(2)
    m = rng.integers(0, P, size=(23, 5), dtype=np.uint64)
    for axis in (0, 1):
        want = [sum(int(v) for v in line) % P for line in np.moveaxis(m, axis, -1).reshape(-1, m.shape[axis])]
        assert ints(field.sum_all(m, axis=axis)) == want


@given(st.lists(signed, min_size=1, max_size=30))
def test_asfield_encodes_signed_values_mod_p(vs: list[int]) -> None:
    enc = field.asfield(np.array(vs, dtype=np.int64))
    assert canonical(enc)
    assert ints(enc) == [v % P for v in vs]
    # Python ints (object arrays) take the exact path
    assert ints(field.asfield(np.array(vs + [1 << 70, -(1 << 70)], dtype=object))) == [
        v % P for v in vs + [1 << 70, -(1 << 70)]]


@given(st.lists(st.integers(-(field.MAX_SIGNED - 1), field.MAX_SIGNED - 1), min_size=1, max_size=30))
def test_to_signed_round_trips_the_signed_range(vs: list[int]) -> None:
    dec = field.to_signed(field.asfield(vs))
    assert dec.dtype == np.int64
    assert [int(v) for v in dec] == vs


def test_to_signed_symmetric_range_boundaries() -> None:
    half = P // 2  # (p - 1) / 2: the largest positive value
    assert [int(v) for v in field.to_signed(arr([0, 1, half, half + 1, P - 1]))] == [0, 1, half, -half, -1]


@given(vectors, st.integers(0, 200))
@settings(max_examples=30)
def test_pow_and_inverse(xs: list[int], e: int) -> None:
    assert ints(field.pow_(arr(xs), e)) == [pow(x, e, P) for x in xs]
    for x in xs:
        if x:
            assert field.inv_scalar(x) * x % P == 1
            assert field.inv_scalar(x - P) * x % P == 1  # negative representatives too


def test_inverse_of_zero_raises() -> None:
    with pytest.raises(ZeroDivisionError):
        field.inv_scalar(0)
    with pytest.raises(ZeroDivisionError):
        field.inv_scalar(P)


def test_large_arrays_match_python() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, P, size=200_000, dtype=np.uint64)
    b = rng.integers(0, P, size=200_000, dtype=np.uint64)
    a[:len(EDGES)] = EDGES
    b[:len(EDGES)] = EDGES[::-1]
    prod = field.mul(a, b)
    idx = np.concatenate([np.arange(len(EDGES)), rng.integers(0, a.size, 2000)])
    assert all(int(prod[i]) == int(a[i]) * int(b[i]) % P for i in idx)
    assert canonical(prod) and canonical(field.add(a, b)) and canonical(field.sub(a, b))


def test_check_canonical_accepts_field_elements() -> None:
    a = arr([0, 1, P - 1])
    assert field.check_canonical(a, "x") is a
    assert field.check_canonical(np.zeros(0, dtype=np.uint64), "x").size == 0


@pytest.mark.parametrize("bad", [P, P + 1, 2**64 - 1, 2**63])
def test_check_canonical_rejects_values_at_or_above_p(bad: int) -> None:
    with pytest.raises(ValueError, match=r"peer data: element out of field range"):
        field.check_canonical(arr([1, bad, 2]), "peer data")


@pytest.mark.parametrize("dtype", [np.int64, np.uint32, np.float64, np.int8, object])
def test_check_canonical_rejects_wrong_dtypes(dtype) -> None:
    with pytest.raises(ValueError, match=r"peer data: expected uint64"):
        field.check_canonical(np.array([1, 2], dtype=dtype), "peer data")


@given(vectors, st.one_of(st.sampled_from([0, 1, 2, 7, (1 << 29), (1 << 32) - 1]), st.integers(0, (1 << 32) - 1)))
def test_mul_small_matches_python(xs: list[int], c: int) -> None:
    got = field.mul_small(arr(xs), c)
    assert canonical(got)
    assert ints(got) == [(x * c) % P for x in xs]


@pytest.mark.parametrize("c", [-1, 1 << 32, P])
def test_mul_small_rejects_constants_outside_32_bits(c: int) -> None:
    with pytest.raises(ValueError, match="0 <= c < 2\\^32"):
        field.mul_small(arr([1]), c)
