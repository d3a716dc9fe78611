"""What a coordinator cannot do with tree models (computation/models.py, mpcnode/models.py): every
circuit here is one a lying coordinator could send; the nodes' validation or their model checks
refuse it, naming the rule."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mpcnode.circuit import CircuitError, validate
from mpcnode.computation.models import query_charges
from mpcnode.computation.scenario import parse_scenario_text
from mpcnode.computation.spec import Computation
from mpcnode.errors import Denied
from mpcnode.models import ModelJobs
from mpcnode.store import ShareStore
from parley.v1 import circuit_pb2 as cpb

PARTIES = ["hosp", "lab", "auth"]
MODEL_YAML = """
name: m
kind: model
parties: [hosp, lab, auth]
protocol: replicated3
owner: hosp
dataset: model-file
model_id: m-v1
shape: {trees: 2, depth: 2, features: 3, library: xgboost, kind: binary}
grants: {clinic: 10}
"""


def predict_yaml(**extra: object) -> str:
    fields = {"name": "p", "kind": "predict", "parties": "[hosp, lab, auth]", "protocol": "replicated3",
              "model": "m.yaml", "querier": "clinic", "queries": 4, **extra}
    return "\n".join(f"{k}: {v}" for k, v in fields.items()) + "\n"


@pytest.fixture
def scenarios(tmp_path: Path):
    (tmp_path / "m.yaml").write_text(MODEL_YAML)
    model = parse_scenario_text(MODEL_YAML, tmp_path / "m.yaml")
    predict = parse_scenario_text(predict_yaml(), tmp_path / "p.yaml")
    return model, predict, tmp_path


def refused(circuit: cpb.Circuit, match: str, protocol: str = "replicated3", parties=PARTIES) -> None:
    with pytest.raises(CircuitError, match=match):
        validate(circuit, parties, protocol)


def test_the_shipped_builds_validate(scenarios) -> None:
    model, predict, _ = scenarios
    for sc in (model, predict):
        validate(sc.build(), PARTIES, "replicated3")


def test_a_model_is_never_opened_nor_computed_on(scenarios) -> None:
    _, predict, _ = scenarios
    c = predict.build()
    c.outputs[0].value = "model"
    refused(c, "only be the model of a predict op|never an output")
    c = predict.build()
    c.ops.add(out="leak", kind=cpb.OP_SUM, args=["model"])
    c.outputs[0].value = "leak"
    refused(c, "a model may only be the model of a predict op")
    c = predict.build()
    c.ops[0].args[:] = ["queries", "model"]        # the model passed as the queries
    refused(c, "a model may only be the model of a predict op")


def test_a_kept_model_feeds_nothing_and_a_model_job_opens_nothing(scenarios) -> None:
    model, _, _ = scenarios
    c = model.build()
    c.outputs.add(name="leak", value="model", recipients=["clinic"])
    refused(c, "never an output|opens nothing")
    c = model.build()
    c.ops.add(out="s", kind=cpb.OP_SUM, args=["model"])
    c.outputs.add(name="s", value="s", recipients=["clinic"])
    refused(c, "a model may only be the model of a predict op")


def test_predict_runs_on_replicated3_only_and_on_checked_query_keys(scenarios) -> None:
    _, predict, _ = scenarios
    refused(predict.build(), "tree models run on the replicated3 engine", protocol="shamir")
    c = predict.build()
    c.inputs[1].hi = 2**40                            # keys beyond the comparisons' range
    refused(c, "query keys are declared within")
    c = predict.build()
    c.inputs[1].length = 4 * 3 + 1
    refused(c, "3 keys per query")
    c = predict.build()
    del c.inputs[0].model.tree_class[:]                # a shape that does not hold together
    refused(c, "tree_class")
    c = predict.build()
    c.inputs[0].length += 1
    refused(c, "is not the model's")
    c = predict.build()
    c.ops[0].ints[:] = [1]                             # probabilities of a model with too few fraction bits
    c.inputs[0].model.fraction_bits = 17
    refused(c, "probabilities need a model with at least 18 fraction bits")


def test_tree_models_stay_on_the_64_bit_ring_and_probabilities_count_in_the_leak_budget(scenarios) -> None:
    _, predict, _ = scenarios
    c = predict.build()
    c.ring_bits = 128
    refused(c, "runs on the 64-bit ring")
    c = predict.build()
    c.inputs.add(name="x", source=cpb.INPUT_SOURCE_CLIENTS, clients=["clinic"], length=1, lo=0, hi=10)
    c.ops.add(out="t", kind=cpb.OP_TRUNC, args=["x"], ints=[1])
    c.outputs.add(name="t", value="t", recipients=["clinic"])
    refused(c, "runs on the 64-bit ring")
    from mpcnode.computation import ranges
    c = predict.build()
    assert ranges.analysis(c, "replicated3").leak_bits == float("-inf")        # margins truncate nothing
    c.ops[0].ints[:] = [1]
    small = ranges.analysis(c, "replicated3").leak_bits
    assert -70 < small < -40
    big = predict.build()
    big.ops[0].ints[:] = [1]
    big.inputs[1].length = 3 * 2**25                   # 2^25 queries' probabilities in one job
    refused(big, "could leak more than 2\\^-40")


def test_queries_of_an_input_only_party_are_refused(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MODEL_YAML)
    text = predict_yaml(parties="[hosp, lab, auth, clinic-org]", compute="[hosp, lab, auth]", querier="clinic-org")
    with pytest.raises(Exception, match="input-only party's queries"):
        parse_scenario_text(text, tmp_path / "p.yaml")


def test_the_grants_are_part_of_what_the_owner_approves(scenarios) -> None:
    model, _, _ = scenarios
    comp = model.computation()
    c = cpb.Circuit()
    c.CopyFrom(comp.circuit)
    c.keep[0].grants[0].queries = 10**9
    other = Computation(c, comp.parties, comp.threshold, comp.protocol, comp.dropouts)
    assert other.fingerprint() != comp.fingerprint()


def test_a_prediction_is_only_ever_an_output_and_its_recipients_are_charged(scenarios) -> None:
    _, predict, _ = scenarios
    c = predict.build()
    assert query_charges(c) == {("m-v1", "clinic"): 4}
    c.outputs.add(name="again", value="predictions", recipients=["friend", "clinic"])
    validate(c, PARTIES, "replicated3")
    assert query_charges(c) == {("m-v1", "clinic"): 8, ("m-v1", "friend"): 4}
    # computed on (a failure or an uncharged value could say something about the model): refused
    c = predict.build()
    c.ops.add(out="total", kind=cpb.OP_SUM, args=["predictions"])
    c.outputs[0].value = "total"
    refused(c, "a prediction is only ever an output")
    # evaluated and released to nobody: refused, not run uncharged
    c = predict.build()
    c.ops.add(out="other", kind=cpb.OP_SUM, args=["queries"])
    c.outputs[0].value = "other"
    refused(c, "its predictions must be an output")


def test_a_node_refuses_an_unknown_deleted_or_misdeclared_model_and_charges_all_or_nothing(scenarios) -> None:
    model, predict, tmp_path = scenarios
    store = ShareStore(tmp_path / "node" / "shares.sqlite3")
    jobs = ModelJobs(store, "lab")
    c = predict.build()
    with pytest.raises(Denied, match="model m-v1 is not kept on lab"):
        jobs.check(c)
    from mpcnode.computation.models import shape_of
    shape = shape_of(c.inputs[0].model)
    share = np.zeros((shape.total, 2), dtype=np.uint64)
    store.transaction(lambda conn: ShareStore.put_model_in(conn, "m-v1", "hosp", shape.to_json(), share,
                                                           [("clinic", 6)]))
    with pytest.raises(Denied, match="friend may not make 4 more queries \\(no grant\\)"):
        jobs.check(_with_recipients(c, ["clinic", "friend"]))       # friend has no grant
    # all or nothing: clinic's queries are not taken when friend's charge fails
    with pytest.raises(Denied, match="friend may not make 4 more queries \\(no grant\\)"):
        jobs.take("j0", _with_recipients(c, ["clinic", "friend"]))
    assert store.model_grant("m-v1", "clinic") == (0, 6)
    jobs.check(c)
    # kept from an input-only owner (put_model_in's default: not range-checked): no probabilities
    prob = predict.build()
    prob.ops[0].ints[:] = [1]
    with pytest.raises(Denied, match="shared by an input-only party, which nothing range-checks"):
        jobs.check(prob)
    assert set(jobs.take("j1", c)) == {"model"}
    assert store.model_grant("m-v1", "clinic") == (4, 6)
    with pytest.raises(Denied, match="2 of its 6 left"):
        jobs.check(c)
    lie = predict.build()
    lie.inputs[0].owner = "lab"
    with pytest.raises(Denied, match="owned by hosp, not lab"):
        jobs.check(lie)
    lie = predict.build()
    lie.inputs[0].model.fraction_bits = 20
    with pytest.raises(Denied, match="does not have the public shape"):
        jobs.check(lie)
    with pytest.raises(Denied, match="only hosp, the owner of model m-v1, may delete it"):
        jobs.delete("lab", "m-v1")
    assert jobs.delete("hosp", "m-v1") and not jobs.delete("hosp", "m-v1")
    with pytest.raises(Denied, match="was deleted"):
        jobs.check(c)
    events = [e[1] for e in store.audit_log()]
    assert {"model-query", "model-query-refused", "model-owner-refused", "model-deleted"} <= set(events)
    store.close()


def _with_recipients(c: cpb.Circuit, recipients: list[str]) -> cpb.Circuit:
    out = cpb.Circuit()
    out.CopyFrom(c)
    out.outputs[0].recipients[:] = recipients
    return out


def test_the_owner_node_reads_its_model_file_as_declared(tmp_path) -> None:
    """models.model_input: a LightGBM multiclass text model against the shape `python -m
    mpcnode.trees` prints; another declared shape, or leaves beyond the fraction bits, refused with
    a public reason that names fields, never the file's own figures."""
    pytest.importorskip("lightgbm")
    from mpcnode.computation.models import MODEL_VALUE_BOUND
    from mpcnode.computation.predict import ShapeSpec
    from mpcnode.inputs import InputError, load_node_inputs
    from mpcnode.protocols.trees import model_vector
    from mpcnode.trees import load_model
    from tests.unit.trees_models import data, train_lightgbm
    x, y = data("wine")
    path = train_lightgbm("multiclass", x, y, tmp_path / "m", trees=2, leaves=5)
    forest = load_model(path, depth=4)
    spec = ShapeSpec(trees=forest.trees, depth=4, features=forest.features, classes=3, library="lightgbm",
                     kind="multiclass", feature_names=forest.feature_names)

    def decl(**changes) -> cpb.InputDecl:
        s = spec.model_copy(update=changes)
        from mpcnode.computation.models import shape_of
        return cpb.InputDecl(name="model", owner="hosp", source=cpb.INPUT_SOURCE_NODE, dataset="m",
                             length=shape_of(s.tree_model()).total, lo=-MODEL_VALUE_BOUND, hi=MODEL_VALUE_BOUND,
                             model=s.tree_model())

    got = load_node_inputs(path, [decl()], "m")["model"]
    assert np.array_equal(got, model_vector(forest, 32))
    with pytest.raises(InputError, match=r"does not have the declared public shape \(trees, tree_class differ\)") as err:
        load_node_inputs(path, [decl(trees=forest.trees + 3)], "m")
    assert str(path) not in str(err.value) and str(path) in err.value.detail
    with pytest.raises(InputError, match=r"\(feature_names differ\)"):
        load_node_inputs(path, [decl(feature_names=[f"v{i}" for i in range(forest.features)])], "m")
    text = path.read_text().splitlines()
    i = next(n for n, line in enumerate(text) if line.startswith("leaf_value="))
    text[i] = "leaf_value=" + " ".join("1e30" for _ in text[i].split("=", 1)[1].split())
    (tmp_path / "huge.txt").write_text("\n".join(text) + "\n")
    with pytest.raises(InputError, match="input model: the model's leaves do not fit 32 fraction bits") as err:
        load_node_inputs(tmp_path / "huge.txt", [decl()], "m")
    assert "1e30" not in str(err.value) and "e+30" not in str(err.value)
    (tmp_path / "junk.json").write_text("{not a model")
    with pytest.raises(InputError, match="dataset 'm': the model file cannot be used"):
        load_node_inputs(tmp_path / "junk.json", [decl()], "m")


def test_the_querier_client_reads_the_predict_op_not_descriptions(scenarios) -> None:
    """mpcnode/predictclient.prediction_parts: the inputs and output come from the predict op; a
    document whose queries go to another listed client, or whose predictions go to others, is
    refused before anything is sent."""
    from mpcnode.client import SubmitError
    from mpcnode.predictclient import prediction_parts
    _, predict, _ = scenarios
    doc = predict.computation().document()
    model, queries, out, mode = prediction_parts(doc, "clinic")
    assert (model["name"], queries["name"], out["name"], mode) == ("model", "queries", "predictions", "margin")
    with pytest.raises(SubmitError, match="does not list nosy as its only client"):
        prediction_parts(doc, "nosy")
    # a decoy client input listed first and the predictions to someone else: refused, not guessed
    c = predict.build()
    c.inputs.insert(0, cpb.InputDecl(name="decoy", source=cpb.INPUT_SOURCE_CLIENTS, clients=["clinic"], length=12,
                                     lo=0, hi=1))
    c.outputs[0].recipients[:] = ["friend"]
    doc = Computation(c, ("hosp", "lab", "auth"), 1, "replicated3", "none").document()
    with pytest.raises(SubmitError, match="clinic is not a recipient"):
        prediction_parts(doc, "clinic")


async def test_a_carried_column_named_like_a_prediction_is_refused_before_sending(tmp_path) -> None:
    from unittest import mock
    from mpcnode import predictclient
    from mpcnode.computation.spec import clients_digest
    from mpcnode.trees.table import TableError
    (tmp_path / "q.csv").write_text("margin,a,b,c\n1,2,3,4\n")
    doc = {"ops": [{"op": "predict", "args": ["m", "q"], "out": "p", "ints": ["0"]}],
           "inputs": [{"name": "m", "source": "model", "model": {"features": 3, "classes": 1, "library": "xgboost",
                                                                  "feature_names": ["a", "b", "c"]}},
                      {"name": "q", "source": "clients", "length": 3,
                       "clients": {"count": 1, "sha256": clients_digest(["clinic"])}}],
           "outputs": [{"name": "p", "value": "p", "recipients": ["clinic"]}]}
    view = mock.Mock(document=doc, fingerprint="f" * 64)
    sent = mock.AsyncMock()
    with mock.patch.object(predictclient, "inspect", mock.AsyncMock(return_value=view)), \
            mock.patch.object(predictclient, "own_identity", return_value="clinic"), \
            mock.patch.object(predictclient, "submit", sent):
        with pytest.raises(TableError, match="carried column 'margin' has the name of a prediction column"):
            await predictclient.predict("j", tmp_path / "q.csv", None, {}, None, "f" * 64, carry=["margin"])
    sent.assert_not_called()
