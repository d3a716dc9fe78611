"""A deployment CA and one certificate per identity (organization, coordinator, client).

A node's identity is its certificate: the subject common name is the identity name and a
DNS subjectAltName carries the same name, so a TLS client that connects with that name as
the target (grpc.ssl_target_name_override) verifies it reached exactly that organization.

Each certificate also carries its role (ROLES) as its organizational unit, checked on every
RPC next to the name (transport/tls.py `caller_role`): a client's certificate cannot act as a
node or a coordinator, whatever its name. Usages follow the role: nodes and the coordinator
serve and call (server and client auth), clients only call (client auth). Loopback SANs
(localhost, 127.0.0.1) only when asked for (`--loopback`): the demo and tests connect by name
anyway (tls.secure_channel), so no certificate needs them outside a localhost deployment.

The CA key lives in <out>/ca/ca.key (a 0700 folder), apart from the identities' material:
a node needs ca.pem and its own .pem/.key, never the CA key. Private keys are created 0600
from the start (never written first and chmod'ed after).
"""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from pathlib import Path
from typing import Collection

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NAME_RULE = "lowercase letters, digits and '-', 1-63 characters, starting with a letter or digit"
NODE, COORDINATOR, CLIENT = "node", "coordinator", "client"
ROLES = (NODE, COORDINATOR, CLIENT)
CA_KEY = Path("ca") / "ca.key"     # relative to the certificate folder


def valid_identity(name: str) -> bool:
    import re

    return bool(re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name))


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by the owner only, atomically: a fresh 0600 file (O_EXCL,
    so nothing else's permissions are inherited), then renamed over `path`. No moment exists in
    which the key is on disk with wider permissions, or half written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def create_ca(out: Path, common_name: str = "Parley deployment CA", days: int = 825) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _ca_folder(out)
    _write_key(out / CA_KEY, key)
    (out / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _ca_folder(out: Path) -> None:
    (out / CA_KEY).parent.mkdir(mode=0o700, exist_ok=True)
    (out / CA_KEY).parent.chmod(0o700)


def load_ca(out: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    old = out / "ca.key"
    if old.exists() and not (out / CA_KEY).exists():
        # a folder made before the CA key moved apart: move it out of the identities' way
        _ca_folder(out)
        os.replace(old, out / CA_KEY)
    cert = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((out / CA_KEY).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{out / CA_KEY}: not an EC private key")
    return cert, key


def certificate_role(cert: x509.Certificate) -> str | None:
    """The role a certificate of this deployment carries (its organizational unit), or None."""
    units = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    return units[0] if len(units) == 1 and units[0] in ROLES else None


def _usages(role: str) -> list[x509.ObjectIdentifier]:
    if role == CLIENT:
        return [ExtendedKeyUsageOID.CLIENT_AUTH]
    # nodes serve peers, the coordinator and clients; the coordinator serves operators
    return [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def issue(out: Path, identity: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
          days: int = 825, not_before: dt.datetime | None = None, role: str = NODE, loopback: bool = False) -> None:
    """Write <identity>.pem and <identity>.key: a certificate of `role` (usages by role), with
    the identity as its DNS SAN, and localhost/127.0.0.1 only if `loopback`."""
    if not valid_identity(identity):
        raise ValueError(f"identity {identity!r} is not a valid name ({NAME_RULE})")
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    sans: list[x509.GeneralName] = [x509.DNSName(identity)]
    if loopback:
        sans += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, identity),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage(_usages(role)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    _write_key(out / f"{identity}.key", key)   # the key first: a .pem never names a missing key
    (out / f"{identity}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def role_of(identity: str, nodes: Collection[str], coordinators: Collection[str] = ("coordinator",)) -> str:
    return NODE if identity in nodes else COORDINATOR if identity in coordinators else CLIENT


def ensure(out: Path, identities: list[str], nodes: Collection[str] = (),
           coordinators: Collection[str] = ("coordinator",), loopback: bool = False) -> list[str]:
    """Create the CA if missing and a certificate for each identity that lacks one, or whose
    certificate carries another role (a folder from before roles); returns the new ones.
    Roles: the names in `nodes` are nodes, those in `coordinators` coordinators, the rest clients."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "ca.pem").exists():
        ca_cert, ca_key = load_ca(out)
    else:
        ca_cert, ca_key = create_ca(out)
    created = []
    for identity in sorted(set(identities)):
        role = role_of(identity, nodes, coordinators)
        pem = out / f"{identity}.pem"
        if not pem.exists() or certificate_role(x509.load_pem_x509_certificate(pem.read_bytes())) != role:
            issue(out, identity, ca_cert, ca_key, role=role, loopback=loopback)
            created.append(identity)
    return created


def identities_in_scenarios(folder: Path) -> tuple[list[str], list[str]]:
    """Every party, recipient and input client named by the scenario files, plus the coordinator;
    and which of them are nodes (the parties, compute or input-only)."""
    from .computation.scenario import load_scenario

    names, nodes = {"coordinator"}, set()
    for path in sorted(folder.glob("*.yaml")):
        sc = load_scenario(path)
        names |= sc.identities()
        nodes |= set(sc.parties)
    return sorted(names), sorted(nodes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpcnode.certs",
                                     description="Create a local deployment CA and one certificate per identity.")
    parser.add_argument("--out", type=Path, default=Path("deploy/certs"), help="folder for ca.pem and <name>.pem/.key")
    parser.add_argument("--orgs-from", type=Path, help="scenario folder: issue certificates for every identity named there")
    parser.add_argument("--nodes", nargs="*", default=[], metavar="NAME",
                        help="identities that run a node (role node: server and client auth); the parties of "
                             "--orgs-from are nodes too")
    parser.add_argument("--loopback", action="store_true",
                        help="add localhost and 127.0.0.1 SANs (a deployment on one machine, like the demo)")
    parser.add_argument("identities", nargs="*",
                        help="extra identities to issue certificates for: 'coordinator' is the coordinator, the rest "
                             "are clients (operators, recipients, bidders, voters) unless listed in --nodes")
    args = parser.parse_args(argv)
    names, nodes = list(args.identities) + list(args.nodes), list(args.nodes)
    if args.orgs_from:
        try:
            found, parties = identities_in_scenarios(args.orgs_from)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        names += found
        nodes += parties
    try:
        created = ensure(args.out, names, nodes=nodes, loopback=args.loopback)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"certificates in {args.out}: {len(names)} identities, {len(created)} new")
    return 0


if __name__ == "__main__":
    sys.exit(main())
