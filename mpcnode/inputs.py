"""An organization's private input: read from its local file and validated before any sharing."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from parley.v1 import circuit_pb2 as cpb

from . import field
from .configfile import ConfigError, read_yaml


class InputError(ValueError):
    """The organization's own input is missing, malformed or out of range; nothing was shared."""


def check_values(name: str, raw: object, decl: cpb.InputDecl, where: str) -> np.ndarray:
    """Validate type, length and range of one input array; return it encoded as field elements."""
    items = raw if isinstance(raw, list) else [raw]
    if len(items) != decl.length:
        raise InputError(f"{where}: {name}: expected {decl.length} value(s), got {len(items)}")
    for k, v in enumerate(items):
        if isinstance(v, bool) or not isinstance(v, int):
            raise InputError(f"{where}: {name}[{k}]: expected an integer, got {type(v).__name__} {v!r}")
        if not decl.lo <= v <= decl.hi:
            raise InputError(f"{where}: {name}[{k}]: value {v} outside the declared range [{decl.lo}, {decl.hi}]")
    return field.asfield(np.array(items, dtype=np.int64))


def load_node_inputs(path: Path | None, decls: list[cpb.InputDecl], scenario: str) -> dict[str, np.ndarray]:
    """The inputs this node owns in a job, read from the file its config names for the scenario."""
    if not decls:
        return {}
    if path is None:
        raise InputError(f"no input file configured for scenario {scenario!r}")
    try:
        data = read_yaml(path)
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of input name -> value(s)")
    out = {}
    for decl in decls:
        key = decl.key or decl.name
        if key not in data:
            raise InputError(f"{path}: {key}: required input is missing")
        out[decl.name] = check_values(key, data[key], decl, str(path))
    return out
