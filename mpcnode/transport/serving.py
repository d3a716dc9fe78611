"""What every Parley server process does the same way: load its TLS files, serve until a signal."""
from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc

from ..config import TlsFiles
from ..configfile import ConfigError
from .tls import TlsMaterial


def load_tls(config_path: Path, files: TlsFiles) -> TlsMaterial:
    """The certificate material a config names; a missing or unreadable file is a config error."""
    try:
        return TlsMaterial.load(files.ca, files.cert, files.key)
    except OSError as exc:
        raise ConfigError(config_path, "tls", f"cannot read certificate material: {exc}") from None


async def serve_until_signalled(server: grpc.aio.Server) -> None:
    """Block until SIGTERM or SIGINT, then stop the server with a short grace period."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1.0)
