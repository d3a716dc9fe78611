"""Security properties of a real deployment (4 node processes, mutual TLS, localhost).

(1) a tampered output share is detected, and its node named when n >= t + 2e + 1;
(2) only declared recipients may fetch output shares;
(3) only certificates of the deployment CA can connect at all;
(4) a job that breaks a node's consent policy is refused before any input is shared;
(5) an out-of-range or malformed node input fails the job at prepare time, before any sharing;
(6) peers cannot claim another identity, and only the coordinator may schedule jobs.
"""
from __future__ import annotations

import re
from pathlib import Path

import grpc
import numpy as np
import pytest

from mpcnode import certs as certmod
from tests.integration.cluster import Cluster, make_foreign_identity, rpc_code, run_sync
from tests.integration.handlink import HandLink
from mpcnode.computation.scenario import parse_scenario
from mpcnode.recipient import FetchError, fetch
from mpcnode.transport.tls import TlsMaterial, message_options, secure_channel
from parley.v1 import coordinator_pb2 as cop
from parley.v1 import coordinator_pb2_grpc as copg
from parley.v1 import node_pb2, node_pb2_grpc

FOUR = ["north", "east", "south", "west"]
LIMIT = [0, 1_000_000]


def _total(name: str, parties: list[str], recipients: list[str]) -> dict:
    return {"name": name, "kind": "total", "parties": parties, "protocol": "shamir", "recipients": recipients,
            "input": {"name": "amount", "range": LIMIT}, "timeout_s": 30}


SCENARIOS = [
    _total("sec-four", FOUR, ["north", "auditor"]),        # t = 1, n = 4: one bad share can be located
    _total("sec-three", FOUR[:3], ["auditor"]),             # t = 1, n = 3: detected, not located
    _total("sec-unlisted", FOUR, ["north"]),               # west's policy does not list this scenario
    _total("sec-leak", FOUR, ["north", "outsider"]),        # west's policy does not allow 'outsider' to receive
    _total("sec-range", FOUR, ["north"]),                  # west's input is out of range
    _total("sec-string", FOUR, ["north"]),                 # west's input is a string
    _total("sec-float", FOUR, ["north"]),                  # west's input is a float
    _total("sec-missing", FOUR, ["north"]),                # west's input file lacks the field
]
GOOD = {"north": 100, "east": 20, "south": 3, "west": 400_000}
INPUTS = {sc["name"]: dict(GOOD) for sc in SCENARIOS}
INPUTS["sec-three"] = {o: GOOD[o] for o in FOUR[:3]}
INPUTS["sec-range"]["west"] = 2_000_000
INPUTS["sec-string"]["west"] = "four hundred thousand"
INPUTS["sec-float"]["west"] = 400_000.5
INPUTS["sec-missing"]["west"] = {"amnt": 5}


def _fingerprint(scenario: dict) -> str:
    return parse_scenario(scenario, Path(f"{scenario['name']}.yaml")).computation().fingerprint()


# west approves every computation except two: one it never reviewed, and one that would send a
# result to an outsider (the other nodes approve everything here)
WEST_POLICY = {"approvals": [{"fingerprint": _fingerprint(sc)} for sc in SCENARIOS
                             if sc["name"] not in ("sec-unlisted", "sec-leak")]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = Cluster.create(tmp_path_factory.mktemp("security"), SCENARIOS, INPUTS, extra_identities=["outsider"],
                       policy_overrides={"west": WEST_POLICY})
    with c.running():
        yield c
    # nothing above may have crashed a node
    for name, proc in c.procs.items():
        assert proc.returncode in (0, -15), f"{name} exited with {proc.returncode}:\n{c.log_tail(name)}"


@pytest.fixture(scope="module")
def done_jobs(cluster: Cluster) -> dict[str, str]:
    """One finished job per honest scenario (shared by the fetch tests; tampering uses its own jobs)."""
    async def run() -> dict[str, str]:
        return {name: (await cluster.run(name)).job_id for name in ("sec-four", "sec-three")}

    return run_sync(run())


# ---- (1) tampered output shares ------------------------------------------------------------------

async def test_honest_outputs_open(cluster: Cluster, done_jobs: dict[str, str]) -> None:
    for name, recipient in [("sec-four", "north"), ("sec-four", "auditor"), ("sec-three", "auditor")]:
        result = await cluster.fetch(done_jobs[name], "total", recipient)
        assert result.value == sum(INPUTS[name].values())


@pytest.mark.parametrize("victim", ["west", "north"])
async def test_tampered_share_is_detected_and_its_node_named(cluster: Cluster, victim: str) -> None:
    job = (await cluster.run("sec-four")).job_id
    assert (await cluster.fetch(job, "total", "auditor")).value == sum(GOOD.values())
    cluster.tamper_output_share(victim, job, "total", delta=12345)
    with pytest.raises(FetchError) as info:
        await cluster.fetch(job, "total", "auditor")
    message = str(info.value)
    assert f"output share from {victim} is inconsistent" in message
    assert not any(f"from {o} " in message for o in FOUR if o != victim)


async def test_tampered_share_with_three_nodes_is_detected_but_not_attributed(cluster: Cluster) -> None:
    job = (await cluster.run("sec-three")).job_id
    cluster.tamper_output_share("south", job, "total", delta=-1)
    with pytest.raises(FetchError) as info:
        await cluster.fetch(job, "total", "auditor")
    message = str(info.value)
    assert "output shares are inconsistent" in message and "too few nodes answered" in message
    assert "output share from" not in message  # nobody is blamed: with n = 3, t = 1 it cannot be told who


async def test_share_replaced_by_a_valid_looking_value_is_detected(cluster: Cluster) -> None:
    """An attacker who writes a fresh random field element (not a small delta) is caught the same way."""
    job = (await cluster.run("sec-four")).job_id
    cluster.set_output_share("east", job, "total", np.array([123456789], dtype=np.uint64))
    with pytest.raises(FetchError, match="output share from east is inconsistent"):
        await cluster.fetch(job, "total", "north")


# ---- (2) only recipients fetch ---------------------------------------------------------------------

@pytest.mark.parametrize("who", ["east", "west", "coordinator", "outsider", "operator"])
async def test_non_recipient_with_a_valid_certificate_is_refused(cluster: Cluster, done_jobs: dict[str, str],
                                                                  who: str) -> None:
    job = done_jobs["sec-four"]
    with pytest.raises(FetchError, match=r"refused: .*is not a recipient of output 'total'"):
        await cluster.fetch(job, "total", who)
    # and directly: every node answers PERMISSION_DENIED
    req = node_pb2.OutputRequest(job_id=job, output="total")
    for org, addr in cluster.nodes_of("sec-four").items():
        async with secure_channel(addr, org, cluster.tls(who)) as ch:
            code = await rpc_code(node_pb2_grpc.ResultReleaseStub(ch).FetchOutput(req, timeout=10))
        assert code == grpc.StatusCode.PERMISSION_DENIED, (org, code)


async def test_a_recipient_of_one_job_cannot_fetch_another(cluster: Cluster, done_jobs: dict[str, str]) -> None:
    # north receives sec-four's total but is not a recipient of sec-three's
    with pytest.raises(FetchError, match="refused"):
        await cluster.fetch(done_jobs["sec-three"], "total", "north")


# ---- (3) only the deployment's CA ------------------------------------------------------------------

async def _health_code(address: str, target: str, credentials: grpc.ChannelCredentials) -> grpc.StatusCode:
    options = message_options(4) + [("grpc.ssl_target_name_override", target), ("grpc.default_authority", target)]
    async with grpc.aio.secure_channel(address, credentials, options=options) as ch:
        return await rpc_code(node_pb2_grpc.NodeControlStub(ch).Health(node_pb2.HealthRequest(), timeout=10))


async def test_certificate_from_another_ca_cannot_connect(cluster: Cluster, tmp_path: Path) -> None:
    org, addr = "east", cluster.deployment.addresses["east"]
    real = cluster.tls("north")
    assert await _health_code(addr, org, real.channel_credentials()) == grpc.StatusCode.OK  # control
    # a certificate that claims to be "north", issued by another CA, with the deployment's CA as trust root
    foreign = make_foreign_identity(tmp_path / "other-ca", "north")
    impostor = TlsMaterial(ca=real.ca, cert=foreign.cert, key=foreign.key)
    assert await _health_code(addr, org, impostor.channel_credentials()) == grpc.StatusCode.UNAVAILABLE
    # the impostor trusting only its own CA does not even accept the node's certificate
    assert await _health_code(addr, org, foreign.channel_credentials()) == grpc.StatusCode.UNAVAILABLE
    # and through the recipient client: no share is fetched
    with pytest.raises(FetchError, match="UNAVAILABLE"):
        await fetch("any-job", "total", cluster.nodes_of("sec-four"), impostor, timeout=10)


async def test_client_without_a_certificate_cannot_connect(cluster: Cluster) -> None:
    addr = cluster.deployment.addresses["south"]
    no_cert = grpc.ssl_channel_credentials(root_certificates=cluster.tls("north").ca)
    assert await _health_code(addr, "south", no_cert) == grpc.StatusCode.UNAVAILABLE
    # nor can a plaintext client
    async with grpc.aio.insecure_channel(addr) as ch:
        code = await rpc_code(node_pb2_grpc.NodeControlStub(ch).Health(node_pb2.HealthRequest(), timeout=10))
    assert code == grpc.StatusCode.UNAVAILABLE


async def test_a_node_is_reached_only_under_its_own_name(cluster: Cluster) -> None:
    """A channel pinned to "north" refuses the server at south's address: the node's certificate names south."""
    creds = cluster.tls("operator").channel_credentials()
    assert await _health_code(cluster.deployment.addresses["south"], "north", creds) == grpc.StatusCode.UNAVAILABLE
    assert await _health_code(cluster.deployment.addresses["south"], "south", creds) == grpc.StatusCode.OK


# ---- (4) and (5): refused at prepare, nothing shared -------------------------------------------------

async def _assert_nothing_shared(cluster: Cluster, job_id: str, refuser: str) -> None:
    """What can be observed: the refusing node never stored or started the job (Status NOT_FOUND); every
    other node had only prepared it, was told to abort, and never ran a round or sent a byte; no node
    holds an output of it."""
    for org in FOUR:
        if org == refuser:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await cluster.node_status(org, job_id)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
            assert job_id not in cluster.stored_jobs(org)
        else:
            st = await cluster.node_status(org, job_id)
            assert st.state == node_pb2.JOB_STATE_FAILED, (org, st)
            assert "aborted by coordinator" in st.error
            assert st.rounds_done == 0 and st.bytes_sent == 0 and st.elapsed_s == 0.0, (org, st)
            assert cluster.stored_jobs(org)[job_id] == "FAILED"
        assert cluster.stored_outputs(org, job_id) == 0


async def test_computation_not_approved_by_a_node_is_refused(cluster: Cluster) -> None:
    progress = await cluster.run("sec-unlisted", expect="FAILED")
    assert progress.error.startswith("west refused: ")
    fp = _fingerprint(SCENARIOS[2])
    assert f"west has not approved computation {fp[:16]}..." in progress.error
    assert progress.rounds_done == 0
    await _assert_nothing_shared(cluster, progress.job_id, "west")


async def test_recipient_not_approved_by_a_node_is_refused(cluster: Cluster) -> None:
    progress = await cluster.run("sec-leak", expect="FAILED")
    assert progress.error.startswith("west refused: west has not approved computation "), progress.error
    await _assert_nothing_shared(cluster, progress.job_id, "west")


@pytest.mark.parametrize("scenario,public,local,secret", [
    ("sec-range", r"input amount: a value lies outside the declared range \[0, 1000000\]",
     r"amount\[0\]: value 2000000 outside the declared range \[0, 1000000\]", "2000000"),
    ("sec-string", r"input amount: expected integers", r"amount\[0\]: expected an integer, got str 'four hundred thousand'",
     "four hundred"),
    ("sec-float", r"input amount: expected integers", r"amount\[0\]: expected an integer, got float 400000.5", "400000.5"),
    ("sec-missing", r"input amount: missing from dataset 'sec-missing'", r"amount: required input is missing", "amnt"),
])
async def test_bad_node_input_fails_at_prepare_naming_input_and_rule(cluster: Cluster, scenario: str, public: str,
                                                                     local: str, secret: str) -> None:
    """The coordinator learns which input broke which rule; the value and the file's path stay in the
    refusing node's own log."""
    progress = await cluster.run(scenario, expect="FAILED")
    path = cluster.input_file(scenario, "west")
    assert re.fullmatch(f"west refused: {public}", progress.error), progress.error
    assert secret not in progress.error and str(path) not in progress.error
    assert re.search(f"{re.escape(str(path))}: {local}", cluster.log_tail("west", 200_000))
    await _assert_nothing_shared(cluster, progress.job_id, "west")


# ---- (6) identities on node RPCs ------------------------------------------------------------------

async def test_peer_cannot_claim_another_identity(cluster: Cluster) -> None:
    addr = cluster.deployment.addresses["east"]
    async with HandLink(addr, "east", cluster.tls("north")) as link:
        answer = await link.send("whatever", "inputs/node", "south", "east", (0,))
        assert answer.kind == "refused" and answer.code == grpc.StatusCode.PERMISSION_DENIED
        assert "claims to be 'south'" in answer.detail
        # claiming its own identity passes the identity check (and then finds no such job)
        answer = await link.send("whatever", "inputs/node", "north", "east", (0,))
        assert answer.kind == "refused" and answer.code == grpc.StatusCode.NOT_FOUND, answer
    # a valid certificate that is not a peer at all: the link is refused when it opens
    for who in ("outsider", "coordinator", "auditor"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async with HandLink(addr, "east", cluster.tls(who)):
                pass
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "is not a peer of east" in info.value.details()


async def test_only_the_coordinator_may_schedule_jobs(cluster: Cluster) -> None:
    """Prepare (and Start/Status/Abort/Commit) from any other identity is refused before the request is looked at."""
    addr = cluster.deployment.addresses["south"]
    spec = node_pb2.JobSpec(job_id="rogue-job", scenario="sec-four", parties=FOUR, threshold=1, timeout_s=10)
    ref = node_pb2.JobRef(job_id="rogue-job")
    for who in ("operator", "north", "outsider", "auditor"):
        async with secure_channel(addr, "south", cluster.tls(who)) as ch:
            stub = node_pb2_grpc.NodeControlStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Prepare(spec, timeout=10)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            # none of them holds a coordinator certificate: refused on the role, before the name
            role = "node" if who == "north" else "client"
            assert f"'{who}' has a {role} certificate; Prepare needs a coordinator certificate" \
                in info.value.details()
            for call in (stub.Start(ref, timeout=10), stub.Status(ref, timeout=10), stub.Abort(ref, timeout=10),
                         stub.Commit(ref, timeout=10), stub.CloseInputs(ref, timeout=10)):
                assert await rpc_code(call) == grpc.StatusCode.PERMISSION_DENIED
    assert "rogue-job" not in cluster.stored_jobs("south")
    # the coordinator identity is allowed (and the node then judges the malformed spec on its merits)
    async with secure_channel(addr, "south", cluster.tls("coordinator")) as ch:
        reply = await node_pb2_grpc.NodeControlStub(ch).Prepare(spec, timeout=10)
    assert not reply.accepted and reply.reason


async def test_only_operators_may_use_the_coordinator(cluster: Cluster) -> None:
    text = cluster.scenarios["sec-four"][0].read_text()
    for who in ("north", "coordinator", "outsider"):
        async with secure_channel(cluster.deployment.coordinator_address, "coordinator", cluster.tls(who)) as ch:
            stub = copg.CoordinatorStub(ch)
            code = await rpc_code(stub.Submit(cop.SubmitRequest(scenario_yaml=text, scenario_path="x.yaml"),
                                              timeout=10))
            assert code == grpc.StatusCode.PERMISSION_DENIED, who


def _with_role(cluster: Cluster, folder: Path, identity: str, role: str) -> TlsMaterial:
    """A certificate of the deployment's own CA for `identity`, but of another role."""
    ca_cert, ca_key = certmod.load_ca(cluster.certs)
    folder.mkdir(parents=True, exist_ok=True)
    certmod.issue(folder, identity, ca_cert, ca_key, role=role, loopback=True)
    return TlsMaterial((cluster.certs / "ca.pem").read_bytes(), (folder / f"{identity}.pem").read_bytes(),
                       (folder / f"{identity}.key").read_bytes())


async def test_a_certificate_acts_only_in_its_role(cluster: Cluster, tmp_path: Path) -> None:
    """Role-scoped identities: a client certificate from the deployment's own CA, named like a
    node or like the coordinator, can neither open a Link nor schedule a job; a node certificate
    named like an operator cannot submit to the coordinator."""
    fake_north = _with_role(cluster, tmp_path / "n", "north", certmod.CLIENT)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async with HandLink(cluster.deployment.addresses["east"], "east", fake_north):
            pass
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'north' has a client certificate; a Link needs a node certificate" in info.value.details()
    fake_coordinator = _with_role(cluster, tmp_path / "c", "coordinator", certmod.CLIENT)
    spec = node_pb2.JobSpec(job_id="role-job", scenario="sec-four", parties=FOUR, threshold=1, timeout_s=10)
    async with secure_channel(cluster.deployment.addresses["south"], "south", fake_coordinator) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await node_pb2_grpc.NodeControlStub(ch).Prepare(spec, timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'coordinator' has a client certificate; Prepare needs a coordinator certificate" in info.value.details()
    assert "role-job" not in cluster.stored_jobs("south")
    node_operator = _with_role(cluster, tmp_path / "o", "operator", certmod.NODE)
    text = cluster.scenarios["sec-four"][0].read_text()
    async with secure_channel(cluster.deployment.coordinator_address, "coordinator", node_operator) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await copg.CoordinatorStub(ch).Submit(cop.SubmitRequest(scenario_yaml=text, scenario_path="x.yaml"),
                                                  timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "operators need a client certificate" in info.value.details()


def test_the_nodes_survived(cluster: Cluster) -> None:
    cluster.assert_alive()


# ---- a job the coordinator reported DONE keeps its outputs ------------------------------------------

async def test_abort_of_a_job_the_coordinator_reported_done_is_refused(cluster: Cluster) -> None:
    """The coordinator records DONE, then commits the job on every node, then reports it. An Abort
    for it afterwards (stale, or sent with the coordinator's certificate by mistake) is refused,
    and every node keeps releasing its output share, also the node that is not a recipient.
    (Abort of a job finished but not committed withdraws it: tests/integration/test_finish_race.py.)"""
    job = (await cluster.run("sec-four")).job_id
    for org in FOUR:
        st = await cluster.node_status(org, job)
        assert st.state == node_pb2.JOB_STATE_DONE and st.committed, (org, st)
        async with secure_channel(cluster.deployment.addresses[org], org, cluster.tls("coordinator")) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await node_pb2_grpc.NodeControlStub(ch).Abort(node_pb2.JobRef(job_id=job), timeout=10)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "committed" in info.value.details()
        assert cluster.stored_jobs(org)[job] == "DONE" and cluster.stored_outputs(org, job) == 1
    assert (await cluster.fetch(job, "total", "auditor")).value == sum(GOOD.values())
