"""MPyC reference implementation of Parley's benchmark workloads.

Run by each of the 3 party processes (normally started by ``bench.mpyc_runner``)::

    python bench/mpyc_ref.py --workload sum --size 1000000 -M3 -I0 -T1 -B 24000

MPyC's own options (``-M``, ``-I``, ``-T``, ``-B``, ``--no-log``, ...) are consumed by
``mpyc.runtime`` on import; everything else is parsed here.

Every workload follows the same shape:

1. Party 0 generates its whole input batch deterministically from ``--seed`` (numpy RNG)
   and secret-shares it with ``mpc.input(..., senders=0)``; the other parties pass a
   placeholder array of the same shape (only its shape and type are used).
2. Every party waits until its shares have arrived, then all parties synchronise with a
   tiny all-to-all ``mpc.transfer`` so that the clock starts at the same moment everywhere.
3. Party 0 times the computation from there until the output is opened (``seconds``).
   The time party 0 spent sharing its inputs is reported separately (``input_seconds``).
4. Party 0 recomputes the result in the clear and prints exactly one line
   ``MPYC_RESULT {json}`` whose ``check`` field compares the opened result with it.

The secure computation only ever uses MPyC's secure numpy arrays (``SecInt(l).array``,
``mpc.np_*``), which is MPyC's fastest API; gmpy2 and uvloop are picked up by MPyC
automatically when installed, and the result line records whether they were.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

# NB: importing mpyc.runtime parses (and strips) MPyC's options from sys.argv and installs
# uvloop's event loop policy if uvloop is importable.
from mpyc.runtime import mpc  # noqa: E402
import mpyc  # noqa: E402
import mpyc.gmpy  # noqa: E402

WORKLOADS = ("sum", "mul", "cmp", "vickrey", "vote_tally", "vote_winner", "referendum")

# Value ranges of the generated inputs (party 0's data).
SUM_BITS, SUM_RANGE = 64, 1 << 47        # sum: SecInt(64) values in [-2^47, 2^47)
MUL_BITS, MUL_RANGE = 64, 1 << 31        # mul: products of values in [-2^31, 2^31) fit 64 bits
CMP_BITS, CMP_RANGE = 32, 1 << 30        # cmp: a - b must fit in 32 signed bits for MPyC
BID_BITS, BID_RANGE = 32, 1 << 30        # vickrey: bids in [0, 2^30)
VOTE_BITS = 32                           # vote counts (up to N) and their comparisons
BALLOT_LO, BALLOT_HI = -1, 2             # declared bounds of a ballot entry (invalid ones exist)
INVALID_FRACTION = 0.01                  # share of deliberately malformed ballots


# --------------------------------------------------------------------------- inputs

def gen_inputs(workload: str, n: int, seed: int, options: int) -> dict[str, np.ndarray]:
    """Party 0's plaintext inputs for `workload` of size `n` (deterministic in `seed`)."""
    rng = np.random.default_rng(seed)
    if workload == "sum":
        return {"x": rng.integers(-SUM_RANGE, SUM_RANGE, n, dtype=np.int64)}
    if workload == "mul":
        return {"a": rng.integers(-MUL_RANGE, MUL_RANGE, n, dtype=np.int64),
                "b": rng.integers(-MUL_RANGE, MUL_RANGE, n, dtype=np.int64)}
    if workload == "cmp":
        a = rng.integers(-CMP_RANGE, CMP_RANGE, n, dtype=np.int64)
        b = rng.integers(-CMP_RANGE, CMP_RANGE, n, dtype=np.int64)
        b[: n // 10] = a[: n // 10]  # some ties, so that a < b is 0 on equality too
        return {"a": a, "b": b}
    if workload == "vickrey":
        bids = rng.integers(0, BID_RANGE, n, dtype=np.int64)
        if n >= 4 and seed % 2 == 0:  # even seeds: a tie for the top bid ("first max wins")
            bids[n // 3] = bids[(2 * n) // 3] = BID_RANGE - 1
        return {"bids": bids}
    # vote_tally / vote_winner / referendum: an n x k matrix of (mostly) one-hot rows.
    return {"ballots": gen_ballots(rng, n, options)}


def gen_ballots(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """n one-hot ballots over k options, with about 1% malformed ones of several kinds."""
    choice = rng.choice(k, size=n, p=skewed_distribution(k))
    ballots = np.zeros((n, k), dtype=np.int64)
    ballots[np.arange(n), choice] = 1
    bad = np.flatnonzero(rng.random(n) < INVALID_FRACTION)
    kind = rng.integers(0, 4, bad.size)
    col = rng.integers(0, k, bad.size)
    for j, rows in enumerate(bad[kind == i] for i in range(4)):
        cols = col[kind == j]
        if j == 0:    # empty ballot: row sum 0
            ballots[rows] = 0
        elif j == 1:  # two options ticked: row sum 2
            ballots[rows] = 0
            ballots[rows, (cols + 1) % k] = 1
            ballots[rows, cols] = 1
        elif j == 2:  # entry 2 instead of 1: not binary, row sum 2
            ballots[rows] = 0
            ballots[rows, cols] = 2
        else:         # 1 + 1 - 1: row sum 1 but not binary (only the 0/1 check catches it)
            ballots[rows] = 0
            ballots[rows, cols] = -1
            ballots[rows, (cols + 1) % k] = 1
            if k > 2:
                ballots[rows, (cols + 2) % k] = 1
            else:     # k == 2: use a 2 instead ([-1, 2] also has row sum 1)
                ballots[rows, (cols + 1) % k] = 2
    return ballots


def skewed_distribution(k: int) -> np.ndarray:
    """Option popularity: option i gets weight k - i (a clear but not absurd winner).

    Yes/no (k = 2) is a near coin flip instead, so that the referendum bit depends on the seed.
    """
    w = np.ones(2) if k == 2 else np.arange(k, 0, -1, dtype=float)
    return w / w.sum()


def plain_result(workload: str, inp: dict[str, np.ndarray]) -> Any:
    """The workload's result computed in the clear (party 0 only, outside the timing)."""
    if workload == "sum":
        return int(inp["x"].astype(object).sum())  # Python ints: no int64 overflow
    if workload == "mul":
        return inp["a"] * inp["b"]
    if workload == "cmp":
        return (inp["a"] < inp["b"]).astype(np.int64)
    if workload == "vickrey":
        bids = inp["bids"]
        return int(np.argmax(bids)), int(np.sort(bids)[-2])
    ballots = inp["ballots"]
    valid = np.all((ballots == 0) | (ballots == 1), axis=1) & (ballots.sum(axis=1) == 1)
    counts = ballots[valid].sum(axis=0)
    if workload == "vote_tally":
        return [int(c) for c in counts] + [int((~valid).sum())]
    if workload == "vote_winner":
        return int(np.argmax(counts))
    return int(2 * int(counts[0]) >= int(valid.sum()))  # referendum: yes >= valid / 2


# --------------------------------------------------------------------------- workloads
# Each workload gets the secret-shared inputs and returns the opened result.

async def w_sum(x: Any) -> int:
    """Secure sum of all elements."""
    return int(await mpc.output(mpc.np_sum(x)))


async def w_mul(a: Any, b: Any, open_mode: str) -> np.ndarray | int:
    """N elementwise secure multiplications; open all products or only their sum."""
    c = mpc.np_multiply(a, b)
    if open_mode == "sum":
        return int(await mpc.output(mpc.np_sum(c)))
    return await mpc.output(c)


async def w_cmp(a: Any, b: Any) -> np.ndarray:
    """N elementwise comparisons a < b (|a - b| < 2^31); open the result bits."""
    return await mpc.output(mpc.np_less(a, b))


async def w_vickrey(bids: Any, method: str) -> tuple[int, int]:
    """Second-price auction: open the (first) highest bidder's index and the second price."""
    if method == "builtin":
        winner, price = vickrey_builtin(bids)
    else:
        winner, price = vickrey_tournament(bids)
    winner, price = await mpc.output([winner, price])
    return int(winner), int(price)


def vickrey_builtin(bids: Any) -> tuple[Any, Any]:
    """Winner via mpc.np_argmax (as a unit vector), second price via mpc.np_amax.

    Bids are non-negative, so zeroing the winner's bid leaves the second-highest bid as
    the maximum (which equals the top bid on a tie, as in a real Vickrey auction).
    """
    n = bids.shape[0]
    u = mpc.np_argmax(bids, arg_unary=True)        # one-hot of the first maximum
    winner = u @ np.arange(n)                       # public weights: local, no interaction
    second = mpc.np_amax(bids - u * bids)
    return winner, second


def vickrey_tournament(bids: Any) -> tuple[Any, Any]:
    """Knock-out tournament that carries (top, second, index of top) per bracket.

    About 1.5 N secure comparisons (np_argmax + np_amax need about 2 N), in 2 log2 N
    comparison rounds. Ties go to the left bracket, so the first maximum wins, as argmax.
    """
    n = bids.shape[0]
    if n < 2:
        raise ValueError("vickrey needs at least 2 bids")
    secint = bids.sectype
    # Round 1: pairs of single bids (2i, 2i+1).
    h = n // 2
    left, right = bids[0:2 * h:2], bids[1:2 * h:2]
    c = mpc.np_less(left, right)                    # 1 iff the right bid wins the pair
    delta = c * (right - left)
    top, second = left + delta, right - delta
    index = c + np.arange(0, 2 * h, 2)              # public 2i plus secret c
    if n % 2:  # an odd bid out: carried to the next round, it has no second price yet
        top = mpc.np_concatenate((top, bids[n - 1:]))
        second = mpc.np_concatenate((second, secint.array(np.array([-1]))))
        index = mpc.np_concatenate((index, secint.array(np.array([n - 1]))))
    # Later rounds: merge brackets (t1, s1, i1) and (t2, s2, i2).
    while (m := top.shape[0]) > 1:
        h = m // 2
        t1, t2 = top[0:2 * h:2], top[1:2 * h:2]
        s1, s2 = second[0:2 * h:2], second[1:2 * h:2]
        i1, i2 = index[0:2 * h:2], index[1:2 * h:2]
        c = mpc.np_less(t1, t2)                     # 1 iff the right bracket wins
        dt = c * (t2 - t1)
        new_top = t1 + dt
        loser_top = t2 - dt                         # min(t1, t2)
        winner_second = s1 + c * (s2 - s1)          # second of the winning bracket
        new_index = i1 + c * (i2 - i1)
        c2 = mpc.np_less(loser_top, winner_second)
        new_second = loser_top + c2 * (winner_second - loser_top)
        if m % 2:
            new_top = mpc.np_concatenate((new_top, top[m - 1:]))
            new_second = mpc.np_concatenate((new_second, second[m - 1:]))
            new_index = mpc.np_concatenate((new_index, index[m - 1:]))
        top, second, index = new_top, new_second, new_index
    return index[0], second[0]


def zero_test_bits(k: int) -> int:
    """Bits L such that the ballot defect d (see validate_ballots) satisfies 0 <= d < 2^L."""
    worst_entry = max(x * (x - 1) for x in (BALLOT_LO, BALLOT_HI))
    worst_sum = max((s - 1) ** 2 for s in (k * BALLOT_LO, k * BALLOT_HI))
    return (k * worst_entry + worst_sum).bit_length()


def validate_ballots(ballots: Any) -> Any:
    """Secure 0/1 bits: 1 iff a ballot row is valid (all entries 0/1 and row sum 1).

    For integer entries x(x-1) >= 0 and (s-1)^2 >= 0, so with s the row sum

        d = sum_j x_j (x_j - 1) + (s - 1)^2 = sum_j y_j^2 - s,   y = (x_1..x_k, s - 1)

    is 0 exactly for valid rows. The sum of squares is a batch of row-wise inner products
    (one mpc.np_matmul over (n,1,k+1) @ (n,k+1,1): one degree reduction per row), and a
    single L-bit zero test per row (mpc.np_sgn with EQ=True) turns d into the validity bit.
    """
    n, k = ballots.shape
    s = mpc.np_sum(ballots, axis=1, keepdims=True)                  # (n, 1), local
    y = mpc.np_concatenate((ballots, s - 1), axis=1)                # (n, k+1), local
    sq = mpc.np_matmul(mpc.np_reshape(y, (n, 1, k + 1)), mpc.np_reshape(y, (n, k + 1, 1)))
    d = mpc.np_reshape(sq, (n,)) - mpc.np_reshape(s, (n,))
    return mpc.np_sgn(d, l=zero_test_bits(k), EQ=True)


async def w_vote(ballots: Any, workload: str) -> Any:
    """vote_tally / vote_winner / referendum over secret-shared one-hot ballots."""
    n = ballots.shape[0]
    valid = validate_ballots(ballots)                               # (n,) bits
    counts = mpc.np_matmul(valid, ballots)                          # (k,) valid votes per option
    if workload == "vote_tally":
        invalid = n - mpc.np_sum(valid)
        opened_counts, opened_invalid = mpc.output(counts), mpc.output(invalid)  # one round
        counts, invalid = await opened_counts, await opened_invalid
        return [int(c) for c in counts] + [int(invalid)]
    if workload == "vote_winner":
        return int(await mpc.output(mpc.np_argmax(counts)))
    # referendum (k = 2, option 0 = yes): open only [2 * yes >= number of valid votes].
    n_valid = mpc.np_sum(valid)
    return int(await mpc.output(2 * counts[0] >= n_valid))


# --------------------------------------------------------------------------- driver

def backend_info() -> dict[str, str]:
    """What MPyC actually runs on: gmpy2 (or its pure-Python stubs) and the event loop."""
    mpz_type = type(mpyc.gmpy.mpz(1))
    loop = asyncio.get_running_loop()
    return {
        "mpyc": mpyc.__version__,
        "gmpy": f"{mpz_type.__module__}.{mpz_type.__qualname__}",   # gmpy2.mpz vs builtins.int
        "loop": f"{type(loop).__module__}.{type(loop).__qualname__}",  # uvloop.Loop expected
        "threshold": str(mpc.threshold),
        "parties": str(len(mpc.parties)),
    }


def summarize(workload: str, opened: Any, expected: Any) -> dict[str, Any]:
    """Small 'check' record: does the opened result equal the plaintext result?"""
    if isinstance(opened, np.ndarray):
        got = np.asarray(opened, dtype=object)
        ok = got.shape == expected.shape and bool(np.all(got == expected.astype(object)))
        info: dict[str, Any] = {"ok": ok, "n": int(got.size), "opened_sum": int(got.sum())}
        if got.size <= 16:
            info["opened"] = [int(v) for v in got]
        return info
    if isinstance(opened, tuple):
        opened = list(opened)
    if isinstance(expected, tuple):
        expected = list(expected)
    return {"ok": opened == expected, "opened": opened, "expected": expected}


async def run(args: argparse.Namespace) -> None:
    await mpc.start()
    backend = backend_info()
    options = 2 if args.workload == "referendum" else args.options
    n = args.size
    me = mpc.pid

    # Party 0 holds the real data; the others only need arrays of the right shape/type.
    if me == 0:
        inp = gen_inputs(args.workload, n, args.seed, options)
    else:
        shape = (n, options) if args.workload in ("vote_tally", "vote_winner", "referendum") else (n,)
        names = {"sum": ["x"], "mul": ["a", "b"], "cmp": ["a", "b"], "vickrey": ["bids"]}
        inp = {name: np.zeros(shape, dtype=np.int64) for name in names.get(args.workload, ["ballots"])}
    bits = {"sum": SUM_BITS, "mul": MUL_BITS, "cmp": CMP_BITS, "vickrey": BID_BITS}
    secint = mpc.SecInt(bits.get(args.workload, VOTE_BITS))
    placeholders = {name: secint.array(v) for name, v in inp.items()}

    t_in = time.perf_counter()
    shared = {name: mpc.input(a, senders=0) for name, a in placeholders.items()}
    await mpc.gather(list(shared.values()))    # my shares have arrived
    input_seconds = time.perf_counter() - t_in
    await mpc.transfer(me)                     # all parties hold their shares: start together

    t0 = time.perf_counter()
    work: Callable[[], Awaitable[Any]]
    if args.workload == "sum":
        work = lambda: w_sum(shared["x"])
    elif args.workload == "mul":
        work = lambda: w_mul(shared["a"], shared["b"], args.mul_open)
    elif args.workload == "cmp":
        work = lambda: w_cmp(shared["a"], shared["b"])
    elif args.workload == "vickrey":
        work = lambda: w_vickrey(shared["bids"], args.vickrey_method)
    else:
        work = lambda: w_vote(shared["ballots"], args.workload)
    opened = await work()
    seconds = time.perf_counter() - t0
    await mpc.shutdown()

    if me == 0:
        expected = plain_result(args.workload, inp)
        if args.workload == "mul" and args.mul_open == "sum":
            expected = int(expected.astype(object).sum())
        record: dict[str, Any] = {
            "workload": args.workload,
            "size": n,
            "seconds": round(seconds, 4),
            "check": summarize(args.workload, opened, expected),
            "input_seconds": round(input_seconds, 4),
            "backend": backend,
        }
        if args.workload in ("vote_tally", "vote_winner", "referendum"):
            record["options"] = options
            record["zero_test_bits"] = zero_test_bits(options)
        if args.workload == "mul":
            record["mul_open"] = args.mul_open
        if args.workload == "vickrey":
            record["vickrey_method"] = args.vickrey_method
        print("MPYC_RESULT " + json.dumps(record), flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="MPyC reference side of Parley's benchmark (run once per party; "
                    "MPyC options such as -M3 -I0 -T1 -B PORT are passed through to MPyC).")
    p.add_argument("--workload", required=True, choices=WORKLOADS)
    p.add_argument("--size", type=int, required=True, help="N: elements, bids or ballots")
    p.add_argument("--seed", type=int, default=1, help="seed of party 0's input generator")
    p.add_argument("--options", type=int, default=5,
                   help="K, options per ballot for vote_tally/vote_winner (referendum: 2)")
    p.add_argument("--mul-open", choices=("full", "sum"), default="full",
                   help="mul: open all N products (default) or only their sum")
    p.add_argument("--vickrey-method", choices=("tournament", "builtin"), default="tournament",
                   help="vickrey: top-2 knock-out tournament (default, fewer comparisons) "
                        "or mpc.np_argmax + mpc.np_amax")
    args = p.parse_args(argv)
    if args.size < 1:
        p.error("--size must be positive")
    if args.workload == "vickrey" and args.size < 2:
        p.error("vickrey needs --size >= 2")
    if args.options < 2:
        p.error("--options must be at least 2")
    return args


def main() -> None:
    args = parse_args(sys.argv[1:])   # MPyC's options were removed from sys.argv already
    mpc.run(run(args))


if __name__ == "__main__":
    main()
