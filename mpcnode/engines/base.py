"""The engine interface: what the executor, the job runner and every engine-independent protocol
(selection, ballots, client input checks; later DP noise, trees) are written against.

An engine is one party's view of one job under one secret-sharing scheme: its exchange, the
parties, and the protocols of that scheme. Parley has the Shamir engine (engines/shamir.py); a
three-party replicated engine is next. Nothing outside an engine module may assume how a share
looks, so a protocol written here once runs on every engine.

Shares
------
A share of a secret array of shape S is a uint64 numpy array of shape ``S + engine.share_shape``:
the value axes come first, then the engine's per-element component axes. ``share_shape`` is ()
for Shamir (one field element per value) and will be (2,) for replicated sharing (two ring
elements per value). Hence two kinds of operations:

* Structural ones act on the leading (value) axes and are plain numpy, the same for every
  engine: ``len(x)``, ``x[i:j:k]``, ``np.concatenate(xs)`` (axis 0), ``np.repeat(x, k, axis=0)``,
  ``np.expand_dims(x, 1)``, reshaping the value axes (``x.reshape((rows, width) + x.shape[1:])``,
  or `flatten` / `value_shape` below). Never ``x.size``, ``x.reshape(-1)`` or ``x[:, None]``:
  they would cut through the component axes.
* Arithmetic always goes through the engine (`add`, `sub`, `neg`, `add_const`, `mul_const`,
  `sum`, `mul_local`, ...), because what "add a constant" does to a share depends on the scheme
  (Shamir: add it to every share; replicated: to one component).

Public values
-------------
A public (opened) array is a uint64 array of the engine's plaintext domain, shaped like the value,
without component axes: what `open` returns. `encode` makes one from signed integers;
`add_const`, `mul_const` and `constant` take one and broadcast it against the value axes (the
engine aligns it with its component axes).

Products
--------
`mul_local` is the local half of a multiplication: an array, shaped like the value, that is not a
share yet (Shamir: a degree-2t sharing; replicated: a three-out-of-three additive sharing). `add`,
`sub`, `sum` and slicing apply to it; `reduce` turns any batch of them back into shares in one
round. That split is what lets the executor reduce every product of a circuit level (MUL, DOT,
SELECT, MUL_ROWS) in one round, and lets a DOT reduce only its sum.

Rounds and labels
-----------------
Every interactive method takes a round label first and handles a whole batch in its rounds;
sub-steps use sub-labels ``f"{label}/step"``, so concurrent steps never share a label. All
parties call the same methods in the same order with the same public arguments: control flow
depends on public data only (shapes, parties, opened masked values).

Why comparisons are engine methods and tournaments are not
-----------------------------------------------------------
[a < b], [x == 0] and the fused "compare, then select by the bit" (`less_than_select`) depend on
the sharing (Shamir uses the LSB trick on a prime field, a ring engine would not), so each engine
implements them. select, argmax, top-two and the ballot checks are compositions of these building
blocks and are written once (protocols/selection.py, protocols/ballots.py). A tournament level is
one `less_than_select`, so an engine that fuses the selection into its comparison (Shamir does, at
no extra round) makes every tournament faster without the tournament knowing.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from ..exchange import Exchange
from ..opened import OpenLog

Share = np.ndarray        # value axes + engine.share_shape
Public = np.ndarray       # value axes only, the engine's plaintext domain
Product = np.ndarray      # a local product (mul_local): value axes first, not yet a share
Masks = Any               # engine-defined preprocessing for comparisons (comparison_masks)
# (offset, if_true, if_false): bit[offset:offset + len(if_true)] ? if_true : if_false
Selection = tuple[int, Share, Share]


class Engine(ABC):
    """One party's side of one job under one sharing scheme. See the module docstring for the
    share layout; every method handles a batch."""

    name: str                       # the JobSpec.protocol value that selects this engine
    party: int                      # this party's 0-based id
    n: int                          # parties in the job
    t: int                          # corruption threshold: up to t colluding parties learn nothing
    parties: tuple[int, ...]        # the live parties taking part, sorted
    share_shape: tuple[int, ...]    # trailing component axes of every share
    field_modulus: int | None       # p if the plaintext domain is the prime field F_p, None for a ring
    max_bit_length: int             # comparisons accept operands with |v| < 2^bit_length up to this

    @property
    @abstractmethod
    def exchange(self) -> Exchange:
        """The exchange every round goes over (its `stats` are the job's traffic counters)."""

    # ---- session ----------------------------------------------------------------------
    @abstractmethod
    async def establish(self, binding: np.ndarray | None = None) -> None:
        """The engine's first round (keys, or whatever its setup needs). With `binding` (a short
        digest, protocols/agreement.py), it also checks that every live party sends the same
        binding, and fails with ProtocolViolation before any share is dealt if one does not."""

    # ---- input and output -------------------------------------------------------------
    @abstractmethod
    async def share_inputs(self, label: str, values_by_owner: dict[int, Public | None],
                           shapes: dict[int, tuple[int, ...]]) -> dict[int, Share]:
        """Every owner in `shapes` secret-shares its public-domain values (ours are
        values_by_owner[party] if we own some), all in one round. Returns {owner: our share}."""

    opened: OpenLog                 # every opening of this job so far (see OPEN_PURPOSES)

    @abstractmethod
    async def open(self, label: str, x: Share, to: Sequence[int] | None = None, *,
                   purpose: str | None = None) -> Public | None:
        """Reveal x to the parties in `to` (default: all live parties); others return None.
        `purpose` (a key of OPEN_PURPOSES) is recorded in `opened`; a protocol that opens
        anything must state it (the opened-values test fails on "unstated")."""

    # ---- public values and linear operations (local: no communication) -----------------
    @abstractmethod
    def encode(self, values: np.ndarray | int | list[int]) -> Public:
        """Signed integers -> the plaintext domain (the circuit's constants are signed)."""

    @abstractmethod
    def constant(self, values: Public) -> Share:
        """A share of a public array that every party knows (no communication)."""

    @abstractmethod
    def add(self, a: Share, b: Share) -> Share:
        """a + b, elementwise with numpy broadcasting over the value axes (also for products)."""

    @abstractmethod
    def sub(self, a: Share, b: Share) -> Share:
        """a - b (also for products)."""

    @abstractmethod
    def neg(self, a: Share) -> Share:
        """-a."""

    @abstractmethod
    def add_const(self, a: Share, c: Public) -> Share:
        """a + c for a public c broadcast against a's value axes."""

    @abstractmethod
    def mul_const(self, a: Share, c: Public) -> Share:
        """a * c for a public c broadcast against a's value axes (also for products)."""

    @abstractmethod
    def sum(self, a: Share, axis: int = 0, keepdims: bool = False) -> Share:
        """Sum over value axis `axis` (>= 0), like np.sum (also for products)."""

    # ---- multiplication -------------------------------------------------------------------
    @abstractmethod
    def mul_local(self, a: Share, b: Share) -> Product:
        """The local half of a*b (broadcasting over the value axes); `reduce` finishes it."""

    def matmul_local(self, a: Share, b: Share) -> Product:
        """The local half of the matrix product a @ b for a of value shape (m, k) and b of (k, n):
        a product of value shape (m, n) for `reduce`, as a DOT reduces only its sum (one element
        per output, whatever k). This default is mul_local and sum over k, in blocks of rows so
        that the (rows, k, n) intermediate stays near 4M values; an engine whose local product is
        a few matrix products of its components overrides it (replicated3 does)."""
        m, k = self.value_shape(a)
        n = self.value_shape(b)[1]
        step = max(1, (1 << 22) // max(1, k * n))
        blocks = [self.sum(self.mul_local(np.expand_dims(a[i:i + step], 2), np.expand_dims(b, 0)), axis=1)
                  for i in range(0, m, step)]
        return np.concatenate(blocks) if blocks else np.zeros((0, n), dtype=np.uint64)

    @abstractmethod
    async def reduce(self, label: str, products: Product) -> Share:
        """Local products (any batch, any value shape) -> shares of the same values: one round."""

    @abstractmethod
    async def mul(self, label: str, a: Share, b: Share) -> Share:
        """a * b elementwise: reduce(mul_local(a, b)), one round."""

    async def mul_many(self, label: str, pairs: Sequence[tuple[Share, Share]]) -> list[Share]:
        """Several independent products in one round (none: no round): their local products,
        flattened and reduced together, then cut apart again."""
        prods = [self.mul_local(a, b) for a, b in pairs]
        if not prods:
            return []
        flat = await self.reduce(label, prods[0].reshape(-1) if len(prods) == 1
                                 else np.concatenate([p.reshape(-1) for p in prods]))
        out, pos = [], 0
        for p in prods:
            out.append(flat[pos:pos + p.size].reshape(p.shape + tuple(self.share_shape)))
            pos += p.size
        return out

    # ---- randomness ---------------------------------------------------------------------
    @abstractmethod
    async def random(self, label: str, shape: tuple[int, ...]) -> Share:
        """Shares of uniform elements of the plaintext domain that no t parties know."""

    @abstractmethod
    async def random_bits(self, label: str, count: int) -> Share:
        """Shares (count,) of uniform bits that no t parties know."""

    async def random_coins(self, label: str, thresholds: np.ndarray, lam: int) -> Share:
        """Shares of the bits [r_i < T_i] for independent uniform lam-bit r_i that no t parties
        know and public thresholds 0 <= T_i <= 2^lam: exact Bernoulli(T_i / 2^lam) coins (the DP
        noise of protocols/noise.py). This default draws lam shared random bits per coin, sums
        them into r_i (local) and compares with less_than at lam + 1 bits: the rounds of one
        random_bits and one less_than. An engine with cheaper random words overrides it
        (replicated3: binary.random_coins)."""
        t = np.asarray(thresholds, dtype=np.int64).reshape(-1)
        n = len(t)
        bits = (await self.random_bits(f"{label}/bits", n * lam)).reshape((n, lam) + tuple(self.share_shape))
        weights = self.encode(np.left_shift(np.ones(lam, dtype=np.int64), np.arange(lam, dtype=np.int64)))
        r = self.sum(self.mul_const(bits, weights), axis=1)
        return await self.less_than(f"{label}/lt", r, self.constant(self.encode(t)), lam + 1)

    # ---- comparison and equality (engine-specific building blocks) -------------------------
    @abstractmethod
    async def comparison_masks(self, label: str, count: int, bit_length: int | None = None) -> Masks:
        """Input-independent preprocessing for `count` comparisons or zero tests, made ahead in
        one batch (a tournament makes all of its masks at once). Each mask is used once.
        Without `bit_length` the masks serve every comparison and zero test. With it, an engine
        may make cheaper masks that serve only comparisons of that bit_length (Shamir does for
        small ones); an engine without such masks ignores it."""

    @abstractmethod
    def take_masks(self, masks: Masks, start: int, count: int) -> Masks:
        """Masks start..start+count-1 of a batch from `comparison_masks`."""

    @abstractmethod
    async def less_than(self, label: str, a: Share, b: Share, bit_length: int, *,
                        masks: Masks | None = None) -> Share:
        """Shares of the bits [a < b] for signed a, b with |a|, |b| < 2^bit_length, any shape;
        exact also when one operand is -(2^bit_length) (top_two's "minus infinity"). bit_length is
        a range contract, checked for form only (`check_bit_length`): an operand out of range
        gives a wrong bit. `masks`: from comparison_masks for every element, or made here."""

    @abstractmethod
    async def equal_zero(self, label: str, x: Share, *, masks: Masks | None = None) -> Share:
        """Shares of the bits [x == 0], exact for every element of the plaintext domain."""

    async def less_than_select(self, label: str, a: Share, b: Share, bit_length: int,
                               selects: Sequence[Selection] = (), *, keep_bit: tuple[int, int] | None = None,
                               masks: Masks | None = None) -> tuple[list[Share], Share | None]:
        """[a < b] for flat a, b and, for each (offset, X, Y) in `selects`, the selection
        bit[offset:offset + len(X)] ? X : Y; also bit[lo:hi] if keep_bit = (lo, hi).

        This default is the comparison followed by one multiplication round for the selections;
        an engine that can fold the selections into its comparison overrides it (Shamir does)."""
        bit = await self.less_than(label, a, b, bit_length, masks=masks)
        prods = await self.mul_many(f"{label}/select",
                                    [(bit[off:off + len(x)], self.sub(x, y)) for off, x, y in selects])
        chosen = [self.add(y, p) for (_, _, y), p in zip(selects, prods)]
        return chosen, None if keep_bit is None else bit[keep_bit[0]:keep_bit[1]]

    # ---- client input checks (protocols/clientchecks.py) ------------------------------------
    @abstractmethod
    async def consistent_rows(self, label: str, rows: Share) -> np.ndarray:
        """Which client rows are consistently shared: rows is an (m, L) + share_shape batch, one
        row per client, that every live party holds; returns a bool array (m,), the same at
        every live party. A row that fails was shared inconsistently by its client (nodes are
        semi-honest) and is excluded. One batch for all rows; nothing about an honest row's
        value leaks (each engine's docstring says what travels)."""

    @abstractmethod
    async def upper_half(self, label: str, x: Share) -> Share:
        """Shares of the bits [x is in the upper half of the plaintext domain], EXACT for every
        element, whatever it holds (Shamir: x > (p - 1) / 2; a ring Z_2^k: bit k - 1 of x). On
        signed values it is [x < 0]; protocols/clientchecks.py builds an exact range test from
        two of them. Any value shape, one batch."""

    def exact_bit_length(self, bit_length: int) -> int:
        """The bit_length to compare operands that nobody range-checked with (client values,
        input-only organizations' values, anything computed from them): one at which this engine's
        comparison opens nothing that depends on the operands, whatever they hold (an operand out
        of its declared range may still give a wrong bit). This default: `bit_length` itself, for
        an engine whose comparisons open nothing; Shamir's bounded path masks statistically only
        within the range, so it returns a bit_length above that path's."""
        return bit_length

    async def equal_zero_bounded(self, label: str, x: Share, bound: int) -> Share:
        """[x == 0] for x that is guaranteed to lie in [0, bound] because the nodes range-checked
        the inputs it derives from. NOT for unchecked values. This default is the exact
        `equal_zero`, right for any x; an engine with a cheaper test for small known ranges
        overrides it (Shamir: a statistically masked opening)."""
        return await self.equal_zero(label, x)

    # ---- derived operations: the same for every engine -----------------------------------
    async def equal(self, label: str, a: Share, b: Share, *, masks: Masks | None = None) -> Share:
        """Shares of [a == b] (exact)."""
        a, b = np.broadcast_arrays(a, b)
        return await self.equal_zero(label, self.sub(a, b), masks=masks)

    async def greater_equal(self, label: str, a: Share, b: Share, bit_length: int, *,
                            masks: Masks | None = None) -> Share:
        """Shares of [a >= b] = 1 - [a < b]."""
        return self.one_minus(await self.less_than(label, a, b, bit_length, masks=masks))

    def one_minus(self, bit: Share) -> Share:
        """1 - bit (NOT of a shared bit)."""
        return self.sub(self.constant(self.encode(np.ones(self.value_shape(bit), dtype=np.int64))), bit)

    def value_shape(self, x: Share) -> tuple[int, ...]:
        """The shape of the secret array that share x holds (its shape minus the component axes)."""
        return x.shape[:x.ndim - len(self.share_shape)]

    def flatten(self, x: Share) -> Share:
        """x with its value axes flattened to one (the component axes kept)."""
        return np.ascontiguousarray(x).reshape((-1,) + tuple(self.share_shape))

    def check_bit_length(self, bit_length: Any) -> int:
        """bit_length as an int if it is an integer in 1..max_bit_length, else ValueError."""
        if isinstance(bit_length, bool) or not isinstance(bit_length, (int, np.integer)) \
                or not 1 <= int(bit_length) <= self.max_bit_length:
            raise ValueError(f"bit_length must be an integer in 1..{self.max_bit_length}, got {bit_length!r}")
        return int(bit_length)
