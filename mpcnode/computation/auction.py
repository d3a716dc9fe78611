"""kind: auction. Bidders submit sealed bids from input clients; first-price or second-price
(Vickrey), with a public or a secret reserve.

The circuit opens one vector [sold, winner, price] whose winner and price are multiplied by
`sold`, so "no sale" opens zeros and nothing else (docs/outputs.md). winner is 1 + the winning
bidder's position in the approved `bidders` list (the tournament carries row tags), so it names
the winner without saying where its row was or who else bid. The output description
carries a small JSON note that tells the recipient how to render it.
"""
from __future__ import annotations

import json
from typing import Literal

from pydantic import Field, field_validator, model_validator

from parley.v1 import circuit_pb2 as cpb

from .builder import CircuitBuilder
from .common import DATASET_PATTERN, ClientRange, Common, Strict, client_names, client_rules


class ReserveSpec(Strict):
    public: int | None = None
    secret_from: str | None = Field(default=None,
                                    description="party whose node inputs a secret reserve (compute or input-only)")
    dataset: str | None = Field(default=None, pattern=DATASET_PATTERN,
                                description="the secret_from party's local dataset (default: the scenario name)")

    @model_validator(mode="after")
    def _one(self) -> "ReserveSpec":
        if (self.public is None) == (self.secret_from is None):
            raise ValueError("give exactly one of public or secret_from")
        return self


class AuctionSpec(Strict):
    type: Literal["first-price", "second-price"]
    bit_length: int = Field(default=48, ge=2, le=58)
    min_bid: int = 0
    max_bid: int | None = None
    reserve: ReserveSpec | None = None


class AuctionScenario(Common):
    kind: Literal["auction"]
    auction: AuctionSpec
    bidders: list[str] | ClientRange = Field(description="bidder credentials, or {prefix, count}")
    reveal_participants: bool = Field(default=False, description="the recipients also learn which bidders' "
                                      "bids counted (default: only sold, the winner and the price)")

    @field_validator("bidders")
    @classmethod
    def _two_or_more(cls, v: "list[str] | ClientRange") -> "list[str] | ClientRange":
        if len(client_names(v)) < 2:
            raise ValueError("an auction needs at least two bidders")
        return v

    @property
    def bidder_names(self) -> list[str]:
        return client_names(self.bidders)

    def identities(self) -> set[str]:
        return super().identities() | set(self.bidder_names)

    def input_client_rules(self) -> list[str]:
        return client_rules(self.bidders)

    def build(self) -> cpb.Circuit:
        return auction_circuit(self)


def auction_circuit(sc: AuctionScenario) -> cpb.Circuit:
    spec = sc.auction
    bits = spec.bit_length
    max_bid = spec.max_bid if spec.max_bid is not None else (1 << bits) - 1
    if not spec.min_bid <= max_bid:
        raise ValueError(f"auction.max_bid: {max_bid} is below min_bid {spec.min_bid}")
    if max(abs(spec.min_bid), abs(max_bid)) >= (1 << bits):
        raise ValueError(f"auction.bit_length: bids in [{spec.min_bid}, {max_bid}] need more than {bits} bits")
    b = CircuitBuilder(sc.name)
    bids = b.client_input("bids", sc.bidder_names, 1, spec.min_bid, max_bid)
    # differences of two bids need one bit more than the bids themselves
    cmp_bits = bits + 1
    if spec.type == "second-price":
        top = b.top_two(bids, cmp_bits, tagged=True)
        winner, highest, price = top[0], top[1], top[2]
    else:
        top = b.argmax(bids, cmp_bits, tagged=True)
        winner, highest, price = top[0], top[1], top[1]
    # a zero to add public constants to: from the winner's index, whose bounds are tight (the
    # highest bid's include the sentinel of no bids, computation/ranges.py)
    zero = b.sub(winner, winner)
    reserve = spec.reserve
    if reserve is not None and reserve.secret_from is not None:
        if reserve.secret_from not in sc.parties:
            raise ValueError(f"auction.reserve.secret_from: {reserve.secret_from!r} is not one of the parties")
        floor = b.input("reserve", reserve.secret_from, 1, spec.min_bid, max_bid,
                        dataset=reserve.dataset or sc.name)
    else:
        value = reserve.public if reserve is not None else spec.min_bid
        if not spec.min_bid <= value <= max_bid:
            raise ValueError(f"auction.reserve.public: {value} is outside [{spec.min_bid}, {max_bid}]")
        floor = b.add(zero, value)
    sold = b.ge(highest, floor, cmp_bits)
    if spec.type == "second-price":
        # the winner pays the larger of the second-highest bid and the reserve
        price = b.select(b.ge(price, floor, cmp_bits), price, floor)
    # winner: the winning bidder's position in the approved bidder list (row tags), plus one so
    # that "no sale" (everything times sold = 0) opens 0; never its row position
    result = b.mul(b.concat([b.add(winner, 1), price]), sold)
    b.output("result", b.concat([sold, result]), sc.recipients,
             description=json.dumps({"render": "auction", "type": spec.type}),
             reveal_participants=sc.reveal_participants)
    return b.build()


