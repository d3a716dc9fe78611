"""An organization's private input: read from its local file (YAML, or .npz for large arrays) and
validated before any sharing."""
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
    if isinstance(raw, np.ndarray):
        return _check_array(name, raw, decl, where)
    items = raw if isinstance(raw, list) else [raw]
    if len(items) != decl.length:
        raise InputError(f"{where}: {name}: expected {decl.length} value(s), got {len(items)}")
    for k, v in enumerate(items):
        if isinstance(v, bool) or not isinstance(v, int):
            raise InputError(f"{where}: {name}[{k}]: expected an integer, got {type(v).__name__} {v!r}")
        if not decl.lo <= v <= decl.hi:
            raise InputError(f"{where}: {name}[{k}]: value {v} outside the declared range [{decl.lo}, {decl.hi}]")
    return field.asfield(np.array(items, dtype=np.int64))


def _check_array(name: str, arr: np.ndarray, decl: cpb.InputDecl, where: str) -> np.ndarray:
    if arr.dtype.kind not in "iu":
        raise InputError(f"{where}: {name}: expected integers, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.size != decl.length:
        raise InputError(f"{where}: {name}: expected {decl.length} value(s), got shape {list(arr.shape)}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > (1 << 62):
        raise InputError(f"{where}: {name}: value {int(arr.max())} outside the declared range [{decl.lo}, {decl.hi}]")
    a = arr.astype(np.int64)
    bad = np.flatnonzero((a < decl.lo) | (a > decl.hi))
    if bad.size:
        k = int(bad[0])
        raise InputError(f"{where}: {name}[{k}]: value {int(a[k])} outside the declared range [{decl.lo}, {decl.hi}]")
    return field.asfield(a)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read as .npz: {exc}") from None


def load_node_inputs(path: Path | None, decls: list[cpb.InputDecl], scenario: str) -> dict[str, np.ndarray]:
    """The inputs this node owns in a job, read from the file its config names for the scenario."""
    if not decls:
        return {}
    if path is None:
        raise InputError(f"no input file configured for scenario {scenario!r}")
    if path.suffix == ".npz":  # large inputs: numpy arrays, never pickles
        data: object = _read_npz(path)
    else:
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
