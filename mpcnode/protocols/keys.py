"""The first round of every engine: a secret key per pair of live parties, and the job binding.

For each pair the lower id picks a key (4 random words) and sends it over the mutually
authenticated, encrypted link; every party also sends every other the binding digest (what it was
asked to run, protocols/agreement.py) and goes on only if all digests equal its own. Each key is
hashed with the binding (and the engine's domain string), so it belongs to this job and engine
only. One round; 32 bytes per pair plus the digest.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from ..exchange import Exchange, ProtocolViolation
from ..randomness import KeyedStream, random_field

KEY_WORDS = 4      # field elements (< p, so a Shamir job's links accept them): 244 random bits


async def pairwise_streams(ex: Exchange, party: int, parties: Sequence[int], binding: np.ndarray | None,
                           domain: bytes = b"") -> dict[int, KeyedStream]:
    """{other live party: a PRF stream keyed by our pair's key}. ProtocolViolation naming the
    parties whose binding differs from ours; nothing has been dealt then."""
    bind = np.zeros(0, dtype=np.uint64) if binding is None else np.asarray(binding).astype(np.uint64)
    others = [j for j in parties if j != party]
    picked = {j: random_field(KEY_WORDS) for j in others if j > party}
    send = {j: np.concatenate([picked[j], bind]) if j in picked else bind for j in others}
    send = {j: a for j, a in send.items() if a.size}
    expect = [j for j in others if j < party or bind.size]
    got = await ex.round("keys", send, expect)
    keys = dict(picked)
    differ = []
    for i, arr in got.items():
        size = (KEY_WORDS if i < party else 0) + bind.size
        if arr.size != size:
            raise ProtocolViolation(f"round 'keys': party {i} sent {arr.size} elements, expected {size}")
        arr = arr.reshape(-1)
        if i < party:
            keys[i], arr = arr[:KEY_WORDS], arr[KEY_WORDS:]
        if not np.array_equal(arr, bind):
            differ.append(i)
    if differ:
        raise ProtocolViolation(f"parties {sorted(differ)} run a different computation or live set; "
                                "nothing was shared")
    salt = domain + bind.astype("<u8").tobytes()
    return {j: KeyedStream(hashlib.sha256(k.astype("<u8").tobytes() + salt).digest()) for j, k in keys.items()}
