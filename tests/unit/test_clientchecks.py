"""Client input checks (protocols/clientchecks.py, Engine.consistent_rows / upper_half, jobrun's
take_client_rows) over the in-memory exchange, on both engines, with adversarial rows: values
just outside the range, at the domain's edges, in its upper half, and sharings that do not fit."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mpcnode import field, replicated, shamir
from mpcnode.engines import Replicated3Engine, ShamirEngine
from mpcnode.exchange import MemoryNetwork, ProtocolViolation
from mpcnode.protocols.clientchecks import row_order, rows_in_range
from tests.conftest import ENGINES_UNDER_TEST

P = field.P
HALF = (P - 1) // 2
ENGINE_CLASSES = {"shamir": ShamirEngine, "replicated3": Replicated3Engine}


def run(engine: str, body, n: int = 3, live=None):
    """body(engine) on every live party concurrently; returns the list of results."""
    net = MemoryNetwork(n, timeout_s=60)
    t = shamir.default_threshold(n)
    live = list(range(n)) if live is None else live
    engines = [ENGINE_CLASSES[engine](net.exchange(i), t, live) for i in live]

    async def main():
        return await asyncio.gather(*(body(e) for e in engines))
    return asyncio.run(main()), engines


def raw_shares(engine: str, raw: np.ndarray, n: int = 3) -> list[np.ndarray]:
    """Honest shares of raw plaintext-domain elements (uint64, any element, not only signed
    values), for every party."""
    if engine == "shamir":
        sh = shamir.share(np.asarray(raw, dtype=np.uint64) % np.uint64(P), n, shamir.default_threshold(n))
        return [sh[i] for i in range(n)]
    rep = replicated.share(np.asarray(raw, dtype=np.uint64))
    return [rep[i] for i in range(3)]


def signed(engine: str, v: int) -> int:
    if engine == "shamir":
        return v if v <= HALF else v - P
    return v if v < 2 ** 63 else v - 2 ** 64


def domain_edges(engine: str, lo: int, hi: int) -> tuple[list[int], list[int]]:
    """(raw values that must pass, raw values that must fail) for the range [lo, hi]."""
    if engine == "shamir":
        enc = lambda v: v % P                                              # noqa: E731
        bad = [enc(lo - 1), enc(hi + 1), HALF + 1, HALF + 1 + 5, HALF, HALF + hi + 1, P - 1, enc(-(2 ** 59))]
    else:
        enc = lambda v: v % 2 ** 64                                        # noqa: E731
        bad = [enc(lo - 1), enc(hi + 1), 2 ** 63, 2 ** 63 + 7, 2 ** 63 - 1, 2 ** 64 - 1, 2 ** 63 + hi]
    good = [enc(lo), enc(hi), enc((lo + hi) // 2)]
    return good, bad


@pytest.mark.parametrize("engine", ENGINES_UNDER_TEST)
@pytest.mark.parametrize("lo,hi", [(0, 1000), (-50, 50), (0, 1), (1, 2 ** 40)])
def test_rows_in_range_is_exact_at_every_edge(engine: str, lo: int, hi: int) -> None:
    good, bad = domain_edges(engine, lo, hi)
    raw = np.array(good + bad, dtype=np.uint64).reshape(-1, 1)     # one value per row
    per_party = raw_shares(engine, raw)

    async def body(e):
        return (await rows_in_range(e, "r", [(per_party[e.party], lo, hi)]))[0]
    results, engines = run(engine, body)
    want = np.array([True] * len(good) + [lo <= signed(engine, v) <= hi for v in bad])
    assert want.sum() < len(good) + 2            # (P - 1 is -1: inside [-50, 50])
    for got in results:
        assert got.tolist() == want.tolist()
    assert [o.purpose for o in engines[0].opened if o.label == "r/open"] == ["input-check"]


@pytest.mark.parametrize("engine", ENGINES_UNDER_TEST)
def test_rows_in_range_one_bad_value_excludes_only_its_row_across_several_inputs(engine: str) -> None:
    bad_value = HALF + 3 if engine == "shamir" else 2 ** 63 + 3
    bids = np.array([[5], [bad_value], [100], [0]], dtype=np.uint64)
    ballots = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 2], [1, 1, 1]], dtype=np.uint64)
    b1, b2 = raw_shares(engine, bids), raw_shares(engine, ballots)

    async def body(e):
        return await rows_in_range(e, "r", [(b1[e.party], 0, 100), (b2[e.party], 0, 1)])
    results, engines = run(engine, body)
    for a, b in results:
        assert a.tolist() == [True, False, True, True]
        assert b.tolist() == [True, True, False, True]
    # one batch: a single opening for both inputs
    assert sum(1 for o in engines[0].opened if o.purpose == "input-check") == 1


@pytest.mark.parametrize("engine", ENGINES_UNDER_TEST)
def test_rows_in_range_of_no_rows_needs_no_round(engine: str) -> None:
    shape = (0, 2) + ((2,) if engine == "replicated3" else ())

    async def body(e):
        return await rows_in_range(e, "r", [(np.zeros(shape, dtype=np.uint64), 0, 9)])
    results, engines = run(engine, body)
    assert all(r[0].size == 0 for r in results) and engines[0].exchange.stats.rounds == 0


@pytest.mark.parametrize("engine", ENGINES_UNDER_TEST)
def test_consistent_rows_finds_the_row_with_one_bad_share(engine: str) -> None:
    rows = np.array([[3, 4], [5, 6], [7, 8], [9, 10]], dtype=np.uint64)
    per_party = raw_shares(engine, rows)
    per_party = [p.copy() for p in per_party]
    if engine == "shamir":
        per_party[2][1, 0] = (per_party[2][1, 0] + np.uint64(1)) % np.uint64(P)   # one share off the polynomial
        per_party[0][3, 1] = (per_party[0][3, 1] + np.uint64(12345)) % np.uint64(P)
    else:
        per_party[1][1, 0, 1] += np.uint64(1)        # party 1's copy of component 2 differs from party 2's
        per_party[0][3, 1, 0] ^= np.uint64(2 ** 63)  # an error a random combination over Z_2^64 could miss

    async def body(e):
        return await e.consistent_rows("c", per_party[e.party])
    results, engines = run(engine, body)
    for got in results:
        assert got.tolist() == [True, False, True, False]
    if engine == "shamir":
        assert [o.purpose for o in engines[0].opened] == ["public-coins", "input-check"]


def test_shamir_consistent_rows_cannot_check_with_only_t_plus_one_live_parties() -> None:
    rows = np.array([[3], [5]], dtype=np.uint64)
    sh = raw_shares("shamir", rows)
    sh[2] = sh[2].copy()
    sh[2][1, 0] ^= np.uint64(1)

    async def body(e):
        return await e.consistent_rows("c", sh[e.party])
    results, engines = run("shamir", body, live=[0, 2])
    assert all(r.tolist() == [True, True] for r in results)      # nothing to compare two points with
    assert engines[0].exchange.stats.rounds == 0
    results, _ = run("shamir", body, n=3)
    assert all(r.tolist() == [True, False] for r in results)


@pytest.mark.parametrize("engine", ENGINES_UNDER_TEST)
def test_upper_half_is_exact_for_any_element(engine: str) -> None:
    if engine == "shamir":
        raw = [0, 1, HALF - 1, HALF, HALF + 1, HALF + 2, P - 1, P - 2]
        want = [v > HALF for v in raw]
    else:
        raw = [0, 1, 2 ** 62, 2 ** 63 - 1, 2 ** 63, 2 ** 63 + 1, 2 ** 64 - 1]
        want = [v >= 2 ** 63 for v in raw]
    per_party = raw_shares(engine, np.array(raw, dtype=np.uint64))

    async def body(e):
        return await e.upper_half("u", per_party[e.party])
    results, engines = run(engine, body)
    if engine == "shamir":
        got = shamir.reconstruct_checked(dict(enumerate(results)), 1)
    else:
        got = replicated.reconstruct_checked(dict(enumerate(results)))
    assert got.tolist() == [int(w) for w in want]


def test_row_order_depends_on_the_coins_not_on_the_listing() -> None:
    creds = [f"bidder-{i}" for i in range(20)]
    a = row_order(np.array([1, 2, 3, 4], dtype=np.uint64), "job", "bids", creds)
    b = row_order(np.array([1, 2, 3, 5], dtype=np.uint64), "job", "bids", creds)
    assert sorted(a) == list(range(20)) and a != b
    rev = row_order(np.array([1, 2, 3, 4], dtype=np.uint64), "job", "bids", creds[::-1])
    assert [creds[i] for i in a] == [creds[::-1][i] for i in rev]      # a client's place ignores the listing


@pytest.mark.parametrize("engine", ENGINES_UNDER_TEST)
def test_take_client_rows_excludes_each_bad_row_with_its_reason_and_all_nodes_agree(engine: str) -> None:
    from parley.v1 import circuit_pb2 as cpb

    from mpcnode.jobrun import take_client_rows
    clients = ["ann", "bob", "cyd", "dee", "eve", "fay"]
    circ = cpb.Circuit()
    circ.inputs.add(name="bids", length=2, lo=0, hi=100, source=cpb.INPUT_SOURCE_CLIENTS, clients=clients)
    plain = {"ann": [5, 7], "bob": [100, 0], "cyd": [1, 101], "dee": [3, 3], "eve": [9, 9]}   # fay: none
    shares = {c: [s.copy() for s in raw_shares(engine, np.array(v, dtype=np.uint64))] for c, v in plain.items()}
    if engine == "shamir":
        shares["dee"][1][0] = (shares["dee"][1][0] + np.uint64(3)) % np.uint64(P)
    else:
        shares["dee"][1][0, 1] += np.uint64(3)
    held = {i: {c: s[i] for c, s in shares.items() if not (c == "eve" and i == 2)} for i in range(3)}

    async def body(e):
        values = {}
        first, tags, excluded = await take_client_rows(e, "job-1", circ, ["a", "b", "c"], values,
                                                       lambda d: (held[e.party], list(held[e.party])))
        return first, tags["bids"].tolist(), sorted((x.credential, x.reason) for x in excluded), values["bids"]
    results, engines = run(engine, body)
    firsts, tags, excluded, rows = zip(*results)
    assert len(set(map(tuple, firsts))) == 1 and len(set(map(tuple, tags))) == 1
    assert excluded[0] == [("cyd", "out of range"), ("dee", "inconsistent shares"), ("eve", "not held by c")]
    assert all(x == excluded[0] for x in excluded)
    assert sorted(firsts[0]) == ["ann", "bob"] and [clients[i] for i in tags[0]] == firsts[0]
    if engine == "shamir":
        got = field.to_signed(shamir.reconstruct_checked(dict(enumerate(rows)), 1))
    else:
        got = replicated.to_signed(replicated.reconstruct_checked(dict(enumerate(rows))))
    assert got.reshape(-1, 2).tolist() == [plain[c] for c in firsts[0]]
    purposes = {o.purpose for o in engines[0].opened}
    assert purposes <= {"public-coins", "input-check", "masked-comparison", "masked-zero-test"}


def test_the_store_keeps_the_agreed_rows_across_a_restart(tmp_path) -> None:
    from mpcnode.store import ShareStore
    path = tmp_path / "shares.sqlite3"
    store = ShareStore(path)
    store.put_job("j", b"spec", "f" * 64, "RUNNING")
    store.add_client_share("j", "bids", "ann", np.array([1], dtype=np.uint64))
    store.add_client_share("j", "bids", "bob", np.array([2], dtype=np.uint64))
    assert store.client_rows_summary("j") == (False, 0, []) and store.client_verdict("j", "bids", "ann") is None
    store.record_client_rows("j", 1, [("bob", "bids", "out of range")], "f" * 64)
    store.close()
    store = ShareStore(path)
    assert store.client_rows_summary("j") == (True, 1, [("bob", "bids", "out of range")])
    assert store.client_verdict("j", "bids", "ann") == (True, "")
    assert store.client_verdict("j", "bids", "bob") == (False, "out of range")
    assert [(e, d) for _, e, _, _, d in store.audit_log("j")] == [("excluded", "bob (bids): out of range")]
    assert store.client_share_bytes("j", "bids", "ann") == np.array([1], dtype="<u8").tobytes()
    store.close()


class Equivocating:
    """A party's exchange that sends peer `victim` something else than the others in the rounds
    `lie(label)` picks: the split view a lying node can create, since rounds are not broadcasts."""

    def __init__(self, inner, victim: int, lie):
        self.inner, self.victim, self.lie = inner, victim, lie

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def round(self, label, send, expect):
        send = dict(send)
        if self.victim in send and self.lie(label):
            send[self.victim] = self.lie(label)(np.array(send[self.victim], dtype=np.uint64, copy=True))
        return await self.inner.round(label, send, expect)


def _run_with_liar(engine: str, liar: int, victim: int, lie):
    """take_client_rows over three honest-looking rows with party `liar` equivocating towards
    `victim`; returns each party's result or the exception it raised."""
    from parley.v1 import circuit_pb2 as cpb

    from mpcnode.jobrun import take_client_rows
    clients = ["ann", "bob", "cyd"]
    circ = cpb.Circuit()
    circ.inputs.add(name="bids", length=1, lo=0, hi=100, source=cpb.INPUT_SOURCE_CLIENTS, clients=clients)
    shares = {c: raw_shares(engine, np.array([v], dtype=np.uint64)) for c, v in zip(clients, [5, 50, 60])}
    net = MemoryNetwork(3, timeout_s=3)
    engines = []
    for i in range(3):
        ex = net.exchange(i)
        engines.append(ENGINE_CLASSES[engine](Equivocating(ex, victim, lie) if i == liar else ex, 1, [0, 1, 2]))

    async def body(e):
        held = {c: s[e.party] for c, s in shares.items()}
        try:
            first, _, excluded = await take_client_rows(e, "job-1", circ, ["a", "b", "c"], {},
                                                        lambda d: (held, list(held)))
            return first, sorted((x.credential, x.reason) for x in excluded)
        except Exception as exc:    # noqa: BLE001 - the test inspects what each party raised
            return exc

    async def main():
        return await asyncio.gather(*(body(e) for e in engines))
    return asyncio.run(main())


@pytest.mark.parametrize("engine", ENGINES_UNDER_TEST)
def test_a_node_that_tells_peers_different_presence_flags_is_named(engine: str) -> None:
    """Party c tells a it lacks ann's share and tells b it holds everything: without the final
    agreement a would drop ann and b would not, and they would compute on different rows."""
    def lie(label):
        if label != "clients":
            return None

        def flip(flags):
            flags[0] = 0          # "I do not hold ann's share", to the victim only
            return flags
        return flip
    results = _run_with_liar(engine, liar=2, victim=0, lie=lie)
    for r in results[:2]:       # both honest parties stop, naming the liar
        assert isinstance(r, ProtocolViolation), r
        assert "c sent different presence flags to different nodes" in str(r)


@pytest.mark.parametrize("engine", ENGINES_UNDER_TEST)
def test_a_node_that_sends_one_peer_a_different_check_value_fails_the_job(engine: str) -> None:
    """Party c adds 1 to everything it sends party a in the range check: a's verdicts differ
    from b's, and the final agreement stops both before any circuit runs on different rows."""
    def lie(label):
        if not label.startswith("clients/range"):
            return None

        def bump(arr):
            arr[...] = arr + np.uint64(1)
            return arr
        return bump
    results = _run_with_liar(engine, liar=2, victim=0, lie=lie)
    # each honest party stops: the victim when its check values do not fit (or at the final
    # agreement), the other when the victim stops answering; neither runs on its own rows
    assert all(isinstance(r, Exception) for r in results[:2]), results


def test_a_node_that_splits_the_degree_check_is_caught_by_the_final_agreement() -> None:
    """Shamir: party c sends party a other values in the degree check than it sends b. The check
    opens a masked value to every node, and each judges the row alone: a finds the rows
    inconsistent, b finds them fine. Only the final agreement (agree_on_rows) sees the split;
    without it a and b would run the circuit on different rows."""
    def lie(label):
        if label != "clients/0/consistent/open":      # the masked values, each judged alone
            return None

        def bump(arr):
            arr[...] = (arr + np.uint64(1)) % np.uint64(P)
            return arr
        return bump
    results = _run_with_liar("shamir", liar=2, victim=0, lie=lie)
    for r in results[:2]:
        assert isinstance(r, ProtocolViolation), results
        assert "reached different decisions" in str(r)
