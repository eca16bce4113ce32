"""The Open Inference Protocol v2 REST routes, as KServe's and Triton's clients call them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.serving.conftest import IRIS_FEATURES, IRIS_SCHEMA, Server

Serve = Callable[..., Server]


def test_v2_metadata_and_health(serve: Serve) -> None:
    client = serve("- name: tensors\n  handler: handlers.py:Tensors\n").client
    assert client.get("/v2").json() == {"name": "shipyard", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2/models/tensors").json()["name"] == "tensors"
    assert client.get("/v2/models/tensors/ready").json() == {"name": "tensors", "ready": True}
    missing = client.get("/v2/models/other/ready", headers={"x-request-id": "r-404"})
    assert missing.status_code == 404
    assert "this replica serves 'tensors'" in missing.json()["error"]  # OIP: "error" is a string
    assert missing.headers["x-request-id"] == "r-404"


def test_v2_infer_round_trip(serve: Serve) -> None:
    client = serve("- name: tensors\n  handler: handlers.py:Tensors\n").client
    request = {
        "id": "r1",
        "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}],
        "outputs": [{"name": "doubled"}],
    }
    answer = client.post("/v2/models/tensors/infer", json=request).json()
    assert answer == {
        "model_name": "tensors",
        "id": "r1",
        "outputs": [{"name": "doubled", "shape": [2, 2], "datatype": "FP32", "data": [2.0, 4.0, 6.0, 8.0]}],
    }
    nested = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT64", "data": [[1, 2, 3]]}]}
    out = client.post("/v2/models/tensors/infer", json=nested).json()["outputs"][0]
    assert out == {"name": "output-0", "shape": [1, 3], "datatype": "INT64", "data": [2, 4, 6]}


def test_v2_several_inputs_and_named_outputs(serve: Serve) -> None:
    client = serve("- name: tensors\n  handler: handlers.py:Tensors\n").client
    request = {
        "inputs": [
            {"name": "a", "shape": [2], "datatype": "FP64", "data": [1.5, 2.5]},
            {"name": "b", "shape": [2], "datatype": "FP64", "data": [1, 1]},
        ]
    }
    outputs = {o["name"]: o for o in client.post("/v2/models/tensors/infer", json=request).json()["outputs"]}
    assert outputs["sum"] == {"name": "sum", "shape": [2], "datatype": "FP64", "data": [2.5, 3.5]}
    assert outputs["labels"] == {"name": "labels", "shape": [2], "datatype": "BYTES", "data": ["x", "y"]}


def test_v2_inputs_cannot_slip_past_the_schema(serve: Serve) -> None:
    spec = """
    - name: tensors
      handler: handlers.py:Tensors
      schema: {fields: {a: {type: float, max: 10}, b: {type: float}}, extra_fields: reject}
    """
    client = serve(spec).client

    def infer(**columns: list[float]) -> tuple[int, str]:
        inputs = [{"name": n, "shape": [len(d)], "datatype": "FP64", "data": d} for n, d in columns.items()]
        response = client.post("/v2/models/tensors/infer", json={"inputs": inputs})
        return response.status_code, response.text

    status, text = infer(a=[500], b=[1], x=[0])
    assert status == 422 and "x: unknown input; the schema has the fields a, b" in text
    status, text = infer(a=[500], b=[1])
    assert status == 422 and "[0].a: must be <= 10, got 500.0" in text
    status, text = infer(x=[1, 2, 3, 4])  # a custom handler gets no tensor of features: its fields are columns
    assert status == 422 and "a: required field is missing" in text
    status, text = infer(a=[5], b=[1])
    assert status == 200 and '"data":[6.0]' in text


def test_v2_bad_tensors_are_400(serve: Serve) -> None:
    client = serve("- name: tensors\n  handler: handlers.py:Tensors\n").client
    bad = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}]}
    response = client.post("/v2/models/tensors/infer", json=bad)
    assert response.status_code == 400
    assert response.json() == {"error": "input 'x': shape [2, 2] needs 4 elements, got 3"}
    dtype = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP128", "data": [1]}]}
    assert "datatype must be one of" in client.post("/v2/models/tensors/infer", json=dtype).json()["error"]
    xml = client.post("/v2/models/tensors/infer", content=b"<a/>", headers={"content-type": "application/xml"})
    assert xml.status_code == 415
    assert "'application/xml' is not accepted" in xml.json()["error"]
    assert client.get("/v2/models/tensors/infer").headers["allow"] == "POST"


IRIS = f"""
- name: iris
  handler: sklearn
  model: model/skops/
  batching: {{max_batch_size: 8, max_wait_ms: 2}}
{IRIS_SCHEMA}
"""
SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]


def test_v2_metadata_advertises_what_infer_accepts(serve: Serve, iris_models: Path) -> None:
    client = serve(IRIS, models=iris_models).client
    metadata = client.get("/v2/models/iris").json()
    assert metadata["inputs"] == [{"name": name, "datatype": "FP64", "shape": [-1]} for name in IRIS_FEATURES]
    assert metadata["outputs"] == [{"name": "predictions", "datatype": "BYTES", "shape": [-1]}]
    columns = [
        {"name": name, "datatype": "FP64", "shape": [2], "data": [a, b]}
        for name, a, b in zip(IRIS_FEATURES, SETOSA, VIRGINICA, strict=True)
    ]
    answer = client.post("/v2/models/iris/infer", json={"inputs": columns}).json()
    assert answer["outputs"] == [
        {"name": "predictions", "shape": [2], "datatype": "BYTES", "data": ["setosa", "virginica"]}
    ]
    matrix = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": SETOSA}]}
    assert client.post("/v2/models/iris/infer", json=matrix).json()["outputs"][0]["data"] == ["setosa"]
    nope = client.post("/v2/models/iris/infer", json={**matrix, "outputs": [{"name": "nope"}]})
    assert nope.status_code == 400
    assert nope.json() == {"error": "requested output 'nope' does not exist; this model's outputs are: predictions"}
    columns[1]["data"] = [-1, 3.0]
    refused = client.post("/v2/models/iris/infer", json={"inputs": columns})
    assert refused.status_code == 422
    assert refused.json() == {
        "error": "payload does not match the input schema: [0].sepal_width: must be >= 0, got -1.0"
    }
    short = client.post("/v2/models/iris/infer", json={"inputs": columns[:3]})
    assert short.status_code == 422
    assert "petal_width: required field is missing; send it as an input tensor of shape [n]" in short.json()["error"]
    extra = {"name": "note", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}
    beside = client.post("/v2/models/iris/infer", json={"inputs": [*columns, extra]})  # extra_fields: allow
    assert beside.status_code == 422 and "[0].sepal_width: must be >= 0" in beside.json()["error"]
    columns[1]["data"] = [3.5, 3.0]
    assert client.post("/v2/models/iris/infer", json={"inputs": [*columns, extra]}).status_code == 200
    negative = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [*SETOSA, 6.7, -3.0, 5.2, 2.3]}]}
    refused = client.post("/v2/models/iris/infer", json=negative)
    assert refused.status_code == 422
    assert refused.json() == {
        "error": "payload does not match the input schema: [1].sepal_width: must be >= 0, got -3.0"
    }
    narrow = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": SETOSA[:3]}]}
    assert "send shape [n, 4], got [1, 3]" in client.post("/v2/models/iris/infer", json=narrow).json()["error"]
