"""kind: survey. Respondents (input clients) answer one yes/no question with randomized response
(mpcnode/randomized_response.py): each client library flips its own answer with probability
1 / (1 + e^epsilon) before sharing; the nodes count the reported yeses inside MPC and open the
count with the (public) number of respondents; the recipient turns them into the unbiased
estimate and its 95% interval (docs/privacy.md)."""
from __future__ import annotations

import json
from typing import Literal

from pydantic import Field, model_validator

from parley.v1 import circuit_pb2 as cpb

from . import dp as dpm
from .builder import CircuitBuilder
from .common import ClientRange, Common, client_names, client_rules


class SurveyScenario(Common):
    kind: Literal["survey"]
    question: str = Field(min_length=1, max_length=500)
    respondents: list[str] | ClientRange
    dp: dpm.DpSpec

    @model_validator(mode="after")
    def _dp(self) -> "SurveyScenario":
        if self.dp.unit != "client":
            raise ValueError("dp.unit: a survey protects one respondent's answer (unit: client)")
        if self.dp.clip is not None:
            raise ValueError("dp.clip: answers are 0 or 1; a survey has no clipping bound")
        return self

    @property
    def respondent_names(self) -> list[str]:
        return client_names(self.respondents)

    def identities(self) -> set[str]:
        return super().identities() | set(self.respondent_names)

    def input_client_rules(self) -> list[str]:
        return client_rules(self.respondents)

    def build(self) -> cpb.Circuit:
        b = CircuitBuilder(self.name)
        answers = b.client_input("answer", self.respondent_names, 1, 0, 1)
        # [reported yeses, respondents]: n is public (the accepted rows), the count is what RR protects
        result = b.concat([b.sum(answers), b.count_rows(answers, 1)])
        b.output("survey", result, self.recipients,
                 description=json.dumps({"render": "survey", "question": self.question, "epsilon": self.dp.epsilon}))
        b.c.outputs[-1].dp.CopyFrom(cpb.DpRelease(
            unit="client", relation=self.dp.relation, epsilon=self.dp.epsilon, delta="",
            rho=dpm._text(dpm.accounting.rho_of_pure(self.dp.eps)), sensitivity=1, mechanism="randomized-response"))
        return b.build()
