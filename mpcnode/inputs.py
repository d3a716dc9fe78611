"""An organization's private input: read from its local file (YAML, or .npz for large arrays) and
validated before any sharing."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from parley.v1 import circuit_pb2 as cpb

from .configfile import NPZ_HINT, ConfigError, _clip, read_yaml


class InputError(ValueError):
    """The organization's own input is missing, malformed or out of range; nothing was shared.

    str() is the public reason: one line that names the input and the rule broken, never a value,
    an index or a local path, because it travels to the coordinator in the job's refusal.
    `detail` says exactly what is wrong (value, position, file) for the node's own log and for a
    client checking its own values; it never leaves the machine that raised it."""

    def __init__(self, public: str, detail: str = ""):
        super().__init__(_clip(" ".join(str(public).splitlines()), 500))
        self.detail = _clip(" ".join(str(detail or public).splitlines()), 1500)


def encode_fixed_values(values: np.ndarray, frac_bits: int) -> np.ndarray:
    """Fixed point (docs/protocols.md "Fixed-point numbers"): float64 x -> the integer
    round(x * 2^f), ties to even (numpy rint; computation/builder.encode_fixed is the same rule).
    Exact for |x| * 2^f < 2^53; the caller range-checks the encoded integers. Non-finite values
    and values beyond 2^62 encoded raise ValueError (the caller names the input)."""
    x = np.asarray(values, dtype=np.float64) * float(1 << frac_bits)
    if not np.all(np.isfinite(x)) or (x.size and np.abs(x).max() >= 2.0 ** 62):
        raise ValueError("not a finite number within range")
    return np.rint(x).astype(np.int64)


def check_values(name: str, raw: object, decl: cpb.InputDecl, where: str) -> np.ndarray:
    """Validate type, length and range of one input array; return it as signed int64 (the job's
    engine encodes it into its plaintext domain: engines/base.py `encode`). A fixed-point input
    (decl.frac_bits > 0) takes numbers (integers or floats) and returns their encodings,
    range-checked as encodings against lo..hi."""
    if decl.frac_bits:
        return _check_fixed(name, raw, decl, where)
    if isinstance(raw, np.ndarray):
        return _check_array(name, raw, decl, where)
    items = raw if isinstance(raw, list) else [raw]
    if len(items) != decl.length:
        raise InputError(f"input {name}: expected {decl.length} value(s), the data holds another number",
                         f"{where}: {name}: expected {decl.length} value(s), got {len(items)}")
    for k, v in enumerate(items):
        if isinstance(v, bool) or not isinstance(v, int):
            raise InputError(f"input {name}: expected integers",
                             f"{where}: {name}[{k}]: expected an integer, got {type(v).__name__} {_clip(repr(v), 80)}")
        if not decl.lo <= v <= decl.hi:
            raise InputError(_out_of_range(name, decl),
                             f"{where}: {name}[{k}]: value {v} outside the declared range [{decl.lo}, {decl.hi}]")
    return np.array(items, dtype=np.int64)


def _check_fixed(name: str, raw: object, decl: cpb.InputDecl, where: str) -> np.ndarray:
    items = raw if isinstance(raw, (list, np.ndarray)) else [raw]
    if isinstance(items, np.ndarray):
        if items.dtype.kind not in "iuf" or items.ndim != 1:
            raise InputError(f"input {name}: expected numbers", f"{where}: {name}: expected numbers, got dtype "
                                                                   f"{items.dtype} shape {list(items.shape)}")
    else:
        for k, v in enumerate(items):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InputError(f"input {name}: expected numbers",
                                 f"{where}: {name}[{k}]: expected a number, got {type(v).__name__} {_clip(repr(v), 80)}")
    if len(items) != decl.length:
        raise InputError(f"input {name}: expected {decl.length} value(s), the data holds another number",
                         f"{where}: {name}: expected {decl.length} value(s), got {len(items)}")
    f = decl.frac_bits
    lo, hi = decl.lo / (1 << f), decl.hi / (1 << f)
    try:
        enc = encode_fixed_values(np.asarray(items, dtype=np.float64), f)
    except (ValueError, OverflowError):
        raise InputError(f"input {name}: a value is not a finite number in the declared range [{lo:g}, {hi:g}]",
                         f"{where}: {name}: a value is not finite or is beyond 2^62 encoded") from None
    bad = np.flatnonzero((enc < decl.lo) | (enc > decl.hi))
    if bad.size:
        k = int(bad[0])
        raise InputError(f"input {name}: a value lies outside the declared range [{lo:g}, {hi:g}] "
                         f"({f} fractional bits)",
                         f"{where}: {name}[{k}]: value {float(np.asarray(items, dtype=np.float64)[k])!r} encodes to "
                         f"{int(enc[k])}, outside [{decl.lo}, {decl.hi}], the declared range [{lo:g}, {hi:g}] with "
                         f"{f} fractional bits")
    return enc


def _out_of_range(name: str, decl: cpb.InputDecl) -> str:
    return f"input {name}: a value lies outside the declared range [{decl.lo}, {decl.hi}]"


def _check_array(name: str, arr: np.ndarray, decl: cpb.InputDecl, where: str) -> np.ndarray:
    if arr.dtype.kind not in "iu":
        raise InputError(f"input {name}: expected integers", f"{where}: {name}: expected integers, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.size != decl.length:
        raise InputError(f"input {name}: expected {decl.length} value(s), the data holds another number",
                         f"{where}: {name}: expected {decl.length} value(s), got shape {list(arr.shape)}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > (1 << 62):
        raise InputError(_out_of_range(name, decl),
                         f"{where}: {name}: value {int(arr.max())} outside the declared range [{decl.lo}, {decl.hi}]")
    a = arr.astype(np.int64)
    bad = np.flatnonzero((a < decl.lo) | (a > decl.hi))
    if bad.size:
        k = int(bad[0])
        raise InputError(_out_of_range(name, decl),
                         f"{where}: {name}[{k}]: value {int(a[k])} outside the declared range [{decl.lo}, {decl.hi}]")
    return a


def _read_npz(path: Path, decls: list[cpb.InputDecl], dataset: str) -> dict[str, np.ndarray]:
    """The arrays named by `decls` from an .npz archive (numpy arrays, never pickles). Each array's
    header is checked against its declaration before any data is read, so an archive that claims
    a huge shape, or a member that decompresses to gigabytes, costs nothing."""
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
            for decl in decls:
                key = decl.key or decl.name
                if f"{key}.npy" not in members:
                    continue  # reported as missing by the caller
                with archive.open(f"{key}.npy") as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f)
                if dtype.kind not in ("iuf" if decl.frac_bits else "iu"):
                    raise InputError(f"input {key}: expected integers", f"{path}: {key}: expected integers, got dtype {dtype}")
                if len(shape) != 1 or shape[0] != decl.length:
                    raise InputError(f"input {key}: expected {decl.length} value(s), the data holds another number",
                                     f"{path}: {key}: expected {decl.length} value(s), got shape {list(shape)}")
                with archive.open(f"{key}.npy") as f:
                    out[key] = np.lib.format.read_array(f, allow_pickle=False)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"dataset {dataset!r}: the input file cannot be read", f"{path}: (file): file not found") from None
    except Exception as exc:  # a corrupt archive (zip, zlib, npy header): whatever fails, nothing was shared
        raise InputError(f"dataset {dataset!r}: the input file is not a readable .npz archive",
                         f"{path}: cannot read as .npz: {type(exc).__name__}: {exc}") from None
    return out


def load_node_inputs(path: Path | None, decls: list[cpb.InputDecl], dataset: str) -> dict[str, np.ndarray]:
    """The inputs this node owns in a job from one local dataset: the file its config names for it."""
    if not decls:
        return {}
    if path is None:
        raise InputError(f"dataset {dataset!r}: no input file is configured for it")
    if any(d.HasField("model") for d in decls):
        # a model file (XGBoost JSON/UBJSON, LightGBM text) is its dataset's only input
        if len(decls) != 1:
            raise InputError(f"dataset {dataset!r}: a model file is one input, the job reads {len(decls)} from it")
        from .models import model_input     # here: models imports this module
        return {decls[0].name: model_input(path, decls[0], dataset)}
    if path.suffix == ".npz":  # large inputs: numpy arrays, never pickles
        data: object = _read_npz(path, decls, dataset)
    else:
        try:
            data = read_yaml(path, NPZ_HINT)
        except ConfigError as exc:
            raise InputError(f"dataset {dataset!r}: the input file cannot be read or is not valid YAML", str(exc)) from None
    if not isinstance(data, dict):
        raise InputError(f"dataset {dataset!r}: expected a mapping of input name -> value(s)",
                         f"{path}: expected a mapping of input name -> value(s)")
    out = {}
    for decl in decls:
        key = decl.key or decl.name
        if key not in data:
            raise InputError(f"input {key}: missing from dataset {dataset!r}", f"{path}: {key}: required input is missing")
        out[decl.name] = check_values(key, data[key], decl, str(path))
    return out
