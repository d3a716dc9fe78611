"""Jobs prepared but never started expire (node config `prepared_ttl_s`).

A Prepare reserves things on a node: the job's entry, its mailbox (into which peers may already
send messages for its first rounds, up to the mailbox's caps), and this organization's inputs,
read from disk at Prepare. A coordinator that prepares jobs and never starts them, by accident
or on purpose, would hold all of that forever. After `prepared_ttl_s` a job still prepared and
never started fails ("expired"), which closes its mailbox (freeing what was buffered and refusing
later messages) and drops the inputs; a later Start answers FAILED with the reason.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

PREPARED = "PREPARED"   # node.State.PREPARED (node.py imports this module, not the reverse)


def expire_unless_started(job: Any, ttl_s: float, fail: Callable[[Any, str, bool], None]) -> asyncio.TimerHandle:
    """After `ttl_s`, fail `job` (through `fail`, the node's one way to end a job; its third
    argument says "expired", which frees the job's privacy-budget reservation as expired) if it
    was never started. A job that started or ended meanwhile is left alone."""
    def check() -> None:
        if job.state == PREPARED and job.task is None:
            job.inputs.clear()          # our organization's data: not kept for a job that will not run
            fail(job, f"prepared but not started within {ttl_s:g} s (prepared_ttl_s): expired", True)

    return asyncio.get_running_loop().call_later(ttl_s, check)
