"""A real Prometheus server for tests: started on a free loopback port, scraping the given targets.

Uses the installed binary (`prometheus` on PATH, or Debian's /usr/bin/prometheus). Without it the test is
skipped locally and fails in CI (`CI=true`), where scripts/test.sh installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests


def prometheus_binary() -> str:
    """Path of the prometheus binary; fails the test in CI and skips it elsewhere when there is none."""
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)
    if found:
        return found
    message = "the prometheus binary is not installed (scripts/test.sh installs Debian's `prometheus`)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2, what: str = "") -> Any:
    """Poll until `predicate()` is truthy and return it; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(interval)


@dataclass(frozen=True)
class PrometheusHandle:
    """A running Prometheus: its base URL, and the process and files behind it."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    config_path: Path
    log_path: Path

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's result (a vector, or a matrix for a range selector), evaluated at `at` (Unix
        seconds, Prometheus keeps milliseconds) or now; raises on HTTP errors: this is test plumbing."""
        params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
        response = requests.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def targets_up(self) -> int:
        """How many active targets had a successful last scrape."""
        try:
            response = requests.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=5)
            active = response.json()["data"]["activeTargets"]
        except (requests.RequestException, ValueError, KeyError):
            return 0
        return sum(1 for t in active if t.get("health") == "up")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server (idempotent): SIGTERM, then SIGKILL if it does not exit in 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(targets: Sequence[tuple[str, Mapping[str, str]]], interval: str) -> dict[str, Any]:
    """One scrape job per target, so each gets its own labels, path and scheme."""
    jobs = []
    for i, (url, labels) in enumerate(targets):
        parts = urlsplit(url)
        jobs.append({
            "job_name": f"target-{i}",
            "scheme": parts.scheme or "http",
            "metrics_path": parts.path or "/metrics",
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "static_configs": [{"targets": [parts.netloc], "labels": dict(labels)}],
        })
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval}, "scrape_configs": jobs}


@contextmanager
def run_prometheus(targets: Sequence[tuple[str, Mapping[str, str]]], tmp_path: Path, *,
                   scrape_interval: str = "1s", timeout: float = 60.0) -> Iterator[PrometheusHandle]:
    """Start Prometheus scraping `targets` ((url, labels such as namespace and pod)), wait until it is ready
    and every target is up, yield its handle, and stop it on exit."""
    binary = prometheus_binary()
    root = tmp_path / f"prometheus-{time.monotonic_ns()}"
    root.mkdir(parents=True)
    config_path = root / "prometheus.yml"
    config_path.write_text(json.dumps(_config(targets, scrape_interval), indent=2))  # JSON is YAML
    log_path = root / "prometheus.log"
    handle: PrometheusHandle | None = None
    for _attempt in range(3):  # the free port may be taken between our probe and Prometheus' bind
        port = _free_port()
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [binary, f"--config.file={config_path}", f"--storage.tsdb.path={root / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=info"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        candidate = PrometheusHandle(f"http://127.0.0.1:{port}", port, process, config_path, log_path)
        if _wait_ready(candidate, timeout):
            handle = candidate
            break
        candidate.stop()
        if "address already in use" not in candidate.log_tail():
            pytest.fail(f"prometheus did not get ready in {timeout:.0f} s:\n{candidate.log_tail()}")
    if handle is None:
        pytest.fail(f"prometheus could not bind a free port:\n{log_path.read_text(errors='replace')[-2000:]}")
    try:
        wait_until(lambda: handle.process.poll() is not None or handle.targets_up() == len(targets),
                   timeout, what=f"{len(targets)} targets up")
        if handle.process.poll() is not None:
            pytest.fail(f"prometheus exited:\n{handle.log_tail()}")
        yield handle
    finally:
        handle.stop()


def _wait_ready(handle: PrometheusHandle, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if handle.process.poll() is not None:
            return False
        try:
            if requests.get(f"{handle.url}/-/ready", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False
