"""Run N hosts in separate Linux network namespaces joined by delayed links.

Test harness for integration tests that need a real (if small) network with
latency between the parties, e.g. gRPC MPC nodes talking mutual-TLS to each
other.  Standard library only; needs root and ``ip`` (iproute2).

Topology
--------
One router namespace ``<tag>-r`` and one namespace per host ``<tag>-h<i>``
(``tag`` holds this process's pid and a random suffix, so concurrent runs do
not clash).  Host ``i`` is joined to the router by a veth pair created
directly inside the two namespaces (nothing is ever created in the root
namespace)::

    host i  eth0  10.77.<i>.2/24   <-- veth -->   r<i>  10.77.<i>.1/24  router

Each host has loopback up, a route to every other host's relay address
(``10.77.<j>.1``) via its router address, ``10.77.0.0/16`` otherwise
unreachable, and no default route, so nothing can leave the harness.  IP forwarding
is OFF in the router, so hosts cannot reach each other directly: the only
way from one host to another is through the delaying relay, which makes it
impossible to bypass the delay by accident.  The addresses are fixed, which
is fine because they exist only inside this run's private namespaces.

How the delay is made
---------------------
This kernel has no ``netem`` qdisc, so the delay is made in user space by a
delaying TCP relay (``python netns.py relay ...``, code at the bottom of
this file) that runs inside the router namespace.  ``expose(j, port)``
starts one relay process that listens on ``10.77.<j>.1:<port>`` (the router's
address on host j's link) and forwards every accepted connection to the real
server at ``10.77.<j>.2:<port>``.  Any host ``i`` that wants to talk to host
``j`` connects to ``addr(j, port)`` == ``("10.77.<j>.1", port)``.

The relay stamps every chunk of bytes it reads, in each direction
separately, with ``arrival + delay`` and writes it to the other side no
earlier than that, in order.  Reading never waits for earlier chunks to be
delivered, so the relay behaves like a link with latency ``delay`` and a
bandwidth limited only by CPU and by the in-flight buffer (``max_buffer``
bytes per direction; past that it stops reading and TCP backpressure
propagates to the sender).  Consequences, measured on a 2-core VM:

* application RTT (TCP ping-pong) = 2 x delay + ~1 ms (asyncio timers wake
  up to 1 ms late); 20 ms one-way gives 40.8-41.3 ms;
* the delay applies to every byte, so TLS and HTTP/2 handshakes, gRPC calls
  and each protocol round pay the full latency;
* the TCP handshake itself is only partly modelled: the client's
  ``connect()`` returns at once (the relay's kernel accepts it), the relay
  opens the upstream connection ``delay`` later (so the server sees the
  connection when a real SYN would arrive), and data is delayed as usual.
  A real connection costs one more RTT before the first byte; gRPC keeps
  connections open, so this does not matter for it;
* a refused or failed upstream connection is reported to the client as a
  reset (ECONNRESET / EOF) after the connection has opened, not as
  ECONNREFUSED on ``connect()``; gRPC treats both as transient failure and
  retries;
* resets and half-closes are forwarded (after the delay, in order);
* one relay process per exposed (host, port) pair; throughput through one
  relay is CPU bound (plain asyncio): on this 2-core VM about 700 MB/s one
  way, about 280 MB/s each way when echoing both ways at once, less when
  the endpoints compete for the cores;
* no packet loss, jitter or bandwidth shaping (``rate_mbit`` adds a ``tbf``
  rate limit on every host's link in both directions if wanted);
* delays can differ per pair: give an N x N matrix; a connection that
  host i opens to host j is delayed by ``delay[i][j]`` ms in BOTH
  directions (the relay identifies host i by the client's address), so
  give a symmetric matrix.  A host reaching its own exposed port through
  the relay gets ``delay[i][i]``; use localhost to avoid it.

Using it
--------
::

    from tests.netns import DelayedNetwork, skip_reason

    with DelayedNetwork(3, 20) as net:
        peers = {j: net.addr(j, 50051) for j in range(3)}  # starts relays
        procs = [net.popen(i, [sys.executable, "-m", "mpcnode", ...])
                 for i in range(3)]
        ...

A server in host j must listen on ``0.0.0.0:<port>`` (or
``net.host_ip(j)``), and every peer must be given ``net.addr(j, port)`` for
host j, never ``net.host_ip(j)`` (unreachable between hosts on purpose).
Parley's transport pins the peer's identity with
``grpc.ssl_target_name_override``, so TLS works with the bare relay IP as
the address.  For TLS that checks the dialled name, pass ``hostnames=[...]``: every host namespace then
gets an ``/etc/hosts`` (through ``ip netns exec``'s ``/etc/netns/<ns>/``
bind mount) that maps ``hostnames[j]`` to host j's relay address, so
``hostnames[j]:<port>`` reaches host j with the delay and matches a
certificate issued for that name.  Use ``GRPC_DNS_RESOLVER=native`` in the
node's environment if the resolver does not see the file.

Everything (processes started by ``popen``/``expose``, any other process
left in the namespaces, the namespaces, ``/etc/netns/<ns>``, the temporary
directory) is removed by ``close()``, which ``__exit__`` calls, also on
failure or if setup fails half way; an ``atexit`` hook is a last resort.
``cleanup_stale()`` removes namespaces left by runs whose process died
(also called by ``__enter__``).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["DelayedNetwork", "check_available", "skip_reason", "cleanup_stale"]

_IP = "ip"
_NS_PREFIX = "parley"
_NS_RE = re.compile(rf"^{_NS_PREFIX}(\d+)x[0-9a-f]+-(r|h\d+)$")
_SUBNET = "10.77"
_availability: str | None | bool = False  # False = not checked yet


def _run(argv: Sequence[str], check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


def skip_reason() -> str | None:
    """None when namespaces can be used here, else a human-readable reason.

    Checks Linux, root, the ``ip`` tool, and that a network namespace with a
    veth pair can actually be created (result cached per process).
    """
    global _availability
    if _availability is not False:
        return _availability  # type: ignore[return-value]
    reason: str | None = None
    if not sys.platform.startswith("linux"):
        reason = f"network namespaces need Linux (this is {sys.platform})"
    elif os.geteuid() != 0:
        reason = "network namespaces need root (run the test suite as root)"
    elif shutil.which(_IP) is None:
        reason = "the 'ip' command (iproute2) is not installed: apt-get install iproute2"
    else:
        probe = f"{_NS_PREFIX}{os.getpid()}x{secrets.token_hex(3)}-r"
        try:
            p = _run([_IP, "netns", "add", probe], check=False)
            if p.returncode != 0:
                reason = f"'ip netns add' does not work here: {p.stderr.strip()}"
            else:
                p = _run([_IP, "-n", probe, "link", "add", "pa", "type", "veth", "peer", "name", "pb"], check=False)
                if p.returncode != 0:
                    reason = f"veth pairs cannot be created in a namespace here: {p.stderr.strip()}"
        except (OSError, subprocess.SubprocessError) as e:
            reason = f"'ip netns' is unavailable: {e}"
        finally:
            subprocess.run([_IP, "netns", "del", probe], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _availability = reason
    return reason


def check_available() -> bool:
    """True when ``DelayedNetwork`` can run here (see ``skip_reason``)."""
    return skip_reason() is None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _list_netns() -> list[str]:
    p = _run([_IP, "netns", "list"], check=False)
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]


def _kill_netns_pids(ns: str) -> None:
    """Kill every process still inside namespace ``ns`` (they are ours)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        p = _run([_IP, "netns", "pids", ns], check=False)
        pids = [int(x) for x in p.stdout.split() if x.isdigit()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(_pid_alive(x) for x in pids):
            time.sleep(0.02)


def _delete_netns(ns: str) -> None:
    _kill_netns_pids(ns)
    _run([_IP, "netns", "del", ns], check=False)
    shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)


def cleanup_stale() -> list[str]:
    """Delete namespaces of this harness whose creating process is gone."""
    removed = []
    if os.geteuid() != 0 or shutil.which(_IP) is None:
        return removed
    for ns in _list_netns():
        m = _NS_RE.match(ns)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            _delete_netns(ns)
            removed.append(ns)
    return removed


class DelayedNetwork:
    """N hosts in network namespaces, every host-to-host byte delayed.

    ``one_way_delay_ms``: a number (same delay for every pair), or an
    N x N matrix: ``[i][j]`` is the one-way delay, each way, of connections
    host i opens to host j.
    ``hostnames``: optional names written to each host's ``/etc/hosts``
    (name j -> host j's relay address).  ``rate_mbit``: optional ``tbf``
    rate limit on each host link, both directions.  ``max_buffer``: bytes
    in flight per relayed direction before backpressure.  ``mtu``: MTU of
    the veth links.
    """

    def __init__(
        self,
        n_hosts: int,
        one_way_delay_ms: float | Sequence[Sequence[float]],
        *,
        hostnames: Sequence[str] | None = None,
        rate_mbit: float | None = None,
        max_buffer: int = 32 << 20,
        mtu: int = 1500,
        python: str = sys.executable,
    ) -> None:
        if not 1 <= n_hosts <= 250:
            raise ValueError("n_hosts must be between 1 and 250")
        if isinstance(one_way_delay_ms, (int, float)):
            matrix = [[float(one_way_delay_ms)] * n_hosts for _ in range(n_hosts)]
        else:
            matrix = [[float(x) for x in row] for row in one_way_delay_ms]
            if len(matrix) != n_hosts or any(len(r) != n_hosts for r in matrix):
                raise ValueError("delay matrix must be n_hosts x n_hosts")
        if any(x < 0 for row in matrix for x in row):
            raise ValueError("delays must be >= 0")
        if hostnames is not None and len(hostnames) != n_hosts:
            raise ValueError("need one hostname per host")
        self.n_hosts = n_hosts
        self.delay_ms = matrix
        self.hostnames = list(hostnames) if hostnames is not None else None
        self.rate_mbit = rate_mbit
        self.max_buffer = int(max_buffer)
        self.mtu = int(mtu)
        self.python = python
        self.tag = f"{_NS_PREFIX}{os.getpid()}x{secrets.token_hex(3)}"
        self.router_ns = f"{self.tag}-r"
        self.host_ns = [f"{self.tag}-h{i}" for i in range(n_hosts)]
        self.workdir: Path | None = None
        self._procs: list[subprocess.Popen] = []
        self._relays: dict[tuple[int, int], subprocess.Popen] = {}
        self._created: list[str] = []
        self._open = False
        self._made_etc_netns = False

    # -- addresses ---------------------------------------------------------
    def host_ip(self, i: int) -> str:
        """Host i's own address (bind here or on 0.0.0.0; not reachable from other hosts)."""
        self._check_host(i)
        return f"{_SUBNET}.{i}.2"

    def relay_ip(self, j: int) -> str:
        """Address other hosts use to reach host j through the delay."""
        self._check_host(j)
        return f"{_SUBNET}.{j}.1"

    def addr(self, j: int, port: int) -> tuple[str, int]:
        """(host, port) that reaches host j's ``port`` with the delay applied.

        Starts the relay for (j, port) if it is not running yet.
        """
        return self.expose(j, port)

    def target(self, j: int, port: int) -> str:
        """``"ip:port"`` form of ``addr(j, port)`` (e.g. for a gRPC target)."""
        h, p = self.addr(j, port)
        return f"{h}:{p}"

    def netns(self, i: int) -> str:
        """Name of host i's namespace (for ``ip netns exec`` by hand)."""
        self._check_host(i)
        return self.host_ns[i]

    def _check_host(self, i: int) -> None:
        if not 0 <= i < self.n_hosts:
            raise IndexError(f"no host {i} (have {self.n_hosts})")

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> "DelayedNetwork":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        reason = skip_reason()
        if reason:
            raise RuntimeError(reason)
        cleanup_stale()
        self._open = True
        atexit.register(self.close)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        r = self.router_ns
        self._add_ns(r)
        for i, h in enumerate(self.host_ns):
            self._add_ns(h)
            # Both ends created straight inside their namespaces.
            _run([_IP, "-n", r, "link", "add", f"r{i}", "mtu", str(self.mtu), "type", "veth",
                  "peer", "name", "eth0", "mtu", str(self.mtu), "netns", h])
            _run([_IP, "-n", r, "addr", "add", f"{_SUBNET}.{i}.1/24", "dev", f"r{i}"])
            _run([_IP, "-n", r, "link", "set", f"r{i}", "up"])
            _run([_IP, "-n", h, "addr", "add", f"{_SUBNET}.{i}.2/24", "dev", "eth0"])
            _run([_IP, "-n", h, "link", "set", "eth0", "up"])
            # Only the relay addresses are routed; other hosts' real addresses
            # fail at once (EHOSTUNREACH) instead of hanging.
            _run([_IP, "-n", h, "route", "add", "unreachable", f"{_SUBNET}.0.0/16"])
            for j in range(self.n_hosts):
                if j != i:
                    _run([_IP, "-n", h, "route", "add", f"{self.relay_ip(j)}/32", "via", f"{_SUBNET}.{i}.1"])
            if self.rate_mbit:
                for ns, dev in ((r, f"r{i}"), (h, "eth0")):
                    _run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf",
                          "rate", f"{self.rate_mbit}mbit", "burst", "256kb", "latency", "400ms"])
        _run([_IP, "netns", "exec", r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0"], check=False)
        if self.hostnames:
            lines = ["127.0.0.1 localhost", "::1 localhost"]
            lines += [f"{self.relay_ip(j)} {name}" for j, name in enumerate(self.hostnames)]
            if not Path("/etc/netns").exists():
                Path("/etc/netns").mkdir()
                self._made_etc_netns = True
            for h in self.host_ns:
                d = Path("/etc/netns") / h
                d.mkdir(parents=True, exist_ok=True)
                (d / "hosts").write_text("\n".join(lines) + "\n")

    def _add_ns(self, ns: str) -> None:
        _run([_IP, "netns", "add", ns])
        self._created.append(ns)
        _run([_IP, "-n", ns, "link", "set", "lo", "up"])
        for key, val in (("net.ipv4.tcp_rmem", "4096 1048576 33554432"),
                         ("net.ipv4.tcp_wmem", "4096 1048576 33554432")):
            _run([_IP, "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={val}"], check=False)

    def close(self) -> None:
        """Kill our processes, delete the namespaces and temp files. Idempotent."""
        if not self._open:
            return
        self._open = False
        try:
            atexit.unregister(self.close)
        except Exception:
            pass
        procs = self._procs + list(self._relays.values())
        for p in procs:
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                try:
                    p.wait(2)
                except subprocess.TimeoutExpired:
                    pass
        for p in procs:
            for f in (p.stdin, p.stdout, p.stderr):
                if f is not None:
                    try:
                        f.close()
                    except Exception:
                        pass
        for ns in reversed(self._created):
            _delete_netns(ns)
        self._created.clear()
        if self._made_etc_netns:
            try:
                os.rmdir("/etc/netns")  # only if still empty
            except OSError:
                pass
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def namespaces_exist(self) -> list[str]:
        """Which of this network's namespaces currently exist (for tests)."""
        mine = {self.router_ns, *self.host_ns}
        return [ns for ns in _list_netns() if ns in mine]

    # -- processes ---------------------------------------------------------
    def popen(self, i: int, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        """Start ``argv`` inside host i's namespace; killed by ``close()``.

        ``kw`` goes to ``subprocess.Popen`` (stdout=..., env=..., cwd=...).
        The process gets its own session (process group) so ``close()`` can
        kill its children too.
        """
        self._check_host(i)
        self._require_open()
        if isinstance(argv, (str, bytes)):
            raise TypeError("argv must be a list of strings, not a shell string")
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen([_IP, "netns", "exec", self.host_ns[i], *map(str, argv)], **kw)
        self._procs.append(p)
        return p

    def run(self, i: int, argv: Sequence[str], timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` to completion inside host i's namespace."""
        self._check_host(i)
        self._require_open()
        kw.setdefault("start_new_session", True)
        return subprocess.run([_IP, "netns", "exec", self.host_ns[i], *map(str, argv)], timeout=timeout, **kw)

    def expose(self, j: int, port: int, timeout: float = 10) -> tuple[str, int]:
        """Start (once) the delaying relay for host j's ``port``; return its address."""
        self._check_host(j)
        self._require_open()
        port = int(port)
        key = (j, port)
        if key not in self._relays:
            delays = {self.host_ip(i): self.delay_ms[i][j] for i in range(self.n_hosts)}
            spec = {
                "listen": [self.relay_ip(j), port],
                "target": [self.host_ip(j), port],
                "delay_ms": delays,
                "default_delay_ms": max(delays.values()),
                "max_buffer": self.max_buffer,
            }
            assert self.workdir is not None
            log = open(self.workdir / f"relay-h{j}-{port}.log", "ab")
            p = subprocess.Popen(
                [_IP, "netns", "exec", self.router_ns, self.python, "-u", str(Path(__file__).resolve()),
                 "relay", json.dumps(spec)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
            )
            log.close()
            self._relays[key] = p
            line = _readline(p, timeout)
            if not line.startswith(b"READY"):
                raise RuntimeError(f"relay for host {j} port {port} failed to start: {line!r}; "
                                   f"see {self.workdir}/relay-h{j}-{port}.log")
        return self.relay_ip(j), port

    def _require_open(self) -> None:
        if not self._open:
            raise RuntimeError("DelayedNetwork is not started (use it as a context manager)")


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass


def _readline(p: subprocess.Popen, timeout: float) -> bytes:
    """Read one line from p.stdout with a timeout (b"" on EOF/timeout)."""
    assert p.stdout is not None
    fd = p.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buf += chunk
    return buf


# =========================================================================
# The delaying relay (runs as `python netns.py relay SPEC` in the router ns)
# =========================================================================

_EOF = object()
_RST = object()


def _rst(transport) -> None:
    """Close with a TCP RST (SO_LINGER 0) so the peer sees a reset."""
    import socket
    import struct

    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


class _Direction:
    """Bytes from one side to the other, each chunk held until arrival + delay."""

    def __init__(self, conn: "_Conn", name: str) -> None:
        import collections

        self.conn = conn
        self.name = name
        self.items: collections.deque = collections.deque()  # (due, bytes | _EOF | _RST)
        self.queued = 0
        self.timer = None
        self.src = None  # transports, set when connected
        self.dst = None
        self.src_paused = False
        self.dst_paused = False  # dst transport asked us to stop writing
        self.done = False

    def push(self, item) -> None:
        loop = self.conn.loop
        self.items.append((loop.time() + self.conn.delay, item))
        if isinstance(item, bytes):
            self.queued += len(item)
        self._update_flow()
        if self.timer is None and self.dst is not None:
            self.timer = loop.call_at(self.items[0][0], self.flush)

    def flush(self) -> None:
        self.timer = None
        if self.dst is None:
            return  # flush again when the destination is connected
        loop = self.conn.loop
        now = loop.time()
        out = []
        while self.items and self.items[0][0] <= now:
            _, item = self.items.popleft()
            if isinstance(item, bytes):
                out.append(item)
                self.queued -= len(item)
                continue
            if out:
                self._write(b"".join(out))
                out = []
            if item is _EOF:
                self.done = True
                if not self.dst.is_closing() and self.dst.can_write_eof():
                    self.dst.write_eof()
                self.conn.maybe_close()
            else:  # _RST
                self.conn.reset()
                return
        if out:
            self._write(b"".join(out) if len(out) > 1 else out[0])
        self._update_flow()
        if self.items:
            self.timer = loop.call_at(self.items[0][0], self.flush)

    def _write(self, data: bytes) -> None:
        if not self.dst.is_closing():
            self.dst.write(data)

    def _update_flow(self) -> None:
        if self.src is None or self.src.is_closing():
            return
        full = self.queued >= self.conn.max_buffer or self.dst_paused
        if full and not self.src_paused:
            self.src.pause_reading()
            self.src_paused = True
        elif self.src_paused and not self.dst_paused and self.queued < self.conn.max_buffer // 2:
            self.src.resume_reading()
            self.src_paused = False

    def set_dst(self, transport) -> None:
        self.dst = transport
        if self.items and self.timer is None:
            self.timer = self.conn.loop.call_at(self.items[0][0], self.flush)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.items.clear()


class _Side(asyncio.Protocol):
    """asyncio protocol for one socket of a relayed connection."""

    def __init__(self, conn: "_Conn", out: _Direction, into: _Direction) -> None:
        self.conn = conn
        self.out = out    # bytes we read go here
        self.into = into  # we are the destination of this one
        self.transport = None
        self.got_eof = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.out.src = transport
        self.into.set_dst(transport)

    def data_received(self, data: bytes) -> None:
        self.out.push(bytes(data))

    def eof_received(self):
        self.got_eof = True
        self.out.push(_EOF)
        return True  # keep the other direction open (half-close)

    def connection_lost(self, exc) -> None:
        if self.conn.closing:
            return
        if exc is not None or not self.got_eof:
            self.out.push(_RST)

    def pause_writing(self) -> None:
        self.into.dst_paused = True
        self.into._update_flow()

    def resume_writing(self) -> None:
        self.into.dst_paused = False
        self.into._update_flow()


class _ClientSide(_Side):
    """The accepted socket: picks the delay by source host, then dials upstream."""

    def __init__(self, conn: "_Conn", out: _Direction, into: _Direction, delays: dict) -> None:
        super().__init__(conn, out, into)
        self.delays = delays

    def connection_made(self, transport) -> None:
        peer = transport.get_extra_info("peername")
        self.conn.delay = self.delays.get(peer[0] if peer else "", self.conn.delay)
        super().connection_made(transport)
        self.conn.loop.create_task(self.conn.connect_upstream())


class _Conn:
    def __init__(self, loop, delay: float, max_buffer: int, target: tuple[str, int]) -> None:
        self.loop = loop
        self.delay = delay
        self.max_buffer = max_buffer
        self.target = target
        self.up = _Direction(self, "c->s")
        self.down = _Direction(self, "s->c")
        self.client = None
        self.server = None
        self.closing = False

    def maybe_close(self) -> None:
        if self.up.done and self.down.done:
            self.closing = True
            for side in (self.client, self.server):
                if side is not None and side.transport is not None:
                    side.transport.close()

    def reset(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.up.cancel()
        self.down.cancel()
        for side in (self.client, self.server):
            if side is not None and side.transport is not None and not side.transport.is_closing():
                _rst(side.transport)

    async def connect_upstream(self) -> None:
        await asyncio.sleep(self.delay)  # the SYN travels to the server
        if self.closing:
            return
        try:
            await self.loop.create_connection(lambda: self.server, *self.target)
        except OSError as e:
            print(f"upstream {self.target} failed: {e}", file=sys.stderr)
            # The failure reaches the client one delay later, as a reset.
            self.loop.call_later(self.delay, self.reset)


def _relay_main(spec: dict) -> None:
    listen = (spec["listen"][0], int(spec["listen"][1]))
    target = (spec["target"][0], int(spec["target"][1]))
    delays = {k: float(v) / 1000 for k, v in spec["delay_ms"].items()}
    default = float(spec["default_delay_ms"]) / 1000
    max_buffer = int(spec["max_buffer"])

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def factory():
            conn = _Conn(loop, default, max_buffer, target)
            conn.client = _ClientSide(conn, conn.up, conn.down, delays)
            conn.server = _Side(conn, conn.down, conn.up)
            return conn.client

        server = await loop.create_server(factory, *listen, reuse_address=True, backlog=1024)
        sys.stdout.write(f"READY {listen[0]} {listen[1]}\n")
        sys.stdout.flush()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()

    asyncio.run(main())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "relay":
        _relay_main(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: netns.py relay SPEC_JSON")
