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
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from parley.v1 import circuit_pb2 as cpb
from parley.v1 import node_pb2

from . import field
from .client import SubmitError, submit
from .transport.tls import TlsMaterial


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
        values = field.to_signed(inputs[decl.name]).astype(np.int64)
        try:
            await submit(spec.job_id, decl.name, values, nodes, tls, spec.fingerprint, timeout,
                         node_input=True, live=list(live))
        except SubmitError as exc:
            raise DeliveryError(f"could not deliver input {decl.name}: {exc}") from None
        done.append(decl.name)
    return done
