"""An input-only party's part of a job: deliver its own node inputs to the compute nodes.

An organization named in a computation's `input_parties` contributes node inputs but computes
nothing and holds no shares. Its node is prepared like any other (the same approval of the
fingerprint, the same range check of its own data before anything is shared, the same audit
log). When the coordinator starts the job, the node acts as an input client of the compute
nodes, with its node certificate: through `mpcnode.client.submit` it asks every live compute node
for the job's canonical document (InputIntake.JobInfo), requires the fingerprint it approved and
the live set it was started with, then secret-shares each of its inputs and sends one share to
each live compute node (InputIntake.SubmitShare). A compute node accepts such a share only from
the input's declared owner, an input-only party of that job (mpcnode/node.py). The shares never
pass through the coordinator.

The job is DONE on this node once every compute node acknowledged every share ("input
delivered"); the coordinator records the job DONE only when that holds and the compute nodes are
done. Anything else fails the job here with a reason that names nodes and rules, never a value.

The compute nodes' side is here too: `accept_owner_share` (InputIntake.SubmitShare for such an
input) and `wait_owner_inputs` (before the job's rounds use them).
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from parley.v1 import circuit_pb2 as cpb
from parley.v1 import node_pb2

from .client import SubmitError, submit
from .errors import Conflict, Denied
from .intake import OPEN_STATES, store_row
from .protocols.agreement import MissingInput
from .store import ShareStore
from .transport.tls import TlsMaterial

if TYPE_CHECKING:
    from .node import Job



class DeliveryError(RuntimeError):
    """The input could not be delivered; str() is public (nodes, status codes, rules; no values)."""


def own_inputs(spec: node_pb2.JobSpec, org: str) -> list[cpb.InputDecl]:
    return [d for d in spec.circuit.inputs if d.source == cpb.INPUT_SOURCE_NODE and d.owner == org]


async def deliver(spec: node_pb2.JobSpec, org: str, live: Sequence[str], inputs: Mapping[str, np.ndarray],
                  addresses: Mapping[str, str], tls: TlsMaterial, timeout: float) -> list[str]:
    """Share `org`'s node inputs (field elements, range-checked at Prepare) to the live compute
    parties; returns the names of the inputs delivered. Raises DeliveryError."""
    missing = [p for p in live if p not in addresses]
    if missing:
        raise DeliveryError(f"no address configured for compute parties {', '.join(missing)}")
    nodes = {p: addresses[p] for p in live}
    done = []
    for decl in own_inputs(spec, org):
        values = np.asarray(inputs[decl.name], dtype=np.int64)     # checked signed values (inputs.py)
        try:
            await submit(spec.job_id, decl.name, values, nodes, tls, spec.fingerprint, timeout,
                         node_input=True, live=list(live))
        except SubmitError as exc:
            raise DeliveryError(f"could not deliver input {decl.name}: {exc}") from None
        done.append(decl.name)
    return done


# ---- the compute nodes' side --------------------------------------------------------------------

def accept_owner_share(store: ShareStore, job: "Job", caller: str | None, decl: cpb.InputDecl,
                       req: node_pb2.ClientShare) -> node_pb2.ClientAck:
    """A share of a node input of an input-only party: only its declared owner, identified by its
    node certificate, may send it, once, while the job is prepared or running. It is a node input:
    its owner range-checked it before sharing (deliver, above), as every node input is."""
    if caller != decl.owner:
        raise Denied(f"{caller!r} is not the owner of input {decl.name!r} in job {req.job_id}")
    if job.state not in OPEN_STATES:
        raise Conflict(f"input for job {req.job_id} is closed")
    store_row(store, job, decl, caller, req)
    job.owner_pending.discard(decl.name)
    if not job.owner_pending:
        job.owner_inputs.set()
    store.audit("received", req.job_id, job.spec.fingerprint, f"input {decl.name} from input-only party {caller}")
    return node_pb2.ClientAck(accepted_count=1)


async def wait_owner_inputs(job: "Job", org: str, limit: float) -> None:
    """Wait until every input-only party's node input arrived (they send them when the job starts),
    at most `limit` seconds and never past 95% of the job's time; then raise MissingInput naming the
    organizations whose input is missing, in party order. No default ever replaces an input."""
    if job.owner_inputs.is_set():
        return
    left = job.started + 0.95 * job.spec.timeout_s - time.monotonic()
    wait = max(0.0, min(limit, left))
    try:
        await asyncio.wait_for(job.owner_inputs.wait(), wait)
    except TimeoutError:
        missing = {d.owner for d in job.spec.circuit.inputs if d.name in job.owner_pending}
        owners = [p for p in job.spec.input_parties if p in missing]
        raise MissingInput(f"no input from input-only part{'ies' if len(owners) > 1 else 'y'} "
                           f"{', '.join(owners)} arrived at {org} within {wait:.3g}s") from None
