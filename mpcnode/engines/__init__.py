"""Secret-sharing engines behind one interface (base.py); `engine_for` picks one for a job.

The node, the job runner and the cost estimate never name an engine class: they call
`engine_for(spec.protocol, ...)`, so adding an engine means one module and one line here.
"""
from __future__ import annotations

from typing import Sequence

from ..exchange import Exchange
from .base import Engine
from .replicated3 import Replicated3Engine
from .shamir import ShamirEngine

ENGINES: dict[str, type] = {"shamir": ShamirEngine, "replicated3": Replicated3Engine}


def engine_for(protocol: str, exchange: Exchange, t: int, live: Sequence[int] | None = None) -> Engine:
    """The engine named by a JobSpec's `protocol` for this party's exchange, threshold t and live
    parties (0-based ids; default all). ValueError for a protocol this node does not run (Prepare
    already refuses such a job, computation/spec.py: protocol_parameters)."""
    try:
        make = ENGINES[protocol]
    except KeyError:
        raise ValueError(f"protocol: {protocol!r} is not supported (supported: {', '.join(ENGINES)})") from None
    return make(exchange, t, live)


__all__ = ["ENGINES", "Engine", "Replicated3Engine", "ShamirEngine", "engine_for"]
