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
from typing import Sequence

import numpy as np

from ..computation.spec import canonical_json
from ..exchange import ProtocolViolation
from ..engines.base import Engine

_WORD = np.uint64((1 << 60) - 1)   # digest words are sent as field elements, each below p


def job_digest(job_id: str, fingerprint: str, live: Sequence[str]) -> np.ndarray:
    return _digest_words(canonical_json(["parley-job-agreement-v1", job_id, fingerprint, list(live)]))


async def agree_on_job(engine: Engine, job_id: str, fingerprint: str, live: Sequence[str]) -> None:
    """Folded into the engine's first round (Engine.establish; Shamir: the key round): no extra
    round. Raises ProtocolViolation naming the parties whose digest differs; nothing has been
    dealt then."""
    await engine.establish(job_digest(job_id, fingerprint, live))


async def agree_on_presence(engine: Engine, held: Sequence[np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    """After client submission closed, two rounds for every client input at once. First (label
    `clients`) each live node sends every other one flag per listed client of each input (1: it
    holds that client's share); held[k] is this node's flags for client input k (one per listed
    client, in the declaration's order). Then (label `clients/echo`) each sends every other one
    a digest of the flags it received from each live node: rounds are plain sends, not
    broadcasts, so a lying node could tell one peer it lacks a share and another that it holds
    it, and the honest nodes would go on with different rows; a node whose flags reached the
    others differently is named (ProtocolViolation) and the job stops. `names`: the compute
    parties' names by party id.

    Returns, per input, a bool array (live parties in engine.parties order, listed clients):
    True where that party does NOT hold that client's share. A column with no True counts
    (every live node holds the row); an all-True column is a client that never submitted;
    anything between names the nodes that claim not to hold a share the others hold (the row is
    excluded, and those nodes are named in the reason). Every live node computes the same
    answer from the same flags."""
    flags = np.concatenate([np.asarray(h, dtype=bool) for h in held]).astype(np.uint64) if held \
        else np.zeros(0, dtype=np.uint64)
    everyone = list(engine.parties)
    peers = await _tell_everyone(engine, "clients", flags, "client agreement", "flags", bits=True)
    missing = np.stack([peers[i] != 1 for i in everyone])          # (live parties, all listed clients)
    seen = np.concatenate([_digest_words(np.packbits(row).tobytes()) for row in missing])
    echoes = await _tell_everyone(engine, "clients/echo", seen, "client agreement", "digest words")
    views = np.stack([echoes[i].reshape(len(everyone), 4) for i in everyone])   # (echoing node, sender, word)
    split = [names[j] for r, j in enumerate(everyone) if len({v[r].tobytes() for v in views}) > 1]
    if split:
        raise ProtocolViolation(f"client agreement: {', '.join(split)} sent different presence flags to "
                                "different nodes")
    bounds = np.cumsum([0] + [len(h) for h in held])
    return [missing[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]


async def _tell_everyone(engine: Engine, label: str, mine: np.ndarray, what: str, unit: str,
                         bits: bool = False) -> dict[int, np.ndarray]:
    """One round (label `label`): send `mine` to every other live node and take theirs; returns
    every live node's array, this node's included. A node whose array has another shape (or,
    with `bits`, a word above 1) is named in a ProtocolViolation, prefixed by `what`."""
    everyone = list(engine.parties)
    peers = await engine.exchange.round(label, {j: mine for j in everyone if j != engine.party}, everyone)
    peers[engine.party] = mine
    for i, got in peers.items():
        if got.shape != mine.shape or (bits and np.any(got > 1)):
            raise ProtocolViolation(f"{what}: party {i} sent {got.size} {unit}, expected {mine.size}"
                                    + (" bits" if bits else ""))
    return peers


def _digest_words(data: bytes) -> np.ndarray:
    """sha256 of `data` as four words below 2^60 (sendable in any engine's rounds)."""
    return np.frombuffer(hashlib.sha256(data).digest(), dtype="<u8").astype(np.uint64) & _WORD


async def agree_on_rows(engine: Engine, label: str, decision: bytes) -> None:
    """One round (label `label`) after a step of the client checks: every live node sends every
    other one a digest of the decision it reached (after the consistency check: its verdicts;
    at the end: which rows count, in which order, and every exclusion with its reason). The
    check rounds are plain sends: a node that sent one peer another share of an opened check
    value than the others would leave the honest nodes with different verdicts, and they would
    go on with different rows (out of step, or a corrupt result). Any difference fails the job
    here (ProtocolViolation), before the next step. 32 bytes per peer."""
    mine = _digest_words(decision)
    peers = await _tell_everyone(engine, label, mine, "client agreement", "digest words")
    if any(np.any(d != mine) for d in peers.values()):
        raise ProtocolViolation("client agreement: the live nodes reached different decisions on which client "
                                "rows count (a node sent different values to different peers during the checks)")


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
    peers = await _tell_everyone(engine, "owners", flags, "input agreement", "flags", bits=True)
    for k, owner in enumerate(owners):
        without = [i for i in everyone if not peers[i][k]]
        if without:
            raise MissingInput(f"the input of {owner} did not reach every compute node "
                               f"(missing at part{'ies' if len(without) > 1 else 'y'} "
                               f"{', '.join(names[i] for i in without)})")
