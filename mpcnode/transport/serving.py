"""What every Parley server process does the same way: load its TLS files, serve until a signal."""
from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from ..certs import certificate_role
from ..config import TlsFiles
from ..configfile import ConfigError
from .tls import TlsMaterial


def load_tls(config_path: Path, files: TlsFiles) -> TlsMaterial:
    """The certificate material a config names; a missing or unreadable file is a config error."""
    try:
        return TlsMaterial.load(files.ca, files.cert, files.key)
    except OSError as exc:
        raise ConfigError(config_path, "tls", f"cannot read certificate material: {exc}") from None


def check_certificate_name(config_path: Path, field: str, name: str, files: TlsFiles, tls: TlsMaterial,
                           role: str) -> None:
    """The name a config claims must be the one its certificate proves: peers check callers by the
    certificate's name, so a node started under another name would only time out, much later, as
    'unreachable'. One line naming the file, the field and both names."""
    try:
        cert = x509.load_pem_x509_certificate(tls.cert)
    except ValueError as exc:
        raise ConfigError(config_path, "tls.cert", f"{files.cert} is not a PEM certificate: {exc}") from None
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [name]:
        shown = ", ".join(repr(n) for n in names) or "no common name"
        raise ConfigError(config_path, field, f"{name!r} differs from the name in its certificate "
                                              f"{files.cert} ({shown})")
    has = certificate_role(cert)
    if has != role:   # its peers would refuse every call it makes (transport/tls.py caller_role)
        raise ConfigError(config_path, "tls.cert", f"{files.cert} is a {has or 'role-less'} certificate; this "
                                                   f"needs a {role} certificate (python -m mpcnode.certs)")


async def serve_until_signalled(server: grpc.aio.Server) -> None:
    """Block until SIGTERM or SIGINT, then stop the server with a short grace period."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1.0)
