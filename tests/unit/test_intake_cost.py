"""Client intake stays flat as a job fills: accepting one more share costs the same work whether
the job holds a hundred shares or a hundred thousand.

Work is counted, not timed: SQLite's progress handler counts virtual-machine steps of every
statement a submission runs, and the node's own membership test is a set lookup. A count query
per submission (as before) made each step grow linearly with the shares already held.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mpcnode.store import ShareStore

SHARE = np.arange(3, dtype=np.uint64)


def _steps_per_insert(store: ShareStore, job: str, first: int, count: int) -> float:
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    store._db.set_progress_handler(tick, 1)   # called once per SQLite VM instruction
    try:
        for k in range(first, first + count):
            store.add_client_share(job, "ballots", f"voter-{k:07d}", SHARE)
    finally:
        store._db.set_progress_handler(None, 1)
    return steps[0] / count


def test_accepting_a_share_costs_the_same_when_the_job_is_full(tmp_path: Path) -> None:
    store = ShareStore(tmp_path / "shares.sqlite3")
    try:
        store._db.execute("BEGIN")
        store._db.executemany(   # fill the job quickly, outside the measured path
            "INSERT INTO client_shares (job_id, input, client, share, received) VALUES (?,?,?,?,?)",
            (("job", "ballots", f"filler-{k:07d}", SHARE.tobytes(), 0.0) for k in range(100_000)))
        store._db.execute("COMMIT")
        early = _steps_per_insert(store, "other-job", 0, 200)     # an empty job
        late = _steps_per_insert(store, "job", 0, 200)            # a job holding 100,000 shares
    finally:
        store.close()
    # B-tree depth grows by a level or two between the two; a linear scan would be ~1000x
    assert late < 2 * early, (early, late)
