"""kind: vote. Voters submit one-hot (or approval) ballots from input clients; the output is the
tally, only the winner, or only YES/NO of a referendum. Ballots are validated inside MPC."""
from __future__ import annotations

import json
from typing import Literal

from pydantic import Field, model_validator

from parley.v1 import circuit_pb2 as cpb

from .builder import CircuitBuilder
from .common import ClientRange, Common, Strict, client_names


class VoteSpec(Strict):
    options: list[str] = Field(min_length=2, max_length=64)
    approval: bool = False
    output: Literal["tally", "winner", "referendum"]

    @model_validator(mode="after")
    def _referendum(self) -> "VoteSpec":
        if self.output == "referendum" and len(self.options) != 2:
            raise ValueError("a referendum has exactly two options: YES first, then NO")
        return self


class VoteScenario(Common):
    kind: Literal["vote"]
    vote: VoteSpec
    voters: list[str] | ClientRange
    reveal_participants: bool = Field(default=False, description="the recipients also learn which voters' "
                                      "ballots counted (default: only the output)")

    @property
    def voter_names(self) -> list[str]:
        return client_names(self.voters)

    def identities(self) -> set[str]:
        return super().identities() | set(self.voter_names)

    def build(self) -> cpb.Circuit:
        return vote_circuit(self)


def vote_circuit(sc: VoteScenario) -> cpb.Circuit:
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
                 description=json.dumps({"render": "tally", **note}), reveal_participants=sc.reveal_participants)
    elif spec.output == "winner":
        b.output("winner", b.argmax(tally, count_bits)[0], sc.recipients,
                 description=json.dumps({"render": "winner", **note}), reveal_participants=sc.reveal_participants)
    else:
        yes = tally[0]
        passes = b.ge(b.scale(yes, 2), b.sum(valid), count_bits + 1)
        b.output("referendum", passes, sc.recipients,
                 description=json.dumps({"render": "referendum", "question": sc.description}),
                 reveal_participants=sc.reveal_participants)
    return b.build()
