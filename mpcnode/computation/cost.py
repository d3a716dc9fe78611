"""What a computation costs each compute node: rounds and bytes sent, measured by a dry run.

The estimate runs the computation once, on dummy inputs, among all n parties in this process
over the in-memory exchange (mpcnode/exchange.py), through `mpcnode.jobrun.run_job`: the very
function a node runs a job with (job agreement, node input sharing, client agreement, the
circuit). The counts are therefore not a model of the protocols but the protocols themselves.

Why dummy inputs give the real counts: the cost of every protocol here is data-independent.
Which messages a party sends, to whom, and how long they are depend only on public things: the
circuit, the parties and t, the party's index, and the number of client rows that count. No
branch looks at a secret or at an opened masked value (that is what keeps the traffic from
leaking the inputs), so any inputs of the declared shapes produce the same rounds and bytes.
The estimate uses 0 for every value (or the range's lower bound when 0 lies outside it) and,
unless told otherwise, assumes every listed client submits.

What is counted, per party, is what its exchange counts on a real node (JobStatus rounds_done
and bytes_sent): rounds it took part in and payload bytes it sent to other compute nodes.
Client shares, and input-only parties' shares, travel from their owners to the nodes, not
between nodes, so they are not counted here either. All parties are assumed live; a job that runs without a dropped party costs
somewhat less.

Time: the dry run does the arithmetic of all n parties on one machine, so it takes about as
long as the computation itself takes on one machine (roughly n times one node's CPU time, minus
the network latency). Planning a million-ballot vote takes as long as tallying it.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field as dc_field
from typing import Awaitable, Iterable, Mapping

import numpy as np

from parley.v1 import circuit_pb2 as cpb

from .. import sharing
from ..circuit import validate
from ..exchange import MemoryNetwork
from ..jobrun import ClientRows, JobResult, run_job
from ..opened import Opened
from .spec import Computation

DRY_RUN_JOB_ID = "plan-dry-run"   # job agreement hashes it to a fixed-size digest: the id's length costs nothing
# A deadline per round that a correct dry run never reaches: all parties run in one event loop, so
# a round waits only for the other parties' CPU work. It exists so that a bug cannot hang `plan`.
ROUND_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class PartyCost:
    party: str
    rounds: int          # rounds this node takes part in (its JobStatus.rounds_done at the end)
    bytes_sent: int      # payload bytes it sends to other compute nodes (JobStatus.bytes_sent)
    messages_sent: int


@dataclass(frozen=True)
class CostEstimate:
    parties: tuple[PartyCost, ...]        # in party order
    client_rows: dict[str, int]           # client input -> rows assumed to count
    interactive_levels: int               # the circuit's depth in interactive ops
    opened: tuple[Opened, ...] = ()       # what the first party opens, in order (mpcnode/opened.py)
    dry_run_s: float = dc_field(default=0.0, compare=False)   # wall time of the dry run, not a cost

    def of(self, party: str) -> PartyCost:
        for p in self.parties:
            if p.party == party:
                return p
        raise KeyError(f"{party!r} is not a compute party of this computation")

    def as_json(self) -> dict:
        return {"parties": [{"party": p.party, "rounds": p.rounds, "bytes_sent": p.bytes_sent,
                             "messages_sent": p.messages_sent} for p in self.parties],
                "client_rows": dict(self.client_rows), "interactive_levels": self.interactive_levels,
                "opened": [{"label": o.label, "count": o.count, "purpose": o.purpose, "to": list(o.to)}
                           for o in self.opened],
                "dry_run_s": round(self.dry_run_s, 3)}


def resolve_client_rows(circuit: cpb.Circuit, client_rows: Mapping[str, int] | None) -> dict[str, int]:
    """Rows assumed per client input: every listed client unless `client_rows` says otherwise.
    Raises ValueError for an input that is not a client input or a count outside 0..listed."""
    listed = {d.name: len(d.clients) for d in circuit.inputs if d.source == cpb.INPUT_SOURCE_CLIENTS}
    rows = dict(listed)
    for name, count in (client_rows or {}).items():
        if name not in listed:
            known = ", ".join(listed) or "none"
            raise ValueError(f"{name!r} is not a client input of this computation (client inputs: {known})")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= listed[name]:
            raise ValueError(f"{name}: {count!r} rows, but between 0 and the {listed[name]} listed clients can submit")
        rows[name] = count
    return rows


def dummy_value(lo: int, hi: int) -> int:
    """A value every range check accepts: 0 if the range holds it, else its lower bound."""
    return 0 if lo <= 0 <= hi else lo


def _dummy(decl: cpb.InputDecl) -> np.ndarray:
    return np.full(decl.length, dummy_value(decl.lo, decl.hi), dtype=np.int64)


def dummy_node_inputs(circuit: cpb.Circuit, owner: str) -> dict[str, np.ndarray]:
    """What `owner`'s node would read from its datasets (inputs.load_node_inputs): signed int64."""
    return {d.name: _dummy(d) for d in circuit.inputs if d.source == cpb.INPUT_SOURCE_NODE and d.owner == owner}


def dummy_client_rows(rows: Mapping[str, int], protocol: str = "shamir", party: int = 0) -> ClientRows:
    """Party `party`'s shares of the first rows[name] listed clients of each client input, in list
    order, and of every input-only party's node input: sharings of a public dummy row
    (sharing.constant_share; only the number of rows matters to the cost), in the share format of
    `protocol`."""
    def client_rows(decl: cpb.InputDecl) -> tuple[dict[str, np.ndarray], list[str]]:
        if decl.source == cpb.INPUT_SOURCE_NODE:   # an input-only party's submitted node input
            return {decl.owner: sharing.constant_share(protocol, sharing.encode(protocol, _dummy(decl)), party)}, \
                [decl.owner]
        submitted = list(decl.clients)[: rows[decl.name]]
        row = sharing.constant_share(protocol, sharing.encode(protocol, _dummy(decl)), party)
        return {c: row for c in submitted}, submitted
    return client_rows


def dummy_kept_models(circuit: cpb.Circuit, protocol: str, party: int) -> dict[str, np.ndarray]:
    """Party `party`'s shares of an all-zero model for every kept model the circuit reads (a tree
    evaluation's cost depends on the public shape only)."""
    return {d.name: sharing.constant_share(protocol, sharing.encode(protocol, _dummy(d)), party)
            for d in circuit.inputs if d.source == cpb.INPUT_SOURCE_MODEL}


async def dry_run(computation: Computation, client_rows: Mapping[str, int] | None = None) -> CostEstimate:
    """Run `computation` once among all its parties in this event loop and count every party's
    traffic (see the module docstring for why that is the real cost). Raises ValueError for bad
    `client_rows`, and whatever the computation raises if it cannot run."""
    rows = resolve_client_rows(computation.circuit, client_rows)
    parties = list(computation.parties)
    spec = computation.job_spec(DRY_RUN_JOB_ID, timeout_s=ROUND_TIMEOUT_S)
    plan = validate(spec.circuit, parties, computation.protocol, computation.input_parties)
    net = MemoryNetwork(len(parties), timeout_s=ROUND_TIMEOUT_S)
    exchanges = [net.exchange(i) for i in range(len(parties))]
    started = time.monotonic()
    results = await _all(run_job(ex, spec, plan, parties, dummy_node_inputs(spec.circuit, parties[i]),
                                 dummy_client_rows(rows, computation.protocol, i),
                                 kept_models=dummy_kept_models(spec.circuit, computation.protocol, i))
                         for i, ex in enumerate(exchanges))
    elapsed = time.monotonic() - started
    return CostEstimate(
        parties=tuple(PartyCost(parties[i], ex.stats.rounds, ex.stats.bytes_sent, ex.stats.messages_sent)
                      for i, ex in enumerate(exchanges)),
        client_rows=rows, interactive_levels=plan.depth, opened=tuple(results[0].opened), dry_run_s=elapsed)


def estimate(computation: Computation, client_rows: dict[str, int] | None = None) -> CostEstimate:
    """`dry_run` from synchronous code (its own event loop); from a coroutine, await `dry_run`."""
    return asyncio.run(dry_run(computation, client_rows))


async def _all(coros: Iterable[Awaitable[JobResult]]) -> list[JobResult]:
    """Run every party; when one fails, cancel the others (they would wait for it until the round
    deadline) and raise the first error."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
