"""Circuits for the auction and vote scenarios, built with the builder API.

Each output opens as little as the scenario promises (see docs/outputs.md): an auction opens
one vector [sold, winner, price] whose winner and price are multiplied by `sold`, so "no sale"
opens zeros and nothing else; a vote opens the tally, or only the winner, or only YES/NO.
The output description carries a small JSON note that tells the recipient how to render it.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from parley.v1 import circuit_pb2 as cpb

from .builder import CircuitBuilder

if TYPE_CHECKING:
    from .scenario import AuctionScenario, VoteScenario


def auction_circuit(sc: "AuctionScenario") -> cpb.Circuit:
    spec = sc.auction
    bits = spec.bit_length
    max_bid = spec.max_bid if spec.max_bid is not None else (1 << bits) - 1
    if not spec.min_bid <= max_bid:
        raise ValueError(f"auction.max_bid: {max_bid} is below min_bid {spec.min_bid}")
    if max(abs(spec.min_bid), abs(max_bid)) >= (1 << bits):
        raise ValueError(f"auction.bit_length: bids in [{spec.min_bid}, {max_bid}] need more than {bits} bits")
    b = CircuitBuilder(sc.name)
    bids = b.client_input("bids", sc.bidders, 1, spec.min_bid, max_bid)
    # differences of two bids need one bit more than the bids themselves
    cmp_bits = bits + 1
    if spec.type == "second-price":
        top = b.top_two(bids, cmp_bits)
        winner, highest, price = top[0], top[1], top[2]
    else:
        top = b.argmax(bids, cmp_bits)
        winner, highest, price = top[0], top[1], top[1]
    zero = b.sub(highest, highest)
    reserve = spec.reserve
    if reserve is not None and reserve.secret_from is not None:
        if reserve.secret_from not in sc.parties:
            raise ValueError(f"auction.reserve.secret_from: {reserve.secret_from!r} is not a compute party")
        floor = b.input("reserve", reserve.secret_from, 1, spec.min_bid, max_bid)
    else:
        value = reserve.public if reserve is not None else spec.min_bid
        if not spec.min_bid <= value <= max_bid:
            raise ValueError(f"auction.reserve.public: {value} is outside [{spec.min_bid}, {max_bid}]")
        floor = b.add(zero, value)
    sold = b.ge(highest, floor, cmp_bits)
    if spec.type == "second-price":
        # the winner pays the larger of the second-highest bid and the reserve
        price = b.select(b.ge(price, floor, cmp_bits), price, floor)
    result = b.mul(b.concat([b.add(winner, 1), price]), sold)
    b.output("result", b.concat([sold, result]), sc.recipients,
             description=json.dumps({"render": "auction", "type": spec.type}))
    return b.build()


def vote_circuit(sc: "VoteScenario") -> cpb.Circuit:
    spec = sc.vote
    k = len(spec.options)
    voters = sc.voter_names
    b = CircuitBuilder(sc.name)
    ballots = b.client_input("ballots", voters, k, 0, 1)
    valid = b.rows_valid(ballots, k, exactly_one=not spec.approval)
    tally = b.column_sums(b.mul_rows(ballots, k, valid), k)
    count_bits = max(2, len(voters).bit_length() + 2)
    note = {"options": spec.options}
    if spec.output == "tally":
        invalid = b.sub(b.count_rows(ballots, k), b.sum(valid))
        b.output("tally", b.concat([tally, invalid]), sc.recipients,
                 description=json.dumps({"render": "tally", **note}))
    elif spec.output == "winner":
        b.output("winner", b.argmax(tally, count_bits)[0], sc.recipients,
                 description=json.dumps({"render": "winner", **note}))
    else:
        yes = tally[0]
        passes = b.ge(b.scale(yes, 2), b.sum(valid), count_bits + 1)
        b.output("referendum", passes, sc.recipients,
                 description=json.dumps({"render": "referendum", "question": sc.description}))
    return b.build()
