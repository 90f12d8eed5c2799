"""List-then-watch of one Kubernetes resource into an in-memory store, in a thread (a "reflector").

The raw stream of events is handled here and nowhere else: resourceVersion bookkeeping, BOOKMARK events,
a re-list when the server answers 410 Gone, resuming from the last resourceVersion when a connection drops,
and back-off with jitter on errors. What the objects mean is the caller's business: it reads `items()` and
is told through `on_change` that something changed.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger("kedascaler.kubernetes.watch")

HTTP_GONE = 410


@dataclass(frozen=True)
class WatchedResource:
    """What to watch: a list function of the official client (bound to namespace/selector), and its kind."""

    kind: str
    api_version: str
    list_call: Callable[..., Any]  # accepts watch, resource_version, allow_watch_bookmarks, timeout_seconds, ...
    description: str = ""  # for logs, e.g. "VariantAutoscalings in all namespaces"
    trim: Callable[[dict], dict] | None = None  # what of an object to keep in the store (None: all of it)


class _Gone(Exception):
    """The resourceVersion we hold is too old: list again."""


def backoff_delay(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential back-off with 'equal jitter': half fixed, half random, so watchers never retry in lockstep."""
    ceiling = min(cap, base * (2 ** max(0, failures - 1)))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class Reflector:
    """Keeps `items()` equal to the server's objects of one resource, by list-then-watch in a daemon thread."""

    def __init__(self, resource: WatchedResource, on_change: Callable[[], None] | None = None, *,
                 watch_timeout_s: int = 300, backoff_base_s: float = 0.5, backoff_max_s: float = 30.0,
                 request_timeout_s: float = 30.0, rng: random.Random | None = None) -> None:
        self.resource = resource
        self.on_change = on_change
        self.watch_timeout_s = watch_timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.request_timeout_s = request_timeout_s
        self.rng = rng or random.Random()
        self.synced = threading.Event()
        self.resource_version = ""
        self.lists = 0  # how many times the store was (re)built from a list
        self.watches = 0  # how many watch requests were opened
        self.errors = 0
        self._store: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None

    # -- public --
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"watch-{self.resource.kind}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            for closer in ("shutdown", "close"):
                try:
                    getattr(response, closer)()
                except Exception:  # noqa: BLE001 - best effort: the thread also checks the stop flag
                    pass
        if self._thread is not None:
            self._thread.join(timeout)

    def items(self) -> list[dict]:
        with self._lock:
            return list(self._store.values())

    def get(self, namespace: str, name: str) -> dict | None:
        with self._lock:
            return self._store.get((namespace, name))

    # -- the loop --
    def _run(self) -> None:
        need_list = True
        failures = 0
        while not self._stop.is_set():
            try:
                if need_list:
                    self._list()
                    need_list = False
                    failures = 0
                if self._watch():
                    failures = 0
            except _Gone:
                log.info("%s: resourceVersion %s expired (410 Gone); listing again", self._what(),
                         self.resource_version)
                need_list = True
            except Exception as exc:  # noqa: BLE001 - network, API and decoding errors all mean: wait, retry
                if self._stop.is_set():
                    break
                if isinstance(exc, ApiException) and exc.status == HTTP_GONE:
                    need_list = True
                    continue
                failures += 1
                self.errors += 1
                delay = backoff_delay(failures, self.backoff_base_s, self.backoff_max_s, self.rng)
                log.warning("%s: watch failed (%s); retrying in %.1fs from resourceVersion %s",
                            self._what(), _short(exc), delay, self.resource_version or "(list)")
                self._stop.wait(delay)

    def _what(self) -> str:
        return self.resource.description or self.resource.kind

    def _normalise(self, obj: dict) -> dict:
        if self.resource.trim is not None:
            obj = self.resource.trim(obj)
        obj.setdefault("kind", self.resource.kind)
        obj.setdefault("apiVersion", self.resource.api_version)
        return obj

    @staticmethod
    def _key(obj: dict) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return meta.get("namespace") or "", meta.get("name") or ""

    def _list(self) -> None:
        response = self.resource.list_call(_preload_content=False, _request_timeout=self.request_timeout_s)
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        store = {self._key(o): self._normalise(o) for o in body.get("items") or []}
        with self._lock:
            self._store = store
        self.resource_version = (body.get("metadata") or {}).get("resourceVersion", "")
        self.lists += 1
        self.synced.set()
        log.debug("%s: listed %d objects at resourceVersion %s", self._what(), len(store), self.resource_version)
        self._changed()

    def _watch(self) -> bool:
        """One watch request, until the server ends it; True when it delivered at least one event."""
        self.watches += 1
        response = self.resource.list_call(
            watch=True, resource_version=self.resource_version or None, allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout_s, _preload_content=False,
            _request_timeout=(self.request_timeout_s, self.watch_timeout_s + self.request_timeout_s))
        self._response = response
        got_any = False
        try:
            if self._stop.is_set():  # stop() ran while the request was being opened
                return False
            for line in iter_resp_lines(response):
                if self._stop.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                got_any = True
                self._apply(event.get("type"), event.get("object") or {})
        finally:
            self._response = None
            try:
                response.close()  # never hand a half-read stream back to the connection pool
            except Exception:  # noqa: BLE001
                pass
        return got_any

    def _apply(self, event_type: str | None, obj: dict) -> None:
        if event_type == "ERROR":
            if obj.get("code") == HTTP_GONE:
                raise _Gone()
            raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if event_type == "BOOKMARK":
            if rv:
                self.resource_version = rv
            return
        key = self._key(obj)
        with self._lock:
            if event_type == "DELETED":
                self._store.pop(key, None)
            elif event_type in ("ADDED", "MODIFIED"):
                self._store[key] = self._normalise(obj)
            else:
                log.debug("%s: ignoring watch event of type %r", self._what(), event_type)
                return
        if rv:
            self.resource_version = rv
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the watch
                log.exception("%s: change listener failed", self._what())


_HINTS = {
    403: "the service account may not list/watch this resource: check the chart's RBAC",
    404: "the resource type is unknown to the API server: is the VariantAutoscaling CRD installed?",
}


def _short(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        hint = _HINTS.get(exc.status or 0)
        return f"HTTP {exc.status} {exc.reason}" + (f" ({hint})" if hint else "")
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]
