"""Domain errors of a node; the servicers map each to one gRPC status code (transport/servicers.py)."""
from __future__ import annotations


class Denied(PermissionError):
    """The caller may not do this."""


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    """The request conflicts with the job's state (e.g. a second submission)."""


class ConsentStop(RuntimeError):
    """A running job would break the organization's policy (too few actual contributors); the job
    stops before anything is opened. str() is public: it names the rule and counts, no values."""
