"""Fuzzing every RPC of a running deployment (3 node processes + the coordinator, real certificates).

Every method of every service is called with the certificate of an identity it accepts, so the
request gets past the TLS handshake and the identity check to the code that reads it:

  NodeControl.*            as "coordinator"        PeerExchange.Link      as a peer node (one frame per stream)
  ResultRelease.FetchOutput as the recipient       InputIntake.*          as a voter of the open job
  Coordinator.*            as "operator"

with (1) random bytes as the request body, sent through a generic channel call that does no
encoding, (2) random prefixes of valid encodings, and (3) well-formed parley.v1 messages with
hostile field values: empty and 10^6-character ids, shapes with huge or many dimensions, payloads
that do not fit their shape or hold values >= p, bogus circuits (unknown op kinds, undefined
arguments, 2^32-element inputs, recomputed fingerprints so that the node looks further), live
party lists that name strangers, mutated scenario texts.

Properties: every call ends with a gRPC status within its deadline (never DEADLINE_EXCEEDED, never
UNKNOWN, which would be an unhandled exception in a servicer); node refusals carry one line of
bounded length; every process stays up and answers Health; and no node or coordinator database
holds anything for a job that was refused (only the jobs the test ran on purpose, Prepare calls
the node accepted and Submit calls the coordinator accepted). No node log shows a traceback.

PARLEY_FUZZ_SCALE=10 runs ten times as many examples (`make soak` does).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Coroutine

import grpc
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from mpcnode.computation.builder import CircuitBuilder
from mpcnode import field as F
from mpcnode.computation.spec import Computation
from mpcnode.transport import frames
from mpcnode.transport.tls import secure_channel
from parley.v1 import circuit_pb2 as cpb
from parley.v1 import coordinator_pb2 as cop
from parley.v1 import node_pb2
from tests.integration.cluster import Cluster

SCALE = float(os.environ.get("PARLEY_FUZZ_SCALE", "1"))
PARTIES = ["fz-a", "fz-b", "fz-c"]
READER = "fz-reader"
VOTERS = [f"fzv-{i:02d}" for i in range(1, 7)]
TOTAL = {"name": "fuzz-total", "kind": "total", "parties": PARTIES, "recipients": [READER], "protocol": "shamir",
         "input": {"name": "amount", "range": [0, 1000]}, "timeout_s": 60}
VOTE = {"name": "fuzz-vote", "kind": "vote", "parties": PARTIES, "recipients": [READER], "timeout_s": 600,
        "protocol": "shamir",
        "vote": {"options": ["x", "y", "z"], "output": "tally"}, "voters": VOTERS}
AMOUNTS = {"fz-a": 1, "fz-b": 20, "fz-c": 300}
CALL_TIMEOUT_S = 20.0
MAX_NODE_DETAIL = 1100   # servicers clip refusal reasons to 1000 characters plus a note

# (method path, identity, request type, streaming?)
NODE_METHODS = {
    "/parley.v1.NodeControl/Health": ("coordinator", node_pb2.HealthRequest),
    "/parley.v1.NodeControl/Prepare": ("coordinator", node_pb2.JobSpec),
    "/parley.v1.NodeControl/Start": ("coordinator", node_pb2.JobRef),
    "/parley.v1.NodeControl/Status": ("coordinator", node_pb2.JobRef),
    "/parley.v1.NodeControl/CloseInputs": ("coordinator", node_pb2.JobRef),
    "/parley.v1.NodeControl/Abort": ("coordinator", node_pb2.JobRef),
    "/parley.v1.NodeControl/Commit": ("coordinator", node_pb2.JobRef),
    "/parley.v1.PeerExchange/Link": ("<peer>", node_pb2.LinkFrame),
    "/parley.v1.ResultRelease/FetchOutput": (READER, node_pb2.OutputRequest),
    "/parley.v1.InputIntake/JobInfo": (VOTERS[0], node_pb2.JobRef),
    "/parley.v1.InputIntake/SubmitShare": (VOTERS[0], node_pb2.ClientShare),
    "/parley.v1.InputIntake/SubmissionStatus": (VOTERS[0], node_pb2.SubmissionQuery),
}
COORDINATOR_METHODS = {
    "/parley.v1.Coordinator/Submit": ("operator", cop.SubmitRequest),
    "/parley.v1.Coordinator/Watch": ("operator", cop.WatchRequest),
    "/parley.v1.Coordinator/CloseInputs": ("operator", cop.CloseRequest),
}
ALL_METHODS = sorted(NODE_METHODS) + sorted(COORDINATOR_METHODS)


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---- the rig: a cluster, a private event loop with cached channels, and a record of legit jobs -------

class Rig:
    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-rpc-loop", daemon=True)
        self.thread.start()
        self.channels: dict[tuple[str, str], grpc.aio.Channel] = {}
        self.done_job = ""
        self.bait_job = ""
        self.legit_node_jobs: set[str] = set()       # jobs a node may hold: run on purpose, or Prepare accepted
        self.legit_coordinator_jobs: set[str] = set()
        self.calls: dict[str, dict[str, int]] = {}    # method -> status code name -> count

    def run(self, coro: Coroutine, timeout: float = CALL_TIMEOUT_S + 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def close_all() -> None:
            for ch in self.channels.values():
                await ch.close()
        with contextlib.suppress(Exception):
            self.run(close_all(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def channel(self, target: str, identity: str) -> grpc.aio.Channel:
        """Called on the loop thread only."""
        key = (target, identity)
        if key not in self.channels:
            address = (self.cluster.deployment.coordinator_address if target == "coordinator"
                       else self.cluster.deployment.addresses[target])
            self.channels[key] = secure_channel(address, target, self.cluster.tls(identity))
        return self.channels[key]

    async def _call(self, target: str, identity: str, method: str, body: bytes) -> tuple[grpc.StatusCode, str, list]:
        ch = self.channel(target, identity)
        replies: list = []
        try:
            if method.endswith("/Link"):
                # a stream: the body as one frame, then every notice until the node ends the stream
                call = ch.stream_stream(method, request_serializer=None, response_deserializer=None)(
                    timeout=CALL_TIMEOUT_S)
                await call.write(body)
                await call.done_writing()
                async for reply in call:
                    replies.append(reply)
            elif method.endswith("/Watch"):
                call = ch.unary_stream(method, request_serializer=None, response_deserializer=None)(
                    body, timeout=CALL_TIMEOUT_S)
                async for reply in call:   # a watch of a running job streams until it ends: the first
                    replies.append(reply)      # snapshot is the answer (a hang would never send one)
                    call.cancel()
                    break
            else:
                replies.append(await ch.unary_unary(method, request_serializer=None, response_deserializer=None)(
                    body, timeout=CALL_TIMEOUT_S))
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or "", replies
        return grpc.StatusCode.OK, "", replies

    def call(self, method: str, body: bytes, target: str = "fz-b", peer: str = "fz-a") -> tuple[grpc.StatusCode, str, list]:
        """Send `body` as the request of `method`, with the identity that method accepts; check the property."""
        if method in COORDINATOR_METHODS:
            target, identity = "coordinator", COORDINATOR_METHODS[method][0]
        else:
            identity = NODE_METHODS[method][0]
            identity = peer if identity == "<peer>" else identity
        code, details, replies = self.run(self._call(target, identity, method, body))
        self.calls.setdefault(method, {}).setdefault(code.name, 0)
        self.calls[method][code.name] += 1
        assert code not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN), \
            f"{method} -> {code.name}: {details[:500]}"
        if target != "coordinator":
            assert len(details) <= MAX_NODE_DETAIL and len(details.splitlines()) <= 1, (method, details[:300])
        if method.endswith("/Link"):   # refusals travel in notices: the same rule for their details
            for raw in replies:
                n = node_pb2.LinkNotice.FromString(raw)
                assert len(n.detail) <= MAX_NODE_DETAIL and len(n.detail.splitlines()) <= 1, n.detail[:300]
        self.assert_alive(target)
        return code, details, replies

    def assert_alive(self, *targets: str) -> None:
        self.cluster.assert_alive()
        for target in targets or PARTIES:
            if target != "coordinator":
                reply = self.run(self.cluster.health(target, timeout=CALL_TIMEOUT_S))
                assert reply.organization == target


async def _state_or_none(c: Cluster, org: str, job_id: str) -> int | None:
    try:
        return (await c.node_status(org, job_id)).state
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory):
    c = Cluster.create(tmp_path_factory.mktemp("fuzz-rpc"), [TOTAL, VOTE], inputs={"fuzz-total": AMOUNTS},
                       extra_identities=["outsider"])
    with c.running():
        r = Rig(c)
        try:
            async def setup() -> tuple[str, str]:
                done = (await c.run("fuzz-total")).job_id
                assert (await c.fetch(done, "total", READER)).value == sum(AMOUNTS.values())
                bait = await c.submit("fuzz-vote")        # stays open for ballots: never closed
                async with asyncio.timeout(30):
                    while await _state_or_none(c, "fz-b", bait) != node_pb2.JOB_STATE_RUNNING:
                        await asyncio.sleep(0.05)   # NOT_FOUND until the coordinator's Prepare arrives
                return done, bait
            r.done_job, r.bait_job = r.run(setup(), timeout=120)
            r.legit_node_jobs |= {r.done_job, r.bait_job}
            r.legit_coordinator_jobs |= {r.done_job, r.bait_job}
            yield r
        finally:
            r.close()


# ---- strategies -------------------------------------------------------------------------------------

BIG = "x" * 10 ** 6
odd_strings = st.sampled_from(["", " ", BIG, "\x00", "a\nb", "../../etc/passwd", "é" * 2000, "*", "fz-a", "fz-b",
                               "coordinator", READER, "inputs/node", "total", "ballots", "-readiness-probe-"])
texts = odd_strings | st.text(max_size=40)
JOB_SENTINELS = ["<done>", "<bait>"]
uint32 = st.integers(0, 2 ** 32 - 1)
sint64 = st.integers(-(2 ** 63), 2 ** 63 - 1)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -1.0, 1e-300, 86400.0, 86401.0])
shapes = (st.lists(uint32, max_size=40)
          | st.sampled_from([[], [0], [1], [3], [2 ** 32 - 1], [2 ** 31, 2 ** 31], [2 ** 32 - 1] * 32,
                             [2 ** 32 - 1] * 33, [1] * 100_000, [2 ** 32 - 1] * 100_000, [0, 2 ** 32 - 1]]))
payloads = (st.binary(max_size=300)
            | st.sampled_from([b"", b"\xff" * 8, b"\xff" * 24, (F.P if hasattr(F, "P") else (1 << 61) - 1)
                               .to_bytes(8, "little") * 3, b"\x00" * 24, b"\x01" + b"\x00" * 7]))


def job_ids(*sentinels: str) -> st.SearchStrategy[str]:
    """Mostly the given real jobs (so that requests get past the job lookup), else hostile ids."""
    if not sentinels:
        return texts
    real = st.sampled_from(list(sentinels))
    return st.one_of(real, real, texts)


def mostly(value: str, other: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.just(value), st.just(value), st.just(value), other)


party_lists = (st.lists(st.sampled_from(PARTIES + ["outsider", "", "fz-a"]) | texts, max_size=6)
               | st.permutations(PARTIES) | st.just([f"p{i}" for i in range(10_000)]))

array_names = st.sampled_from(["amount@fz-a", "amount@fz-b", "x", "y", "total", "", "bad name!", "a" * 300]) | \
    st.text(max_size=10)
ops = st.builds(cpb.Op, out=array_names, kind=st.integers(0, 40), args=st.lists(array_names, max_size=4),
                consts=st.lists(sint64, max_size=4), ints=st.lists(sint64, max_size=4), bit_length=uint32)
input_decls = st.builds(cpb.InputDecl, name=array_names, owner=st.sampled_from(PARTIES + ["outsider", ""]),
                        length=uint32 | st.just(1), lo=sint64, hi=sint64, source=st.integers(0, 5),
                        clients=st.lists(st.sampled_from(VOTERS) | texts, max_size=5), key=array_names)
output_decls = st.builds(cpb.OutputDecl, name=array_names, value=array_names,
                         recipients=st.lists(st.sampled_from([READER, "outsider", "*", ""]) | texts, max_size=3),
                         public_divisor=sint64, description=texts)
random_circuits = st.builds(cpb.Circuit, name=texts, inputs=st.lists(input_decls, max_size=4),
                            ops=st.lists(ops, max_size=8), outputs=st.lists(output_decls, max_size=3))


def _real_total() -> cpb.Circuit:
    b = CircuitBuilder("fuzz-total")
    parts = [b.input(f"amount@{o}", o, 1, 0, 1000, key="amount") for o in PARTIES]
    b.output("total", b.sum(b.concat(parts)), [READER])
    return b.build()


def _real_vote(voters: list[str], length: int) -> cpb.Circuit:
    b = CircuitBuilder("fuzz-vote")
    ballots = b.client_input("ballots", voters, length, 0, 1)
    b.output("tally", b.column_sums(ballots, length), [READER])
    return b.build()


@st.composite
def near_valid_circuits(draw: st.DrawFn) -> cpb.Circuit:
    """The real circuits with one hostile change: huge input lengths, strangers as clients or recipients."""
    c = draw(st.sampled_from(["total", "vote"]))
    circuit = _real_total() if c == "total" else _real_vote(
        draw(st.sampled_from([VOTERS, [], ["outsider"], [f"v{i}" for i in range(5000)]])), draw(st.integers(1, 4)))
    change = draw(st.sampled_from(["length", "range", "recipient", "owner", "key", "none"]))
    decl = circuit.inputs[0]
    if change == "length":
        decl.length = draw(st.sampled_from([2 ** 32 - 1, 2 ** 31, 10 ** 7, 2]))
    elif change == "range":
        decl.lo, decl.hi = draw(st.sampled_from([(-(2 ** 63), 2 ** 63 - 1), (5, 1), (0, 2 ** 59), (-1, 0)]))
    elif change == "recipient":
        circuit.outputs[0].recipients.append(draw(st.sampled_from(["outsider", "*", ""])))
    elif change == "owner":
        decl.owner = draw(st.sampled_from(["outsider", "fz-c", ""]))
    elif change == "key":
        decl.key = draw(texts)
    return circuit


def _fingerprint(circuit: cpb.Circuit, parties: list[str], t: int) -> str:
    """The fingerprint an honest coordinator would send, so that the node looks further ('' when the
    fuzzed circuit cannot even be put in canonical form)."""
    try:
        return Computation(circuit, tuple(parties), t).fingerprint()
    except Exception:
        return ""


@st.composite
def job_specs(draw: st.DrawFn) -> node_pb2.JobSpec:
    circuit = draw(random_circuits | near_valid_circuits())
    fp = draw(st.sampled_from(["<correct>", "", "00" * 32]) | texts)
    parties = draw(party_lists)
    threshold = draw(st.sampled_from([0, 1, 2, 2 ** 32 - 1]) | uint32)
    spec = node_pb2.JobSpec(
        job_id=draw(job_ids("<done>", "<bait>") | st.uuids().map(lambda u: f"fz-{u}")),
        scenario=draw(st.sampled_from(["fuzz-total", "fuzz-vote"]) | texts), circuit=circuit,
        parties=parties, threshold=threshold,
        timeout_s=draw(floats), fingerprint=_fingerprint(circuit, parties, threshold) if fp == "<correct>" else fp,
        input_deadline_unix=draw(floats), live=draw(party_lists))
    return spec


def _resolve(rig: Rig, job_id: str) -> str:
    return {"<done>": rig.done_job, "<bait>": rig.bait_job}.get(job_id, job_id)


# ---- (1) random bytes, (2) truncated encodings --------------------------------------------------------

def _valid_body(rig: Rig, method: str) -> bytes:
    """A well-formed request of the method's type, for cutting."""
    requests: dict[str, Any] = {
        "Health": node_pb2.HealthRequest(),
        "Prepare": node_pb2.JobSpec(job_id="fz-cut", scenario="fuzz-total", circuit=_real_total(), parties=PARTIES,
                                    threshold=1, timeout_s=30, fingerprint=_fingerprint(_real_total(), PARTIES, 1)),
        "Link": node_pb2.LinkFrame(header=node_pb2.LinkHeader(job_id=rig.bait_job, round="fuzz/cut", sender="fz-a",
                                                              receiver="fz-b", shape=[1], total=8, want_ack=True),
                                   data=b"\x01" + b"\x00" * 7),
        "FetchOutput": node_pb2.OutputRequest(job_id=rig.done_job, output="total"),
        "SubmitShare": node_pb2.ClientShare(job_id=rig.bait_job, input="ballots", share=b"\x00" * 24, shape=[3]),
        "Submit": cop.SubmitRequest(scenario_yaml=yaml.safe_dump(TOTAL), scenario_path="cut.yaml", job_id="fz-cut"),
        "Watch": cop.WatchRequest(job_id=rig.done_job),
    }
    name = method.rsplit("/", 1)[1]
    msg = requests.get(name) or node_pb2.JobRef(job_id=rig.done_job, live=PARTIES)
    if method.startswith("/parley.v1.Coordinator/CloseInputs"):
        msg = cop.CloseRequest(job_id=rig.done_job)
    return msg.SerializeToString()


def _note_created(rig: Rig, method: str, code: grpc.StatusCode, replies: list, request_job: str = "") -> None:
    """A request the service accepted may create a job on purpose: record it as legit."""
    if code != grpc.StatusCode.OK:
        return
    if method.endswith("Coordinator/Submit"):
        rig.legit_coordinator_jobs.add(cop.SubmitReply.FromString(replies[0]).job_id)
        rig.legit_node_jobs.add(cop.SubmitReply.FromString(replies[0]).job_id)
    elif method.endswith("NodeControl/Prepare") and node_pb2.PrepareReply.FromString(replies[0]).accepted:
        rig.legit_node_jobs.add(request_job)


def _request_job(method: str, body: bytes) -> str:
    if not method.endswith("NodeControl/Prepare"):
        return ""
    try:
        return node_pb2.JobSpec.FromString(body).job_id
    except Exception:
        return ""


@fuzz_settings(120)
@given(method=st.sampled_from(ALL_METHODS), body=st.binary(max_size=2000), target=st.sampled_from(PARTIES))
def test_random_bytes(rig: Rig, method: str, body: bytes, target: str) -> None:
    peer = next(p for p in PARTIES if p != target)
    code, _, replies = rig.call(method, body, target=target, peer=peer)
    _note_created(rig, method, code, replies, _request_job(method, body))


@fuzz_settings(80)
@given(method=st.sampled_from(ALL_METHODS), cut=st.floats(0, 1, exclude_max=True), extra=st.binary(max_size=8))
def test_truncated_encodings(rig: Rig, method: str, cut: float, extra: bytes) -> None:
    body = _valid_body(rig, method)
    body = body[:int(cut * len(body))] + extra
    code, _, replies = rig.call(method, body)
    _note_created(rig, method, code, replies, _request_job(method, body))


# ---- (3) well-formed messages with hostile values -----------------------------------------------------

@fuzz_settings(70)
@given(spec=job_specs(), target=st.sampled_from(PARTIES))
def test_prepare_hostile_specs(rig: Rig, spec: node_pb2.JobSpec, target: str) -> None:
    spec.job_id = _resolve(rig, spec.job_id)
    code, details, replies = rig.call("/parley.v1.NodeControl/Prepare", spec.SerializeToString(), target=target)
    assert code == grpc.StatusCode.OK, (code, details[:300])
    reply = node_pb2.PrepareReply.FromString(replies[0])
    if spec.job_id in (rig.done_job, rig.bait_job):
        return
    if reply.accepted:   # a consented, well-formed job from the coordinator identity: legit, cleaned up below
        rig.legit_node_jobs.add(spec.job_id)
        rig.call("/parley.v1.NodeControl/Abort", node_pb2.JobRef(job_id=spec.job_id).SerializeToString(), target=target)
    else:
        assert reply.reason and len(reply.reason.splitlines()) == 1
        assert spec.job_id not in rig.cluster.stored_jobs(target)


@fuzz_settings(60)
@given(method=st.sampled_from(["Start", "Status", "CloseInputs", "Abort", "Commit"]), job=job_ids("<done>", "<bait>"),
       live=party_lists)
def test_job_control_hostile_refs(rig: Rig, method: str, job: str, live: list[str]) -> None:
    if method != "Status" and job == "<bait>":
        job = "<done>"   # keep the open job open for the input tests
    job = _resolve(rig, job)
    code, _, _ = rig.call(f"/parley.v1.NodeControl/{method}", node_pb2.JobRef(job_id=job, live=live).SerializeToString())
    if job == rig.done_job and method in ("Abort", "Commit"):
        # the coordinator committed the finished job: a later Abort is refused, Commit changes nothing
        assert code == (grpc.StatusCode.FAILED_PRECONDITION if method == "Abort" else grpc.StatusCode.OK)


@fuzz_settings(60)
@given(job=job_ids("<bait>", "<done>"), round_label=texts | st.sampled_from(["inputs/node", "clients/0", "x" * 201]),
       sender=mostly("fz-a", st.sampled_from(["fz-c", ""]) | texts), receiver=mostly("fz-b", st.just("fz-a") | texts),
       payload=payloads, shape=shapes, total=st.none() | st.sampled_from([0, 7, 2 ** 20, 2 ** 64 - 1]) | uint32,
       offset=st.sampled_from([0, 0, 0, 8, 2 ** 63]), raw_encoding=st.booleans())
def test_link_hostile_frames(rig: Rig, job: str, round_label: str, sender: str, receiver: str, payload: bytes,
                             shape: list[int], total: int | None, offset: int, raw_encoding: bool) -> None:
    header = node_pb2.LinkHeader(job_id=_resolve(rig, job), round=round_label, sender=sender, receiver=receiver,
                                 shape=shape, total=len(payload) if total is None else total, offset=offset,
                                 want_ack=True)
    # the senders' own layout (header first, data last) or protobuf's, which the node parses the slow way
    body = (frames.encode(header, payload) if not raw_encoding
            else node_pb2.LinkFrame(data=payload, header=header).SerializeToString())
    code, _, replies = rig.call("/parley.v1.PeerExchange/Link", body, target="fz-b", peer="fz-a")
    assert code == grpc.StatusCode.OK
    kinds = [node_pb2.LinkNotice.FromString(r).kind for r in replies]
    assert kinds[0] == node_pb2.NOTICE_KIND_HELLO
    if node_pb2.NOTICE_KIND_ACK in kinds:   # delivered: only a well-formed message of the open job (whose rounds
        assert job == "<bait>" and sender == "fz-a" and receiver == "fz-b"   # are not running yet)


@fuzz_settings(30)
@given(job=job_ids("<done>", "<bait>"), output=texts)
def test_fetch_output_hostile_requests(rig: Rig, job: str, output: str) -> None:
    code, _, _ = rig.call("/parley.v1.ResultRelease/FetchOutput",
                          node_pb2.OutputRequest(job_id=_resolve(rig, job), output=output).SerializeToString())
    assert code != grpc.StatusCode.OK or (job == "<done>" and output == "total")


@fuzz_settings(60)
@given(job=job_ids("<bait>"), input_name=mostly("ballots", texts), payload=payloads,
       shape=shapes, info=st.booleans(), live=party_lists)
def test_input_intake_hostile_requests(rig: Rig, job: str, input_name: str, payload: bytes, shape: list[int],
                                       info: bool, live: list[str]) -> None:
    job = _resolve(rig, job)
    if info:
        code, _, _ = rig.call("/parley.v1.InputIntake/JobInfo", node_pb2.JobRef(job_id=job, live=live).SerializeToString())
        assert code != grpc.StatusCode.OK or job == rig.bait_job
    else:
        code, _, _ = rig.call("/parley.v1.InputIntake/SubmitShare", node_pb2.ClientShare(
            job_id=job, input=input_name, share=payload, shape=shape).SerializeToString())
        if code == grpc.StatusCode.OK:   # only a well-formed share of the open job: 3 field elements
            assert job == rig.bait_job and input_name == "ballots" and list(shape) == [3] and len(payload) == 24


@st.composite
def scenario_texts(draw: st.DrawFn) -> str:
    base = yaml.safe_dump(draw(st.sampled_from([TOTAL, VOTE])), sort_keys=False)
    how = draw(st.sampled_from(["cut", "edit", "noise", "huge", "bomb", "as is"]))
    if how == "cut":
        return base[:draw(st.integers(0, len(base)))]
    if how == "edit":
        i = draw(st.integers(0, len(base)))
        return base[:i] + draw(st.sampled_from(["[", "]", ":", "&a ", "*a", "\n- ", "{", "\t", "!!int "]) | texts) + \
            base[i + draw(st.integers(0, 5)):]
    if how == "noise":
        return draw(st.text(max_size=300))
    if how == "huge":
        return base + "description: " + "x" * draw(st.sampled_from([10 ** 5, 10 ** 6, 5 * 10 ** 6])) + "\n"
    if how == "bomb":
        return "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(9))
    return base


@fuzz_settings(60)
@given(method=st.sampled_from(sorted(COORDINATOR_METHODS)), text=scenario_texts(), path=texts,
       job=job_ids("<done>") | st.sampled_from(["x" * 128, "x" * 129]))
def test_coordinator_hostile_requests(rig: Rig, method: str, text: str, path: str, job: str) -> None:
    job = _resolve(rig, job)
    if method.endswith("Submit"):
        # a new id each time unless it is hostile: the same id twice would just be the same job
        body = cop.SubmitRequest(scenario_yaml=text, scenario_path=path, job_id=job).SerializeToString()
    elif method.endswith("Watch"):
        body = cop.WatchRequest(job_id=job).SerializeToString()
    else:
        body = cop.CloseRequest(job_id=job).SerializeToString()
    code, _, replies = rig.call(method, body)
    _note_created(rig, method, code, replies)
    if method.endswith("Watch") and code == grpc.StatusCode.OK:
        assert job in rig.legit_coordinator_jobs


# ---- nothing stored, nobody crashed -------------------------------------------------------------------

def _job_ids_in(db: Path, tables: list[str]) -> set[str]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as con:
        return {row[0] for t in tables for row in con.execute(f"SELECT DISTINCT job_id FROM {t}")}


def test_nothing_stored_for_refused_requests(rig: Rig) -> None:
    c = rig.cluster
    for org in PARTIES:
        held = _job_ids_in(c.data_dir(org) / "shares.sqlite3", ["jobs", "client_shares", "outputs"])
        stray = held - rig.legit_node_jobs
        assert not stray, f"{org} holds refused jobs: {sorted(j[:60] for j in stray)[:10]}"
        # outputs only for the job run on purpose (and whatever the coordinator accepted and ran)
        outputs = _job_ids_in(c.data_dir(org) / "shares.sqlite3", ["outputs"])
        assert rig.done_job in outputs and outputs <= rig.legit_coordinator_jobs
    held = _job_ids_in(c.deployment.workdir / "coordinator.sqlite3", ["jobs"])
    assert held <= rig.legit_coordinator_jobs, sorted(j[:60] for j in held - rig.legit_coordinator_jobs)


def test_the_deployment_still_works_and_logged_no_traceback(rig: Rig) -> None:
    c = rig.cluster
    rig.assert_alive()

    async def again() -> int:
        job = (await c.run("fuzz-total")).job_id
        return (await c.fetch(job, "total", READER)).value

    assert rig.run(again(), timeout=120) == sum(AMOUNTS.values())
    for name in [*PARTIES, "coordinator"]:
        log = c.log(name).read_text(errors="replace")
        assert "Traceback" not in log, c.log_tail(name, 4000)
    # every method was reached (a summary for whoever reads a failure report)
    assert set(rig.calls) == set(ALL_METHODS), sorted(set(ALL_METHODS) - set(rig.calls))
    print("\nfuzzed RPCs (method: status counts):")
    for method in ALL_METHODS:
        print(f"  {method}: {dict(sorted(rig.calls[method].items()))}")
