"""One variant's emulated Deployment: replicas asked for, pods that get ready after a start-up delay, drains.

Scaling down: a removed pod leaves the Deployment at once (not counted, not a scrape target), hands its
waiting requests back to the fleet to be routed again, finishes the requests it is running (graceful
termination), then closes. Pods not ready yet are removed first, then the most recently started. A
Deployment is part of its `EmulatedFleet`: it works under the fleet's lock and hands requests back to it.
"""

from __future__ import annotations

import random
import threading
from typing import Protocol

from kedascaler.engine.types import VariantKey
from kedascaler.sim.emulator import EmulatedPod
from kedascaler.sim.perf import PerfParams
from kedascaler.sim.vllm_engine import FinishedRequest, Request
from kedascaler.sources.base import ScrapeTarget


class Fleet(Protocol):
    """What a Deployment needs of the `EmulatedFleet` that owns it (its lock, clock, and requeue)."""

    _lock: threading.RLock

    @property
    def now(self) -> float: ...

    @property
    def started(self) -> bool: ...

    def _requeue(self, model: str, requests: list[Request]) -> None: ...

TIME_SLACK = 1e-9  # float slack on time comparisons, so that t accumulated by ticks still reaches ready_at
_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' pod-name alphabet


class EmulatedDeployment:
    """One variant's Deployment: replicas asked for, pods that become ready after `startup_delay` seconds.

    Made by `EmulatedFleet.add_deployment`; all methods are safe to call while the fleet advances.
    """

    def __init__(self, fleet: Fleet, name: str, model: str, accelerator: str, params: PerfParams,
                 startup_delay: float, namespace: str, seed: str) -> None:
        self.name = name
        self.model = model
        self.accelerator = accelerator
        self.params = params
        self.startup_delay = startup_delay
        self.namespace = namespace
        self._fleet = fleet
        self._pods: list[EmulatedPod] = []  # oldest first
        self._ready: set[str] = set()
        self._draining: list[EmulatedPod] = []
        self._rng = random.Random(seed)

    def __repr__(self) -> str:
        return f"EmulatedDeployment({self.name!r}, model={self.model!r}, {self.ready_replicas}/{self.current_replicas})"

    def set_replicas(self, n: int) -> None:
        """Ask for `n` replicas: new pods get ready `startup_delay` seconds from now; removed pods drain."""
        if n < 0:
            raise ValueError(f"replicas must be >= 0, got {n}")
        with self._fleet._lock:
            now = self._fleet.now
            while len(self._pods) < n:
                pod = EmulatedPod(self._new_pod_name(), self.model, self.params, start_time=now,
                                  ready_at=now + self.startup_delay)
                self._pods.append(pod)
            if len(self._pods) > n:
                # Not-ready pods go first, then the newest ready ones (what a ReplicaSet prefers).
                order = sorted(range(len(self._pods)), key=lambda i: (self._pods[i].name in self._ready, -i))
                doomed = {id(self._pods[i]) for i in order[: len(self._pods) - n]}
                for pod in [p for p in self._pods if id(p) in doomed]:
                    self._remove(pod)
                self._pods = [p for p in self._pods if id(p) not in doomed]
            self._update_readiness(now)

    @property
    def current_replicas(self) -> int:
        with self._fleet._lock:
            return len(self._pods)

    @property
    def ready_replicas(self) -> int:
        with self._fleet._lock:
            return len(self._ready)

    @property
    def pods(self) -> tuple[EmulatedPod, ...]:
        """The Deployment's pods (ready or starting), oldest first; draining pods are not included."""
        with self._fleet._lock:
            return tuple(self._pods)

    @property
    def ready_pods(self) -> tuple[EmulatedPod, ...]:
        with self._fleet._lock:
            return tuple(p for p in self._pods if p.name in self._ready)

    @property
    def draining_pods(self) -> tuple[EmulatedPod, ...]:
        with self._fleet._lock:
            return tuple(self._draining)

    def targets(self, variant: VariantKey) -> tuple[ScrapeTarget, ...]:
        """Scrape targets of the ready pods that are serving HTTP."""
        return tuple(ScrapeTarget(variant, p.name, p.url) for p in self.ready_pods if p.url)

    # --- driven by the fleet, under its lock ---

    def _new_pod_name(self) -> str:
        taken = {p.name for p in self._pods + self._draining}
        while True:
            name = f"{self.name}-{''.join(self._rng.choice(_SUFFIX_CHARS) for _ in range(5))}"
            if name not in taken:
                return name

    def _remove(self, pod: EmulatedPod) -> None:
        if pod.name not in self._ready:
            pod.close()
            return
        self._ready.discard(pod.name)
        self._fleet._requeue(self.model, pod.take_waiting())
        self._draining.append(pod)

    def _update_readiness(self, now: float) -> None:
        for pod in self._pods:
            if pod.name not in self._ready and pod.ready_at <= now + TIME_SLACK:
                self._ready.add(pod.name)
                if self._fleet.started:
                    pod.start()

    def _step(self, dt: float) -> list[FinishedRequest]:
        finished: list[FinishedRequest] = []
        for pod in self._pods + self._draining:
            finished += pod.step(dt)
        gone = [p for p in self._draining if p.engine.outstanding == 0]
        for pod in gone:
            pod.close()
        if gone:
            self._draining = [p for p in self._draining if p.engine.outstanding]
        return finished

    def _close(self) -> None:
        for pod in self._pods + self._draining:
            pod.close()
