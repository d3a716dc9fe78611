"""Mutual TLS credentials and the caller identity taken from the peer certificate."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509

from ..certs import certificate_role


@dataclass(frozen=True)
class TlsMaterial:
    ca: bytes
    cert: bytes
    key: bytes

    @classmethod
    def load(cls, ca: Path, cert: Path, key: Path) -> "TlsMaterial":
        return cls(ca.read_bytes(), cert.read_bytes(), key.read_bytes())

    @classmethod
    def for_identity(cls, cert_dir: Path, identity: str) -> "TlsMaterial":
        return cls.load(cert_dir / "ca.pem", cert_dir / f"{identity}.pem", cert_dir / f"{identity}.key")

    def server_credentials(self) -> grpc.ServerCredentials:
        # require_client_auth: a caller without a certificate from our CA fails the handshake
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca,
                                           require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)


def message_options(max_mb: int) -> list[tuple[str, int]]:
    limit = max_mb * 1024 * 1024
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


def secure_channel(address: str, server_identity: str, tls: TlsMaterial, max_mb: int = 256) -> grpc.aio.Channel:
    """A channel that only talks to a server whose certificate names `server_identity`."""
    # short reconnect backoff: a restarted peer is reachable again within about two seconds
    # (gRPC's default backoff grows to two minutes and made restarted nodes look dead). Not
    # min_reconnect_backoff: gRPC also uses it as the connect timeout, and 200 ms broke TLS
    # handshakes under load.
    options = message_options(max_mb) + [("grpc.ssl_target_name_override", server_identity),
                                         ("grpc.default_authority", server_identity),
                                         ("grpc.initial_reconnect_backoff_ms", 200),
                                         ("grpc.max_reconnect_backoff_ms", 2000)]
    return grpc.aio.secure_channel(address, tls.channel_credentials(), options=options)


def caller_identity(context: grpc.aio.ServicerContext) -> str | None:
    """The common name of the verified client certificate, or None."""
    auth = context.auth_context()
    names = auth.get("x509_common_name") or []
    return names[0].decode() if names else None


def caller_role(context: grpc.aio.ServicerContext) -> str | None:
    """The role (certs.ROLES) the verified client certificate carries, or None: a certificate
    without one (issued before roles) may call nothing that needs a role."""
    pems = context.auth_context().get("x509_pem_cert") or []
    return _role_of_pem(pems[0]) if pems else None


@functools.lru_cache(maxsize=4096)
def _role_of_pem(pem: bytes) -> str | None:
    # parsed once per certificate, not once per call: clients submit one share per RPC
    try:
        return certificate_role(x509.load_pem_x509_certificate(pem))
    except ValueError:
        return None
