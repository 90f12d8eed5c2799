"""Leader election with a coordination.k8s.io/v1 Lease, so that one replica writes VA status and Events.

Like client-go's: a lease is expired when its record has not changed for `lease_seconds` as seen by *our*
monotonic clock (no trust in other nodes' clocks, none in our wall clock's jumps); updates carry the
resourceVersion read, so two candidates racing for the same lease get one 200 and one 409 Conflict. Every
replica still serves gRPC: only writes need a leader.

Leadership ends `renew_deadline_s` after the last renewal that succeeded (measured from when it was sent),
whatever the renewing thread is doing: a black-holed API server that never answers cannot keep `is_leader`
true, and the deadline (default ⅔ of the lease) ends before any other candidate may take the lease. Every
call has a timeout (`request_timeout_s`), so the thread gets to try again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import kubernetes.client
from kubernetes.client.exceptions import ApiException

if TYPE_CHECKING:
    import urllib3

log = logging.getLogger("kedascaler.actuate.leader")


# The Lease is read and written as JSON: the client sends a dict body as it is, and with
# `_preload_content=False` returns the urllib3 response rather than the model its signature names.
def _as_body(lease: dict[str, Any]) -> kubernetes.client.V1Lease:
    return cast(kubernetes.client.V1Lease, lease)


def _raw(response: object) -> urllib3.BaseHTTPResponse:
    return cast("urllib3.BaseHTTPResponse", response)


def micro_time(seconds: float) -> str:
    """Kubernetes MicroTime: RFC 3339 with microseconds, UTC."""
    whole = int(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((seconds - whole) * 1e6):06d}Z"


class LeaderElector:
    """`try_acquire_or_renew()` every `retry_period_s` (`start()` runs it in a thread); `is_leader` while it holds."""

    def __init__(self, api_client: kubernetes.client.ApiClient, namespace: str, name: str, identity: str,
                 lease_seconds: int = 15, *, renew_deadline_s: float | None = None,
                 retry_period_s: float | None = None, request_timeout_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        """client-go's defaults, scaled to the lease: renew deadline ⅔ of it (10 s of 15), a try every 2/15 of it
        (2 s), each call within min(5 s, ½ the deadline). `clock`: the monotonic clock of every timer; `wall`:
        the times written into the Lease (for people reading it)."""
        self.coordination = kubernetes.client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_deadline_s = renew_deadline_s if renew_deadline_s is not None else lease_seconds * 2 / 3
        self.retry_period_s = retry_period_s if retry_period_s is not None else lease_seconds * 2 / 15
        if not 0 < self.retry_period_s < self.renew_deadline_s < lease_seconds:
            raise ValueError(f"leader election needs 0 < retry period ({self.retry_period_s:g} s) < renew deadline "
                             f"({self.renew_deadline_s:g} s) < lease duration ({lease_seconds} s)")
        self.request_timeout_s = request_timeout_s or min(5.0, self.renew_deadline_s / 2)
        self.clock = clock
        self.wall = wall
        self._renewed_at: float | None = None  # when (our clock) the last successful renewal was sent
        self._observed: tuple[Any, ...] | None = None  # the other holder's record as last seen
        self._observed_at = 0.0  # when (our clock) that record last changed
        self._observed_duration = float(lease_seconds)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        """True while the last successful renewal is younger than the renew deadline."""
        renewed = self._renewed_at
        return renewed is not None and self.clock() - renewed < self.renew_deadline_s

    @property
    def other_leads(self) -> bool:
        """True while another replica holds the lease and renewed it within its duration, as this replica last
        saw it: that replica's decisions (in the VA statuses it writes) are the ones to serve."""
        seen = self._observed
        if seen is None or not seen[0] or seen[0] == self.identity or self.is_leader:
            return False
        return self.clock() < self._observed_at + self._observed_duration

    def start(self, renew_every_s: float | None = None) -> LeaderElector:
        """Try and renew in a daemon thread every `renew_every_s` (default `retry_period_s`); read `is_leader`."""
        period = renew_every_s or self.retry_period_s

        def loop() -> None:
            while not self._stop.is_set():
                self.try_acquire_or_renew()
                self._stop.wait(period)

        if self._thread is None:
            self._thread = threading.Thread(target=loop, name="leader-election", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing and give the lease up."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2 * self.request_timeout_s + 1.0)
            self._thread = None
        self.release()

    def _read(self) -> dict[str, Any] | None:
        try:
            response = self.coordination.read_namespaced_lease(self.name, self.namespace, _preload_content=False,
                                                               _request_timeout=self.request_timeout_s)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        lease: dict[str, Any] = json.loads(_raw(response).data)
        return lease

    def _spec(self, acquire_time: str | None, transitions: int) -> dict[str, Any]:
        wall = self.wall()
        return {"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": acquire_time or micro_time(wall), "renewTime": micro_time(wall),
                "leaseTransitions": transitions}

    def try_acquire_or_renew(self, now: float | None = None) -> bool:
        """Take the lease if it is free or expired, renew it if ours; False when someone else holds it.

        `now`: this try's reading of `clock` (default: read it). A try that cannot reach the API server keeps
        the leadership until the renew deadline of the last renewal that succeeded, and returns `is_leader`."""
        now = self.clock() if now is None else now
        was = self._renewed_at is not None and now - self._renewed_at < self.renew_deadline_s
        try:
            held = self._attempt(now)
        except Exception as exc:  # noqa: BLE001 - cannot reach the API: leading only until the deadline
            held = None
            log.warning("leader election: cannot read or write Lease %s/%s: %s", self.namespace, self.name, exc)
        if held:
            self._renewed_at = now  # as sent: others saw the record change no earlier than this
        elif held is False:
            self._renewed_at = None  # someone else holds it
        leading = self._renewed_at is not None and now - self._renewed_at < self.renew_deadline_s
        if leading != was:
            log.info("leader election: %s %s the lease %s/%s%s", self.identity, "acquired" if leading else "lost",
                     self.namespace, self.name,
                     "" if leading or held is False else f": no renewal within {self.renew_deadline_s:g} s")
        return leading

    def _attempt(self, now: float) -> bool:
        lease = self._read()
        if lease is None:
            body: dict[str, Any] = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(None, 0)}
            try:
                _raw(self.coordination.create_namespaced_lease(self.namespace, _as_body(body), _preload_content=False,
                                                               _request_timeout=self.request_timeout_s)).read()
            except ApiException as exc:
                if exc.status == 409:
                    return False  # someone created it first
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = spec.get("leaseDurationSeconds") or self.lease_seconds
        self._observed_duration = float(duration)
        if holder and holder != self.identity and now < self._observed_at + duration:
            return False  # held by someone else, and alive as far as we have seen
        transitions = int(spec.get("leaseTransitions") or 0)
        acquire = spec.get("acquireTime") if holder == self.identity else None
        if holder != self.identity:
            transitions += 1
        lease["spec"] = self._spec(acquire, transitions)
        try:
            _raw(self.coordination.replace_namespaced_lease(self.name, self.namespace, _as_body(lease),
                                                            _preload_content=False,
                                                            _request_timeout=self.request_timeout_s)).read()
        except ApiException as exc:
            if exc.status == 409:
                return False  # the lease changed under us: someone else renewed or took it
            raise
        return True

    def release(self) -> None:
        """Give the lease up on shutdown so another replica takes over at once (when it is still ours)."""
        if self._renewed_at is None:
            return
        self._renewed_at = None  # not leading from here on, whether the release gets through or not
        try:
            lease = self._read()
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                _raw(self.coordination.replace_namespaced_lease(self.name, self.namespace, _as_body(lease),
                                                                _preload_content=False,
                                                                _request_timeout=self.request_timeout_s)).read()
        except Exception as exc:  # noqa: BLE001
            log.warning("leader election: could not release Lease %s/%s: %s", self.namespace, self.name, exc)
