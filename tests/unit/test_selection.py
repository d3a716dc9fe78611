"""select, argmax and top-two (mpcnode/protocols/selection.py) against plaintext, on the Shamir
engine and on the two-component test engine (pair_engine.py): written once against the Engine
interface, they must give the same answers on both."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mpcnode.engines import ShamirEngine
from mpcnode.engines.base import Engine
from mpcnode.exchange import MemoryNetwork
from mpcnode.protocols import selection as S
from tests.unit.local_mpc import deal, mine, mpc

NS = [3, 4, 5]
ENGINES = ["shamir", "pair"]
# (n, engine): the Shamir-based engines for every n, replicated3 for its three parties
CASES = [(n, e) for n in NS for e in ENGINES] + [(3, "replicated3")]
B59 = (1 << 59) - 1
B48 = (1 << 48) - 1
RNG = np.random.default_rng(20261124)
HYP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("bad", [0, 60, 61, -3, True, 2.5])
def test_bit_length_is_validated(bad) -> None:
    s = ShamirEngine(MemoryNetwork(3).exchange(0), 1)
    x = np.zeros(2, dtype=np.uint64)
    for call in (S.argmax_and_max(s, "am", x, bad), S.top_two(s, "tt", x, bad)):
        with pytest.raises(ValueError, match="bit_length"):
            asyncio.run(call)


@pytest.mark.parametrize("n,engine", CASES)
def test_select(n: int, engine: str) -> None:
    bit = np.array([1, 0, 1, 0])
    a = np.array([10, -20, B59, 0])
    b = np.array([-1, 30, 5, -B59])
    Bt, A, Bv = deal(bit, n), deal(a, n), deal(b, n)
    got, _ = mpc(n, lambda s: S.select(s, "sel", mine(s, Bt), mine(s, A), mine(s, Bv)), engine=engine)
    assert got.tolist() == np.where(bit == 1, a, b).tolist()


# ---- tournaments ----------------------------------------------------------------------

def first_argmax(x) -> int:
    return int(np.argmax(np.asarray(x)))          # numpy returns the first maximum


@pytest.mark.parametrize("n,engine", CASES)
@pytest.mark.parametrize("x", [[5], [3, 3], [1, 9, 9, 2, 9], [9, 9, 9, 9, 9, 9, 9],
                               [-5, -3, -3, -B59 + 1], [B59, -B59, B59 - 1], [0, 1, 2, 3, 4, 5, 6, 7, 8],
                               [8, 7, 6, 5, 4, 3, 2, 1, 0, 8]])
def test_argmax_and_max_ties_go_to_the_earliest(n: int, x: list[int], engine: str) -> None:
    X = deal(x, n)
    (idx, mx), _ = mpc(n, lambda s: S.argmax_and_max(s, "am", mine(s, X)), engine=engine)
    assert idx.shape == (1,) and mx.shape == (1,)
    assert (int(idx[0]), int(mx[0])) == (first_argmax(x), max(x))


def check_both_tournaments(n: int, engine: str, x: list[int], bit_length: int) -> None:
    """argmax_and_max and top_two of x at `bit_length` against plaintext: the first maximum's
    index, the max, and the second (the sentinel -(2^bit_length) for a single value)."""
    X = deal(x, n)

    async def body(s: Engine):
        idx, mx = await S.argmax_and_max(s, "am", mine(s, X), bit_length)
        tidx, tmx, second = await S.top_two(s, "tt", mine(s, X), bit_length)
        return idx, mx, tidx, tmx, second

    (idx, mx, tidx, tmx, second), _ = mpc(n, body, engine=engine)
    want_second = sorted(x)[-2] if len(x) > 1 else -(1 << bit_length)
    assert (int(idx[0]), int(mx[0])) == (first_argmax(x), max(x))
    assert (int(tidx[0]), int(tmx[0]), int(second[0])) == (first_argmax(x), max(x), want_second)


@HYP
@given(case=st.sampled_from(CASES),
       x=st.lists(st.integers(-50, 50) | st.integers(-B48, B48), min_size=1, max_size=40))
def test_argmax_and_top_two_random(case: tuple[int, str], x: list[int]) -> None:
    n, engine = case
    check_both_tournaments(n, engine, x, 48)


@pytest.mark.parametrize("n,engine", CASES)
@pytest.mark.parametrize("x,want", [
    ([3, 8, 8], (1, 8, 8)),                       # tied top bids: the price is the top bid
    ([8, 3, 8, 1, 8], (0, 8, 8)),
    ([1, 2, 3, 4, 5, 6, 7, 100, 99], (7, 100, 99)),
    ([-7], (0, -7, None)),                        # a single bid: the sentinel second -(2^max_bit_length)
    ([4, -2], (0, 4, -2)),
    ([B59 - 1, -B59 + 1, B59 - 2], (0, B59 - 1, B59 - 2)),
    ([-B59 + 1, -B59 + 1], (0, -B59 + 1, -B59 + 1)),
])
def test_top_two_vickrey(n: int, x: list[int], want: tuple[int, int, int], engine: str) -> None:
    X = deal(x, n)
    (idx, mx, second), engines = mpc(n, lambda s: S.top_two(s, "tt", mine(s, X)), engine=engine)
    if want[2] is None:
        want = (want[0], want[1], -(1 << engines[0].max_bit_length))
    assert (int(idx[0]), int(mx[0]), int(second[0])) == want


@pytest.mark.parametrize("engine", ENGINES)
def test_seven_parties_tournament_and_comparisons(engine: str) -> None:
    n = 7
    x = RNG.integers(-B48, B48, 23)
    x[5] = x[17] = x.max() + 1
    y = RNG.integers(-B48, B48, 23)
    y[:4] = x[:4]
    X, Y = deal(x, n), deal(y, n)

    async def body(s: Engine):
        lt = await s.less_than("lt", mine(s, X), mine(s, Y), 48)
        eq = await s.equal("eq", mine(s, X), mine(s, Y))
        idx, mx, second = await S.top_two(s, "tt", mine(s, X), 48)
        return lt, eq, idx, mx, second

    (lt, eq, idx, mx, second), _ = mpc(n, body, engine=engine)
    assert lt.tolist() == (x < y).astype(int).tolist()
    assert eq.tolist() == (x == y).astype(int).tolist()
    assert (int(idx[0]), int(mx[0]), int(second[0])) == (5, x.max(), x.max())


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("x", [[255, -255, 255, 0, -255, 254], [-256 + 1, -255, -255], [7], [0, 0, 0, 0, 0],
                               list(range(-255, 256, 37)) + [255, 255]])
def test_tournaments_at_a_small_bit_length(n: int, engine: str, x: list[int]) -> None:
    """bit_length 8 takes Shamir's bounded comparison (masks made by comparison_masks(..., 8) for
    every level at once): ties at the extremes +-(2^8 - 1), the sentinel -(2^8) for a lone value."""
    check_both_tournaments(n, engine, x, 8)


def test_a_small_bit_length_tournament_is_cheaper() -> None:
    """top_two at bit_length 8 sends well under a third of the bytes of the same tournament at 48."""
    x = RNG.integers(-200, 200, 33)
    X = deal(x, 3)
    sent = {}
    for bits in (8, 48):
        (_, _, second), engines = mpc(3, lambda s: S.top_two(s, "tt", X[s.party], bits))
        assert int(second[0]) == sorted(x)[-2]
        sent[bits] = sum(e.exchange.stats.bytes_sent for e in engines)
    assert 3 * sent[8] < sent[48]


@pytest.mark.parametrize("n,engine", CASES)
@pytest.mark.parametrize("x", [[5], [3, 8, 8], [8, 3, 8, 1, 8], [1, 2, 3, 4, 5, 6, 7, 100, 99]])
def test_tournaments_carry_public_tags_in_the_same_rounds(n: int, engine: str, x: list[int]) -> None:
    # the index opened is the winner's tag (a row's client in the approved list), not its position,
    # and carrying tags costs no round or byte more than carrying positions
    tags = np.array([40 + 3 * k for k in range(len(x))][::-1], dtype=np.int64)
    X = deal(x, n)

    async def body(s: Engine, tagged: bool):
        idx, mx = await S.argmax_and_max(s, "am", mine(s, X), 48, tags if tagged else None)
        tidx, tmx, second = await S.top_two(s, "tt", mine(s, X), 48, tags if tagged else None)
        return idx, mx, tidx, tmx, second

    (idx, mx, tidx, tmx, _), engines = mpc(n, lambda s: body(s, True), engine=engine)
    assert (int(idx[0]), int(mx[0])) == (int(tags[first_argmax(x)]), max(x))
    assert (int(tidx[0]), int(tmx[0])) == (int(tags[first_argmax(x)]), max(x))
    _, plain = mpc(n, lambda s: body(s, False), engine=engine)
    tagged_stats, plain_stats = engines[0].exchange.stats, plain[0].exchange.stats
    assert (tagged_stats.rounds, tagged_stats.bytes_sent) == (plain_stats.rounds, plain_stats.bytes_sent)
    with pytest.raises(ValueError, match="row tags for"):
        mpc(n, lambda s: S.argmax_and_max(s, "am", mine(s, X), 48, tags[:-1] if len(x) > 1 else tags[:0]),
            engine=engine)
