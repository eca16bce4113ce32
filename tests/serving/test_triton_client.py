"""NVIDIA Triton's own HTTP client talks to a Shipyard replica unchanged (Open Inference Protocol v2)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import tritonclient.http as triton
from tests.serving.conftest import Server
from tritonclient.utils import InferenceServerException

Serve = Callable[..., Server]


def test_triton_client_round_trip(serve: Serve) -> None:
    server = serve("- name: tensors\n  handler: handlers.py:Tensors\n")
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("tensors")
        assert client.get_model_metadata("tensors")["name"] == "tensors"
        data = np.arange(6, dtype=np.float32).reshape(2, 3)
        tensor = triton.InferInput("x", list(data.shape), "FP32")
        tensor.set_data_from_numpy(data, binary_data=False)
        wanted = triton.InferRequestedOutput("doubled", binary_data=False)
        result = client.infer("tensors", [tensor], outputs=[wanted], request_id="r-1")
        np.testing.assert_array_equal(result.as_numpy("doubled"), data * 2)
        assert result.get_response()["id"] == "r-1"
        for algorithm in ("gzip", "deflate"):
            tensor.set_data_from_numpy(data)  # binary: the header length counts the body before compression
            packed = client.infer("tensors", [tensor], request_compression_algorithm=algorithm)
            np.testing.assert_array_equal(packed.as_numpy("output-0"), data * 2)
    finally:
        client.close()


def test_triton_client_in_its_default_binary_mode(serve: Serve) -> None:
    server = serve("- name: tensors\n  handler: handlers.py:Tensors\n")
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        data = np.arange(6, dtype=np.float32).reshape(2, 3)
        tensor = triton.InferInput("x", list(data.shape), "FP32")
        tensor.set_data_from_numpy(data)  # binary_data=True: raw bytes after the JSON header
        result = client.infer("tensors", [tensor])  # no outputs named: every output comes back in binary
        np.testing.assert_array_equal(result.as_numpy("output-0"), data * 2)
        assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] == data.nbytes
        a, b = (triton.InferInput(name, [2], "FP64") for name in ("a", "b"))
        a.set_data_from_numpy(np.array([1.5, 2.5]))
        b.set_data_from_numpy(np.array([1.0, 1.0]))
        named = client.infer("tensors", [a, b], outputs=[triton.InferRequestedOutput("labels")])
        assert named.as_numpy("labels").tolist() == [b"x", b"y"]
        assert named.as_numpy("sum") is None  # only the output asked for
    finally:
        client.close()


def test_triton_client_reads_errors(serve: Serve) -> None:
    server = serve("- name: tensors\n  handler: handlers.py:Tensors\n")
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        with pytest.raises(InferenceServerException, match="no route '/v2/models/tensors/config'") as caught:
            client.get_model_config("tensors")
        assert caught.value.status() == "404"
        with pytest.raises(InferenceServerException, match="model 'iris' is not served here"):
            client.get_model_metadata("iris")
    finally:
        client.close()
