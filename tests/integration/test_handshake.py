"""Certificates at the TLS handshake, against real node and coordinator processes.

test_security.py shows that a client without a certificate or with one from another CA gets
UNAVAILABLE. This module covers the validity period, and what the servers log:

* a client certificate from the deployment's own CA that has EXPIRED, or is NOT YET VALID, is
  refused at the handshake by every node and by the coordinator, also when it names a real
  identity (an old certificate of the coordinator, or of a peer node);
* for every refused credential (none, another CA, expired, not yet valid) no request is served:
  the probe we send would be logged by name if any service read it, and it never is;
* the same probe with a valid certificate is served and logged (so the log check can fail);
* a client refuses a server whose certificate has expired or is not yet valid.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import pytest

from mpcnode import certs as certmod
from mpcnode.transport.tls import TlsMaterial, message_options, secure_channel
from parley.v1 import node_pb2, node_pb2_grpc
from tests.integration.cluster import Cluster, make_foreign_identity, rpc_code

PARTIES = ["hs-a", "hs-b", "hs-c"]
SCENARIO = {"name": "hs-total", "kind": "total", "parties": PARTIES, "protocol": "shamir", "recipients": ["hs-a"],
            "input": {"name": "amount", "range": [0, 100]}, "timeout_s": 30}
NOW = dt.datetime.now(dt.timezone.utc)
# The probe: a body that no request type decodes. A service that reads it refuses it with
# INVALID_ARGUMENT and logs one line naming the caller; a refused handshake never gets that far.
PROBE = b"\xff\xff\xff"
HANDSHAKE_REASON = {"expired": "certificate has expired", "not yet valid": "certificate is not yet valid",
                    "other CA": "unable to get local issuer certificate"}
PROBE_METHODS = {"node": "/parley.v1.NodeControl/Status", "coordinator": "/parley.v1.Coordinator/CloseInputs"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = Cluster.create(tmp_path_factory.mktemp("handshake"), [SCENARIO], {"hs-total": {o: 1 for o in PARTIES}},
                       extra_identities=["hs-fresh"])
    with c.running():
        yield c
    for name, proc in c.procs.items():
        assert proc.returncode in (0, -15), f"{name} exited with {proc.returncode}:\n{c.log_tail(name)}"


def issue(cluster: Cluster, folder: Path, identity: str, not_before: dt.datetime, days: int) -> TlsMaterial:
    """A certificate for `identity` from the deployment's own CA, with the given validity period."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = certmod.load_ca(cluster.certs)
    certmod.issue(folder, identity, ca_cert, ca_key, days=days, not_before=not_before)
    return TlsMaterial(ca=(cluster.certs / "ca.pem").read_bytes(), cert=(folder / f"{identity}.pem").read_bytes(),
                       key=(folder / f"{identity}.key").read_bytes())


def credentials(cluster: Cluster, tmp_path: Path, kind: str, identity: str) -> grpc.ChannelCredentials:
    if kind == "none":
        return grpc.ssl_channel_credentials(root_certificates=(cluster.certs / "ca.pem").read_bytes())
    if kind == "other CA":
        foreign = make_foreign_identity(tmp_path / "other-ca", identity)
        return TlsMaterial(ca=(cluster.certs / "ca.pem").read_bytes(), cert=foreign.cert,
                           key=foreign.key).channel_credentials()
    if kind == "expired":
        tls = issue(cluster, tmp_path / "expired", identity, NOW - dt.timedelta(days=3), days=1)
    elif kind == "not yet valid":
        tls = issue(cluster, tmp_path / "future", identity, NOW + dt.timedelta(days=2), days=30)
    else:
        assert kind == "valid"
        tls = issue(cluster, tmp_path / "valid", identity, NOW - dt.timedelta(minutes=5), days=30)
    return tls.channel_credentials()


def targets(cluster: Cluster) -> list[tuple[str, str, str]]:
    """(name the server's certificate carries, address, probe method) for every process."""
    return [(org, cluster.deployment.addresses[org], PROBE_METHODS["node"]) for org in PARTIES] + [
        ("coordinator", cluster.deployment.coordinator_address, PROBE_METHODS["coordinator"])]


async def call(address: str, target: str, creds: grpc.ChannelCredentials) -> tuple[grpc.StatusCode, grpc.StatusCode]:
    """(Health, probe) status codes over one channel with these credentials."""
    options = message_options(4) + [("grpc.ssl_target_name_override", target), ("grpc.default_authority", target)]
    async with grpc.aio.secure_channel(address, creds, options=options) as ch:
        health = await rpc_code(node_pb2_grpc.NodeControlStub(ch).Health(node_pb2.HealthRequest(), timeout=10)) \
            if target != "coordinator" else None
        method = PROBE_METHODS["coordinator" if target == "coordinator" else "node"]
        probe = await rpc_code(ch.unary_unary(method, request_serializer=None, response_deserializer=None)(
            PROBE, timeout=10))
    return health, probe


def served_lines(cluster: Cluster, name: str, identity: str) -> list[str]:
    """Log lines of a process that show it read a request from `identity`."""
    text = cluster.log(name).read_text(errors="replace")
    return [line for line in text.splitlines() if f"from {identity} " in line or f"from '{identity}'" in line]


async def test_a_valid_certificate_is_served_and_logged(cluster: Cluster, tmp_path: Path) -> None:
    """The control: a certificate issued just now gets through, and its probe shows in every log."""
    creds = credentials(cluster, tmp_path, "valid", "hs-fresh")
    for name, address, _ in targets(cluster):
        health, probe = await call(address, name, creds)
        assert health in (None, grpc.StatusCode.OK), (name, health)
        assert probe == grpc.StatusCode.INVALID_ARGUMENT, (name, probe)
        assert served_lines(cluster, name, "hs-fresh"), cluster.log_tail(name)


@pytest.mark.parametrize("kind,identity", [
    ("expired", "hs-stale"),
    ("not yet valid", "hs-early"),
    ("expired", "coordinator"),      # an old certificate of a real, privileged identity
    ("not yet valid", "hs-a"),       # a peer node's name
    ("none", "(no certificate)"),
    ("other CA", "hs-alien"),
])
async def test_refused_at_the_handshake_and_nothing_served(cluster: Cluster, tmp_path: Path, kind: str,
                                                           identity: str) -> None:
    creds = credentials(cluster, tmp_path, kind, identity)
    before = {name: cluster.log(name).read_text(errors="replace").count("refused") for name, _, _ in targets(cluster)}
    for name, address, _ in targets(cluster):
        health, probe = await call(address, name, creds)
        assert health in (None, grpc.StatusCode.UNAVAILABLE), (name, kind, health)
        assert probe == grpc.StatusCode.UNAVAILABLE, (name, kind, probe)
    for name, _, _ in targets(cluster):
        if kind != "none":
            assert not served_lines(cluster, name, identity), (name, served_lines(cluster, name, identity))
        # no service refused (or served) anything while only this client was calling
        log = cluster.log(name).read_text(errors="replace")
        assert log.count("refused") == before[name], cluster.log_tail(name)
        # grpc core names the reason when it logs failed handshakes (grpc 1.85 does by default)
        reason = HANDSHAKE_REASON.get(kind)
        if reason and "Handshake failed" in log:
            assert reason in log, cluster.log_tail(name)
    cluster.assert_alive()


async def test_a_real_identity_with_a_current_certificate_still_works(cluster: Cluster) -> None:
    """After all the refusals above, the deployment runs a job as usual."""
    progress = await cluster.run("hs-total")
    assert (await cluster.fetch(progress.job_id, "total", "hs-a")).value == 3


@pytest.mark.parametrize("kind", ["expired", "not yet valid"])
async def test_the_client_refuses_a_server_certificate_outside_its_validity(cluster: Cluster, tmp_path: Path,
                                                                           kind: str) -> None:
    """A server in this process presenting an expired (or not yet valid) certificate of node hs-b,
    signed by the deployment's CA: a recipient with a valid certificate does not talk to it."""
    start = NOW - dt.timedelta(days=3) if kind == "expired" else NOW + dt.timedelta(days=2)
    server_tls = issue(cluster, tmp_path / "server", "hs-b", start, days=1)
    server = grpc.aio.server()
    node_pb2_grpc.add_NodeControlServicer_to_server(node_pb2_grpc.NodeControlServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", server_tls.server_credentials())
    await server.start()
    try:
        async with secure_channel(f"127.0.0.1:{port}", "hs-b", cluster.tls("hs-a")) as ch:
            code = await rpc_code(node_pb2_grpc.NodeControlStub(ch).Health(node_pb2.HealthRequest(), timeout=10))
        assert code == grpc.StatusCode.UNAVAILABLE, code
        # control: the same server with a current certificate answers (UNIMPLEMENTED: the base servicer)
        good = issue(cluster, tmp_path / "good-server", "hs-b", NOW - dt.timedelta(minutes=5), days=1)
        server2 = grpc.aio.server()
        node_pb2_grpc.add_NodeControlServicer_to_server(node_pb2_grpc.NodeControlServicer(), server2)
        port2 = server2.add_secure_port("127.0.0.1:0", good.server_credentials())
        await server2.start()
        try:
            async with secure_channel(f"127.0.0.1:{port2}", "hs-b", cluster.tls("hs-a")) as ch:
                code = await rpc_code(node_pb2_grpc.NodeControlStub(ch).Health(node_pb2.HealthRequest(), timeout=10))
            assert code == grpc.StatusCode.UNIMPLEMENTED, code
        finally:
            await server2.stop(None)
    finally:
        await server.stop(None)
