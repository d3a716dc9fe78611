"""The network-namespace harness (tests/netns.py): delay, throughput, teardown.

Every party runs inside a namespace; nothing here connects to a namespace
address from the root namespace.  Skipped with the reason when not root or
when `ip netns` does not work here.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.netns import DelayedNetwork, skip_reason  # noqa: E402

_REASON = skip_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"netns harness unavailable: {_REASON}")

PY = sys.executable
ECHO_PORT = 7100
DELAY_MS = 20

ECHO_SERVER = r"""
import socket, sys, threading
port = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(16)
print("READY", flush=True)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(1 << 20)
    while True:
        n = c.recv_into(buf)
        if not n:
            break
        c.sendall(memoryview(buf)[:n])
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

PING_CLIENT = r"""
import json, socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c.sendall(b"w"); assert c.recv(1) == b"w"  # warm-up (upstream connect)
rtts = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    c.sendall(b"p")
    assert c.recv(1) == b"p"
    rtts.append((time.perf_counter() - t) * 1e3)
print(json.dumps(rtts))
"""

BULK_CLIENT = r"""
import hashlib, json, os, socket, sys, threading, time
size = int(sys.argv[3])
data = os.urandom(size)
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
back = bytearray()
def reader():
    while len(back) < size:
        d = c.recv(1 << 20)
        if not d:
            break
        back.extend(d)
t = time.perf_counter()
th = threading.Thread(target=reader)
th.start()
c.sendall(data)
th.join()
dt = time.perf_counter() - t
c.close()
print(json.dumps({"ok": bytes(back) == data, "got": len(back), "seconds": dt,
                  "sha": hashlib.sha256(back).hexdigest()[:16]}))
"""

DIRECT_CLIENT = r"""
import socket, sys, time
s = socket.socket()
s.settimeout(5)
t = time.perf_counter()
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("CONNECTED")
except OSError as e:
    print("FAILED %s %.3f" % (e.errno, time.perf_counter() - t))
"""


def _wait_ready(proc: subprocess.Popen, timeout: float = 10) -> None:
    assert proc.stdout is not None
    if not select.select([proc.stdout], [], [], timeout)[0]:
        raise AssertionError("server did not report READY")
    line = proc.stdout.readline()
    assert line.strip() == "READY", line


def _start_echo(net: DelayedNetwork, host: int, port: int = ECHO_PORT) -> subprocess.Popen:
    proc = net.popen(host, [PY, "-c", ECHO_SERVER, str(port)], stdout=subprocess.PIPE, text=True)
    _wait_ready(proc)
    return proc


def _ping(net: DelayedNetwork, src: int, dst: int, count: int = 10, port: int = ECHO_PORT) -> list[float]:
    host, p = net.addr(dst, port)
    r = net.run(src, [PY, "-c", PING_CLIENT, host, str(p), str(count)],
                capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


@pytest.fixture(scope="module")
def net():
    with DelayedNetwork(3, DELAY_MS, hostnames=["party0", "party1", "party2"]) as n:
        _start_echo(n, 1)
        yield n


def test_round_trip_is_twice_the_one_way_delay(net):
    rtts = _ping(net, 0, 1, count=15)
    med = _median(rtts)
    print(f"RTT h0->h1 with {DELAY_MS} ms one-way: min {min(rtts):.2f} median {med:.2f} max {max(rtts):.2f} ms")
    assert 38 <= min(rtts)
    assert 38 <= med <= 80


def test_bulk_transfer(net):
    size = 8 << 20
    host, port = net.addr(1, ECHO_PORT)
    r = net.run(0, [PY, "-c", BULK_CLIENT, host, str(port), str(size)],
                capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    print(f"echoed {size >> 20} MB through the relay in {res['seconds']:.3f} s "
          f"({size / res['seconds'] / 1e6:.0f} MB/s each way)")
    assert res["got"] == size
    assert res["ok"]


def test_hosts_cannot_bypass_the_delay(net):
    # Host 1's own address is not routed from host 0: fails at once.
    r = net.run(0, [PY, "-c", DIRECT_CLIENT, net.host_ip(1), str(ECHO_PORT)],
                capture_output=True, text=True, timeout=30)
    assert r.stdout.startswith("FAILED"), r.stdout + r.stderr
    assert float(r.stdout.split()[2]) < 1.0


def test_hostnames_resolve_to_relay(net):
    r = net.run(2, ["getent", "hosts", "party1"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split()[0] == net.relay_ip(1)
    r = net.run(2, [PY, "-c", PING_CLIENT, "party1", str(ECHO_PORT), "5"],
                capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert 38 <= _median(json.loads(r.stdout)) <= 80


GRPC_SERVER = r"""
import grpc, sys
from concurrent import futures
h = grpc.method_handlers_generic_handler(
    "t.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)})
s = grpc.server(futures.ThreadPoolExecutor(4))
s.add_generic_rpc_handlers((h,))
s.add_insecure_port("0.0.0.0:" + sys.argv[1])
s.start()
print("READY", flush=True)
s.wait_for_termination()
"""

GRPC_CLIENT = r"""
import grpc, json, sys, time
ch = grpc.insecure_channel(sys.argv[1])
f = ch.unary_unary("/t.Echo/Echo")
f(b"warm", wait_for_ready=True, timeout=10)
ts = []
for _ in range(5):
    t = time.perf_counter()
    assert f(b"x" * 100, timeout=10) == b"x" * 100
    ts.append((time.perf_counter() - t) * 1e3)
big = bytes(range(256)) * 4096
assert f(big, timeout=20) == big
print(json.dumps(ts))
"""


def test_grpc_call_through_relay(net):
    pytest.importorskip("grpc")
    port = 7200
    srv = net.popen(2, [PY, "-c", GRPC_SERVER, str(port)], stdout=subprocess.PIPE, text=True)
    _wait_ready(srv)
    net.expose(2, port)
    r = net.run(0, [PY, "-c", GRPC_CLIENT, f"party2:{port}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    ts = json.loads(r.stdout)
    print(f"gRPC unary call h0->h2: median {_median(ts):.1f} ms")
    assert 38 <= _median(ts) <= 90


def test_per_pair_delay_matrix():
    d = [[0, 10, 30], [10, 0, 0], [30, 0, 0]]
    with DelayedNetwork(3, d) as n:
        _start_echo(n, 1)
        _start_echo(n, 2)
        near = _median(_ping(n, 0, 1, count=5))
        far = _median(_ping(n, 0, 2, count=5))
    print(f"RTT 10 ms pair {near:.1f} ms, 30 ms pair {far:.1f} ms")
    assert 19 <= near <= 40
    assert 59 <= far <= 100


def test_teardown_even_on_failure():
    names: list[str] = []
    procs: list[subprocess.Popen] = []
    with pytest.raises(RuntimeError, match="boom"):
        with DelayedNetwork(3, DELAY_MS, hostnames=["a", "b", "c"]) as n:
            names = [n.router_ns, *(n.netns(i) for i in range(3))]
            assert sorted(n.namespaces_exist()) == sorted(names)
            n.expose(0, 7300)
            procs = [n.popen(i, ["sleep", "300"]) for i in range(3)]
            # a grandchild that left popen's process group: found via `ip netns pids`
            sh = n.popen(1, ["sh", "-c", "setsid sleep 300 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
            procs.append(sh)
            escaped = int(sh.stdout.readline())
            workdir = n.workdir
            relay = next(iter(n._relays.values()))
            raise RuntimeError("boom")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for ns in names:
        assert ns not in listed
        assert not os.path.exists(f"/etc/netns/{ns}")
    for p in [*procs, relay]:
        assert p.poll() is not None
    assert not os.path.exists(f"/proc/{escaped}") or "Z" in open(f"/proc/{escaped}/stat").read().split()[2]
    assert workdir is not None and not workdir.exists()
    assert n.namespaces_exist() == []
    n.close()  # idempotent


def test_not_started_is_an_error():
    n = DelayedNetwork(2, 5)
    with pytest.raises(RuntimeError, match="not started"):
        n.popen(0, ["true"])
    with pytest.raises(ValueError):
        DelayedNetwork(2, [[1, 2, 3]])


def test_setup_time_is_small():
    t = time.monotonic()
    with DelayedNetwork(3, DELAY_MS) as n:
        n.expose(0, 7400)
    assert time.monotonic() - t < 10
