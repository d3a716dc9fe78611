"""The recipient's checks (mpcnode/recipient.py) without nodes: the answers a fetch would collect
are built here (real shares, a real computation document) and changed the way a lying node
would. The same checks against real node processes: tests/integration/test_output_integrity.py."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from mpcnode import recipient, sharing
from mpcnode.computation.builder import CircuitBuilder
from mpcnode.computation.spec import Computation
from mpcnode.transport import serde
from parley.v1 import circuit_pb2 as cpb
from parley.v1 import node_pb2

VALUES = np.array([0, 1, -1, 12345, -(1 << 59) + 1, (1 << 59) - 1], dtype=np.int64)
BIDDERS = ["bidder-a", "bidder-b", "bidder-c", "bidder-d"]


def _values_circuit(length: int) -> cpb.Circuit:
    b = CircuitBuilder("unit-values")
    x = b.input("x", "n0", length, -(1 << 59) + 1, (1 << 59) - 1)
    b.output("o", x, ["r"])
    return b.build()


def _auction_circuit(reveal: bool = False) -> cpb.Circuit:
    b = CircuitBuilder("unit-auction")
    bids = b.client_input("bids", BIDDERS, 1, 0, 1000)
    top = b.top_two(bids, 11, tagged=True)
    b.output("o", b.concat([top[1], b.add(top[0], 1), top[2]]), ["r"],
             description=json.dumps({"render": "auction", "type": "second-price"}), reveal_participants=reveal)
    return b.build()


def _answers(protocol: str, shares: list[np.ndarray], t: int, circuit: cpb.Circuit | None = None,
             tag_labels: list[str] | None = None) -> dict[str, node_pb2.OutputShare]:
    """What each of len(shares) honest nodes n0, n1, ... answers for output "o"."""
    parties = [f"n{i}" for i in range(len(shares))]
    comp = Computation(circuit or _values_circuit(len(VALUES)), tuple(parties), t, protocol)
    out = {}
    for i, s in enumerate(shares):
        payload, shape = serde.encode(s)
        out[f"n{i}"] = node_pb2.OutputShare(job_id="j", output="o", node=f"n{i}", party_index=i, share=payload,
                                            shape=shape, threshold=t, party_count=len(shares), protocol=protocol,
                                            spec=comp.canonical(), fingerprint=comp.fingerprint(),
                                            tag_labels=tag_labels or [], description=comp.circuit.outputs[0].description)
    return out


def _check(answers: dict[str, node_pb2.OutputShare | Exception], **kw: object) -> recipient.Result:
    got = {o: a for o, a in answers.items() if not isinstance(a, Exception)}
    problems = {o: str(a) for o, a in answers.items() if isinstance(a, Exception)}
    return recipient.check_answers("j", "o", got, problems, **kw)   # type: ignore[arg-type]


@pytest.mark.parametrize("protocol, n, t", [("shamir", 3, 1), ("shamir", 5, 2), ("replicated3", 3, 1)])
def test_all_nodes_answering_is_a_checked_result(protocol: str, n: int, t: int) -> None:
    res = _check(_answers(protocol, sharing.client_shares(protocol, VALUES, n, t), t))
    assert res.values == VALUES.tolist() and res.checked and res.nodes == [f"n{i}" for i in range(n)]


@pytest.mark.parametrize("protocol, n, t, down", [("shamir", 3, 1, 1), ("shamir", 5, 2, 2), ("replicated3", 3, 1, 1)])
def test_too_few_nodes_fail_closed_unless_accepted_unchecked(protocol: str, n: int, t: int, down: int) -> None:
    answers: dict = _answers(protocol, sharing.client_shares(protocol, VALUES, n, t), t)
    gone = [f"n{i}" for i in range(n - down, n)]
    for org in gone:
        answers[org] = OSError("connection refused")
    with pytest.raises(recipient.FetchError) as err:
        _check(answers)
    assert "missing: " + "; ".join(f"{o}: connection refused" for o in gone) in str(err.value)
    res = _check(answers, accept_unchecked=True)
    assert res.values == VALUES.tolist() and not res.checked


def test_shamir_t_plus_two_of_five_is_checked() -> None:
    answers: dict = _answers("shamir", sharing.client_shares("shamir", VALUES, 5, 1), 1)
    answers["n4"] = answers["n3"] = OSError("down")
    res = _check(answers)       # 3 = t + 2 shares: one more than fixes the polynomial
    assert res.checked and res.values == VALUES.tolist()


def test_even_unchecked_needs_enough_shares() -> None:
    answers: dict = _answers("replicated3", sharing.client_shares("replicated3", VALUES, 3, 1), 1)
    answers["n1"] = answers["n2"] = OSError("down")
    with pytest.raises(recipient.FetchError, match="even an unchecked result needs 2"):
        _check(answers, accept_unchecked=True)


def test_a_changed_replicated3_share_names_the_pair() -> None:
    shares = sharing.client_shares("replicated3", VALUES, 3, 1)
    shares[0] = shares[0].copy()
    shares[0][4, 0] += np.uint64(7)        # component 0: held by n0 (first word) and n2 (second word)
    with pytest.raises(recipient.FetchError) as err:
        _check(_answers("replicated3", shares, 1))
    assert str(err.value) == "output shares from n0 and n2 disagree on a value both hold: one of them is wrong"


def test_a_changed_shamir_share_is_detected_and_named_when_it_can_be() -> None:
    shares = sharing.client_shares("shamir", VALUES, 3, 1)
    shares[1] = sharing.encode("shamir", sharing.to_signed("shamir", shares[1]) + 1)
    with pytest.raises(recipient.FetchError, match=r"inconsistent \(n0, n1, n2\); too few nodes"):
        _check(_answers("shamir", shares, 1))
    shares = sharing.client_shares("shamir", VALUES, 4, 1)
    shares[2] = shares[2].copy()
    shares[2][0] ^= np.uint64(1)
    with pytest.raises(recipient.FetchError, match="output share from n2 is inconsistent"):
        _check(_answers("shamir", shares, 1))


def test_a_node_with_another_document_is_named() -> None:
    answers = _answers("shamir", sharing.client_shares("shamir", VALUES, 4, 1), 1)
    other = _values_circuit(len(VALUES))
    other.outputs[0].description = "a different description"
    comp = Computation(other, ("n0", "n1", "n2", "n3"), 1, "shamir")
    answers["n3"].spec, answers["n3"].fingerprint = comp.canonical(), comp.fingerprint()
    with pytest.raises(recipient.FetchError, match=r"^n3 disagrees with the other answering nodes about the computation"):
        _check(answers)
    # a document changed but sent under the old fingerprint does not hash to it
    answers = _answers("shamir", sharing.client_shares("shamir", VALUES, 3, 1), 1)
    answers["n1"].spec = comp.canonical()
    with pytest.raises(recipient.FetchError, match=r"^n1 sent a computation document that does not hash"):
        _check(answers)
    # no majority: everyone is named
    answers = _answers("replicated3", sharing.client_shares("replicated3", VALUES, 3, 1), 1)
    for k, org in enumerate(["n1", "n2"]):
        c = _values_circuit(len(VALUES))
        c.description = f"variant {k}"
        comp = Computation(c, ("n0", "n1", "n2"), 1, "replicated3")
        answers[org].spec, answers[org].fingerprint = comp.canonical(), comp.fingerprint()
    with pytest.raises(recipient.FetchError, match=r"^n0, n1, n2 disagree with each other \(no majority\)"):
        _check(answers)


def test_fields_that_repeat_the_document_must_match_it() -> None:
    answers = _answers("shamir", sharing.client_shares("shamir", VALUES, 4, 1), 1)
    answers["n2"].description = '{"render": "referendum"}'
    with pytest.raises(recipient.FetchError, match="^n2 sent a threshold, engine, divisor or description"):
        _check(answers)


def test_an_expected_fingerprint_is_enforced() -> None:
    answers = _answers("shamir", sharing.client_shares("shamir", VALUES, 3, 1), 1)
    fp = answers["n0"].fingerprint
    assert _check(answers, fingerprint=fp).fingerprint == fp
    with pytest.raises(recipient.FetchError, match="not the expected 0000"):
        _check(answers, fingerprint="0" * 64)


def test_the_winner_is_named_from_the_approved_list_and_checked() -> None:
    # opened [max, winner + 1, second]; the winner is bidder-c, position 2 in the approved list
    opened = np.array([1, 3, 700], dtype=np.int64)
    shares = sharing.client_shares("replicated3", opened, 3, 1)
    res = _check(_answers("replicated3", shares, 1, _auction_circuit(), BIDDERS))
    assert res.value == {"sold": True, "winner": "bidder-c", "price": 700}
    # one node swaps two names: named
    answers = _answers("replicated3", shares, 1, _auction_circuit(), BIDDERS)
    answers["n1"].tag_labels[:] = ["bidder-a", "bidder-c", "bidder-b", "bidder-d"]
    with pytest.raises(recipient.FetchError, match="^n1 disagrees with the other answering nodes about the winner"):
        _check(answers)
    # all nodes send a list that is not the approved one (its hash is in the document)
    swapped = ["bidder-a", "bidder-c", "bidder-b", "bidder-d"]
    with pytest.raises(recipient.FetchError, match="client list .* is not the approved one"):
        _check(_answers("replicated3", shares, 1, _auction_circuit(), swapped))
    with pytest.raises(recipient.FetchError, match="is not the approved one"):
        _check(_answers("replicated3", shares, 1, _auction_circuit(), []))


@pytest.mark.parametrize("protocol", ["shamir", "replicated3"])
@pytest.mark.parametrize("opened", [[1, 3], [1, 3, 700, 5], [9]])
def test_all_nodes_agreeing_on_the_wrong_count_of_values_is_a_fetch_error(protocol: str, opened: list[int]) -> None:
    # every node sends consistent shares of the same vector, but not the three values an auction opens
    shares = sharing.client_shares(protocol, np.array(opened, dtype=np.int64), 3, 1)
    with pytest.raises(recipient.FetchError,
                       match=rf"^output 'o' \(auction\): expected 3 values, the nodes opened {len(opened)}$"):
        _check(_answers(protocol, shares, 1, _auction_circuit(), BIDDERS))


def _decl(render: dict) -> dict:
    return {"name": "o", "value": "v", "recipients": ["r"], "description": json.dumps(render)}


@pytest.mark.parametrize("render, values, message", [
    ({"render": "auction"}, [], r"\(auction\): expected 3 values, the nodes opened 0$"),
    ({"render": "tally", "options": ["a", "b"]}, [4, 5], r"\(tally\): expected 3 values, the nodes opened 2$"),
    ({"render": "tally", "options": ["a", "b"]}, [4, 5, 0, 1], r"\(tally\): expected 3 values, the nodes opened 4$"),
    ({"render": "winner", "options": ["a", "b"]}, [], r"\(winner\): expected 1 value, the nodes opened 0$"),
    ({"render": "winner", "options": ["a", "b"]}, [1, 2], r"\(winner\): expected 1 value, the nodes opened 2$"),
    ({"render": "winner", "options": ["a", "b"]}, [3], r"\(winner\): expected an option index 0 to 2, .* opened 3$"),
    ({"render": "winner", "options": ["a", "b"]}, [-1], r"\(winner\): expected an option index 0 to 2, .* -1$"),
    ({"render": "referendum"}, [2, 2], r"\(referendum\): expected 1 value, the nodes opened 2$"),
    ({"render": "referendum"}, [3], r"\(referendum\): expected 0, 1 or 2, the nodes opened 3$"),
    ({"render": "tally"}, [1, 2], r"cannot render the 2 values .*KeyError"),   # a document without options
])
def test_render_fails_with_one_fetch_error_line(render: dict, values: list[int], message: str) -> None:
    with pytest.raises(recipient.FetchError, match="^output 'o'.*" + message) as err:
        recipient.render(values, _decl(render))
    assert "\n" not in str(err.value)


def test_render_of_well_formed_values() -> None:
    assert recipient.render([1, 2, 700], _decl({"render": "auction"}), BIDDERS) == \
        {"sold": True, "winner": "bidder-b", "price": 700}
    assert recipient.render([0, 0, 0], _decl({"render": "auction"}), BIDDERS) == {"sold": False}
    assert recipient.render([4, 5, 1], _decl({"render": "tally", "options": ["a", "b"]})) == {"a": 4, "b": 5, "invalid": 1}
    assert recipient.render([2], _decl({"render": "winner", "options": ["a", "b"]})) == {"winner": "b"}
    assert recipient.render([0], _decl({"render": "winner", "options": ["a"], "approval": True})) == \
        {"winner": None, "result": "no votes"}
    assert recipient.render([0], _decl({"render": "referendum"})) == {"passed": False, "result": "no valid ballots"}
    assert recipient.render([7, 8], {"name": "o", "public_divisor": "2"}) == [3.5, 4]


def test_participants_only_where_the_document_reveals_them() -> None:
    shares = sharing.client_shares("shamir", np.array([1, 2, 5], dtype=np.int64), 3, 1)
    answers = _answers("shamir", shares, 1, _auction_circuit(), BIDDERS)
    for a in answers.values():
        a.participants[:] = ["bidder-a", "bidder-b"]
    with pytest.raises(recipient.FetchError, match="sent who took part, which output 'o' does not reveal"):
        _check(answers)
    answers = _answers("shamir", shares, 1, _auction_circuit(reveal=True), BIDDERS)
    for a in answers.values():
        a.participants[:] = ["bidder-a", "bidder-b"]
    assert _check(answers).participants == ["bidder-a", "bidder-b"]
    answers["n2"].participants[:] = ["bidder-a"]
    with pytest.raises(recipient.FetchError, match="^n2 disagrees with the other answering nodes about who took part"):
        _check(answers)


def test_fetch_reports_nodes_that_do_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: dict = _answers("shamir", sharing.client_shares("shamir", VALUES, 3, 1), 1)
    answers["n2"] = OSError("down")

    async def fetch_one(org, address, tls, req, timeout):
        a = answers[org]
        if isinstance(a, Exception):
            raise a
        return a

    monkeypatch.setattr(recipient, "_fetch_one", fetch_one)
    nodes = {org: "x:1" for org in answers}
    with pytest.raises(recipient.FetchError, match="missing: n2: down"):
        asyncio.run(recipient.fetch("j", "o", nodes, None))   # type: ignore[arg-type]
    res = asyncio.run(recipient.fetch("j", "o", nodes, None, accept_unchecked=True))   # type: ignore[arg-type]
    assert res.values == VALUES.tolist() and not res.checked and res.nodes == ["n0", "n1"]
