"""One node's part of a job, from the agreement on the job to its output shares.

Both a real node (mpcnode/node.py, over its gRPC exchange) and the cost estimate
(mpcnode/computation/cost.py, n parties over the in-memory exchange) run this one function, so
the rounds and bytes a dry run counts are those a node sends: there is no second description of
the protocol sequence that could drift from the first.

The job's engine comes from `engine_for(spec.protocol)` (engines/), and every step below talks to
it, never to one sharing scheme's code. The sequence, every step over the same exchange:
1. `agree_on_job`: inside the engine's first round (for Shamir, the pairwise keys), before any share
   leaves the node (protocols/agreement.py);
2. `Executor.share_node_inputs`: every owner among the compute parties deals all its node inputs in
   one round;
3. `agree_on_owner_inputs` (only with input-only parties): one round, every live node holds the
   shares each input-only party submitted, before any is used;
4. `agree_on_clients`: one round per client input, fixing whose rows count and in which order;
5. `Executor.run`: the circuit, level by level.
Client shares, and the shares of input-only parties' node inputs, reach the nodes from their owners
(InputIntake), not over this exchange.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from parley.v1 import circuit_pb2 as cpb
from parley.v1 import node_pb2

from .circuit import Plan
from .engines import Engine, engine_for
from .opened import Opened
from .exchange import Exchange
from .executor import Executor, Values
from .protocols.agreement import MissingInput, agree_on_clients, agree_on_job, agree_on_owner_inputs

# (shares this node holds, by client; clients in the order this node accepted them) for one
# client input declaration; for a node input of an input-only party, ({owner: share} or {}, ...)
ClientRows = Callable[[cpb.InputDecl], tuple[Mapping[str, np.ndarray], list[str]]]


@dataclass(frozen=True)
class JobResult:
    outputs: Values           # this node's shares of every output, keyed by output name
    row_labels: list[str]     # the clients whose rows counted, in the agreed order (empty: none)
    opened: list[Opened]      # every value this node opened in the job, outputs last (mpcnode/opened.py)


async def run_job(exchange: Exchange, spec: node_pb2.JobSpec, plan: Plan, live: Sequence[str],
                  node_inputs: dict[str, np.ndarray], client_rows: ClientRows,
                  check_rows: Callable[[dict[str, int]], None] | None = None) -> JobResult:
    """Run this node's side of `spec` with the parties in `live` (names, a subset of spec.parties).

    `node_inputs`: this node's own input arrays as signed int64 (inputs.load_node_inputs), keyed by
    input name (empty if it owns none); the engine encodes them into its plaintext domain.
    `client_rows(decl)` (this node's shares, each in the job's share format) is read only after
    submission has closed. `check_rows`, if given, sees how many client rows each client input got once the nodes agreed on them, and may
    raise to stop the job before the circuit runs (nothing has been opened by then).
    """
    parties = list(spec.parties)
    engine = engine_for(spec.protocol or "shamir", exchange, spec.threshold, [parties.index(p) for p in live])
    # before any share leaves: every live node runs this exact computation with this live set
    await agree_on_job(engine, spec.job_id, spec.fingerprint, live)
    executor = Executor(engine, spec.circuit, plan)
    values = await executor.share_node_inputs(parties, {k: engine.encode(v) for k, v in node_inputs.items()})
    await take_owner_inputs(engine, spec.circuit, parties, values, client_rows)
    labels = await take_client_rows(engine, spec.circuit, values, client_rows, executor.row_tags)
    if check_rows is not None:
        check_rows({d.name: int(values[d.name].shape[0]) // d.length
                    for d in spec.circuit.inputs if d.source == cpb.INPUT_SOURCE_CLIENTS})
    outputs = await executor.run(values)
    opened = list(engine.opened)
    for out in spec.circuit.outputs:
        # an output is opened when its recipients fetch it; which values and to whom is fixed here
        count = int(np.prod(engine.value_shape(outputs[out.name]), dtype=np.int64))
        opened.append(Opened(f"output/{out.name}", count, "output", tuple(out.recipients)))
    return JobResult(outputs=outputs, row_labels=labels, opened=opened)


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


async def take_client_rows(engine: Engine, circuit: cpb.Circuit, values: Values,
                           client_rows: ClientRows, row_tags: dict[str, np.ndarray] | None = None) -> list[str]:
    """After client submission closed: agree with the other nodes on whose input counts
    (protocols/agreement.py) and put those rows into `values`, in the agreed order, and each row's
    tag (its client's position in decl.clients) into `row_tags`. Returns the row labels of the
    first client input (the clients whose rows the outputs are about)."""
    decls = [d for d in circuit.inputs if d.source == cpb.INPUT_SOURCE_CLIENTS]
    labels: list[str] = []
    for k, decl in enumerate(decls):
        got, order = client_rows(decl)
        rows = await agree_on_clients(engine, k, list(decl.clients), got, order)
        if not labels:
            labels = rows
        if row_tags is not None:
            position = {c: i for i, c in enumerate(decl.clients)}
            row_tags[decl.name] = np.array([position[c] for c in rows], dtype=np.int64)
        # each client's share arrives as one array of decl.length values (component axes after)
        values[decl.name] = (np.concatenate([got[c] for c in rows]) if rows
                             else engine.constant(np.zeros(0, dtype=np.uint64))
                             ).reshape((len(rows) * decl.length,) + tuple(engine.share_shape))
    return labels
