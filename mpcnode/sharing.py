"""Share formats by protocol, for the code outside the engines that makes, checks or opens shares:
input clients (client.py), the node's intake and share store (node.py, store.py), recipients
(recipient.py) and the dry run (computation/cost.py). No I/O.

| protocol    | plaintext                | one party's share of a value         | share_shape |
|-------------|--------------------------|--------------------------------------|-------------|
| shamir      | F_p, p = 2^61 - 1        | f(i + 1), one field element (< p)    | ()          |
| replicated3 | Z_2^64 (two's complement)| (x_i, x_{i+1 mod 3}), two ring words | (2,)        |

A share of an array of shape S has shape S + share_shape (engines/base.py, "Shares"); the wire
and the store carry it as little-endian uint64 words plus that shape (transport/serde.py).
docs/protocols.md, "Share formats outside the engines", says which shares each node receives.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from . import field, replicated, shamir
from .transport import serde

SHARE_SHAPES: dict[str, tuple[int, ...]] = {"shamir": (), "replicated3": (replicated.COMPONENTS,)}


class InconsistentShares(ValueError):
    """Shares that do not fit together; `culprits` are the party indices to blame (for
    replicated3, the two parties that disagree: which of them is wrong cannot be told)."""

    def __init__(self, message: str, culprits: tuple[int, ...], pair: bool = False):
        super().__init__(message)
        self.culprits = culprits
        self.pair = pair       # True: the culprits disagree with each other, one of them is wrong


def share_shape(protocol: str) -> tuple[int, ...]:
    try:
        return SHARE_SHAPES[protocol]
    except KeyError:
        raise ValueError(f"protocol: {protocol!r} has no known share format "
                         f"(known: {', '.join(SHARE_SHAPES)})") from None


def encode(protocol: str, values: np.ndarray | list[int]) -> np.ndarray:
    """Signed integers -> the protocol's plaintext domain (uint64)."""
    share_shape(protocol)
    v = np.asarray(values, dtype=np.int64)
    return field.asfield(v) if protocol == "shamir" else replicated.encode(v)


def to_signed(protocol: str, x: np.ndarray) -> np.ndarray:
    """The protocol's plaintext domain -> signed int64."""
    share_shape(protocol)
    return field.to_signed(x) if protocol == "shamir" else replicated.to_signed(x)


def client_shares(protocol: str, values: np.ndarray | list[int], n: int, t: int) -> list[np.ndarray]:
    """Fresh shares of signed `values` (shape S), one array per party in party order, each of
    shape S + share_shape(protocol)."""
    plain = encode(protocol, values)
    if protocol == "shamir":
        return list(shamir.share(plain, n, t))
    if n != replicated.PARTIES:
        raise ValueError(f"replicated3 shares among exactly {replicated.PARTIES} parties, not {n}")
    return replicated.share(plain)


def constant_share(protocol: str, public: np.ndarray, party: int) -> np.ndarray:
    """Party `party`'s share of a public array (plaintext domain) that every party knows: Shamir,
    the constant polynomial; replicated3, x_0 = public and x_1 = x_2 = 0."""
    public = np.asarray(public, dtype=np.uint64)
    if protocol == "shamir":
        return public.copy()
    share_shape(protocol)
    return replicated.constant(public, party)


def decode(protocol: str, payload: bytes | memoryview, shape: list[int] | tuple[int, ...], what: str) -> np.ndarray:
    """Peer-supplied bytes + shape -> a checked share array (a read-only view of `payload`)."""
    share_shape(protocol)
    return serde.decode(payload, shape, what, field_elements=protocol == "shamir")


def decode_row(protocol: str, payload: bytes | memoryview, shape: list[int] | tuple[int, ...], length: int,
               what: str) -> np.ndarray:
    """A client's share of one row of `length` values (node intake): shape (length,) +
    share_shape, checked like `decode`. The error names the shapes only (they are public)."""
    want = (length,) + share_shape(protocol)
    if tuple(shape) != want:
        raise ValueError(f"{what}: a {protocol} job takes one share of shape {list(want)} per client "
                         f"({length} values), got shape {list(shape)}")
    return decode(protocol, payload, shape, what)


def min_shares(protocol: str, t: int) -> int:
    """How many parties' shares reconstruct: t + 1 (Shamir), 2 (replicated3)."""
    return t + 1 if share_shape(protocol) == () else 2


def reconstruct(protocol: str, shares: Mapping[int, np.ndarray], t: int) -> np.ndarray:
    """Signed int64 values from the shares of at least min_shares parties ({party index: share}),
    checked for consistency: InconsistentShares names the parties to blame when that can be told
    (Shamir: see shamir.reconstruct_checked; replicated3: the two parties that hold one component
    differently)."""
    if len(shares) < min_shares(protocol, t):
        raise ValueError(f"need the shares of at least {min_shares(protocol, t)} parties, got {len(shares)}")
    if protocol == "shamir":
        try:
            return field.to_signed(shamir.reconstruct_checked(dict(shares), t))
        except shamir.InconsistentShares as exc:
            raise InconsistentShares(str(exc), tuple(exc.culprits)) from None
    try:
        return replicated.to_signed(replicated.reconstruct_checked(shares))
    except replicated.InconsistentShares as exc:
        raise InconsistentShares(str(exc), tuple(exc.culprits), pair=True) from None
