"""The one Prometheus client: instant vectors only, a timeout on every query, errors that say why without the token."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from kedascaler.kits.httpserver import HttpServerThread, OwnedServer
from kedascaler.sources.promql import MAX_MESSAGE, PromQLClient, PromQLError, instant_vector

TOKEN = "s3cr3t/t0ken+value"  # characters that percent-encoding changes


class _Answer:
    """What the fake Prometheus answers next: (status, body); `hang` holds the request unanswered."""

    def __init__(self) -> None:
        self.status = 200
        self.body: Any = {"status": "success", "data": {"resultType": "vector", "result": []}}
        self.hang = False
        self.released = threading.Event()
        self.authorization: list[str] = []


class _Prometheus(BaseHTTPRequestHandler):
    server: OwnedServer[_Answer]

    def do_GET(self) -> None:  # noqa: N802
        answer = self.server.owner
        answer.authorization.append(self.headers.get("Authorization", ""))
        if answer.hang:
            answer.released.wait(timeout=10)
            return
        body = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def prometheus() -> Iterator[tuple[str, _Answer]]:
    answer = _Answer()
    with HttpServerThread(_Prometheus, host="127.0.0.1", owner=answer) as server:
        assert server.url is not None
        yield server.url, answer
        answer.released.set()


def _series(labels: dict[str, Any], value: Any, ts: Any = 1700000000.5) -> dict[str, Any]:
    return {"metric": labels, "value": [ts, value]}


def test_an_instant_vector_is_labels_timestamp_value_per_series() -> None:
    rows = instant_vector([_series({"pod": "a"}, "0.5"), _series({}, "NaN", 12)])
    assert rows[0] == ({"pod": "a"}, 1700000000.5, 0.5)
    assert rows[1][0] == {} and rows[1][1] == 12.0 and rows[1][2] != rows[1][2]


@pytest.mark.parametrize("result,why", [
    ({"a": 1}, "expected a vector, got dict"),
    ([1700000000, "1"], "a scalar or a string"),
    ([{"metric": {}, "values": [[1, "2"]]}], "range vector"),
    ([_series({"pod": 1}, "1")], "labels are not a map of strings"),
    ([_series({"pod": "a"}, True)], "not a number"),
    ([_series({"pod": "a"}, {"x": 1})], "not a number"),
    ([_series({"pod": "a"}, "many")], "could not convert"),
    ([{"metric": {"pod": "a"}}], "KeyError"),
])
def test_anything_but_an_instant_vector_is_a_value_error_that_says_why(result: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        instant_vector(result)


def test_a_query_sends_the_token_and_answers_the_series(prometheus: tuple[str, _Answer]) -> None:
    url, answer = prometheus
    answer.body["data"]["result"] = [_series({"pod": "a"}, "3")]
    client = PromQLClient(url, bearer_token=TOKEN, timeout=2.0)
    try:
        assert client.query("up") == [({"pod": "a"}, 1700000000.5, 3.0)]
    finally:
        client.close()
    assert answer.authorization == [f"Bearer {TOKEN}"]
    assert TOKEN not in repr(client) and "token=set" in repr(client)


@pytest.mark.parametrize("status,body,why", [
    (500, {"status": "error", "error": "query timed out in expression evaluation"},
     "HTTP Status Code 500.*query timed out in expression evaluation"),
    (200, b"<html>not json", "JSONDecodeError"),
    (200, {"status": "success"}, "malformed answer: no data.result"),
    (200, None, "malformed answer: no data.result"),
    (200, {"status": "success", "data": {"resultType": "scalar", "result": [1, "2"]}}, "a scalar or a string"),
])
def test_every_failure_is_a_promql_error_that_says_what_went_wrong(prometheus: tuple[str, _Answer], status: int,
                                                                  body: Any, why: str) -> None:
    url, answer = prometheus
    answer.status, answer.body = status, body
    client = PromQLClient(url, timeout=2.0)
    try:
        with pytest.raises(PromQLError, match=why):
            client.query("up")
    finally:
        client.close()


def test_a_hanging_prometheus_times_out_within_the_timeout(prometheus: tuple[str, _Answer]) -> None:
    url, answer = prometheus
    answer.hang = True
    client = PromQLClient(url, timeout=0.3)
    try:
        with pytest.raises(PromQLError, match="ReadTimeout.*read timeout=0.3"):
            client.query("up")
    finally:
        client.close()


def test_nothing_listening_is_a_connection_error() -> None:
    client = PromQLClient("http://127.0.0.1:9", timeout=1.0)  # the discard port: nothing listens
    try:
        with pytest.raises(PromQLError, match="ConnectionError"):
            client.query("up")
    finally:
        client.close()


def test_scrub_hides_the_token_as_sent_and_encoded_drops_the_query_and_bounds_the_length() -> None:
    client = PromQLClient("http://prometheus:9090", bearer_token=TOKEN)
    echoed = RuntimeError(f"you sent {TOKEN} for /api/v1/query?query=sum%28x%29 (as s3cr3t%2Ft0ken%2Bvalue)")
    text = client.scrub(echoed)
    assert text == "RuntimeError: you sent *** for /api/v1/query?query=… (as ***)"
    long = client.scrub(RuntimeError("x" * 1000))
    assert len(long) == MAX_MESSAGE + 1 and long.endswith("…")
    client.close()
