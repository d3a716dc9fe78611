"""kind: vote. Voters submit one-hot (or approval) ballots from input clients; the output is the
tally, only the winner, or only YES/NO of a referendum. Ballots are validated inside MPC."""
from __future__ import annotations

import json
from typing import Literal

from pydantic import Field, field_validator, model_validator

from parley.v1 import circuit_pb2 as cpb

from . import dp as dpm
from .builder import CircuitBuilder
from .common import ClientRange, Common, Strict, client_names, client_rules


# Keys a rendered result holds besides the options (mpcnode/recipient.py `render`): a tally maps
# each option to its count next to these, so an option of the same name would overwrite one.
RESULT_KEYS = ("invalid",)


class VoteSpec(Strict):
    options: list[str] = Field(min_length=2, max_length=64)
    approval: bool = False
    output: Literal["tally", "winner", "referendum"]

    @model_validator(mode="after")
    def _referendum(self) -> "VoteSpec":
        if self.output == "referendum" and len(self.options) != 2:
            raise ValueError("a referendum has exactly two options: YES first, then NO")
        return self

    @field_validator("options")
    @classmethod
    def _distinct_names(cls, options: list[str]) -> list[str]:
        twice = sorted({o for o in options if options.count(o) > 1})
        if twice:
            raise ValueError(f"{', '.join(map(repr, twice))} listed twice")
        taken = [o for o in options if o in RESULT_KEYS]
        if taken:
            raise ValueError(f"{taken[0]!r} is a key of the result (it holds the invalid-ballot count); "
                             "name the option otherwise")
        return options


class VoteScenario(Common):
    kind: Literal["vote"]
    vote: VoteSpec
    voters: list[str] | ClientRange
    reveal_participants: bool = Field(default=False, description="the recipients also learn which voters' "
                                      "ballots counted (default: only the output)")
    dp: dpm.DpSpec | None = Field(default=None, description="differential privacy (docs/privacy.md)")

    @model_validator(mode="after")
    def _dp(self) -> "VoteScenario":
        if self.dp is None:
            return self
        if self.dp.unit != "client":
            raise ValueError("dp.unit: a vote protects one voter's ballot (unit: client)")
        if self.vote.output == "referendum":
            raise ValueError("dp: a DP referendum is not supported (use output: tally or winner)")
        if self.reveal_participants:
            raise ValueError("reveal_participants: with dp, would tell who voted, which the noise does not hide")
        if self.dp.clip is not None:
            raise ValueError("dp.clip: ballots are validated inside MPC; a vote has no clipping bound")
        return self

    @property
    def voter_names(self) -> list[str]:
        return client_names(self.voters)

    def identities(self) -> set[str]:
        return super().identities() | set(self.voter_names)

    def input_client_rules(self) -> list[str]:
        return client_rules(self.voters)

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
    if sc.dp is not None:
        return _dp_vote(sc, b, ballots, tally, note)
    if spec.output == "tally":
        invalid = b.sub(b.count_rows(ballots, k), b.sum(valid))
        b.output("tally", b.concat([tally, invalid]), sc.recipients,
                 description=json.dumps({"render": "tally", **note}), reveal_participants=sc.reveal_participants)
    elif spec.output == "winner":
        # a "no winner" entry of count 0 goes first: the earliest maximum wins, so it wins only if
        # every option has 0 votes (no valid ballot, or none approving anything). Index 0 means no
        # winner, i option i - 1: one more comparison, and one more tournament level only when
        # the number of options is a power of two; one value opened. (A separate "any vote" test
        # beside the tournament adds no level but ~10 concurrent rounds for every k: measured.)
        none = b.sub(tally[0], tally[0])
        b.output("winner", b.argmax(b.concat([none, tally]), count_bits)[0], sc.recipients,
                 description=json.dumps({"render": "winner", "approval": spec.approval, **note}),
                 reveal_participants=sc.reveal_participants)
    else:
        yes, counted = tally[0], b.sum(valid)
        passes = b.ge(b.scale(yes, 2), counted, count_bits + 1)
        # `counted` plus a zero taken from `yes`: the same value, but available at yes's level, so
        # both comparisons (same bit length) run as one batch and add no round
        any_valid = b.ge(b.add(counted, b.sub(yes, yes)), b.add(b.sub(yes, yes), 1), count_bits + 1)
        # 0: no valid ballot (2 * 0 >= 0 would otherwise pass), 1: NO, 2: YES
        b.output("referendum", b.add(b.add(passes, b.scale(any_valid, 2)), -1), sc.recipients,
                 description=json.dumps({"render": "referendum", "question": sc.description}),
                 reveal_participants=sc.reveal_participants)
    return b.build()


def _dp_vote(sc: VoteScenario, b: CircuitBuilder, ballots, tally, note: dict) -> cpb.Circuit:
    """A noisy tally (discrete Laplace on every count and on the invalid count: under add-remove
    the number of ballots is private too) or a noisy winner (report-noisy-max: one-sided
    geometric noise sampled in MPC, then the first maximum; docs/privacy.md)."""
    spec, dp = sc.vote, sc.dp
    k = len(spec.options)
    voters = sc.voter_names
    if spec.output == "tally":
        invalid = b.sub(b.count_rows(ballots, k), b.sum(b.rows_valid(ballots, k, exactly_one=not spec.approval)))
        if spec.approval:      # one ballot: up to k ones, or (replace-one) k ones out and an invalid in
            sens = k if dp.relation == "add-remove" else k + 1
        else:
            sens = 1 if dp.relation == "add-remove" else 2
        scale = dpm.laplace_for(dp, sens)
        noise = dpm.make_noise(dp, "discrete-laplace", scale, len(sc.compute_parties), sc.t)
        noisy = dpm.noise_op(b, b.concat([tally, invalid]), noise)
        b.output("tally", noisy, sc.recipients, description=json.dumps({"render": "tally", **note}))
        b.c.outputs[-1].dp.CopyFrom(dpm.release(dp, "discrete-laplace", scale, sens, noise=noise, count=k + 1,
                                                compute=len(sc.compute_parties)))
        return b.build()
    # winner: every count moves by at most 1 per ballot (approval too), so Delta = 1
    scale = dpm.rnm_scale(dp, 1)
    noise = dpm.make_noise(dp, "one-sided-geometric", scale, len(sc.compute_parties), sc.t, source="mpc")
    nlo, nhi = dpm.noise_bound(noise)
    # the "no winner" entry at index 0 keeps the render's numbering (index i is option i - 1); at
    # -(2^K) plus its own noise (at most 2^K - 1) it stays below every noisy count (>= 0), so a DP
    # winner is always an option: with no valid ballot the noise alone picks one
    none = b.add(b.sub(tally[0], tally[0]), -(nhi + 1))
    noisy = dpm.noise_op(b, b.concat([none, tally]), noise)
    bits = dpm.bits_for(len(voters) + nhi + 1)
    b.output("winner", b.argmax(noisy, bits)[0], sc.recipients,
             description=json.dumps({"render": "winner", "approval": spec.approval, **note}))
    b.c.outputs[-1].dp.CopyFrom(dpm.release(dp, "one-sided-geometric", scale, 1, noise=noise, count=k + 1,
                                            compute=len(sc.compute_parties)))
    return b.build()
