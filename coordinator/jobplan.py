"""What the coordinator schedules (JobPlan): a circuit with its compute parties, threshold, engine
and limits, built from a scenario or in code, checked here as every node's Prepare would check it,
and kept as JSON so that a restarted coordinator can run it again."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from mpcnode.circuit import validate
from mpcnode.computation.liveness import input_parties_problem, live_set_problem
from mpcnode.computation.protocol import job_protocol_problem
from mpcnode.computation.scenario import AnyScenario
from mpcnode.computation.spec import Computation
from parley.v1 import circuit_pb2 as cpb


@dataclass(frozen=True)
class JobPlan:
    """What the coordinator schedules: a circuit, its compute parties, threshold and limits."""
    name: str
    circuit: cpb.Circuit
    parties: list[str]
    t: int
    timeout_s: float
    input_window_s: float = 0.0
    protocol: str = "shamir"
    dropouts: str = "within-threshold"
    input_parties: list[str] = field(default_factory=list)   # contribute node inputs only, hold no shares

    @property
    def computation(self) -> Computation:
        """What the nodes approve and fingerprint (mpcnode/computation/spec.py)."""
        return Computation(self.circuit, tuple(self.parties), self.t, self.protocol, self.dropouts,
                           tuple(self.input_parties))

    @property
    def everyone(self) -> list[str]:
        """Every node the job is sent to: the compute parties, then the input-only parties."""
        return self.parties + self.input_parties

    def cannot_run_without(self, down: set[str]) -> str:
        """Why the job cannot run without the parties in `down` ('' if it can): input-only parties
        and compute parties that own inputs must take part, and t+1 compute parties suffice for
        linear circuits, 2t+1 for products."""
        if not down:
            return ""
        problem = input_parties_problem(self.input_parties, down)
        if problem:
            return problem
        owners = {d.owner for d in self.circuit.inputs if d.source == cpb.INPUT_SOURCE_NODE}
        depth = validate(self.circuit, self.parties, self.protocol, self.input_parties).depth
        return live_set_problem(self.parties, self.t, owners, depth > 0, self.dropouts,
                                [p for p in self.parties if p not in down])

    def check(self) -> None:
        """Refuse here what every node's Prepare would refuse in the plan itself (ValueError): a
        protocol the nodes do not run, parties, threshold or dropout rule the protocol cannot run
        with, a malformed circuit, a value that could wrap in the engine (computation/ranges.py)."""
        problem = job_protocol_problem(self.protocol, len(self.parties), self.t, self.dropouts)
        if problem:
            raise ValueError(problem)
        validate(self.circuit, self.parties, self.protocol, self.input_parties)

    def to_json(self) -> str:
        """Everything needed to run the plan again (the coordinator keeps it for circuits built in code)."""
        return json.dumps({"name": self.name, "parties": self.parties, "t": self.t, "timeout_s": self.timeout_s,
                           "input_window_s": self.input_window_s, "protocol": self.protocol, "dropouts": self.dropouts,
                           "input_parties": self.input_parties,
                           "circuit": base64.b64encode(self.circuit.SerializeToString(deterministic=True)).decode()})

    @classmethod
    def from_json(cls, text: str) -> "JobPlan":
        d = json.loads(text)
        return cls(d["name"], cpb.Circuit.FromString(base64.b64decode(d["circuit"])), list(d["parties"]), int(d["t"]),
                   float(d["timeout_s"]), float(d["input_window_s"]), d.get("protocol", "shamir"),
                   d.get("dropouts", "within-threshold"), list(d.get("input_parties", [])))

    @classmethod
    def of(cls, scenario: AnyScenario) -> "JobPlan":
        comp = scenario.computation()
        return cls(scenario.name, comp.circuit, list(comp.parties), comp.threshold, scenario.timeout_s,
                   scenario.input_window_s, comp.protocol, comp.dropouts, list(comp.input_parties))
