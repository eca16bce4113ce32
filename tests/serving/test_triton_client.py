"""NVIDIA Triton's own HTTP client talks to a Shipyard replica unchanged (Open Inference Protocol v2)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tritonclient.http as triton
from tests.serving.conftest import Server

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
    finally:
        client.close()
