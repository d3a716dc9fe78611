"""Signed receipts (mpcnode/receipts.py): a receipt verifies only when the node it names signed
exactly these fields with its node certificate from this deployment's CA."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mpcnode import certs as certmod
from mpcnode import receipts
from mpcnode.transport.tls import TlsMaterial
from parley.v1 import node_pb2


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("receipt-certs")
    certmod.ensure(out, ["north", "south", "voter-1"], nodes=["north", "south"])
    return out


def signed(folder: Path, node: str = "north", signer: str | None = None) -> node_pb2.Receipt:
    tls = TlsMaterial.for_identity(folder, signer or node)
    r = node_pb2.Receipt(node=node, job_id="job-1", input="ballots", client="voter-1",
                         share_sha256=hashlib.sha256(b"share").digest())
    return receipts.sign(r, tls.key, tls.cert)


def test_a_receipt_signed_by_the_node_it_names_verifies(deployment: Path) -> None:
    assert receipts.verify(signed(deployment), (deployment / "ca.pem").read_bytes()) is None


@pytest.mark.parametrize("field, value", [("node", "south"), ("job_id", "job-2"), ("input", "bids"),
                                          ("client", "voter-2"), ("share_sha256", b"\0" * 32)])
def test_any_changed_field_breaks_the_signature(deployment: Path, field: str, value) -> None:
    r = signed(deployment)
    setattr(r, field, value)
    assert receipts.verify(r, (deployment / "ca.pem").read_bytes()) is not None


def test_a_receipt_signed_by_another_node_or_a_client_does_not_verify(deployment: Path) -> None:
    ca = (deployment / "ca.pem").read_bytes()
    assert "not the node certificate of 'north'" in receipts.verify(signed(deployment, "north", "south"), ca)
    assert "not the node certificate of 'voter-1'" in receipts.verify(signed(deployment, "voter-1"), ca)


def test_a_receipt_from_another_deployment_does_not_verify(deployment: Path, tmp_path: Path) -> None:
    certmod.ensure(tmp_path, ["north"], nodes=["north"])        # another CA, a node of the same name
    problem = receipts.verify(signed(tmp_path), (deployment / "ca.pem").read_bytes())
    assert problem == "the receipt's certificate is not issued by this deployment's CA"


def test_an_unsigned_receipt_does_not_verify(deployment: Path) -> None:
    r = node_pb2.Receipt(node="north", job_id="job-1", input="ballots", client="voter-1")
    assert receipts.verify(r, (deployment / "ca.pem").read_bytes()) is not None
