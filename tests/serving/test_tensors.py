from __future__ import annotations

import re

import numpy as np
import pytest

from shipyard.errors import InvalidTensor
from shipyard.serving.tensors import (
    column_records,
    decode_inputs,
    encode_outputs,
    encode_tensor,
    field_columns,
    matrix_records,
)


def _tensor(name: str, value: object, binary: bool = False) -> dict[str, object]:
    tensor, _ = encode_tensor(name, value, binary)
    return tensor


def test_one_input_becomes_an_array_of_its_shape() -> None:
    decoded = decode_inputs(
        {
            "inputs": [{"name": "x", "shape": [2, 3], "datatype": "INT32", "data": [1, 2, 3, 4, 5, 6]}],
            "outputs": [{"name": "y"}],
        }
    )
    payload = decoded.payload
    assert isinstance(payload, np.ndarray)
    assert payload.dtype == np.int32 and payload.shape == (2, 3)
    assert decoded.wanted == ["y"]
    assert not decoded.is_binary("y")


def test_several_inputs_become_a_dict_and_bytes_are_strings() -> None:
    payload = decode_inputs(
        {
            "inputs": [
                {"name": "a", "shape": [1], "datatype": "FP16", "data": [0.5]},
                {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["hi", "yo"]},
            ]
        }
    ).payload
    assert payload["a"].dtype == np.float16
    assert payload["s"].tolist() == ["hi", "yo"]


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ([], "must be a JSON object"),
        ({"inputs": []}, "'inputs' must be a non-empty list"),
        (
            {"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]},
            "inputs[0].name must be a non-empty string",
        ),
        (
            {"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]},
            "shape must be a list of whole",
        ),
        ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}, "'data' is missing"),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]},
            "has parameters.binary_data_size, but the request has no inference-header-content-length header",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [300]}]},
            "does not fit datatype INT8",
        ),
        (
            {
                "inputs": [
                    {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
                    {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
                ]
            },
            "appears twice",
        ),
    ],
)
def test_malformed_requests(request_body: object, message: str) -> None:
    with pytest.raises(InvalidTensor, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode_inputs(request_body)


def test_outputs_from_arrays_lists_dicts_and_strings() -> None:
    assert _tensor("y", np.array([[1.5, 2.5]], dtype=np.float32)) == {
        "name": "y",
        "shape": [1, 2],
        "datatype": "FP32",
        "data": [1.5, 2.5],
    }
    assert _tensor("y", [True, False])["datatype"] == "BOOL"
    assert _tensor("y", ["a", "b"])["datatype"] == "BYTES"
    outputs = encode_outputs({"p": [0.1], "label": ["cat"]}, wanted=["label"])
    assert outputs.tensors == [{"name": "label", "shape": [1], "datatype": "BYTES", "data": ["cat"]}]
    assert encode_outputs(np.int64(3), wanted=[]).tensors[0] == {
        "name": "output-0",
        "shape": [],
        "datatype": "INT64",
        "data": [3],
    }
    assert encode_outputs([1], wanted=[], default_name="predictions").tensors[0]["name"] == "predictions"


def test_requested_outputs_must_exist() -> None:
    result = {"p": [0.1], "label": ["cat"]}
    with pytest.raises(InvalidTensor, match=r"^requested output 'nope' does not exist; this model's outputs are: p, "):
        encode_outputs(result, wanted=["label", "nope"])
    with pytest.raises(InvalidTensor, match="requested output 'nope' does not exist; this model's outputs are: pred"):
        encode_outputs([1], wanted=["nope"], default_name="predictions", known=["predictions"])
    named = encode_outputs([1], ["predictions"], "predictions", known=["predictions"])
    assert named.tensors[0]["name"] == "predictions"
    assert encode_outputs([1], wanted=["doubled"]).tensors[0]["name"] == "doubled"  # a handler that names nothing
    with pytest.raises(InvalidTensor, match="at most one can be requested, got a, b"):
        encode_outputs([1], wanted=["a", "b"])


def test_dicts_lists_and_none_inside_bytes_tensors_are_json_text() -> None:
    top = [{"digit": 2, "p": 0.1221}, {"digit": 7, "p": None}]
    assert _tensor("top", top)["data"] == ['{"digit":2,"p":0.1221}', '{"digit":7,"p":null}']
    assert _tensor("mixed", np.array([None, [1, 2], "x"], dtype=object))["data"] == ["null", "[1,2]", "x"]
    with pytest.raises(TypeError, match="holds a object that cannot be sent as text"):
        encode_tensor("bad", np.array([object()], dtype=object))


def test_binary_inputs_and_outputs_round_trip() -> None:
    import tritonclient.utils as triton

    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    words = np.array([b"hi", "h\u00e9".encode(), b"\xff"], dtype=np.object_)
    raw_words = triton.serialize_byte_tensor(words).item()
    request = {
        "inputs": [
            {"name": "x", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": 24}},
            {"name": "w", "shape": [3], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw_words)}},
        ],
        "outputs": [{"name": "x", "parameters": {"binary_data": True}}, {"name": "w"}],
    }
    decoded = decode_inputs(request, memoryview(values.tobytes() + raw_words))
    np.testing.assert_array_equal(decoded.arrays["x"], values)
    assert decoded.arrays["w"].tolist() == ["hi", "hé", b"\xff"]
    assert decoded.is_binary("x") and not decoded.is_binary("w")
    result = {"x": decoded.arrays["x"] * 2, "w": decoded.arrays["w"][:2]}
    outputs = encode_outputs(result, decoded.wanted, is_binary=decoded.is_binary)
    assert outputs.tensors == [
        {"name": "x", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": 24}},
        {"name": "w", "shape": [2], "datatype": "BYTES", "data": ["hi", "hé"]},
    ]
    np.testing.assert_array_equal(np.frombuffer(outputs.blobs[0], dtype="<f4").reshape(2, 3), values * 2)
    text, raw = encode_tensor("w", ["a", {"b": 1}], binary=True)
    assert raw is not None and text["parameters"] == {"binary_data_size": len(raw)}
    assert triton.deserialize_bytes_tensor(raw).tolist() == [b"a", b'{"b":1}']


@pytest.mark.parametrize(
    ("inputs", "tail", "message"),
    [
        (
            [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 4}}],
            b"\0" * 4,
            "shape [2] of FP32 needs 8 bytes of binary data, got 4",
        ),
        (
            [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 8}}],
            b"\0" * 4,
            "binary_data_size 8 runs past the end of the body",
        ),
        (
            [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}],
            b"\0" * 6,
            "carries 6 bytes of binary tensor data, but the inputs' binary_data_size add up to 4",
        ),
        (
            [{"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}],
            b"\x09\0\0\0ab",
            "a BYTES element of 9 bytes runs past the end of its data",
        ),
        (
            [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": -1}}],
            b"",
            "binary_data_size must be a whole number >= 0, got -1",
        ),
    ],
)
def test_malformed_binary_data(inputs: list[dict[str, object]], tail: bytes, message: str) -> None:
    with pytest.raises(InvalidTensor, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode_inputs({"inputs": inputs}, memoryview(tail))


def test_inputs_named_after_schema_fields_are_columns() -> None:
    arrays = {"a": np.array([1.0, 2.0]), "b": np.array([[3], [4]])}
    columns = field_columns(arrays, ["a", "b", "c"])
    assert columns["b"].shape == (2,)
    assert column_records(columns) == [{"a": 1.0, "b": 3}, {"a": 2.0, "b": 4}]
    assert field_columns({"a": np.zeros(2), "x": np.zeros((2, 4))}, ["a", "b"]).keys() == {"a"}
    with pytest.raises(InvalidTensor, match="send shape \\[n\\] \\(or \\[n, 1\\]\\), got \\[2, 4\\]"):
        field_columns({"a": np.zeros((2, 4))}, ["a"])
    with pytest.raises(InvalidTensor, match="must all have the same length, got a \\[2\\], b \\[3\\]"):
        field_columns({"a": np.zeros(2), "b": np.zeros(3)}, ["a", "b"])


def test_one_tensor_of_features_is_read_as_records_in_feature_order() -> None:
    matrix = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert matrix_records("x", matrix, ["b", "a"]) == [{"b": 1.0, "a": 2.0}, {"b": 3.0, "a": 4.0}]
    assert matrix_records("x", np.array([5, 6]), ["b", "a"]) == [{"b": 5, "a": 6}]
    with pytest.raises(InvalidTensor, match=r"input 'x' holds the features b, a in that order: send shape \[n, 2\]"):
        matrix_records("x", np.zeros((2, 3)), ["b", "a"])


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("INT64", [1.7, 2], "datatype INT64 takes whole numbers, got 1.7 at element 0"),
        ("UINT8", [1, True], "datatype UINT8 takes whole numbers, got true at element 1"),
        ("FP32", ["1.5", 2.0], 'datatype FP32 takes numbers, got "1.5" at element 0'),
        ("FP64", [1.5, True], "datatype FP64 takes numbers, got true at element 1"),
        ("FP16", [[1.0, None]], "datatype FP16 takes numbers, got null at element 1"),
        ("BOOL", [True, 1], "datatype BOOL takes true or false, got 1 at element 1"),
        ("BYTES", ["a", 2], "datatype BYTES takes strings, got 2 at element 1"),
        ("INT32", [{"a": 1}, 2], 'datatype INT32 takes whole numbers, got {"a":1} at element 0'),
    ],
)
def test_json_data_must_be_of_the_datatype(datatype: str, data: list[object], message: str) -> None:
    tensor = {"name": "x", "shape": [2], "datatype": datatype, "data": data}
    with pytest.raises(InvalidTensor, match=f"^input 'x': {re.escape(message)}$"):
        decode_inputs({"inputs": [tensor]})


def test_json_data_of_the_datatype_passes() -> None:
    cases = {"INT64": [1, -2], "FP32": [1, 2.5], "BOOL": [True, False], "BYTES": ["a", "b"], "UINT16": [0, 7]}
    for datatype, data in cases.items():
        decoded = decode_inputs({"inputs": [{"name": "x", "shape": [2], "datatype": datatype, "data": data}]})
        assert decoded.payload.tolist() == data
