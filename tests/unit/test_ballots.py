"""Ballot validation, tally, winner and referendum (mpcnode/protocols/ballots.py) against plaintext,
on the Shamir engine and on the two-component test engine (pair_engine.py)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mpcnode.engines.base import Engine
from mpcnode.protocols import ballots as B
from tests.unit.local_mpc import deal, mine, mpc

NS = [3, 4, 5]
ENGINES = ["shamir", "pair"]
# (n, engine): the Shamir-based engines for every n, replicated3 for its three parties (its
# unchecked ballot check is an exact zero test per entry, ballots._validate_ring).
CASES = [(n, e) for n in NS for e in ENGINES] + [(3, "replicated3")]
ALL_ENGINES = ENGINES + ["replicated3"]
HYP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def first_argmax(x) -> int:
    return int(np.argmax(np.asarray(x)))          # numpy returns the first maximum


PLURALITY = [
    ([0, 1, 0], True), ([1, 0, 0], True), ([0, 0, 1], True),
    ([0, 0, 0], False),          # no choice
    ([1, 1, 0], False),          # two choices
    ([2, 0, 0], False),          # not a bit
    ([2, -1, 0], False),         # sums to 1 but not bits
    ([-1, 1, 1], False),
    ([0, 3, -2], False),
    ([1, 0, 1 << 40], False),
]
APPROVAL = [
    ([1, 1, 0], True), ([0, 0, 0], True), ([1, 1, 1], True), ([0, 1, 0], True),
    ([2, 0, 0], False), ([1, -1, 1], False), ([2, -1, 0], False), ([0, 0, 5], False),
]


def plain_tally(rows: list[list[int]], ok: list[bool]) -> tuple[list[int], int]:
    counts = [sum(r[k] for r, v in zip(rows, ok) if v) for k in range(len(rows[0]))]
    return counts, ok.count(False)


@pytest.mark.parametrize("n, engine", CASES)
@pytest.mark.parametrize("exactly_one,cases", [(True, PLURALITY), (False, APPROVAL)])
def test_validate_and_tally(n: int, exactly_one: bool, cases, engine: str) -> None:
    rows = [r for r, _ in cases] + [[0, 1, 0], [0, 0, 1], [0, 1, 0]]
    ok = [v for _, v in cases] + [True] * 3
    X = deal(np.array(rows), n)

    async def body(s: Engine):
        valid = await B.validate_ballots(s, "vb", mine(s, X), exactly_one)
        counts, invalid = await B.tally(s, "tally", mine(s, X), valid)
        winner = await B.winner_of(s, "win", counts)
        return valid, counts, invalid, winner

    (valid, counts, invalid, winner), _ = mpc(n, body, engine=engine)
    want_counts, want_invalid = plain_tally(rows, ok)
    assert valid.tolist() == [int(v) for v in ok]
    assert counts.tolist() == want_counts and invalid.tolist() == [want_invalid]
    assert int(winner[0]) == first_argmax(want_counts)


@HYP
@given(data=st.data(), k=st.integers(1, 5), exactly_one=st.booleans(), engine=st.sampled_from(ALL_ENGINES))
def test_validate_random_ballots(data, k: int, exactly_one: bool, engine: str) -> None:
    n = 3
    entry = st.sampled_from([0, 1]) | st.integers(-3, 3)
    rows = data.draw(st.lists(st.lists(entry, min_size=k, max_size=k), min_size=1, max_size=12))
    ok = [all(v in (0, 1) for v in r) and (not exactly_one or sum(r) == 1) for r in rows]
    X = deal(np.array(rows), n)
    valid, _ = mpc(n, lambda s: B.validate_ballots(s, "vb", mine(s, X), exactly_one), engine=engine)
    assert valid.tolist() == [int(v) for v in ok]


@pytest.mark.parametrize("engine", ALL_ENGINES)
def test_winner_ties_go_to_the_earliest_option(engine: str) -> None:
    n = 3
    counts = [4, 9, 2, 9, 9]
    X = deal(counts, n)
    got, _ = mpc(n, lambda s: B.winner_of(s, "w", mine(s, X)), engine=engine)
    assert got.tolist() == [1]


@pytest.mark.parametrize("n,engine", CASES)
def test_referendum_passes_with_at_least_half(n: int, engine: str) -> None:
    yes = np.array([5, 4, 6, 0, 0, 1, 50, 49])
    valid = np.array([10, 10, 10, 0, 1, 1, 99, 99])
    Y, V = deal(yes, n), deal(valid, n)
    got, _ = mpc(n, lambda s: B.referendum(s, "ref", mine(s, Y), mine(s, V)), engine=engine)
    assert got.tolist() == (2 * yes >= valid).astype(int).tolist()


@pytest.mark.parametrize("engine", ENGINES)
def test_referendum_from_a_yes_no_tally(engine: str) -> None:
    n = 4
    rows = [[1, 0], [0, 1], [1, 0], [1, 1], [0, 1], [1, 0], [2, 0]]   # two invalid ballots
    X = deal(np.array(rows), n)

    async def body(s: Engine):
        valid = await B.validate_ballots(s, "vb", mine(s, X), True)
        counts, invalid = await B.tally(s, "t", mine(s, X), valid)
        total = s.add(counts[0:1], counts[1:2])
        passed = await B.referendum(s, "ref", counts[0:1], total)
        return counts, invalid, passed

    (counts, invalid, passed), _ = mpc(n, body, engine=engine)
    assert counts.tolist() == [3, 2] and invalid.tolist() == [2] and passed.tolist() == [1]


@pytest.mark.parametrize("n,k,exactly_one,engine",
                         [(n, k, one, e) for n, k, one in [(3, 5, True), (3, 2, True), (5, 4, False)] for e in ENGINES]
                         + [(3, 5, True, "replicated3"), (3, 2, True, "replicated3"), (3, 4, False, "replicated3")])
def test_validate_ballots_with_an_enforced_entry_range(n: int, k: int, exactly_one: bool, engine: str) -> None:
    rng = np.random.default_rng(k)
    rows = rng.integers(-1, 3, size=(400, k))           # entries in the declared range [-1, 2]
    rows[:200] = 0
    rows[np.arange(200), rng.integers(0, k, 200)] = 1    # half of them valid one-hot ballots
    sh = deal(rows.reshape(-1), n)

    async def body(s: Engine) -> np.ndarray:
        ballots = mine(s, sh).reshape((-1, k) + s.share_shape)      # rows of the value axis
        return await B.validate_ballots(s, "v", ballots, exactly_one, entry_range=(-1, 2))

    want = np.all((rows == 0) | (rows == 1), axis=1)
    if exactly_one:
        want &= rows.sum(axis=1) == 1
    assert mpc(n, body, engine=engine)[0].tolist() == want.astype(int).tolist()


def test_the_ring_check_catches_defects_that_vanish_under_even_coefficients() -> None:
    """Over Z_2^64 a random linear combination would miss a defect of 2^63 whenever its coefficient
    is even; the ring check tests every entry exactly. Rows whose entries are huge but whose sum is
    1 mod 2^64, or entries that are bits only mod 2^32, are invalid."""
    big = -(2 ** 63)                              # 2^63 mod 2^64
    rows = np.array([[1, big, big], [0, 1, 0], [2 ** 32 + 1, 0, 0], [1, 2 ** 32, -(2 ** 32)], [0, 0, 1],
                     [-(2 ** 63) + 1, 2 ** 63 - 1, 1], [1, 0, 0]])
    X = deal(rows, 3)

    async def body(s: Engine):
        valid = await B.validate_ballots(s, "vb", mine(s, X), True)
        counts, invalid = await B.tally(s, "tally", mine(s, X), valid)
        return valid, counts, invalid

    (valid, counts, invalid), _ = mpc(3, body, engine="replicated3")
    assert valid.tolist() == [0, 1, 0, 0, 1, 0, 1]
    assert counts.tolist() == [1, 1, 1] and invalid.tolist() == [4]
