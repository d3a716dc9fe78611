"""The Exchange interface that protocols are written against, and an in-memory implementation.

A protocol step sends one array to each of some peers under a round label and awaits one
array from each of the peers it expects. Labels are deterministic and unique within a job,
so every party derives the same label for the same step without talking.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field as dc_field
from typing import Iterable, Mapping, Protocol

import numpy as np


class ExchangeTimeout(TimeoutError):
    """A peer did not deliver its message for a round in time."""

    def __init__(self, job: str, label: str, missing: list[str]):
        super().__init__(f"job {job}: round {label!r} timed out waiting for {', '.join(missing)}")
        self.missing = missing


class ProtocolViolation(ValueError):
    """A peer sent something the protocol does not allow."""


@dataclass
class TrafficStats:
    rounds: int = 0
    messages_sent: int = 0
    bytes_sent: int = 0
    labels: set[str] = dc_field(default_factory=set)


class LabelReused(ValueError):
    """A protocol asked for a round label it already used in this job: a bug in this node's own
    code, never a peer's doing. Refused because messages are keyed by (round, sender), and seeded
    shares by (job key, label): a reused label would mix two rounds' messages or reuse a seed."""


def claim_label(stats: TrafficStats, label: str) -> None:
    """Every Exchange implementation calls this first in round(): each label once per job."""
    if label in stats.labels:
        raise LabelReused(f"round label {label!r} reused")
    stats.labels.add(label)


class Exchange(Protocol):
    party: int
    n: int
    stats: TrafficStats

    async def round(self, label: str, send: Mapping[int, np.ndarray], expect: Iterable[int]) -> dict[int, np.ndarray]:
        """Send send[j] to each party j, then return {i: array} received from each i in expect."""
        ...


class MemoryNetwork:
    """n parties in one process; each party's Exchange delivers into the others' mailboxes."""

    def __init__(self, n: int, timeout_s: float = 30.0):
        self.n = n
        self.timeout_s = timeout_s
        self._mail: list[dict[tuple[str, int], asyncio.Future]] = [dict() for _ in range(n)]

    def exchange(self, party: int) -> "MemoryExchange":
        return MemoryExchange(self, party)

    def _slot(self, receiver: int, label: str, sender: int) -> asyncio.Future:
        box = self._mail[receiver]
        key = (label, sender)
        if key not in box:
            box[key] = asyncio.get_running_loop().create_future()
        return box[key]


class MemoryExchange:
    def __init__(self, net: MemoryNetwork, party: int):
        self.net = net
        self.party = party
        self.n = net.n
        self.stats = TrafficStats()

    async def round(self, label: str, send: Mapping[int, np.ndarray], expect: Iterable[int]) -> dict[int, np.ndarray]:
        claim_label(self.stats, label)
        self.stats.rounds += 1
        for j, arr in send.items():
            if j == self.party:
                raise ValueError("a party does not send to itself")
            fut = self.net._slot(j, label, self.party)
            if fut.done():
                raise ValueError(f"duplicate message {label!r} from {self.party} to {j}")
            fut.set_result(np.array(arr, dtype=np.uint64, copy=True))
            self.stats.messages_sent += 1
            self.stats.bytes_sent += arr.nbytes
        expect = [i for i in expect if i != self.party]
        futs = [self.net._slot(self.party, label, i) for i in expect]
        try:
            # shield: a timeout must not cancel the slots, so the error can name who is missing
            got = await asyncio.wait_for(asyncio.shield(asyncio.gather(*futs)), self.net.timeout_s)
        except asyncio.TimeoutError:
            missing = [f"party {i}" for i, f in zip(expect, futs) if not f.done()]
            raise ExchangeTimeout("memory", label, missing) from None
        for i in expect:
            del self.net._mail[self.party][(label, i)]
        return dict(zip(expect, got))
