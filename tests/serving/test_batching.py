"""Dynamic batching over real HTTP: the handler itself reports how many requests shared its batch."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.serving.conftest import Server

Serve = Callable[..., Server]


def _fire(server: Server, payloads: list[object]) -> list[httpx.Response]:
    with concurrent.futures.ThreadPoolExecutor(len(payloads)) as pool:
        return list(pool.map(lambda p: httpx.post(server.url + "/predict", json=p, timeout=30), payloads))


def test_concurrent_requests_share_one_predict_batch(serve: Serve) -> None:
    spec = """
    - name: rec
      handler: handlers.py:BatchRecorder
      config: {delay: 0.3}
      batching: {max_batch_size: 8, max_wait_ms: 200}
      concurrency: {max_concurrency: 1, max_queue_length: 64}
    """
    server = serve(spec)
    responses = _fire(server, [{"i": i} for i in range(16)])
    assert all(r.status_code == 200 for r in responses)
    bodies = [r.json() for r in responses]
    assert sorted(b["payload"]["i"] for b in bodies) == list(range(16))  # each caller got its own result
    assert max(b["batch_size"] for b in bodies) == 8
    assert sum(1 for b in bodies if b["batch_size"] > 1) >= 12


def test_a_lone_request_leaves_after_max_wait(serve: Serve) -> None:
    server = serve(
        "- name: rec\n  handler: handlers.py:BatchRecorder\n  batching: {max_batch_size: 64, max_wait_ms: 50}\n"
    )
    assert server.client.post("/predict", json={"i": 0}).json() == {"batch_size": 1, "payload": {"i": 0}}


def test_a_failing_batch_fails_every_request_in_it(serve: Serve) -> None:
    spec = "- name: fb\n  handler: handlers.py:FailingBatch\n  batching: {max_batch_size: 4, max_wait_ms: 300}\n"
    server = serve(spec)
    responses = _fire(server, [{"i": i} for i in range(4)])
    assert [r.status_code for r in responses] == [500] * 4
    server.stop()
    assert server.output().count("RuntimeError: the whole batch failed") == 1  # one traceback for the batch


def test_a_result_list_of_the_wrong_length_is_500_with_a_log_line(serve: Serve) -> None:
    spec = "- name: wl\n  handler: handlers.py:WrongLength\n  batching: {max_batch_size: 3, max_wait_ms: 300}\n"
    server = serve(spec)
    responses = _fire(server, [{"i": i} for i in range(3)])
    assert [r.status_code for r in responses] == [500] * 3
    server.stop()
    ids = ",".join(sorted(r.headers["x-request-id"] for r in responses))
    (line,) = [line for line in server.output().splitlines() if "predict_batch returned 2 results" in line]
    assert "for a batch of 3 requests (" in line
    assert ",".join(sorted(line.split("requests (")[1].split(")")[0].split(","))) == ids


def test_without_predict_batch_each_item_is_predicted_alone(serve: Serve) -> None:
    spec = "- name: single\n  handler: handlers.py:PerItemOnly\n  batching: {max_batch_size: 4, max_wait_ms: 300}\n"
    server = serve(spec)
    responses = _fire(server, ["a", "fail", "b", "c"])
    by_payload = {r.request.content: r for r in responses}
    assert by_payload[b'"fail"'].status_code == 500  # only the failing item fails
    assert by_payload[b'"a"'].json() == {"single": "a"}
    assert by_payload[b'"c"'].json() == {"single": "c"}


def test_at_most_max_queue_length_requests_wait_while_a_batch_runs(serve: Serve) -> None:
    spec = """
    - name: rec
      handler: handlers.py:BatchRecorder
      config: {delay: 1.5}
      batching: {max_batch_size: 4, max_wait_ms: 1}
      concurrency: {max_concurrency: 1, max_queue_length: 2}
    """
    server = serve(spec)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        first = pool.submit(httpx.post, server.url + "/predict", json={"i": 0}, timeout=30)
        _wait_for_metric(server, 'shipyard_batch_size_count{api="rec"} 1.0')  # the first batch runs, alone
        later = [pool.submit(httpx.post, server.url + "/predict", json={"i": i}, timeout=30) for i in range(1, 6)]
        codes = sorted(f.result().status_code for f in later)
        assert first.result().json()["batch_size"] == 1
    assert codes == [200, 200, 503, 503, 503]


def _wait_for_metric(server: Server, line: str) -> None:
    deadline = time.monotonic() + 10
    while line not in server.client.get("/metrics").text:
        assert time.monotonic() < deadline, f"{line!r} never appeared"
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("handler", "model", "config"),
    [("sklearn", "model/skops/", "{method: predict_proba}"), ("onnx", "model/onnx/", "{outputs: [probabilities]}")],
)
def test_a_malformed_row_fails_only_its_own_request_in_a_batch(
    serve: Serve, iris_models: Path, handler: str, model: str, config: str
) -> None:
    spec = f"""
    - name: iris
      handler: {handler}
      model: {model}
      config: {config}
      batching: {{max_batch_size: 8, max_wait_ms: 300}}
    """
    server = serve(spec, models=iris_models)
    good, short, dict_valued = [5.1, 3.5, 1.4, 0.2], [5.1, 3.5], [[{"a": 1}, 1, 2, 3]]
    responses = _fire(server, [good, short, good, [good, short], dict_valued, good])
    by_body = {}
    for response in responses:
        by_body.setdefault(response.request.content, []).append(response)
    assert all(r.status_code == 200 and len(r.json()["prediction"]) == 3 for r in by_body[b"[5.1,3.5,1.4,0.2]"])
    for bad in (b"[5.1,3.5]", b"[[5.1,3.5,1.4,0.2],[5.1,3.5]]", b'[[{"a":1},1,2,3]]'):
        (response,) = by_body[bad]
        assert response.status_code == 400, response.text
        assert "inhomogeneous" not in response.text
    assert 'shipyard_batch_size_count{api="iris"} 1.0' in server.client.get("/metrics").text  # all in one batch
