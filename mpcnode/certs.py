"""A deployment CA and one certificate per identity (organization, coordinator, client).

A node's identity is its certificate: the subject common name is the identity name and a
DNS subjectAltName carries the same name, so a TLS client that connects with that name as
the target (grpc.ssl_target_name_override) verifies it reached exactly that organization.
"""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NAME_RULE = "lowercase letters, digits and '-', 1-63 characters, starting with a letter or digit"


def valid_identity(name: str) -> bool:
    import re

    return bool(re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


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
    (out / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(out / "ca.key", key)
    return cert, key


def load_ca(out: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((out / "ca.key").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def issue(out: Path, identity: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
          days: int = 825, not_before: dt.datetime | None = None) -> None:
    """Write <identity>.pem and <identity>.key, usable as TLS server and client certificate."""
    if not valid_identity(identity):
        raise ValueError(f"identity {identity!r} is not a valid name ({NAME_RULE})")
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, identity)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(identity), x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    (out / f"{identity}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(out / f"{identity}.key", key)


def ensure(out: Path, identities: list[str]) -> list[str]:
    """Create the CA if missing and a certificate for each identity that lacks one; returns the new ones."""
    if (out / "ca.pem").exists():
        ca_cert, ca_key = load_ca(out)
    else:
        ca_cert, ca_key = create_ca(out)
    created = []
    for identity in sorted(set(identities)):
        if not (out / f"{identity}.pem").exists():
            issue(out, identity, ca_cert, ca_key)
            created.append(identity)
    return created


def identities_in_scenarios(folder: Path) -> list[str]:
    """Every party, recipient and input client named by the scenario files, plus the coordinator."""
    from .computation.scenario import load_scenario

    names = {"coordinator"}
    for path in sorted(folder.glob("*.yaml")):
        names |= load_scenario(path).identities()
    return sorted(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpcnode.certs",
                                     description="Create a local deployment CA and one certificate per identity.")
    parser.add_argument("--out", type=Path, default=Path("deploy/certs"), help="folder for ca.pem and <name>.pem/.key")
    parser.add_argument("--orgs-from", type=Path, help="scenario folder: issue certificates for every identity named there")
    parser.add_argument("identities", nargs="*", help="extra identities to issue certificates for")
    args = parser.parse_args(argv)
    names = list(args.identities)
    if args.orgs_from:
        try:
            names += identities_in_scenarios(args.orgs_from)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        created = ensure(args.out, names)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"certificates in {args.out}: {len(names)} identities, {len(created)} new")
    return 0


if __name__ == "__main__":
    sys.exit(main())
