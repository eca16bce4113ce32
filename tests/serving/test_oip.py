"""The Open Inference Protocol v2 REST routes, as KServe's and Triton's clients call them."""

from __future__ import annotations

from collections.abc import Callable

from tests.serving.conftest import Server

Serve = Callable[..., Server]


def test_v2_metadata_and_health(serve: Serve) -> None:
    client = serve("- name: tensors\n  handler: handlers.py:Tensors\n").client
    assert client.get("/v2").json() == {"name": "shipyard", "version": "0.1.0", "extensions": []}
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2/models/tensors").json()["name"] == "tensors"
    assert client.get("/v2/models/tensors/ready").json() == {"name": "tensors", "ready": True}
    missing = client.get("/v2/models/other/ready")
    assert missing.status_code == 404
    assert "this replica serves 'tensors'" in missing.json()["error"]["message"]


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


def test_v2_bad_tensors_are_400(serve: Serve) -> None:
    client = serve("- name: tensors\n  handler: handlers.py:Tensors\n").client
    bad = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}]}
    response = client.post("/v2/models/tensors/infer", json=bad)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "input 'x': shape [2, 2] needs 4 elements, got 3"
    dtype = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP128", "data": [1]}]}
    assert "datatype must be one of" in client.post("/v2/models/tensors/infer", json=dtype).json()["error"]["message"]
