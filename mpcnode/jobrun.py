"""One node's part of a job, from the agreement on the job to its output shares.

Both a real node (mpcnode/node.py, over its gRPC exchange) and the cost estimate
(mpcnode/computation/cost.py, n parties over the in-memory exchange) run this one function, so
the rounds and bytes a dry run counts are those a node sends: there is no second description of
the protocol sequence that could drift from the first.

The job's engine comes from `engine_for(spec.protocol, ring_bits=...)` (engines/), and every step
below talks to it, never to one sharing scheme's code. A wide-ring engine (Z_2^128) checks the
rows its owners and clients dealt in Z_2^64 with its narrow engine and then lifts them
(`lift_dealt`). The sequence, every step over the same exchange:
1. `agree_on_job`: inside the engine's first round (for Shamir, the pairwise keys), before any share
   leaves the node (protocols/agreement.py);
2. `Executor.share_node_inputs`: every owner among the compute parties deals all its node inputs in
   one round;
3. `agree_on_owner_inputs` (only with input-only parties): one round, every live node holds the
   shares each input-only party submitted, before any is used;
4. `take_client_rows`: the live nodes agree which clients' rows every one of them holds, check
   each row's sharing and range inside MPC, exclude (not fail on) the bad ones and order the
   rest by a hash of jointly drawn coins (protocols/clientchecks.py);
5. `Executor.run`: the circuit, level by level.
Client shares, and the shares of input-only parties' node inputs, reach the nodes from their owners
(InputIntake), not over this exchange.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from parley.v1 import circuit_pb2 as cpb
from parley.v1 import node_pb2

from .circuit import Plan
from .engines import Engine, engine_for
from .opened import Opened
from .exchange import Exchange
from .executor import Executor, Values
from .engines.base import Share
from .computation.spec import canonical_json
from .protocols.agreement import (MissingInput, agree_on_job, agree_on_owner_inputs, agree_on_presence,
                                  agree_on_rows)
from .protocols.clientchecks import INCONSISTENT, OUT_OF_RANGE, Exclusion, row_order, rows_in_range

# (shares this node holds, by client; clients in the order this node accepted them: not used for
# the row order, which no single node decides) for one client input declaration; for a node input
# of an input-only party, ({owner: share} or {}, ...)
ClientRows = Callable[[cpb.InputDecl], tuple[Mapping[str, np.ndarray], list[str]]]


@dataclass(frozen=True)
class JobResult:
    outputs: Values           # this node's shares of every output, keyed by output name
    row_labels: list[str]     # the clients whose rows counted, in the agreed order (empty: none)
    opened: list[Opened]      # every value this node opened in the job, outputs last (mpcnode/opened.py)
    # per client input: the index in decl.clients of each accepted row, in row order
    row_tags: dict[str, np.ndarray] = field(default_factory=dict)
    excluded: list[Exclusion] = field(default_factory=list)   # client rows that did not count, and why
    kept: dict[str, Share] = field(default_factory=dict)      # a `model` job: model id -> this node's share


async def run_job(exchange: Exchange, spec: node_pb2.JobSpec, plan: Plan, live: Sequence[str],
                  node_inputs: dict[str, np.ndarray], client_rows: ClientRows,
                  check_rows: Callable[[dict[str, int]], None] | None = None,
                  record_rows: Callable[[dict[str, int], list[Exclusion]], None] | None = None,
                  kept_models: Mapping[str, np.ndarray] | None = None) -> JobResult:
    """Run this node's side of `spec` with the parties in `live` (names, a subset of spec.parties).

    `node_inputs`: this node's own input arrays as signed int64 (inputs.load_node_inputs), keyed by
    input name (empty if it owns none); the engine encodes them into its plaintext domain.
    `client_rows(decl)` (this node's shares, each in the job's share format) is read only after
    submission has closed. `record_rows`, if given, gets how many rows count per client input and
    the excluded rows once the nodes agreed on them. `check_rows`, if given, sees how many client rows each client input got once the nodes agreed on them, and may
    raise to stop the job before the circuit runs (nothing has been opened by then).
    `kept_models`: this node's shares of the kept models the job reads (INPUT_SOURCE_MODEL), by
    input name (models.ModelJobs.take).
    """
    parties = list(spec.parties)
    engine = engine_for(spec.protocol or "shamir", exchange, spec.threshold, [parties.index(p) for p in live],
                        ring_bits=ring_bits_of(spec.circuit))
    # before any share leaves: every live node runs this exact computation with this live set
    await agree_on_job(engine, spec.job_id, spec.fingerprint, live)
    executor = Executor(engine, spec.circuit, plan)
    values = await executor.share_node_inputs(parties, {k: engine.encode(v) for k, v in node_inputs.items()})
    # shares that owners and clients dealt arrive in the protocol's own ring (their libraries do not
    # change with the circuit): a wide engine checks them with its narrow engine, then lifts them
    narrow = getattr(engine, "narrow", engine)
    dealt: Values = values if narrow is engine else {}
    await take_owner_inputs(narrow, spec.circuit, parties, dealt, client_rows)
    labels, tags, excluded = await take_client_rows(narrow, spec.job_id, spec.circuit, parties, dealt, client_rows)
    if narrow is not engine:
        values.update(await lift_dealt(engine, spec.circuit, dealt))
    executor.row_tags = tags
    if record_rows is not None and tags:      # tags has an entry per client input, if any
        record_rows({name: len(idx) for name, idx in tags.items()}, excluded)
    if check_rows is not None:
        check_rows({d.name: int(values[d.name].shape[0]) // d.length
                    for d in spec.circuit.inputs if d.source == cpb.INPUT_SOURCE_CLIENTS})
    for d in spec.circuit.inputs:
        if d.source == cpb.INPUT_SOURCE_MODEL:
            values[d.name] = np.asarray((kept_models or {})[d.name]).reshape((d.length,) + tuple(engine.share_shape))
    outputs = await executor.run(values)
    opened = list(engine.opened)
    for out in spec.circuit.outputs:
        # an output is opened when its recipients fetch it; which values and to whom is fixed here
        count = int(np.prod(engine.value_shape(outputs[out.name]), dtype=np.int64))
        opened.append(Opened(f"output/{out.name}", count, "output", tuple(out.recipients)))
    kept = {k.model_id: values[k.value] for k in spec.circuit.keep}
    return JobResult(outputs=outputs, row_labels=labels, opened=opened, row_tags=tags, excluded=excluded, kept=kept)


def ring_bits_of(circuit: cpb.Circuit) -> int:
    """The plaintext ring the circuit asks for (Circuit.ring_bits: 128 for fixed-point circuits
    that need the wide replicated ring); 0, the protocol's own domain, when unset or on a circuit
    schema without the field."""
    return int(getattr(circuit, "ring_bits", 0) or 0)


async def lift_dealt(engine: Engine, circuit: cpb.Circuit, dealt: Values) -> Values:
    """The owner- and client-dealt inputs (narrow Z_2^64 shares, checked) lifted into the wide
    engine's ring, all in one batch (engines/replicated3_wide.py `lift`: 2 rounds, exact for values
    in [-2^62, 2^62)). The declared range of every such input must lie there (checked first: an
    input outside it would be lifted wrongly, not refused)."""
    names = sorted(dealt)
    decls = {d.name: d for d in circuit.inputs}
    bound = 1 << 62
    for name in names:
        d = decls[name]
        if not -bound <= d.lo <= d.hi < bound:
            raise ValueError(f"input {name!r}: declared range [{d.lo}, {d.hi}] does not fit [-2^62, 2^62), "
                             f"which a wide-ring job needs for owner- and client-dealt inputs")
    if not names or sum(len(dealt[n]) for n in names) == 0:
        return {n: engine.constant(engine.encode(np.zeros(len(dealt[n]), dtype=np.int64))) for n in names}
    lifted = await engine.lift("inputs/lift", np.concatenate([dealt[n] for n in names]))
    out, pos = {}, 0
    for n in names:
        out[n] = lifted[pos:pos + len(dealt[n])]
        pos += len(dealt[n])
    return out


async def take_owner_inputs(engine: Engine, circuit: cpb.Circuit, parties: list[str], values: Values,
                            client_rows: ClientRows) -> None:
    """The node inputs of input-only parties (owners that are not compute parties), as their owners
    submitted them: once every live node confirmed it holds each of them (agree_on_owner_inputs),
    put into `values`. The owner range-checked its values before sharing them, like any node
    input. No round when the job has no input-only party."""
    decls = [d for d in circuit.inputs if d.source == cpb.INPUT_SOURCE_NODE and d.owner not in parties]
    if not decls:
        return
    got = [client_rows(d)[0].get(d.owner) for d in decls]
    await agree_on_owner_inputs(engine, [d.owner for d in decls], [g is not None for g in got], parties)
    for d, share in zip(decls, got):
        if share is None:   # ruled out by the agreement, which counts this node too
            raise MissingInput(f"the input of {d.owner} did not reach this node")
        values[d.name] = share.reshape((d.length,) + tuple(engine.share_shape))


async def take_client_rows(engine: Engine, job_id: str, circuit: cpb.Circuit, parties: list[str],
                           values: Values, client_rows: ClientRows) -> tuple[list[str], dict[str, np.ndarray],
                                                                              list[Exclusion]]:
    """After client submission closed: decide with the other live nodes whose rows count and in
    which order (protocols/clientchecks.py), and put those rows into `values`. A row is excluded,
    not fatal, if some live node does not hold it (agree_on_presence; those nodes are named), if
    its sharing is inconsistent (Engine.consistent_rows) or if a value is out of the declared
    range (rows_in_range). Accepted rows are ordered by row_order, over public coins drawn now.

    Returns (the credentials of the first client input's accepted rows in row order, {input:
    the index in decl.clients of each accepted row, in row order}, the exclusions). Rounds: 2
    (presence and its echo) + the consistency checks of all inputs and the order coins, concurrently + 1
    (agree_on_rows on the verdicts) + the range check of all inputs in one batch + 1 (agree_on_rows:
    every live node reached the same decision, or the job fails before the circuit runs)."""
    decls = [d for d in circuit.inputs if d.source == cpb.INPUT_SOURCE_CLIENTS]
    if not decls:
        return [], {}, []
    got = [client_rows(d)[0] for d in decls]
    missing = await agree_on_presence(engine, [np.fromiter((c in g for c in d.clients), dtype=bool,
                                                            count=len(d.clients)) for d, g in zip(decls, got)], parties)
    excluded: list[Exclusion] = []
    held: list[np.ndarray] = []          # per input: indices into decl.clients held by every live node
    rows: list[Share] = []
    shape = tuple(engine.share_shape)
    live = np.asarray(engine.parties)
    for d, g, miss in zip(decls, got, missing):
        lacking = miss.sum(axis=0)
        # some but not all live nodes lack it: the row is excluded and those nodes named
        for c in np.flatnonzero((lacking > 0) & (lacking < miss.shape[0])):
            names = ", ".join(parties[int(i)] for i in live[miss[:, c]])
            excluded.append(Exclusion(d.clients[c], d.name, f"not held by {names}"))
        idx = np.flatnonzero(lacking == 0)
        held.append(idx)
        rows.append(np.stack([np.asarray(g[d.clients[c]], dtype=np.uint64).reshape((d.length,) + shape)
                              for c in idx]) if idx.size else np.zeros((0, d.length) + shape, dtype=np.uint64))

    async def order_coins() -> np.ndarray:
        return await engine.open("clients/order/open", await engine.random("clients/order", (4,)),
                                 purpose="public-coins")

    *consistent, coins = await asyncio.gather(
        *(engine.consistent_rows(f"clients/{k}/consistent", r) for k, r in enumerate(rows)), order_coins())
    # every live node must judge each row alike before the range check runs on the rows left
    await agree_on_rows(engine, "clients/consistent/agreed", canonical_json([ok.tolist() for ok in consistent]))
    for d, idx, ok in zip(decls, held, consistent):
        excluded.extend(Exclusion(d.clients[c], d.name, INCONSISTENT) for c in idx[~ok])
    held = [idx[ok] for idx, ok in zip(held, consistent)]
    rows = [r[ok] for r, ok in zip(rows, consistent)]
    in_range = await rows_in_range(engine, "clients/range", [(r, d.lo, d.hi) for r, d in zip(rows, decls)])
    tags: dict[str, np.ndarray] = {}
    first: list[str] = []
    for d, idx, r, ok in zip(decls, held, rows, in_range):
        excluded.extend(Exclusion(d.clients[c], d.name, OUT_OF_RANGE) for c in idx[~ok])
        idx, r = idx[ok], r[ok]
        order = row_order(coins, job_id, d.name, [d.clients[c] for c in idx])
        tags[d.name] = idx[order]
        values[d.name] = r[order].reshape((len(order) * d.length,) + shape)
        if d is decls[0]:
            first = [d.clients[c] for c in tags[d.name]]
    # every live node must have reached this same decision (the rounds above are not broadcasts)
    decision = canonical_json([{name: idx.tolist() for name, idx in tags.items()},
                               sorted((e.credential, e.input, e.reason) for e in excluded)])
    await agree_on_rows(engine, "clients/agreed", decision)
    return first, tags, excluded
