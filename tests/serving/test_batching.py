"""Dynamic batching over real HTTP: the handler itself reports how many requests shared its batch."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable

import httpx
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
    assert "predict_batch returned 2 results for a batch of 3 requests" in server.output()


def test_without_predict_batch_each_item_is_predicted_alone(serve: Serve) -> None:
    spec = "- name: single\n  handler: handlers.py:PerItemOnly\n  batching: {max_batch_size: 4, max_wait_ms: 300}\n"
    server = serve(spec)
    responses = _fire(server, ["a", "fail", "b", "c"])
    by_payload = {r.request.content: r for r in responses}
    assert by_payload[b'"fail"'].status_code == 500  # only the failing item fails
    assert by_payload[b'"a"'].json() == {"single": "a"}
    assert by_payload[b'"c"'].json() == {"single": "c"}
