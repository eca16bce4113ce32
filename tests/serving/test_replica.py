"""`shipyard serve` as a real subprocess on a free port: every route and every status code."""

from __future__ import annotations

import concurrent.futures
import gzip
import signal
import threading
import time
import zlib
from collections.abc import Callable, Iterator

import httpx
import pytest
from tests.serving.conftest import Server

Serve = Callable[..., Server]

ECHO = """
- name: echo
  handler: handlers.py:Echo
  max_body_size: 1Ki
  content_types: [application/json, text/*, application/octet-stream]
  schema:
    fields:
      x: {type: float, min: 0, max: 10}
      color: {type: str, enum: [red, green], required: false}
"""


def test_routes_of_a_ready_replica(serve: Serve) -> None:
    server = serve(ECHO)
    client = server.client
    ok = client.post("/predict", json={"x": 1.5, "color": "red"})
    assert ok.status_code == 200
    assert ok.json() == {"echo": {"x": 1.5, "color": "red"}}
    assert len(ok.headers["x-request-id"]) == 32
    assert client.post("/", json={"x": 2}).json() == {"echo": {"x": 2}}
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json()["ready"] is True
    described = client.get("/").json()
    assert described["name"] == "echo"
    assert described["handler"] == "handlers.py:Echo"
    assert described["schema"]["fields"]["x"]["type"] == "float"
    assert described["status"] == "ready"


def test_request_id_is_echoed(serve: Serve) -> None:
    server = serve(ECHO)
    response = server.client.post("/predict", json={"x": 1}, headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    error = server.client.post("/predict", json={"x": -1}, headers={"X-Request-ID": "bad-1"})
    assert error.headers["x-request-id"] == "bad-1"
    assert error.json()["error"]["request_id"] == "bad-1"


def test_client_errors_name_their_cause(serve: Serve) -> None:
    client = serve(ECHO).client
    cases = [
        (
            client.post("/predict", content=b"{nope", headers={"content-type": "application/json"}),
            400,
            "BadRequest",
        ),
        (
            client.post("/predict", content=b"x" * 2048, headers={"content-type": "application/json"}),
            413,
            "PayloadTooLarge",
        ),
        (
            client.post("/predict", content=b"<a/>", headers={"content-type": "application/xml"}),
            415,
            "UnsupportedMediaType",
        ),
        (client.get("/nowhere"), 404, "NotFound"),
        (client.get("/predict"), 405, "MethodNotAllowed"),
        (client.post("/predict", content=b'{"x": 1}', headers=_encoded("gzip")), 400, "BadRequest"),  # not gzip
        (
            client.post("/predict", content=gzip.compress(b"[" + b"0," * 2000 + b"0]"), headers=_encoded("gzip")),
            413,
            "PayloadTooLarge",
        ),
        (client.post("/predict", content=b'{"x": 1}', headers=_encoded("br")), 415, "UnsupportedEncoding"),
    ]
    for response, status, kind in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"]["type"] == kind
        assert response.json()["error"]["message"]
        assert response.json()["error"]["request_id"] == response.headers["x-request-id"]


def _encoded(encoding: str) -> dict[str, str]:
    return {"content-type": "application/json", "content-encoding": encoding}


def test_gzip_and_deflate_bodies(serve: Serve) -> None:
    client = serve(ECHO).client
    for encoding, compress in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        response = client.post("/predict", content=compress(b'{"x": 3}'), headers=_encoded(encoding))
        assert response.status_code == 200, response.text
        assert response.json() == {"echo": {"x": 3}}


def test_schema_violations_name_each_field(serve: Serve) -> None:
    client = serve(ECHO).client
    response = client.post("/predict", json=[{"x": 11, "color": "blue"}, {"color": "red"}])
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["fields"] == {
        "[0].x": "must be <= 10, got 11",
        "[0].color": 'unknown category "blue"; expected one of ["red","green"]',
        "[1].x": "required field is missing",
    }
    wrapped = client.post("/predict", json={"instances": [{"x": 1}, {"x": 11}]})  # KServe v1, as sklearn takes it
    assert wrapped.status_code == 422
    assert wrapped.json()["error"]["fields"] == {"[1].x": "must be <= 10, got 11"}
    assert client.post("/predict", json={"instances": [{"x": 1}]}).status_code == 200


def test_text_and_bytes_payloads(serve: Serve) -> None:
    spec = ECHO.replace(
        "  schema:\n    fields:\n      x: {type: float, min: 0, max: 10}\n"
        "      color: {type: str, enum: [red, green], required: false}\n",
        "",
    )
    client = serve(spec).client
    text = client.post("/predict", content="héllo", headers={"content-type": "text/plain; charset=utf-8"})
    assert text.text == "héllo"
    assert text.headers["content-type"].startswith("text/plain")
    raw = client.post("/predict", content=b"\x00\xff", headers={"content-type": "application/octet-stream"})
    assert raw.content == b"\x00\xff"
    assert raw.headers["content-type"] == "application/octet-stream"


def test_unknown_category_can_pass_with_a_warning(serve: Serve) -> None:
    spec = """
    - name: echo
      handler: handlers.py:Echo
      schema:
        unknown_categories: warn
        fields:
          color: {type: str, enum: [red, green]}
    """
    client = serve(spec).client
    assert client.post("/predict", json={"color": "blue"}).status_code == 200
    metrics = client.get("/metrics").text
    assert 'shipyard_unknown_categories_total{api="echo",field="color"} 1.0' in metrics


def test_result_types_are_encoded(serve: Serve) -> None:
    client = serve("- name: types\n  handler: handlers.py:Types\n").client
    assert client.post("/", json={"kind": "array"}).json() == [[0, 1, 2], [3, 4, 5]]
    assert client.post("/", json={"kind": "float32"}).json() == 0.5
    assert client.post("/", json={"kind": "scalar"}).json() == {"n": 7, "x": 1.5, "ok": True}
    assert client.post("/", json={"kind": "str"}).text == "plain text"
    assert client.post("/", json={"kind": "bytes"}).content == b"\x00\x01binary"
    custom = client.post("/", json={"kind": "response"})
    assert (custom.status_code, custom.text, custom.headers["x-custom"]) == (201, "custom", "yes")
    assert custom.headers["x-request-id"]
    unencodable = client.post("/", json={"kind": "object"})
    assert unencodable.status_code == 500
    assert "could not be encoded" in unencodable.json()["error"]["message"]


def test_headers_and_query_reach_a_handler_that_declares_them(serve: Serve) -> None:
    client = serve("- name: ctx\n  handler: handlers.py:Context\n").client
    response = client.post("/predict?a=1&b=two", json=[1], headers={"x-test": "yes"})
    assert response.json() == {"header": "yes", "query": {"a": "1", "b": "two"}, "payload": [1]}


def test_handler_errors_are_500_without_traceback(serve: Serve) -> None:
    server = serve("- name: failing\n  handler: handlers.py:Failing\n")
    response = server.client.post("/predict", json={}, headers={"x-request-id": "req-42"})
    assert response.status_code == 500
    body = response.json()["error"]
    assert body["type"] == "PredictionFailed"
    assert "boom" not in response.text and "Traceback" not in response.text
    chosen = server.client.post("/predict", json={"bad_input": True})
    assert chosen.status_code == 400
    assert chosen.json()["error"]["message"] == "field 'x' must be positive"
    server.stop()
    log = server.output()
    assert "req-42" in log and "Traceback" in log and "boom: internal detail" in log


@pytest.mark.parametrize(
    "batching", ["", "  batching: {max_batch_size: 4, max_wait_ms: 1}\n"], ids=["alone", "batched"]
)
def test_a_handler_that_calls_sys_exit_is_a_500_and_the_replica_serves_on(serve: Serve, batching: str) -> None:
    server = serve(f"- name: failing\n  handler: handlers.py:Failing\n{batching}")
    response = server.client.post("/predict", json={"exit": True}, headers={"x-request-id": "req-exit"})
    assert response.status_code == 500 and response.json()["error"]["type"] == "PredictionFailed"
    assert server.client.get("/readyz").status_code == 200
    assert server.client.post("/predict", json={"bad_input": True}).status_code == 400  # still predicting
    assert server.stop() == 0
    assert "req-exit" in server.output() and "the handler called sys.exit" in server.output()


def test_timeout_is_504_and_the_server_stays_healthy(serve: Serve) -> None:
    server = serve("- name: slow\n  handler: handlers.py:Slow\n  timeout: 200ms\n")
    started = time.monotonic()
    response = server.client.post("/predict", json={"sleep": 2})
    assert response.status_code == 504
    assert time.monotonic() - started < 1.5
    assert server.client.get("/readyz").status_code == 200


def test_overload_is_503_at_once_while_the_server_stays_ready(serve: Serve) -> None:
    spec = """
    - name: slow
      handler: handlers.py:Slow
      config: {seconds: 1.5}
      concurrency: {max_concurrency: 1, max_queue_length: 1}
    """
    server = serve(spec)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        busy = [pool.submit(httpx.post, server.url + "/predict", json={}, timeout=10) for _ in range(2)]
        _wait_until(lambda: 'shipyard_in_flight_requests{api="slow"} 2.0' in server.client.get("/metrics").text)
        assert 'shipyard_queue_length{api="slow"} 1.0' in server.client.get("/metrics").text  # 1 runs, 1 waits
        started = time.monotonic()
        rejected = server.client.post("/predict", json={})
        assert time.monotonic() - started < 0.5
        assert rejected.status_code == 503
        assert rejected.headers["retry-after"] == "1"
        assert rejected.json()["error"]["type"] == "Overloaded"
        assert server.client.get("/readyz").status_code == 200
        assert server.client.get("/healthz").status_code == 200
        assert [f.result().status_code for f in busy] == [200, 200]


def test_max_concurrency_predictions_run_side_by_side(serve: Serve) -> None:
    spec = """
    - name: meet
      handler: handlers.py:Rendezvous
      config: {parties: 4}
      concurrency: {max_concurrency: 4}
    """
    server = serve(spec)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: httpx.post(server.url + "/predict", json={}, timeout=30), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.json()["thread"] for a in answers}) == 4


def test_health_answers_while_the_model_works(serve: Serve) -> None:
    server = serve("- name: slow\n  handler: handlers.py:Slow\n  config: {seconds: 2}\n")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.post, server.url + "/predict", json={}, timeout=10)
        time.sleep(0.2)
        started = time.monotonic()
        assert server.client.get("/healthz").status_code == 200
        assert time.monotonic() - started < 0.5
        assert slow.result().status_code == 200


def test_not_ready_while_loading(serve: Serve) -> None:
    server = serve("- name: loading\n  handler: handlers.py:SlowLoad\n  config: {load_seconds: 3}\n", wait="/healthz")
    not_ready = server.client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.headers["retry-after"] == "1"
    assert server.client.post("/predict", json={}).status_code == 503
    assert server.client.get("/v2/health/ready").status_code == 503
    assert server.client.get("/").json()["status"] == "loading"
    _wait_until(lambda: server.client.get("/readyz").status_code == 200, timeout=20)
    assert server.client.post("/predict", json=1).json() == {"echo": 1}


def test_graceful_shutdown_finishes_requests_in_flight(serve: Serve) -> None:
    server = serve("- name: slow\n  handler: handlers.py:Slow\n  config: {seconds: 1.5}\n")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        inflight = [pool.submit(httpx.post, server.url + "/predict", json={}, timeout=10) for _ in range(3)]
        _wait_until(lambda: 'shipyard_in_flight_requests{api="slow"} 3.0' in server.client.get("/metrics").text)
        stopper = threading.Thread(target=server.process.send_signal, args=(signal.SIGTERM,))
        stopper.start()
        assert [f.result().status_code for f in inflight] == [200, 200, 200]
    assert server.process.wait(10) == 0
    try:
        httpx.get(server.url + "/healthz", timeout=1)
        raise AssertionError("the server still accepts connections after shutdown")
    except httpx.TransportError:
        pass


def test_metrics_cover_requests_latency_and_batching(serve: Serve) -> None:
    server = serve("- name: rec\n  handler: handlers.py:BatchRecorder\n  batching: {max_batch_size: 4}\n")
    for _ in range(3):
        server.client.post("/predict", json={})
    server.client.post("/predict", content=b"{", headers={"content-type": "application/json"})
    text = server.client.get("/metrics").text
    assert 'shipyard_requests_total{api="rec",code="200",route="/predict"} 3.0' in text
    assert 'shipyard_requests_total{api="rec",code="400",route="/predict"} 1.0' in text
    assert 'shipyard_request_duration_seconds_count{api="rec",route="/predict"} 4.0' in text
    assert 'shipyard_batch_size_count{api="rec"} 3.0' in text
    assert 'shipyard_batch_wait_seconds_count{api="rec"} 3.0' in text
    assert "shipyard_in_flight_requests" in text and "shipyard_queue_length" in text
    assert "_created" not in text


def _wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def _shutdown_cuts_off(server: Server) -> tuple[httpx.Response, float]:
    """SIGTERM while a 10s prediction runs: the grace period (1.5s) decides when the process exits."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(
            httpx.post, server.url + "/predict", json={"sleep": 10}, headers={"x-request-id": "cut-1"}, timeout=30
        )
        _wait_until(lambda: 'shipyard_in_flight_requests{api="slow"} 1.0' in server.client.get("/metrics").text)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(15) == 0
        return slow.result(), time.monotonic() - started


@pytest.mark.parametrize("batching", ["", "  batching: {max_batch_size: 4, max_wait_ms: 1}\n"])
def test_the_grace_period_bounds_shutdown_and_cut_off_requests_get_503(serve: Serve, batching: str) -> None:
    server = serve(f"- name: slow\n  handler: handlers.py:Slow\n  grace_period: 1.5s\n{batching}")
    response, elapsed = _shutdown_cuts_off(server)
    assert elapsed < 6  # the prediction alone would take 10s
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-request-id"] == "cut-1"
    error = response.json()["error"]
    assert error["type"] == "ShuttingDown" and error["request_id"] == "cut-1"
    assert "grace period of 1.5s" in error["message"]
    assert "CancelledError" not in server.output() and "Traceback" not in server.output()


def test_a_second_ctrl_c_stops_at_once_without_a_traceback(serve: Serve) -> None:
    server = serve("- name: slow\n  handler: handlers.py:Slow\n  grace_period: 60s\n")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(
            httpx.post, server.url + "/predict", json={"sleep": 30}, headers={"x-request-id": "cut-2"}, timeout=60
        )
        _wait_until(lambda: 'shipyard_in_flight_requests{api="slow"} 1.0' in server.client.get("/metrics").text)
        server.process.send_signal(signal.SIGINT)
        _wait_until(lambda: "Waiting for connections to close" in server.output())
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(15) == 0  # neither the grace period nor the prediction is waited for
        try:
            response = slow.result()
            assert response.status_code == 503 and "stopped at once" in response.json()["error"]["message"]
        except httpx.TransportError:
            pass  # the connection may close before the answer is written
    output = server.output()
    assert "request cut-2 was cut off: the stop was forced before it finished" in output
    assert "Traceback" not in output and "CancelledError" not in output and "grace period" not in output


def test_metric_labels_stay_bounded_whatever_paths_are_scanned(serve: Serve) -> None:
    client = serve(ECHO).client
    for index in range(30):
        assert client.get(f"/scan-{index}").status_code == 404
        assert client.get(f"/v2/models/other-{index}").status_code == 404
    assert client.get("/predict").status_code == 405
    assert client.delete("/v2/models/echo/infer").status_code == 405
    text = client.get("/metrics").text
    routes = {line.split('route="')[1].split('"')[0] for line in text.splitlines() if 'route="' in line}
    assert routes == {"unmatched", "/predict", "/v2/models/{name}/infer", "/readyz"}
    assert 'shipyard_requests_total{api="echo",code="404",route="unmatched"} 60.0' in text


def test_head_answers_like_get_and_405_says_what_is_allowed(serve: Serve) -> None:
    client = serve(ECHO).client
    for path in ("/healthz", "/readyz", "/v2/health/ready"):
        head = client.head(path)
        assert (head.status_code, head.content) == (200, b"")
    refused = client.put("/healthz")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD"
    assert client.get("/predict").headers["allow"] == "POST"
    assert client.delete("/").headers["allow"] == "POST, GET, HEAD"


def test_a_chunked_body_over_the_limit_is_413(serve: Serve) -> None:
    client = serve(ECHO).client

    def chunks() -> Iterator[bytes]:
        yield b'{"x": 1, "pad": "'
        for _ in range(8):
            yield b"x" * 256
        yield b'"}'

    response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers  # sent chunked: only the running count can catch it
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "PayloadTooLarge"


def test_unknown_categories_that_pass_are_logged_once_per_field_and_minute(serve: Serve) -> None:
    spec = """
    - name: echo
      handler: handlers.py:Echo
      schema:
        unknown_categories: warn
        fields:
          color: {type: str, enum: [red, green]}
    """
    server = serve(spec)
    for index in range(3):
        response = server.client.post("/predict", json={"color": "blue"}, headers={"x-request-id": f"u-{index}"})
        assert response.status_code == 200
    server.stop()
    log = server.output()
    assert "WARNING shipyard.http: request u-0: unknown category in field 'color' let through" in log
    assert "request u-1" not in log and "request u-2" not in log


def test_async_handlers_run_on_the_event_loop(serve: Serve) -> None:
    spec = "- name: aecho\n  handler: handlers.py:AsyncEcho\n  concurrency: {max_concurrency: 3}\n"
    server = serve(spec)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        calls = [pool.submit(httpx.post, server.url + "/predict", json={"sleep": 0.3}, timeout=10) for _ in range(6)]
        answers = [call.result().json() for call in calls]
    assert max(answer["most_at_once"] for answer in answers) == 3  # concurrent, but never beyond max_concurrency
    failed = server.client.post("/predict", json="fail")
    assert failed.status_code == 500 and failed.json()["error"]["type"] == "PredictionFailed"
    batched = serve(
        "- name: ab\n  handler: handlers.py:AsyncBatch\n  batching: {max_batch_size: 4, max_wait_ms: 200}\n"
    )
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: httpx.post(batched.url + "/predict", json=i, timeout=10).json(), range(4)))
    assert sorted(r["payload"] for r in results) == [0, 1, 2, 3]
    assert max(r["batch_size"] for r in results) > 1
    timeout = serve("- name: slowa\n  handler: handlers.py:AsyncEcho\n  timeout: 200ms\n", name="timeout")
    assert timeout.client.post("/predict", json={"sleep": 5}).status_code == 504
    assert timeout.client.post("/predict", json={"sleep": 0}).status_code == 200


def test_get_shows_the_model_path_inside_the_project(serve: Serve) -> None:
    server = serve("- name: echo\n  handler: handlers.py:Echo\n  model: handlers.py\n")
    model = server.client.get("/").json()["model"]
    assert model["path"] == "handlers.py" and model["source"] == "handlers.py"
    assert model["digest"].startswith("sha256:")
