"""Fixtures for the Kubernetes edge: an in-memory API server and an ApiClient pointing at it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.kube_apiserver import FakeApiServer, api_client_for
from tests.support.kube_discovery import pruning  # noqa: F401 - re-exported for the tests


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def api_client(apiserver: FakeApiServer):
    client = api_client_for(apiserver)
    yield client
    client.close()


def eventually(check: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll until `check()` is true (watches are asynchronous); False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()
