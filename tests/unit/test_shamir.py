"""Shamir sharing over F_p: reconstruction, privacy of any t shares, error detection and naming."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mpcnode import field, shamir
from mpcnode.randomness import random_field

P = field.P
NT = [(n, t) for n in range(3, 10) for t in range(1, (n - 1) // 2 + 1)]


def secret_vector(size: int = 17) -> np.ndarray:
    rng = np.random.default_rng(size)
    v = rng.integers(-(1 << 58), 1 << 58, size=size, dtype=np.int64)
    v[:3] = [0, 1, -1]
    return field.asfield(v)


def poly_eval(coeffs: list[int], x: int) -> int:
    return sum(c * pow(x, k, P) for k, c in enumerate(coeffs)) % P


@pytest.mark.parametrize("n,t", NT)
def test_share_and_reconstruct_from_every_t_plus_1_subset(n: int, t: int) -> None:
    v = secret_vector()
    shares = shamir.share(v, n, t)
    assert shares.shape == (n,) + v.shape and shares.dtype == np.uint64
    assert int(shares.max()) < P
    for subset in combinations(range(n), t + 1):
        assert np.array_equal(shamir.reconstruct({i: shares[i] for i in subset}), v)
    assert np.array_equal(shamir.reconstruct_checked({i: shares[i] for i in range(n)}, t), v)


@pytest.mark.parametrize("n,t", NT)
def test_shares_are_evaluations_of_a_degree_t_polynomial(n: int, t: int) -> None:
    v = secret_vector(4)
    coeffs = random_field((t, 4))
    shares = shamir.share_with(v, coeffs, n)
    for k in range(4):
        poly = [int(v[k])] + [int(coeffs[j, k]) for j in range(t)]
        assert [int(shares[i, k]) for i in range(n)] == [poly_eval(poly, shamir.point(i)) for i in range(n)]


def test_share_keeps_multidimensional_shapes_and_rejects_bad_threshold() -> None:
    v = field.asfield(np.arange(12).reshape(3, 4))
    shares = shamir.share(v, 5, 2)
    assert shares.shape == (5, 3, 4)
    assert np.array_equal(shamir.reconstruct({0: shares[0], 2: shares[2], 4: shares[4]}), v)
    for bad_t in (-1, 5, 6):
        with pytest.raises(ValueError, match="threshold"):
            shamir.share(v, 5, bad_t)


def _solve_coeffs(secret: int, t: int, parties: tuple[int, ...], targets: list[int]) -> list[int]:
    """The unique coefficients c_1..c_t of the degree-t polynomial with f(0)=secret, f(x_i)=targets[i]."""
    xs = [0] + [shamir.point(i) for i in parties]
    ys = [secret] + targets
    m = len(xs)
    # Solve the Vandermonde system exactly over F_p (Gauss-Jordan on Python ints)
    rows = [[pow(x, k, P) for k in range(m)] + [y % P] for x, y in zip(xs, ys)]
    for col in range(m):
        piv = next(r for r in range(col, m) if rows[r][col])
        rows[col], rows[piv] = rows[piv], rows[col]
        inv = pow(rows[col][col], P - 2, P)
        rows[col] = [x * inv % P for x in rows[col]]
        for r in range(m):
            if r != col and rows[r][col]:
                f = rows[r][col]
                rows[r] = [(a - f * b) % P for a, b in zip(rows[r], rows[col])]
    return [rows[k][m] for k in range(1, m)]


@given(st.sampled_from(NT), st.data())
@settings(max_examples=40, deadline=None)
def test_any_t_shares_are_consistent_with_every_secret(nt: tuple[int, int], data: st.DataObject) -> None:
    """Privacy, exactly: for any t parties and any share values they might see, every secret has
    exactly one coefficient vector producing them. With uniform coefficients the view of t parties
    is therefore uniform and the same whatever the secret."""
    n, t = nt
    parties = tuple(sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=t, max_size=t))))
    seen = data.draw(st.lists(st.integers(0, P - 1), min_size=t, max_size=t))
    for secret in data.draw(st.lists(st.integers(0, P - 1), min_size=2, max_size=3, unique=True)):
        coeffs = _solve_coeffs(secret, t, parties, seen)
        shares = shamir.share_with(np.array([secret], dtype=np.uint64),
                                   np.array(coeffs, dtype=np.uint64).reshape(t, 1), n)
        assert [int(shares[i, 0]) for i in parties] == seen


@pytest.mark.parametrize("n,t", [(3, 1), (7, 3)])
def test_same_coefficients_different_secrets_shift_every_share_by_the_difference(n: int, t: int) -> None:
    coeffs = random_field((t, 50))
    a, b = secret_vector(50), field.asfield(np.arange(50) - 25)
    sa, sb = shamir.share_with(a, coeffs, n), shamir.share_with(b, coeffs, n)
    for i in range(n):
        assert np.array_equal(field.sub(sa[i], sb[i]), field.sub(a, b))


def _chi2_uniform(values: np.ndarray, buckets: int) -> float:
    counts = np.bincount(values.astype(np.int64), minlength=buckets)
    expected = values.size / buckets
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("secret", [0, 1])
def test_one_share_looks_uniform_whatever_the_secret(secret: int) -> None:
    """Statistical sanity check (t=1): party 0's share of 0 and of 1 over 40000 sharings, in 16
    buckets by the low 4 bits and 16 by the high 4 bits; chi-square with 15 degrees of freedom
    exceeds 60 with probability below 1e-6 for a uniform source."""
    shares = shamir.share(np.full(40_000, secret, dtype=np.uint64), 3, 1)[0]
    assert _chi2_uniform(shares & np.uint64(15), 16) < 60
    assert _chi2_uniform(shares >> np.uint64(57), 16) < 60
    assert np.unique(shares).size > 39_990  # no repeats to speak of in a 2^61 space


def test_lagrange_at_zero_and_at_a_point() -> None:
    assert shamir.lagrange_at_zero((0, 1)) == (2, P - 1)          # f(0) = 2 f(1) - f(2) for lines
    assert shamir.lagrange_at_zero((0, 1, 2)) == (3, P - 3, 1)    # 3 f(1) - 3 f(2) + f(3)
    for parties in [(0, 1, 2), (1, 3, 4), (0, 2, 5, 6)]:
        coeffs = [5, 7, 11, 13][:len(parties)]
        for target in range(8):
            weights = shamir.lagrange_at(parties, target)
            got = sum(w * poly_eval(coeffs, shamir.point(i)) for w, i in zip(weights, parties)) % P
            assert got == poly_eval(coeffs, shamir.point(target))
        weights0 = shamir.lagrange_at_zero(parties)
        assert sum(w * poly_eval(coeffs, shamir.point(i)) for w, i in zip(weights0, parties)) % P == coeffs[0]
        assert sum(weights0) % P == 1


def test_default_threshold() -> None:
    assert [shamir.default_threshold(n) for n in range(3, 10)] == [1, 1, 2, 2, 3, 3, 4]
    with pytest.raises(ValueError, match="at least 3"):
        shamir.default_threshold(2)


def _tamper(shares: np.ndarray, who: list[int], seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {i: shares[i].copy() for i in range(shares.shape[0])}
    for i in who:
        k = int(rng.integers(0, shares.shape[1]))
        out[i][k] = (int(out[i][k]) + 1 + int(rng.integers(0, P - 1))) % P
    return out


# (n, t, e) with n >= t + 2e + 1: e wrong shares can be located
LOCATABLE = [(4, 1, 1), (5, 1, 1), (5, 2, 1), (6, 1, 2), (7, 2, 2), (7, 3, 1), (8, 1, 3), (9, 4, 2)]


@pytest.mark.parametrize("n,t,e", [c for c in LOCATABLE if c[0] >= c[1] + 2 * c[2] + 1])
def test_reconstruct_checked_names_the_culprits(n: int, t: int, e: int) -> None:
    v = secret_vector(5)
    shares = shamir.share(v, n, t)
    for trial in range(3):
        bad = sorted(np.random.default_rng(trial).choice(n, size=e, replace=False).tolist())
        with pytest.raises(shamir.InconsistentShares) as info:
            shamir.reconstruct_checked(_tamper(shares, bad, trial), t)
        assert info.value.culprits == tuple(bad)
        assert str(bad) in str(info.value)


# (n, t, e) with n < t + 2e + 1: detectable, but who is wrong cannot be told
AMBIGUOUS = [(3, 1, 1), (5, 1, 2), (7, 3, 2), (6, 2, 2)]


@pytest.mark.parametrize("n,t,e", [c for c in AMBIGUOUS if c[0] < c[1] + 2 * c[2] + 1])
def test_reconstruct_checked_refuses_to_name_anyone_with_too_few_shares(n: int, t: int, e: int) -> None:
    shares = shamir.share(secret_vector(5), n, t)
    for trial in range(3):
        bad = sorted(np.random.default_rng(10 + trial).choice(n, size=e, replace=False).tolist())
        with pytest.raises(shamir.InconsistentShares) as info:
            shamir.reconstruct_checked(_tamper(shares, bad, trial), t)
        assert info.value.culprits == ()
        assert "too few shares" in str(info.value)


def test_reconstruct_checked_with_a_subset_of_parties_and_too_few_shares() -> None:
    v = secret_vector(3)
    shares = shamir.share(v, 7, 2)
    # any t+1 shares are trivially consistent
    assert np.array_equal(shamir.reconstruct_checked({1: shares[1], 4: shares[4], 6: shares[6]}, 2), v)
    # 5 of 7 shares (dropouts), one wrong: 5 = t + 2e + 1 still locates it
    subset = {i: shares[i] for i in (0, 2, 3, 5, 6)}
    subset[3] = field.add(subset[3], np.ones(3, dtype=np.uint64))
    with pytest.raises(shamir.InconsistentShares) as info:
        shamir.reconstruct_checked(subset, 2)
    assert info.value.culprits == (3,)
    with pytest.raises(ValueError, match="at least t\\+1"):
        shamir.reconstruct_checked({0: shares[0], 1: shares[1]}, 2)


def test_reconstruct_checked_detects_a_higher_degree_sharing() -> None:
    """Shares of degree 2t+... are not accepted as degree t (e.g. an unreduced product)."""
    v = secret_vector(4)
    high = shamir.share(v, 5, 3)
    with pytest.raises(shamir.InconsistentShares):
        shamir.reconstruct_checked({i: high[i] for i in range(5)}, 1)
