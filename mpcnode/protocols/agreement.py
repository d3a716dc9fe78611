"""Agreement among the live nodes: on the job itself before any share leaves a node, and on which
input clients count once client submission has closed, and on holding every input-only party's
input before it is used.

Each node checks its own approval of the computation in Prepare, but a dishonest coordinator
could send different circuits (each approved by someone) or different live sets to different
nodes under one job id. The engine's first round (Shamir: the pairwise keys) fixes that: every live node
also sends every other a digest of (job id, fingerprint, live parties) and goes on only if all
digests equal its own. It costs 32 bytes per peer and no extra round; any mismatch fails the
job before input sharing starts.
"""
from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

import numpy as np

from ..computation.spec import canonical_json
from ..exchange import ProtocolViolation
from ..engines.base import Engine

_WORD = np.uint64((1 << 60) - 1)   # digest words are sent as field elements, each below p


def job_digest(job_id: str, fingerprint: str, live: Sequence[str]) -> np.ndarray:
    raw = hashlib.sha256(canonical_json(["parley-job-agreement-v1", job_id, fingerprint, list(live)])).digest()
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64) & _WORD


async def agree_on_job(engine: Engine, job_id: str, fingerprint: str, live: Sequence[str]) -> None:
    """Folded into the engine's first round (Engine.establish; Shamir: the key round): no extra
    round. Raises ProtocolViolation naming the parties whose digest differs; nothing has been
    dealt then."""
    await engine.establish(job_digest(job_id, fingerprint, live))


async def agree_on_clients(engine: Engine, k: int, clients: list[str], got: Mapping[str, object],
                           order: list[str]) -> list[str]:
    """Which listed clients' rows count, in which order (one round, label clients/<k>; with
    replicated shares one more before it, clients/<k>/check, see _replicated_mismatches).

    Every node sends, for each listed client, 1 + the rank at which it received that client's
    share (0 = not received, or received inconsistent with a neighbour's copy). A client counts
    only if every node holds its share; rows are ordered by the first party's arrival order, so
    "earliest submission" is well defined.
    """
    rank = {c: i + 1 for i, c in enumerate(order)}
    ranks = np.array([rank.get(c, 0) if c in got else 0 for c in clients], dtype=np.uint64)
    if tuple(engine.share_shape) == (2,):
        # a client shares each component with two nodes: one that sent the two different copies
        # is treated as not received by the node that saw it, so every node drops its row below
        ranks[await _replicated_mismatches(engine, k, clients, got)] = 0
    everyone = list(engine.parties)
    peers = await engine.exchange.round(f"clients/{k}", {j: ranks for j in everyone if j != engine.party}, everyone)
    peers[engine.party] = ranks
    for i, r in peers.items():
        if r.shape != ranks.shape:
            raise ProtocolViolation(f"client agreement: party {i} sent {r.size} ranks, expected {ranks.size}")
    present = np.all(np.stack([peers[i] > 0 for i in everyone]), axis=0)
    first = peers[everyone[0]].astype(np.int64)
    chosen = sorted((int(first[c]), c) for c in np.flatnonzero(present))
    return [clients[c] for _, c in chosen]


async def _replicated_mismatches(engine: Engine, k: int, clients: list[str],
                                 got: Mapping[str, object]) -> np.ndarray:
    """Indices (into `clients`) of the clients whose replicated shares disagree with a neighbour's.

    Party i holds (x_i, x_{i+1}) of each client's row; party i - 1 holds x_i too (its second
    component) and party i + 1 holds x_{i+1} (its first). Each party sends its first components to
    party i - 1 and its second to party i + 1 (one round, label clients/<k>/check), which compare
    them with their own copy. Both holders already know a component, so sending it reveals
    nothing; a client that gave the two holders different copies would otherwise make the row's
    value depend on which pair of nodes reconstructs it (and a tally's products would carry a
    random error). Nodes are semi-honest, so a difference proves the client lied. Clients a node
    does not hold are sent as zeros and not compared there (they are dropped anyway)."""
    held = np.array([c in got for c in clients], dtype=bool)
    idx = np.flatnonzero(held)
    width = max((np.asarray(v).size // 2 for v in got.values()), default=0)   # the intake fixed each shape
    first = np.zeros((len(clients), width), dtype=np.uint64)
    second = np.zeros((len(clients), width), dtype=np.uint64)
    if idx.size:
        rows = np.stack([np.asarray(got[clients[i]], dtype=np.uint64).reshape(width, 2) for i in idx])
        first[idx], second[idx] = rows[..., 0], rows[..., 1]
    prev, nxt = (engine.party - 1) % 3, (engine.party + 1) % 3
    peers = await engine.exchange.round(f"clients/{k}/check", {prev: first.reshape(-1), nxt: second.reshape(-1)},
                                        [prev, nxt])
    for j, arr in peers.items():
        if arr.size != first.size:
            raise ProtocolViolation(f"client agreement: party {j} sent {arr.size} words, expected {first.size}")
    from_prev = peers[prev].reshape(first.shape)     # prev's second components: our first
    from_next = peers[nxt].reshape(first.shape)      # next's first components: our second
    differ = np.any(from_prev != first, axis=1) | np.any(from_next != second, axis=1)
    # a row the neighbour does not hold arrives as zeros: it is dropped by the rank round anyway
    return np.flatnonzero(differ & held)


class MissingInput(RuntimeError):
    """An input-only party's input is not held by every live compute node. str() is public: it
    names the organization and the nodes, never a value."""


async def agree_on_owner_inputs(engine: Engine, owners: list[str], held: list[bool], names: Sequence[str]) -> None:
    """Before an input-only party's shares are used (one round, label `owners`): every live node
    states, for each such node input (owners[k] is its owner), whether it holds its owner's share.
    Each must be held by every live node, or the job stops naming the owner and the nodes without it:
    a computation never runs on part of an organization's input, nor with a default in its place.
    `names`: the compute parties' names by party id (for the message)."""
    flags = np.array([1 if h else 0 for h in held], dtype=np.uint64)
    everyone = list(engine.parties)
    peers = await engine.exchange.round("owners", {j: flags for j in everyone if j != engine.party}, everyone)
    peers[engine.party] = flags
    for i, f in peers.items():
        if f.shape != flags.shape or np.any(f > 1):
            raise ProtocolViolation(f"input agreement: party {i} sent {f.size} flags, expected {flags.size} bits")
    for k, owner in enumerate(owners):
        without = [i for i in everyone if not peers[i][k]]
        if without:
            raise MissingInput(f"the input of {owner} did not reach every compute node "
                               f"(missing at part{'ies' if len(without) > 1 else 'y'} "
                               f"{', '.join(names[i] for i in without)})")
