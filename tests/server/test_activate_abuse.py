"""The activation endpoint under hostile callers: authentication, bad bodies, connection floods, push floods.

Real HTTP over loopback against `ActivationServer`; the reconcile loop where a test needs one. What a flood
costs in memory and latency against a `serve` process is measured by `benchmarks/bench_abuse.py`.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from kedascaler.engine.types import VariantKey
from kedascaler.kits.watchedfile import TokenFile
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.inbox import ActivationInbox
from kedascaler.loop.reconcile import Reconciler
from kedascaler.server.activate import MAX_BODY_BYTES, ActivationServer

from .test_activate import NS, Deployments, NoMetrics, inventory, model_id

SAFETY = 30.0  # seconds before a hung test fails instead of hanging; not a latency assert
PATH = f"/v1/activate/{NS}/{model_id(0)}"


def request(port: int, path: str = PATH, *, headers: dict[str, str] | None = None, body: bytes | None = None,
            method: str = "POST") -> tuple[int, dict, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read() or b"{}"), dict(answer.getheaders())
    finally:
        conn.close()


def raw(port: int, data: bytes) -> bytes:
    """Send bytes as they are; return what comes back until the server closes (or 5 s pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except TimeoutError:
            pass
        return got


def cold_board(models: int = 2) -> tuple[DecisionBoard, Reconciler, ActivationInbox]:
    board, inbox = DecisionBoard(), ActivationInbox()
    reconciler = Reconciler(inventory(models), NoMetrics(), board, Deployments(), idle_window=300.0, inbox=inbox)
    reconciler.run_once()  # every model at zero and idle: inactive
    return board, reconciler, inbox


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("s3cret-token\n")
    return path


def test_with_a_token_file_requests_need_the_bearer_token_and_a_new_token_is_read(token_file):
    board, _, inbox = cold_board()
    with ActivationServer(board, inbox, host="127.0.0.1", port=0, token=TokenFile(token_file)) as server:
        port = server.port
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0LXRva2Vu"},
                        {"Authorization": "Bearer s3cret-token-and-more"}):
            status, body, answer_headers = request(port, headers=headers)
            assert status == 401, headers
            assert "Bearer" in answer_headers.get("WWW-Authenticate", "")
            assert "--activation-token-file" in body["error"] and "s3cret" not in json.dumps(body)
        assert inbox.last_request_at(NS, model_id(0)) is None
        status, body, _ = request(port, headers={"Authorization": "Bearer s3cret-token"})
        assert status == 202 and body["model"] == model_id(0)
        # the token rotates: the new one is read, the old one refused
        token_file.write_text("rotated-token")
        later = time.time() + 5
        os.utime(token_file, (later, later))
        assert request(port, headers={"Authorization": "Bearer s3cret-token"})[0] == 401
        assert request(port, headers={"Authorization": "Bearer rotated-token"})[0] == 202


def test_an_unknown_model_lists_the_known_ones_only_to_an_authenticated_caller(token_file):
    board, _, inbox = cold_board()
    with ActivationServer(board, inbox, host="127.0.0.1", port=0) as open_server:
        status, body, _ = request(open_server.port, f"/v1/activate/{NS}/org/nope")
        assert status == 404 and "org/nope" in body["error"]
        assert model_id(0) not in json.dumps(body) and "known_models" not in body
    with ActivationServer(board, inbox, host="127.0.0.1", port=0, token=TokenFile(token_file)) as server:
        status, body, _ = request(server.port, f"/v1/activate/{NS}/org/nope")
        assert status == 401 and model_id(0) not in json.dumps(body)
        status, body, _ = request(server.port, f"/v1/activate/{NS}/org/nope",
                                  headers={"Authorization": "Bearer s3cret-token"})
        assert status == 404 and model_id(0) in body["error"] and body["known_models"] == [model_id(0), model_id(1)]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "scaler.example.com"])
def test_a_non_loopback_bind_without_a_token_is_refused_unless_insecure(host):
    board, _, inbox = cold_board()
    with pytest.raises(ValueError, match="--activation-token-file"):
        ActivationServer(board, inbox, host=host, port=0)
    ActivationServer(board, inbox, host=host, port=0, insecure=True)  # explicitly allowed: builds


@pytest.mark.parametrize("length, status", [("-1", 400), ("abc", 400), ("1e3", 400),
                                            (str(MAX_BODY_BYTES + 1), 413), (str(10**12), 413)])
def test_a_bad_or_oversized_content_length_is_refused_without_reading_the_body(length, status):
    board, _, inbox = cold_board()
    with ActivationServer(board, inbox, host="127.0.0.1", port=0) as server:
        answer = raw(server.port, f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
        assert answer.startswith(f"HTTP/1.1 {status}".encode()), answer[:100]
        assert b"Content-Length" in answer.split(b"\r\n\r\n", 1)[1]  # the message names the header
        assert inbox.last_request_at(NS, model_id(0)) is None


def test_a_chunked_body_is_refused_and_a_small_body_is_read_and_ignored():
    board, _, inbox = cold_board()
    with ActivationServer(board, inbox, host="127.0.0.1", port=0) as server:
        answer = raw(server.port, f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "5\r\nhello\r\n0\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
        status, _, _ = request(server.port, body=b'{"model": "ignored"}')
        assert status == 202


def test_connections_are_capped_and_a_closed_one_frees_its_slot():
    board, _, inbox = cold_board()
    with ActivationServer(board, inbox, host="127.0.0.1", port=0, max_connections=3) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)]
        try:
            time.sleep(0.2)  # the server has accepted them: their slots are taken
            answer = raw(server.port, f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 503"), answer[:100]
            idle.pop().close()
            for _ in range(100):
                status = request(server.port)[0]
                if status == 202:
                    break
                time.sleep(0.05)
            assert status == 202
        finally:
            for s in idle:
                s.close()


def test_a_push_for_a_model_that_is_already_active_records_it_but_wakes_no_cycle():
    board, reconciler, inbox = cold_board()
    server = ActivationServer(board, inbox, host="127.0.0.1", port=0)
    status, body = server.activate("POST", PATH)
    assert status == 202 and body["woke"] is True
    assert inbox.take_due() == {(NS, model_id(0))}
    reconciler.run_once(models=[(NS, model_id(0))])
    assert board.get(VariantKey(NS, "model-000")).active
    status, body = server.activate("POST", PATH)
    assert status == 202 and body["woke"] is False  # active already: the next full cycle sees the request time
    assert not inbox.has_pending and inbox.last_request_at(NS, model_id(0)) == body["recorded_at"]


def test_wake_ups_are_coalesced_to_one_per_model_per_second():
    now = [100.0]
    inbox = ActivationInbox(monotonic=lambda: now[0])
    for _ in range(1_000):
        inbox.record(NS, "a")
    inbox.record(NS, "b")
    assert inbox.take_due() == {(NS, "a"), (NS, "b")}
    now[0] = 100.4
    for _ in range(1_000):
        inbox.record(NS, "a")
    assert inbox.take_due() == set() and inbox.has_pending
    assert inbox.next_due() == pytest.approx(0.6)
    now[0] = 101.0
    assert inbox.take_due() == {(NS, "a")}
    assert inbox.next_due() is None and not inbox.has_pending


async def test_a_push_flood_keeps_the_full_cycles_on_schedule_and_wake_cycles_coalesced():
    board, reconciler, inbox = cold_board(models=3)
    reports = []
    task = asyncio.create_task(reconciler.run_forever(3600.0, on_cycle=reports.append))
    stop = threading.Event()

    def flood() -> int:
        sent = 0
        while not stop.is_set():
            inbox.record(NS, model_id(sent % 2))  # two models, 1,000s of pushes a second
            sent += 1
        return sent

    started = time.monotonic()
    pusher = asyncio.get_running_loop().run_in_executor(None, flood)
    try:
        await asyncio.sleep(2.5)
    finally:
        stop.set()
        sent = await pusher
        elapsed = time.monotonic() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sent > 1_000
    full = [r for r in reports if r.models is None]
    woken = [r for r in reports if r.models is not None]
    assert len(full) == 1, f"{len(full)} full cycles under a push flood with a 3600 s interval"
    per_model = max(sum(m in r.models for r in woken) for m in ((NS, model_id(0)), (NS, model_id(1))))
    assert per_model <= elapsed + 2, f"{per_model} wake cycles of one model in {elapsed:.1f} s"
