from __future__ import annotations

import numpy as np
import pytest

from shipyard.errors import InvalidTensor
from shipyard.serving.tensors import decode_inputs, encode_outputs, encode_tensor


def test_one_input_becomes_an_array_of_its_shape() -> None:
    payload, wanted = decode_inputs(
        {
            "inputs": [{"name": "x", "shape": [2, 3], "datatype": "INT32", "data": [1, 2, 3, 4, 5, 6]}],
            "outputs": [{"name": "y"}],
        }
    )
    assert isinstance(payload, np.ndarray)
    assert payload.dtype == np.int32 and payload.shape == (2, 3)
    assert wanted == ["y"]


def test_several_inputs_become_a_dict_and_bytes_are_strings() -> None:
    payload, _ = decode_inputs(
        {
            "inputs": [
                {"name": "a", "shape": [1], "datatype": "FP16", "data": [0.5]},
                {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["hi", "yo"]},
            ]
        }
    )
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
            {"inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": ["a"]}]},
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
    assert encode_tensor("y", np.array([[1.5, 2.5]], dtype=np.float32)) == {
        "name": "y",
        "shape": [1, 2],
        "datatype": "FP32",
        "data": [1.5, 2.5],
    }
    assert encode_tensor("y", [True, False])["datatype"] == "BOOL"
    assert encode_tensor("y", ["a", "b"])["datatype"] == "BYTES"
    outputs = encode_outputs({"p": [0.1], "label": ["cat"]}, wanted=["label"])
    assert outputs == [{"name": "label", "shape": [1], "datatype": "BYTES", "data": ["cat"]}]
    assert encode_outputs(np.int64(3), wanted=[])[0] == {
        "name": "output-0",
        "shape": [],
        "datatype": "INT64",
        "data": [3],
    }
