"""Share formats outside the engines (mpcnode/sharing.py) and the paths that use them: client
shares, the node's intake check, the share store, the dry run's constant shares (the recipient's
checks: tests/unit/test_recipient_checks.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mpcnode import replicated, sharing
from mpcnode.store import ShareStore
from mpcnode.transport import serde

VALUES = np.array([0, 1, -1, 12345, -(1 << 59) + 1, (1 << 59) - 1], dtype=np.int64)


@pytest.mark.parametrize("protocol, n, t", [("shamir", 3, 1), ("shamir", 5, 2), ("replicated3", 3, 1)])
def test_client_shares_reconstruct_from_enough_parties(protocol: str, n: int, t: int) -> None:
    shares = sharing.client_shares(protocol, VALUES, n, t)
    assert len(shares) == n
    assert all(s.shape == VALUES.shape + sharing.share_shape(protocol) for s in shares)
    need = sharing.min_shares(protocol, t)
    for start in range(n):
        subset = {(start + k) % n: shares[(start + k) % n] for k in range(need)}
        assert sharing.reconstruct(protocol, subset, t).tolist() == VALUES.tolist()
    with pytest.raises(ValueError, match=f"at least {need}"):
        sharing.reconstruct(protocol, {0: shares[0]} if need > 1 else {}, t)


def test_replicated3_node_i_gets_components_i_and_i_plus_1() -> None:
    shares = sharing.client_shares("replicated3", VALUES, 3, 1)
    for i in range(3):   # the pair node i holds: its second word is node i+1's first
        assert np.array_equal(shares[i][:, 1], shares[(i + 1) % 3][:, 0])
    total = shares[0][:, 0] + shares[1][:, 0] + shares[2][:, 0]
    assert replicated.to_signed(total).tolist() == VALUES.tolist()
    with pytest.raises(ValueError, match="exactly 3 parties"):
        sharing.client_shares("replicated3", VALUES, 4, 1)


def test_a_component_held_differently_names_both_holders() -> None:
    shares = sharing.client_shares("replicated3", VALUES, 3, 1)
    bad = shares[1].copy()
    bad[2, 1] += np.uint64(1)       # node 1's copy of component 2, which node 2 also holds
    with pytest.raises(sharing.InconsistentShares) as err:
        sharing.reconstruct("replicated3", {0: shares[0], 1: bad, 2: shares[2]}, 1)
    assert err.value.culprits == (1, 2) and err.value.pair


def test_shamir_culprit_is_named_when_it_can_be_told() -> None:
    shares = sharing.client_shares("shamir", VALUES, 5, 1)
    shares[3] = shares[3].copy()
    shares[3][0] ^= np.uint64(1)
    with pytest.raises(sharing.InconsistentShares) as err:
        sharing.reconstruct("shamir", dict(enumerate(shares)), 1)
    assert err.value.culprits == (3,) and not err.value.pair


def test_intake_takes_exactly_one_row_of_the_jobs_shape() -> None:
    row = sharing.client_shares("replicated3", VALUES[:3], 3, 1)[1]
    payload, shape = serde.encode(row)
    got = sharing.decode_row("replicated3", payload, shape, 3, "input 'bids' from v1")
    assert np.array_equal(got, row)
    # a Shamir-shaped row to a replicated3 job, and the other way round: refused, naming shapes only
    flat, flat_shape = serde.encode(np.arange(3, dtype=np.uint64))
    with pytest.raises(ValueError) as err:
        sharing.decode_row("replicated3", flat, flat_shape, 3, "input 'bids' from v1")
    assert str(err.value) == ("input 'bids' from v1: a replicated3 job takes one share of shape [3, 2] per client "
                              "(3 values), got shape [3]")
    with pytest.raises(ValueError, match=r"a shamir job takes one share of shape \[3\] per client"):
        sharing.decode_row("shamir", payload, shape, 3, "input 'bids' from v1")
    # any 64-bit word is a ring element; a Shamir share must be below p
    words, wshape = serde.encode(np.full((3, 2), (1 << 64) - 1, dtype=np.uint64))
    sharing.decode_row("replicated3", words, wshape, 3, "x")
    big, bshape = serde.encode(np.full(3, (1 << 64) - 1, dtype=np.uint64))
    with pytest.raises(ValueError, match="out of field range"):
        sharing.decode_row("shamir", big, bshape, 3, "x")
    with pytest.raises(ValueError, match="bytes do not hold"):
        sharing.decode_row("replicated3", payload[:-8], shape, 3, "x")


def test_constant_shares_open_to_the_constant() -> None:
    public = sharing.encode("replicated3", VALUES)
    shares = {i: sharing.constant_share("replicated3", public, i) for i in range(3)}
    assert sharing.reconstruct("replicated3", shares, 1).tolist() == VALUES.tolist()
    assert np.array_equal(sharing.constant_share("shamir", public[:2], 4), public[:2])


def test_the_store_keeps_a_shares_component_axis(tmp_path: Path) -> None:
    share = sharing.client_shares("replicated3", VALUES, 3, 1)[2]
    store = ShareStore(tmp_path / "s.sqlite3")
    store.put_job("j", b"spec", "f" * 64, "PREPARED")
    store.add_client_share("j", "bids", "v1", share[:2])
    store.add_client_share("j", "bids", "v2", np.arange(4, dtype=np.uint64))   # a Shamir-shaped row stays flat
    store.finish_job("j", {"out": (share, ["a"], []), "flat": (np.arange(3, dtype=np.uint64), ["a"], [])})
    store.close()
    again = ShareStore(tmp_path / "s.sqlite3")     # durability: reopened from disk
    rows = again.client_shares("j", "bids")
    assert rows["v1"].shape == (2, 2) and np.array_equal(rows["v1"], share[:2])
    assert rows["v2"].shape == (4,)
    out = again.output("j", "out")
    assert out is not None and out.share.shape == VALUES.shape + (2,) and np.array_equal(out.share, share)
    flat = again.output("j", "flat")
    assert flat is not None and flat.share.shape == (3,)
    again.close()


def test_a_store_from_before_participants_still_reads_and_never_releases_row_labels(tmp_path: Path) -> None:
    """A store written when outputs kept row_labels (every counted client, in arrival order):
    it opens, its outputs read with no participants, and new outputs are written beside them."""
    import sqlite3

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE jobs (job_id TEXT PRIMARY KEY, spec BLOB NOT NULL, fingerprint TEXT NOT NULL,
          state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', created REAL NOT NULL, updated REAL NOT NULL);
        CREATE TABLE client_shares (job_id TEXT NOT NULL, input TEXT NOT NULL, client TEXT NOT NULL,
          share BLOB NOT NULL, received REAL NOT NULL, PRIMARY KEY (job_id, input, client));
        CREATE TABLE outputs (job_id TEXT NOT NULL, name TEXT NOT NULL, share BLOB NOT NULL,
          recipients TEXT NOT NULL, row_labels TEXT NOT NULL DEFAULT '', PRIMARY KEY (job_id, name));
        CREATE TABLE audit (ts REAL NOT NULL, event TEXT NOT NULL, job_id TEXT NOT NULL,
          fingerprint TEXT NOT NULL, detail TEXT NOT NULL);
    """)
    db.execute("INSERT INTO outputs VALUES ('old', 'o', ?, 'r', 'voter-2\nvoter-1')",
               (np.arange(3, dtype="<u8").tobytes(),))
    db.commit()
    db.close()
    store = ShareStore(path)
    old = store.output("old", "o")
    assert old is not None and old.share.tolist() == [0, 1, 2] and old.participants == [] and old.recipients == ["r"]
    store.put_job("new", b"", "fp", "RUNNING")
    store.finish_job("new", {"o": (np.arange(2, dtype=np.uint64), ["r"], ["voter-1"])})
    new = store.output("new", "o")
    assert new is not None and new.participants == ["voter-1"]
    store.close()
