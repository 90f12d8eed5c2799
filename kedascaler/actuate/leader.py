"""Leader election with a coordination.k8s.io/v1 Lease, so that one replica writes VA status and Events.

Like client-go's: a lease is expired when its record has not changed for `lease_seconds` as seen by *our*
clock (no trust in other nodes' clocks); updates carry the resourceVersion read, so two candidates racing
for the same lease get one 200 and one 409 Conflict. Every replica still serves gRPC: only writes need a leader.
"""

from __future__ import annotations

import json
import logging
import threading
import time
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
    """`try_acquire_or_renew(now)` once per cycle; True while this identity holds the lease."""

    def __init__(self, api_client: kubernetes.client.ApiClient, namespace: str, name: str, identity: str,
                 lease_seconds: int = 15) -> None:
        self.coordination = kubernetes.client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.is_leader = False
        self._observed: tuple[Any, ...] | None = None  # the other holder's record as last seen
        self._observed_at = 0.0  # when (our clock) that record last changed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, renew_every_s: float | None = None) -> LeaderElector:
        """Try and renew in a daemon thread every `renew_every_s` (default a third of the lease); read `is_leader`."""
        period = renew_every_s or self.lease_seconds / 3

        def loop() -> None:
            while not self._stop.is_set():
                self.try_acquire_or_renew(time.time())
                self._stop.wait(period)

        if self._thread is None:
            self._thread = threading.Thread(target=loop, name="leader-election", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing and give the lease up."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self.release()

    def _read(self) -> dict[str, Any] | None:
        try:
            response = self.coordination.read_namespaced_lease(self.name, self.namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        lease: dict[str, Any] = json.loads(_raw(response).data)
        return lease

    def _spec(self, now: float, acquire_time: str | None, transitions: int) -> dict[str, Any]:
        return {"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": acquire_time or micro_time(now), "renewTime": micro_time(now),
                "leaseTransitions": transitions}

    def try_acquire_or_renew(self, now: float) -> bool:
        """Take the lease if it is free or expired, renew it if ours; False when someone else holds it."""
        was = self.is_leader
        try:
            self.is_leader = self._attempt(now)
        except Exception as exc:  # noqa: BLE001 - cannot reach the API: not safe to act as leader
            log.warning("leader election: cannot read or write Lease %s/%s: %s", self.namespace, self.name, exc)
            self.is_leader = False
        if self.is_leader != was:
            log.info("leader election: %s %s the lease %s/%s", self.identity,
                     "acquired" if self.is_leader else "lost", self.namespace, self.name)
        return self.is_leader

    def _attempt(self, now: float) -> bool:
        lease = self._read()
        if lease is None:
            body: dict[str, Any] = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(now, None, 0)}
            try:
                _raw(self.coordination.create_namespaced_lease(self.namespace, _as_body(body),
                                                               _preload_content=False)).read()
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
        if holder and holder != self.identity and now < self._observed_at + duration:
            return False  # held by someone else, and alive as far as we have seen
        transitions = int(spec.get("leaseTransitions") or 0)
        acquire = spec.get("acquireTime") if holder == self.identity else None
        if holder != self.identity:
            transitions += 1
        lease["spec"] = self._spec(now, acquire, transitions)
        try:
            _raw(self.coordination.replace_namespaced_lease(self.name, self.namespace, _as_body(lease),
                                                            _preload_content=False)).read()
        except ApiException as exc:
            if exc.status == 409:
                return False  # the lease changed under us: someone else renewed or took it
            raise
        return True

    def release(self) -> None:
        """Give the lease up on shutdown so another replica takes over at once."""
        if not self.is_leader:
            return
        try:
            lease = self._read()
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                _raw(self.coordination.replace_namespaced_lease(self.name, self.namespace, _as_body(lease),
                                                                _preload_content=False)).read()
        except Exception as exc:  # noqa: BLE001
            log.warning("leader election: could not release Lease %s/%s: %s", self.namespace, self.name, exc)
        self.is_leader = False
