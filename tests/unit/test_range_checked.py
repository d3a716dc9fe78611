"""Which values a cheaper, range-dependent protocol may be used on (circuit.range_checked).

Shamir's bounded comparison masks the operands statistically only within their declared range: an
input-only organization that changed its node could send a value outside it and probe an honest
bid. So only values computed from compute parties' range-checked node inputs, client inputs
(whose out-of-range rows are excluded inside MPC before the circuit runs) and constants, and
comparison or validity bits, count as checked; everything else is compared with the exact
protocol. The dry run (the real job code) shows which protocol ran by its traffic.
"""
from __future__ import annotations

from mpcnode.circuit import range_checked, validate
from mpcnode.computation.builder import CircuitBuilder
from mpcnode.computation.cost import estimate
from mpcnode.computation.spec import Computation
from mpcnode.engines.shamir import ShamirEngine
from mpcnode.exchange import MemoryNetwork
from mpcnode.protocols import compare

PARTIES = ("alpha", "bravo", "charlie")


def test_only_compute_parties_node_inputs_client_inputs_and_bits_are_checked() -> None:
    b = CircuitBuilder("mixed")
    node = b.input("node", "alpha", 4, 0, 100)
    other = b.input("other", "delta", 4, 0, 100)           # an input-only organization's
    client = b.client_input("bids", ["c1", "c2"], 1, 0, 100)
    s_node = b.sum(node)
    s_other = b.sum(other)
    mixed = b.add(s_node, b.sum(client))
    bit = b.lt(s_other, s_node, 12)
    picked = b.select(bit, s_node, s_other)
    b.output("o", b.concat([s_node, s_other, mixed, bit, picked]), ["alpha"])
    c = b.build()
    checked = range_checked(c, PARTIES)
    assert {"node", "bids", s_node.name, mixed.name, bit.name} <= checked
    assert not checked & {"other", s_other.name, picked.name}
    assert validate(c, list(PARTIES), input_parties=["delta"]).checked == checked


def _bid_comparison(source: str) -> Computation:
    b = CircuitBuilder("cmp")
    if source == "client":
        x = b.client_input("x", [f"c{i}" for i in range(20)], 1, 0, 100)
    else:
        x = b.input("x", "alpha" if source == "node" else "delta", 20, 0, 100)
    y = b.input("y", "bravo", 20, 0, 100)
    b.output("lt", b.sum(b.lt(x, y, 8)), ["alpha"])
    return Computation(b.build(), PARTIES, 1, "shamir", "within-threshold",
                       input_parties=("delta",) if source == "input-only" else ())


def _comparison_bytes(source: str) -> int:
    return sum(p.bytes_sent for p in estimate(_bid_comparison(source)).parties)


def test_an_input_only_value_is_compared_with_the_exact_protocol_a_checked_one_with_the_bounded() -> None:
    assert compare.max_bounded_bit_length(1) >= 8            # 8 bits would take the bounded path
    checked = _comparison_bytes("node")
    unchecked = _comparison_bytes("input-only")
    # exact: 147 products a comparison at n = 3; bounded at k = 8: 20 (compare.py's cost table)
    assert unchecked > 3 * checked


def test_the_shamir_engine_names_a_bit_length_above_its_bounded_path() -> None:
    for t, n in ((1, 3), (2, 5), (3, 7)):
        e = ShamirEngine(MemoryNetwork(n).exchange(0), t)
        bound = compare.max_bounded_bit_length(t)
        assert e.exact_bit_length(4) == bound + 1
        assert e.exact_bit_length(40) == 40
