"""Why a message between nodes did not get through; each names the peer (STYLE: whose fault)."""
from __future__ import annotations


class PeerUnavailable(ConnectionError):
    """A message could not be delivered to `peer`, or can no longer arrive from it."""

    def __init__(self, peer: str, job: str, label: str, detail: str, message: str = ""):
        super().__init__(message or f"job {job}: could not deliver round {label!r} to {peer}: {detail}")
        self.peer = peer
        self.detail = detail


class LinkLost(PeerUnavailable):
    """The link with `peer` broke while the job still waited for a message from it."""

    def __init__(self, peer: str, job: str, label: str, detail: str):
        super().__init__(peer, job, label, detail, f"job {job}: round {label!r} waiting for {peer}: {detail}")


class PeerRefused(PeerUnavailable):
    """The peer refused one of our messages (it reports why); the job cannot go on."""

    def __init__(self, peer: str, job: str, label: str, detail: str):
        super().__init__(peer, job, label, detail, f"job {job}: {peer} refused round {label!r}: {detail}")
