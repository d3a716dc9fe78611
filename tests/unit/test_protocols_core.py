"""Semi-honest Shamir protocols (mpcnode/protocols/core.py) over the in-memory network."""
from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import numpy as np
import pytest

from mpcnode import field, shamir
from mpcnode.exchange import ExchangeTimeout, MemoryNetwork
from mpcnode.protocols.core import Session

REPO = Path(__file__).resolve().parents[2]
NT = [(3, 1), (4, 1), (5, 2), (5, 1), (7, 3), (7, 2)]


def opened(shares: list[np.ndarray], t: int) -> np.ndarray:
    """Reconstruct (and check) from every party's share, outside the protocol."""
    return field.to_signed(shamir.reconstruct_checked(dict(enumerate(shares)), t))


def mailboxes_empty(net: MemoryNetwork) -> bool:
    return all(not box for box in net._mail)


def keys_sent(i: int, n: int) -> int:
    """Messages of the session's one key round: party i picks the keys it shares with higher ids."""
    return n - 1 - i


@pytest.mark.parametrize("n,t", NT)
async def test_share_from_gives_a_degree_t_sharing_of_the_owners_values(parties, n: int, t: int) -> None:
    values = np.array([0, 1, -1, 123456789, -(1 << 58)], dtype=np.int64)
    owner = n - 1

    async def body(s: Session) -> np.ndarray:
        mine = field.asfield(values) if s.party == owner else None
        return await s.share_from("in/x", owner, mine, (5,))

    shares, net, sessions = await parties(n, t, body)
    assert [int(v) for v in opened(shares, t)] == values.tolist()
    assert all(sh.shape == (5,) for sh in shares)
    assert mailboxes_empty(net)
    # the session's key round, then one round; only the owner sends, to the n-1-t parties
    # whose shares do not come from a seed they share with it
    assert [s.ex.stats.rounds for s in sessions] == [2] * n
    assert [s.ex.stats.messages_sent - keys_sent(i, n) for i, s in enumerate(sessions)] == [
        n - 1 - t if i == owner else 0 for i in range(n)]


async def test_share_from_rejects_wrong_shape_from_owner(parties) -> None:
    async def body(s: Session) -> np.ndarray:
        return await s.share_from("in/x", 0, field.asfield([1, 2]) if s.party == 0 else None, (3,))

    with pytest.raises(ValueError, match="owner must supply values of shape"):
        await parties(3, 1, body, timeout_s=2)


@pytest.mark.parametrize("n,t", NT)
async def test_share_from_many_several_owners_one_round(parties, n: int, t: int) -> None:
    rng = np.random.default_rng(n * 10 + t)
    owners = list(range(0, n, 2))
    data = {o: rng.integers(-(1 << 40), 1 << 40, size=(2, o + 1), dtype=np.int64) for o in owners}
    shapes = {o: data[o].shape for o in owners}

    async def body(s: Session) -> dict[int, np.ndarray]:
        mine = {s.party: field.asfield(data[s.party])} if s.party in data else {}
        return await s.share_from_many("in/many", mine, shapes)

    results, net, sessions = await parties(n, t, body)
    for o in owners:
        got = opened([r[o].reshape(-1) for r in results], t)
        assert np.array_equal(got, data[o].reshape(-1))
        assert all(r[o].shape == shapes[o] for r in results)
    assert all(s.ex.stats.rounds == 2 for s in sessions)  # key round + one dealing round
    assert mailboxes_empty(net)


@pytest.mark.parametrize("n,t", NT)
async def test_open_to_all_and_to_a_subset(parties, n: int, t: int) -> None:
    secret = field.asfield(np.array([7, -7, 0, 1 << 50], dtype=np.int64))
    shares = shamir.share(secret, n, t)
    subset = [1, n - 1]

    async def body(s: Session) -> tuple:
        everyone = await s.open("open/all", shares[s.party])
        some = await s.open("open/some", shares[s.party], to=subset)
        return everyone, some

    results, net, _ = await parties(n, t, body)
    for i, (everyone, some) in enumerate(results):
        assert np.array_equal(everyone, secret)
        if i in subset:
            assert np.array_equal(some, secret)
        else:
            assert some is None
    assert mailboxes_empty(net)


async def test_open_detects_one_inconsistent_share_and_names_it(parties) -> None:
    n, t = 4, 1
    shares = shamir.share(field.asfield([5, 6, 7]), n, t)
    shares[2] = field.add(shares[2], np.array([0, 1, 0], dtype=np.uint64))

    async def body(s: Session) -> object:
        try:
            return await s.open("open/bad", shares[s.party])
        except shamir.InconsistentShares as exc:
            return exc.culprits

    results, _, _ = await parties(n, t, body)
    assert results == [(2,)] * n


def _products_case(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Signed operands with |a|, |b| < 2^19, so a*b*a stays inside the signed range +-2^59."""
    rng = np.random.default_rng(n)
    a = rng.integers(-(1 << 19), 1 << 19, size=64, dtype=np.int64)
    b = rng.integers(-(1 << 19), 1 << 19, size=64, dtype=np.int64)
    a[:4] = [0, -1, (1 << 19) - 1, -(1 << 19)]
    b[:4] = [5, -1, -(1 << 19), -(1 << 19)]
    return a, b


@pytest.mark.parametrize("n,t", NT)
async def test_mul_matches_plaintext_including_negatives(parties, n: int, t: int) -> None:
    a, b = _products_case(n)
    sa, sb = shamir.share(field.asfield(a), n, t), shamir.share(field.asfield(b), n, t)

    async def body(s: Session) -> tuple[np.ndarray, np.ndarray]:
        ab = await s.mul("mul/1", sa[s.party], sb[s.party])
        aba = await s.mul("mul/2", ab, sa[s.party])  # a product of a product: still degree t
        return ab, aba

    results, net, sessions = await parties(n, t, body)
    assert np.array_equal(opened([r[0] for r in results], t), a * b)
    assert np.array_equal(opened([r[1] for r in results], t), a * b * a)
    # key round + one round per multiplication; only the first 2t+1 parties send, n-1-t each
    assert all(s.ex.stats.rounds == 3 for s in sessions)
    assert [s.ex.stats.messages_sent - keys_sent(i, n) for i, s in enumerate(sessions)] == [
        2 * (n - 1 - t) if i < 2 * t + 1 else 0 for i in range(n)]
    assert mailboxes_empty(net)


@pytest.mark.parametrize("n,t", [(3, 1), (5, 2), (7, 3)])
async def test_mul_many_in_one_round_and_broadcasting(parties, n: int, t: int) -> None:
    a, b = _products_case(n)
    c = np.array([-3], dtype=np.int64)
    sa, sb, sc = (shamir.share(field.asfield(v), n, t) for v in (a, b, c))

    async def body(s: Session) -> list[np.ndarray]:
        return await s.mul_many("mm", [(sa[s.party], sb[s.party]), (sa[s.party][:5], sa[s.party][:5]),
                                       (sb[s.party], sc[s.party])])

    results, _, sessions = await parties(n, t, body)
    want = [a * b, a[:5] * a[:5], b * c[0]]
    for k in range(3):
        assert np.array_equal(opened([r[k] for r in results], t), want[k])
    assert all(s.ex.stats.rounds == 2 for s in sessions)
    empty, _, _ = await parties(n, t, lambda s: s.mul_many("none", []))
    assert empty == [[]] * n


@pytest.mark.parametrize("n,t", [(3, 1), (5, 2), (7, 3)])
async def test_random_is_consistent_and_uniform_looking(parties, n: int, t: int) -> None:
    async def body(s: Session) -> tuple:
        r1 = await s.random("rand/1", (4096,))
        r2 = await s.random("rand/2", (4096,))
        return await s.open("open/1", r1), await s.open("open/2", r2)

    results, net, sessions = await parties(n, t, body)
    r1, r2 = results[0]
    assert all(np.array_equal(x, r1) and np.array_equal(y, r2) for x, y in results)  # every party sees the same
    assert r1.dtype == np.uint64 and int(r1.max()) < field.P
    assert not np.array_equal(r1, r2)
    assert np.unique(np.concatenate([r1, r2])).size == 8192
    # top 3 bits of a uniform 61-bit element: 8 buckets of 512 expected; chi2 (7 dof) < 40 fails w.p. < 1e-5
    counts = np.bincount((r1 >> np.uint64(58)).astype(np.int64), minlength=8)
    assert float(((counts - 512.0) ** 2 / 512.0).sum()) < 40
    # key round + two dealing rounds + the two openings; t+1 parties deal (so no t of them
    # know the value), each sending n-1-t messages per dealing; n-1 per opening
    assert all(s.ex.stats.rounds == 5 for s in sessions)
    assert [s.ex.stats.messages_sent - keys_sent(i, n) for i, s in enumerate(sessions)] == [
        2 * (n - 1) + (2 * (n - 1 - t) if i <= t else 0) for i in range(n)]
    assert mailboxes_empty(net)


@pytest.mark.parametrize("n,t", [(3, 1), (4, 1), (5, 2), (7, 3)])
async def test_random_bits_are_bits(parties, n: int, t: int) -> None:
    async def body(s: Session) -> np.ndarray:
        bits = await s.random_bits("bits", 4000)
        return await s.open("open/bits", bits)

    results, net, sessions = await parties(n, t, body)
    bits = results[0]
    assert all(np.array_equal(r, bits) for r in results)
    assert set(np.unique(bits).tolist()) == {0, 1}
    assert 1700 < int(bits.sum()) < 2300  # Binomial(4000, 1/2): 9.5 standard deviations either way
    # key round + dealing + ceil(log2(t+1)) XOR levels + opening
    xor_levels = int(np.ceil(np.log2(t + 1)))
    assert all(s.ex.stats.rounds == 3 + xor_levels for s in sessions)
    # t+1 dealers: a bit no t parties know
    dealt = [s.ex.stats.messages_sent - keys_sent(i, n) - (n - 1)
             - (n - 1 - t) * (xor_levels if i < 2 * t + 1 else 0) for i, s in enumerate(sessions)]
    assert dealt == [(n - 1 - t) if i <= t else 0 for i in range(n)]
    assert mailboxes_empty(net)


async def test_every_round_label_is_used_once(parties) -> None:
    n, t = 5, 2
    x = shamir.share(field.asfield(np.arange(10)), n, t)

    async def body(s: Session) -> None:
        a = await s.share_from("in/a", 0, field.asfield(np.arange(10)) if s.party == 0 else None, (10,))
        b = await s.share_from_many("in/b", {s.party: field.asfield([s.party])}, {i: (1,) for i in range(n)})
        r = await s.random("r", (10,))
        bits = await s.random_bits("bits", 10)
        m = await s.mul("m", a, r)
        mm = await s.mul_many("mm", [(m, bits), (b[0], b[1])])
        await s.open("o1", mm[0])
        await s.open("o2", x[s.party], to=[0])

    _, net, sessions = await parties(n, t, body)
    for s in sessions:
        assert len(s.ex.stats.labels) == s.ex.stats.rounds  # each round had its own label
    assert len({frozenset(s.ex.stats.labels) for s in sessions}) == 1  # and all parties used the same ones
    assert mailboxes_empty(net)

    async def reuse(s: Session) -> None:
        await s.open("again", x[s.party])
        await s.open("again", x[s.party])

    with pytest.raises(ValueError, match="reused"):
        await parties(n, t, reuse, timeout_s=2)


async def test_session_requires_honest_majority_threshold() -> None:
    net = MemoryNetwork(4)
    with pytest.raises(ValueError, match="2t < n"):
        Session(net.exchange(0), 2)


async def test_a_missing_party_times_out_naming_it() -> None:
    net = MemoryNetwork(3, timeout_s=0.3)
    sessions = [Session(net.exchange(i), 1) for i in range(3)]
    shares = shamir.share(field.asfield([1]), 3, 1)
    # party 2 never takes part
    with pytest.raises(ExchangeTimeout, match="party 2"):
        await asyncio.gather(*(s.open("o", shares[s.party]) for s in sessions[:2]))


# ---- where randomness comes from ------------------------------------------------------------

_FORBIDDEN_MODULES = {"random", "secrets"}


def _randomness_uses(path: Path) -> list[str]:
    """Imports of random/secrets, and uses of np.random / numpy.random / os.urandom, in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root in _FORBIDDEN_MODULES or alias.name == "numpy.random":
                    found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            names = {a.name for a in node.names}
            if mod.split(".")[0] in _FORBIDDEN_MODULES or mod == "numpy.random" \
                    or (mod == "numpy" and "random" in names) or (mod == "os" and "urandom" in names):
                found.append(f"line {node.lineno}: from {mod} import {', '.join(sorted(names))}")
        elif isinstance(node, ast.Attribute):
            if node.attr == "random" and isinstance(node.value, ast.Name) and node.value.id in ("np", "numpy"):
                found.append(f"line {node.lineno}: {node.value.id}.random")
            if node.attr == "urandom" and isinstance(node.value, ast.Name) and node.value.id == "os":
                found.append(f"line {node.lineno}: os.urandom")
    return found


def test_randomness_for_secrets_comes_only_from_mpcnode_randomness() -> None:
    offenders = {}
    sources = sorted((REPO / "mpcnode").rglob("*.py")) + sorted((REPO / "coordinator").rglob("*.py"))
    assert len(sources) > 20
    for path in sources:
        uses = _randomness_uses(path)
        if uses:
            offenders[str(path.relative_to(REPO))] = uses
    assert set(offenders) == {"mpcnode/randomness.py"}, offenders
    assert all("urandom" in u for u in offenders["mpcnode/randomness.py"])


def test_the_randomness_scan_catches_each_pattern(tmp_path: Path) -> None:
    for snippet in ["import random", "import secrets as s", "from random import randint", "import numpy.random",
                    "from numpy import random", "import numpy as np\nnp.random.default_rng()",
                    "import os\nos.urandom(8)", "from os import urandom", "from secrets import token_bytes"]:
        f = tmp_path / "m.py"
        f.write_text(snippet + "\n")
        assert _randomness_uses(f), snippet
    f.write_text("import os\nimport numpy as np\nx = os.path.join('a')\ny = np.zeros(3)\n")
    assert _randomness_uses(f) == []
