"""The coordinator compares the client rows every live node reports (coordinator/scheduler.py,
cross_check_rows): a job whose nodes report different rows fails, naming the node(s) that differ
from the majority (all of them with no majority). Without node processes: the scheduler runs
against stand-in node stubs that answer as chosen here."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from coordinator.client import excluded_lines
from coordinator.config import CoordinatorConfig
from coordinator.rows import cross_check_rows
from coordinator.jobplan import JobPlan
from coordinator.scheduler import Scheduler
from mpcnode.computation.builder import CircuitBuilder
from parley.v1 import node_pb2

NODES = ["house", "escrow", "notary"]
BIDDERS = ["bidder-01", "bidder-02", "bidder-03", "bidder-04", "bidder-05", "bidder-06"]
AGREED = (4, (("bidder-05", "bids", "out of range"), ("bidder-06", "bids", "inconsistent shares")))


def test_the_same_rows_everywhere_are_the_rows() -> None:
    assert cross_check_rows({o: AGREED for o in NODES}) == (AGREED, "")
    assert cross_check_rows({}) == (None, "")


def test_a_node_that_differs_from_the_majority_is_named() -> None:
    other = (5, (("bidder-05", "bids", "out of range"),))
    view, why = cross_check_rows({"house": AGREED, "escrow": other, "notary": AGREED})
    assert view is None
    assert why == ("the nodes disagree on the client rows: escrow differs from the majority (house, notary: "
                   "4 counted, 2 excluded): escrow 5 counted, 1 excluded "
                   "(does not exclude bidder-06 (bids): inconsistent shares)")
    # the same count, another reason: a difference too
    reason = (4, (("bidder-05", "bids", "out of range"), ("bidder-06", "bids", "not held by notary")))
    _, why = cross_check_rows({"house": AGREED, "escrow": AGREED, "notary": reason})
    assert why.startswith("the nodes disagree on the client rows: notary differs from the majority")
    assert "also excludes bidder-06 (bids): not held by notary; does not exclude bidder-06 (bids): inconsistent" in why
    # a node that finished without any agreed rows
    _, why = cross_check_rows({"house": AGREED, "escrow": None, "notary": AGREED})
    assert why.endswith("escrow reports no agreed rows")


def test_with_no_majority_every_node_is_named() -> None:
    _, why = cross_check_rows({"house": AGREED, "escrow": (5, ())})
    assert why == ("the nodes disagree on the client rows (no majority): escrow 5 counted, 0 excluded; "
                   "house 4 counted, 2 excluded (excludes bidder-05 (bids): out of range, "
                   "bidder-06 (bids): inconsistent shares)")


class FakeNode:
    """A node's NodeControl as the scheduler calls it: accepts, starts, and reports DONE with the
    client rows it is given."""

    def __init__(self, org: str, rows: tuple[int, tuple] | None, told: list[tuple[str, str]]):
        self.org, self.rows, self.told = org, rows, told

    def _status(self, req, state=node_pb2.JOB_STATE_DONE) -> node_pb2.JobStatus:
        st = node_pb2.JobStatus(job_id=req.job_id, state=state, rounds_done=5, rounds_total=5)
        if self.rows is not None:
            st.rows_agreed, st.rows_accepted = True, self.rows[0]
            st.excluded.extend(node_pb2.ExcludedClient(credential=c, input=i, reason=r) for c, i, r in self.rows[1])
        return st

    async def Prepare(self, spec, **kw):
        return node_pb2.PrepareReply(accepted=True)

    async def Start(self, req, **kw):
        return self._status(req, node_pb2.JOB_STATE_RUNNING)

    async def Status(self, req, **kw):
        return self._status(req)

    async def CloseInputs(self, req, **kw):
        return self._status(req)

    async def Commit(self, req, **kw):
        self.told.append((self.org, "Commit"))
        return self._status(req)

    async def Abort(self, req, **kw):
        self.told.append((self.org, "Abort"))
        return self._status(req, node_pb2.JOB_STATE_FAILED)


def _plan() -> JobPlan:
    b = CircuitBuilder("rows-check")
    bids = b.client_input("bids", BIDDERS, 1, 0, 1000)
    b.output("total", b.sum(bids), ["house"])
    return JobPlan("rows-check", b.build(), list(NODES), 1, timeout_s=30.0)


async def _run(tmp_path: Path, rows: dict[str, tuple[int, tuple] | None]):
    cfg = CoordinatorConfig(listen="127.0.0.1:0", tls={"ca": "ca.pem", "cert": "c.pem", "key": "c.key"},
                            nodes={o: f"127.0.0.1:{9000 + i}" for i, o in enumerate(NODES)},
                            database=tmp_path / "jobs.sqlite3", poll_interval_s=0.01, status_wait_s=0)
    sched = Scheduler(cfg, None)   # type: ignore[arg-type]   # no channel is opened: the stubs stand in
    told: list[tuple[str, str]] = []
    sched._stubs.update({o: FakeNode(o, rows[o], told) for o in NODES})   # type: ignore[misc]
    try:
        sched.submit_plan("job-1", _plan())
        sched.request_close("job-1")
        await asyncio.wait_for(sched._running["job-1"], 10)
        return sched.snapshot("job-1"), sorted(told)
    finally:
        await sched.close()


async def test_a_job_whose_nodes_agree_shows_their_rows(tmp_path: Path) -> None:
    final, told = await _run(tmp_path, {o: AGREED for o in NODES})
    assert (final.state, final.error) == ("DONE", "")
    assert (final.rows_agreed, final.rows_accepted) == (True, 4)
    assert excluded_lines(final) == ["  excluded bidder-05 (bids): out of range",
                                     "  excluded bidder-06 (bids): inconsistent shares"]
    assert told == [(o, "Commit") for o in sorted(NODES)]


@pytest.mark.parametrize("escrow", [(5, (("bidder-05", "bids", "out of range"),)), None])
async def test_a_job_whose_nodes_report_different_rows_fails_naming_the_node(tmp_path: Path, escrow) -> None:
    # escrow lies about the rows (or reports none although it finished): the job fails, every node
    # is told to drop it, and the operator sees which node differs; no node's rows are shown as the job's
    final, told = await _run(tmp_path, {"house": AGREED, "escrow": escrow, "notary": AGREED})
    assert final.state == "FAILED"
    assert final.error.startswith("the nodes disagree on the client rows: escrow differs from the majority "
                                  "(house, notary: 4 counted, 2 excluded): escrow "), final.error
    assert not final.rows_agreed and not final.excluded
    assert told == [(o, "Abort") for o in sorted(NODES)]


def test_a_majority_without_agreed_rows_is_still_a_majority() -> None:
    """Two nodes finished without reporting rows, one reports some: the one is odd, named against
    the majority (a view of None is a view, not the absence of a majority)."""
    _, why = cross_check_rows({"house": None, "escrow": None, "notary": AGREED})
    assert why.startswith("the nodes disagree on the client rows: notary differs from the majority "
                          "(escrow, house: no agreed rows)"), why
