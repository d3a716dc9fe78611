"""Key hygiene and roles (issue 12): private keys 0600 from the moment they exist, the CA key
apart from identity material, usages and SANs by role, the share store private to the node's
account, and no input client accepted unless the policy names it (never the coordinator)."""
from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from mpcnode import certs as certmod
from mpcnode.admission import Admission
from mpcnode.config import NodeConfig
from mpcnode.computation.builder import CircuitBuilder
from mpcnode.errors import Denied
from mpcnode.store import ShareStore

REPO = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cert(folder: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((folder / f"{name}.pem").read_bytes())


def test_keys_are_0600_and_the_ca_key_lives_apart(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    old = os.umask(0)   # a permissive umask must not widen a key, even for an instant (O_EXCL + mode)
    try:
        certmod.ensure(out, ["alice", "coordinator", "voter-1"], nodes=["alice"])
    finally:
        os.umask(old)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["ca", "ca.pem", "alice.pem", "alice.key", "coordinator.pem", "coordinator.key", "voter-1.pem", "voter-1.key"])
    assert not (out / "ca.key").exists()                      # never beside identity keys
    assert mode(out / "ca") == 0o700 and mode(out / "ca" / "ca.key") == 0o600
    for name in ("alice", "coordinator", "voter-1"):
        assert mode(out / f"{name}.key") == 0o600
    assert not list(out.glob(".*.tmp"))                      # nothing half written left behind


def test_a_folder_with_the_ca_key_beside_the_identities_is_moved_apart(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    certmod.ensure(out, ["alice"], nodes=["alice"])
    os.replace(out / "ca" / "ca.key", out / "ca.key")        # as every folder made before this change
    certmod.ensure(out, ["bob"], nodes=["bob"])
    assert not (out / "ca.key").exists() and mode(out / "ca" / "ca.key") == 0o600


def test_usages_sans_and_role_follow_the_role(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    certmod.ensure(out, ["alice", "coordinator", "operator"], nodes=["alice"])
    usages = {n: list(cert(out, n).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
              for n in ("alice", "coordinator", "operator")}
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert usages == {"alice": both, "coordinator": both, "operator": [ExtendedKeyUsageOID.CLIENT_AUTH]}
    assert {n: certmod.certificate_role(cert(out, n)) for n in usages} == {
        "alice": "node", "coordinator": "coordinator", "operator": "client"}
    sans = cert(out, "alice").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["alice"] and not sans.get_values_for_type(x509.IPAddress)
    loop = tmp_path / "loop"
    certmod.ensure(loop, ["alice"], nodes=["alice"], loopback=True)
    sans = cert(loop, "alice").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["alice", "localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_a_certificate_of_another_role_is_reissued(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    certmod.ensure(out, ["alice"])                           # not named a node: a client
    assert certmod.certificate_role(cert(out, "alice")) == "client"
    assert certmod.ensure(out, ["alice"], nodes=["alice"]) == ["alice"]
    assert certmod.certificate_role(cert(out, "alice")) == "node"
    assert certmod.ensure(out, ["alice"], nodes=["alice"]) == []


def _start_node(tmp_path: Path, data_dir: str) -> tuple[Path, subprocess.CompletedProcess]:
    """Start `python -m mpcnode` as org-a with the certificates in tmp_path/certs; (config, run)."""
    cfg = {"organization": "org-a", "listen": "127.0.0.1:0", "peers": {}, "data_dir": data_dir,
           "tls": {"ca": "certs/ca.pem", "cert": "certs/org-a.pem", "key": "certs/org-a.key"}}
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, subprocess.run([sys.executable, "-m", "mpcnode", "--config", str(path)], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60,
                                env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_the_node_refuses_to_start_with_a_client_certificate(tmp_path: Path) -> None:
    certmod.ensure(tmp_path / "certs", ["org-a"])            # a client certificate named org-a
    path, proc = _start_node(tmp_path, "data")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (f"error: {path}: tls.cert: {tmp_path / 'certs' / 'org-a.pem'} is a client certificate; "
                           "this needs a node certificate (python -m mpcnode.certs)\n")


def test_the_share_store_is_private_to_the_node(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = ShareStore(tmp_path / "data" / "shares.sqlite3")
        store.close()
    finally:
        os.umask(old)
    assert mode(tmp_path / "data") == 0o700
    files = list((tmp_path / "data").iterdir())
    assert files and all(mode(f) == 0o600 for f in files), [(f.name, oct(mode(f))) for f in files]


def _admission(**policy: object) -> Admission:
    cfg = NodeConfig.model_validate({"organization": "org-a", "listen": "127.0.0.1:1", "peers": {}, "data_dir": "d",
                                     "tls": {"ca": "a", "cert": "b", "key": "c"}, "policy": policy})
    return Admission(cfg, [], lambda fp: 0)


def _circuit(clients: list[str]):
    b = CircuitBuilder("bids")
    b.output("n", b.sum(b.client_input("bids", clients, 1, 0, 9)), ["org-a"])
    return b.build()


def test_input_clients_are_none_by_default_and_never_the_coordinator() -> None:
    with pytest.raises(Denied, match="does not accept input from bidder-1"):
        _admission().check_clients(_circuit(["bidder-1", "bidder-2"]))
    _admission(input_clients=["bidder-*"]).check_clients(_circuit(["bidder-1", "bidder-2"]))
    _admission(input_clients=["bidder-1", "bidder-2"]).check_clients(_circuit(["bidder-1", "bidder-2"]))
    with pytest.raises(Denied, match="does not accept input from voter-1"):
        _admission(input_clients=["bidder-*"]).check_clients(_circuit(["bidder-1", "voter-1"]))
    # the coordinator listing itself as a bidder is refused, even under a rule that would match it
    for rules in (["*"], ["coord*"], ["coordinator"]):
        with pytest.raises(Denied, match="does not accept input from its coordinator coordinator"):
            _admission(input_clients=rules).check_clients(_circuit(["bidder-1", "coordinator"]))


def test_the_node_reports_a_data_dir_it_cannot_use_in_one_line(tmp_path: Path) -> None:
    certmod.ensure(tmp_path / "certs", ["org-a"], nodes=["org-a"])
    (tmp_path / "a-file").write_text("not a folder")
    path, proc = _start_node(tmp_path, "a-file/data")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {path}: data_dir: cannot open the share store in {tmp_path / 'a-file' / 'data'}")
    assert proc.stderr.count("\n") == 1
