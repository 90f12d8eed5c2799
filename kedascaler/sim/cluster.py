"""The simulated cluster: Deployments of pods per variant, the gateway queue, and the router.

Each pod runs a `FastReplica` (`kedascaler.sim.replica`). Scale-down removes pods that are not ready first,
then the newest ready ones; a removed pod hands its waiting requests back to the gateway (they start over:
`restart`) and finishes those it is running (draining), billed until empty. Routing goes to the least-loaded
ready pod, as `kedascaler.sim.fleet` ranks pods; the gateway holds requests while no pod is ready.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from kedascaler.engine.types import PodMetrics
from kedascaler.sim.config import SimConfig
from kedascaler.sim.perf import PerfParams
from kedascaler.sim.policy_api import PodCounters, VariantView
from kedascaler.sim.replica import FastReplica, SimRequest


class SimPod:
    """One pod of the simulated cluster: its replica, when it was created and gets ready, its scrapes."""

    __slots__ = ("name", "variant", "created", "ready_at", "replica", "draining", "samples", "ended")

    def __init__(self, name: str, variant: int, created: float, ready_at: float, params: PerfParams) -> None:
        self.name = name
        self.variant = variant
        self.created = created
        self.ready_at = ready_at
        self.replica = FastReplica(params, ready_at)
        self.draining = False
        self.samples: deque[tuple[float, float, float, float]] = deque()  # (t, kv, waiting, running)
        self.ended = math.nan


def restart(req: SimRequest) -> None:
    """A request handed back by a terminating pod starts over (the client's retry): progress lost, arrival kept."""
    req.phase = 0
    req.generated = req.computed = req.blocks = 0
    req.target = req.prompt
    req.first_token = math.nan
    req.variant = -1
    req.scheduled = math.nan
    req.prefill = math.nan
    req.restarts += 1


class Cluster:
    """The simulated model: Deployments of pods per variant, the gateway queue, and the router."""

    def __init__(self, config: SimConfig, instant_start: bool) -> None:
        self.config = config
        self.instant_start = instant_start
        self.pods: list[list[SimPod]] = [[] for _ in config.variants]  # per variant, oldest first
        self.draining: list[SimPod] = []
        self.gateway: deque[SimRequest] = deque()
        self.finished: list[SimRequest] = []
        self.actions = np.zeros(len(config.variants), dtype=np.int64)
        self.replica_seconds = np.zeros(len(config.variants))
        self._names = 0

    def replicas(self, v: int) -> int:
        return len(self.pods[v])

    def ready(self, v: int, now: float) -> list[SimPod]:
        return [p for p in self.pods[v] if p.ready_at <= now]

    def set_replicas(self, v: int, n: int, now: float) -> None:
        pods = self.pods[v]
        n = max(0, n)
        if n == len(pods):
            return
        self.actions[v] += 1
        cfg = self.config.variants[v]
        while len(pods) < n:
            self._names += 1
            delay = 0.0 if self.instant_start else cfg.startup_delay
            pods.append(SimPod(f"{cfg.name}-{self._names}", v, now, now + delay, cfg.params))
        if len(pods) > n:
            # ReplicaSet order: pods not ready first, then the newest.
            order = sorted(pods, key=lambda p: (p.ready_at <= now, p.created, p.name))
            for pod in order[: len(pods) - n]:
                pods.remove(pod)
                if pod.ready_at > now:
                    pod.ended = now
                    continue
                pod.draining = True
                self._requeue(pod.replica)
                self.draining.append(pod)

    def _requeue(self, replica: FastReplica) -> None:
        """A terminating pod's waiting requests go back to the gateway, to start over elsewhere."""
        back = list(replica.waiting) + list(replica.incoming)
        replica.waiting.clear()
        replica.incoming.clear()
        for req in back:
            restart(req)
        if back:
            self.gateway = deque(sorted(list(self.gateway) + back, key=lambda r: (r.arrival, r.id)))

    def route(self, reqs: list[SimRequest] | deque, now: float) -> None:
        """Least-loaded ready pod, as `fleet.py` ranks them: queued requests, then batch fill, then KV usage,
        then name; the gateway when no pod is ready."""
        cands = [p for pods in self.pods for p in pods if p.ready_at <= now]
        if not cands:
            self.gateway.extend(reqs)
            return
        keys: list[list[Any]] = []  # per candidate: [queued, batch fill, KV usage, name], compared in order
        for p in cands:
            r = p.replica
            keys.append([r.outstanding - r.num_running, r.num_running / r.params.max_num_seqs, r.kv_cache_usage, p.name])
        for req in reqs:
            i = min(range(len(cands)), key=keys.__getitem__)
            pod = cands[i]
            req.variant = pod.variant
            pod.replica.submit(req, now)
            keys[i][0] += 1

    def advance(self, now: float, end: float) -> None:
        tick = end - now
        for v, pods in enumerate(self.pods):
            self.replica_seconds[v] += len(pods) * tick
            for pod in pods:
                if pod.ready_at < end:
                    pod.replica.advance(end)
                    if pod.replica.finished:
                        self.finished += pod.replica.take_finished()
        still = []
        for pod in self.draining:
            self.replica_seconds[pod.variant] += tick
            pod.replica.advance(end)
            self.finished += pod.replica.take_finished()
            if pod.replica.outstanding == 0:
                pod.ended = end
            else:
                still.append(pod)
        self.draining = still

    def scrape(self, now: float, window: float) -> None:
        for pods in self.pods:
            for pod in pods:
                if pod.ready_at <= now:
                    r = pod.replica
                    pod.samples.append((now, r.kv_cache_usage, float(r.num_waiting), float(r.num_running)))
                    while pod.samples and pod.samples[0][0] <= now - window:
                        pod.samples.popleft()

    def view(self, now: float, direct: bool, counters: bool = False) -> tuple[VariantView, ...]:
        out = []
        for v, cfg in enumerate(self.config.variants):
            ready = self.ready(v, now)
            metrics, latest = [], []
            for pod in ready:
                if direct:
                    r = pod.replica
                    metrics.append(PodMetrics(pod.name, r.kv_cache_usage, float(r.num_waiting), float(r.num_running), now))
                elif pod.samples:
                    s = pod.samples
                    metrics.append(PodMetrics(pod.name, max(x[1] for x in s), max(x[2] for x in s),
                                              max(x[3] for x in s), s[-1][0]))
                    latest.append(PodMetrics(pod.name, s[-1][1], s[-1][2], s[-1][3], s[-1][0]))
            reads = tuple(PodCounters(p.name, p.replica.read_counters(),
                                      p.replica.num_running + p.replica.num_waiting)
                          for p in ready) if counters else ()
            out.append(VariantView(cfg, len(self.pods[v]), len(ready), tuple(metrics),
                                   tuple(metrics) if direct else tuple(latest), reads))
        return tuple(out)
