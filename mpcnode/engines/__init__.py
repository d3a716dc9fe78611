"""Secret-sharing engines behind one interface (base.py); `engine_for` picks one for a job.

The node, the job runner and the cost estimate never name an engine class: they call
`engine_for(spec.protocol, ...)`, so adding an engine means one module and one line here.
"""
from __future__ import annotations

from typing import Sequence

from ..exchange import Exchange
from .base import Engine
from .replicated3 import Replicated3Engine
from .replicated3_wide import Replicated3WideEngine
from .shamir import ShamirEngine

ENGINES: dict[str, type] = {"shamir": ShamirEngine, "replicated3": Replicated3Engine}


# engines over a wider plaintext domain, by (protocol, ring bits): the circuit asks for one with
# Circuit.ring_bits (fixed-point circuits that need more than 64 bits; docs/protocols.md)
WIDE_ENGINES: dict[tuple[str, int], type] = {("replicated3", 128): Replicated3WideEngine}


def engine_for(protocol: str, exchange: Exchange, t: int, live: Sequence[int] | None = None,
               ring_bits: int = 64) -> Engine:
    """The engine named by a JobSpec's `protocol` for this party's exchange, threshold t and live
    parties (0-based ids; default all). `ring_bits`: the plaintext ring the circuit needs, 64 (or 0:
    the protocol's own domain) or 128 (replicated3 only: Replicated3WideEngine). ValueError for a
    protocol or width this node does not run (Prepare already refuses such a job,
    computation/spec.py: protocol_parameters)."""
    try:
        make = ENGINES[protocol]
    except KeyError:
        raise ValueError(f"protocol: {protocol!r} is not supported (supported: {', '.join(ENGINES)})") from None
    if ring_bits not in (0, 64):
        try:
            make = WIDE_ENGINES[(protocol, ring_bits)]
        except KeyError:
            raise ValueError(f"protocol: {protocol!r} does not run a {ring_bits}-bit ring "
                             f"(supported: {', '.join(f'{p} {b}' for p, b in WIDE_ENGINES)})") from None
    return make(exchange, t, live)


__all__ = ["ENGINES", "WIDE_ENGINES", "Engine", "Replicated3Engine", "Replicated3WideEngine", "ShamirEngine",
           "engine_for"]
