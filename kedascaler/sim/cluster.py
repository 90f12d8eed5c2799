"""The simulated cluster: Deployments of pods per variant, the gateway queue, and the router.

Each pod runs a `FastReplica` (`kedascaler.sim.replica`). Scale-down removes pods as the ReplicaSet controller
ranks them (`controller.ActivePodsWithRanks`): not ready first, then — when the policy sets it
(`sets_deletion_cost`) — the lowest `controller.kubernetes.io/pod-deletion-cost`, then the most recently
created. A policy that sets deletion cost ranks each ready pod by the requests its last scrape showed
(running + waiting), so the emptiest go first; without it, Kubernetes knows nothing of the load. A removed pod
hands its waiting requests back to the gateway (they start over: `restart`) and has
`SimConfig.termination_grace_s` to finish those it is running (draining, billed); those still running then are
aborted — killed mid-generation, retried by the client from the start — and the GPU time they used is wasted.
The gateway holds requests while no pod is ready. A request handed to a pod stays on it until it finishes (vLLM
cannot migrate a request): routing happens once per request, on arrival or when the gateway's queue is let go.

Routers (`SimConfig.router`), both among the ready pods of all the model's variants, random choices drawn
from `SimConfig.seed`:

* `service` — a Kubernetes Service (kube-proxy): a ready pod picked uniformly at random per request (as if
  every request opened its own connection: no keep-alive pinning).
* `epp` — the llm-d inference scheduler's endpoint picker with its default profile
  (github.com/llm-d/llm-d-inference-scheduler @ 520af47896e5f06e43d09aca281a1149187b0ffd,
  `pkg/epp/config/loader/defaults.go`): scorers `queue-scorer` weight 2, `kv-cache-utilization-scorer`
  weight 2 and `prefix-cache-scorer` weight 3, summed (`pkg/epp/scheduling/scheduler_profile.go`), then
  `max-score-picker`, which shuffles before a stable sort: ties go to a random pod
  (`pkg/epp/framework/plugins/scheduling/picker/maxscore/picker.go`). The queue score is
  (max waiting − pod's waiting) ÷ (max − min) over the candidates, 1 for all when equal
  (`scorer/queuedepth/queue.go`); the KV score is 1 − KV-cache usage (`scorer/kvcacheutilization/`).
  The simulated requests share no prefixes, so the prefix score is 0 everywhere and drops out. The picker
  reads metrics refreshed every 50 ms (`--refresh-metrics-interval`, `pkg/epp/server/options.go`): requests
  dispatched within one 50 ms refresh see the same numbers, and each refresh adds what the requests routed
  before it did to their pod (admitted: its prompt's KV blocks; not admitted: one more waiting). Flow control
  (the `flowControl` feature gate) is off by default upstream and not modelled beyond the gateway's queue
  while no pod is ready.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from kedascaler.engine.deletion import pod_cost
from kedascaler.engine.types import PodMetrics
from kedascaler.sim.config import SimConfig, VariantConfig
from kedascaler.sim.perf import PerfParams
from kedascaler.sim.policy_api import PodCounters, VariantView
from kedascaler.sim.replica import FastReplica, SimRequest

ROUTERS = ("epp", "service")
EPP_QUEUE_WEIGHT = 2.0  # llm-d defaults.go: queue-scorer
EPP_KV_WEIGHT = 2.0  # llm-d defaults.go: kv-cache-utilization-scorer (prefix-cache-scorer, weight 3: 0 here)
EPP_REFRESH = 0.05  # s, llm-d options.go: RefreshMetricsInterval


def initial_fleet(config: SimConfig) -> dict[str, int]:
    """The warm replicas per variant every policy starts from (`SimConfig.initial_fleet`; default one replica
    of the cheapest variant, by cost then name)."""
    if config.initial_fleet is not None:
        return {name: int(n) for name, n in config.initial_fleet}
    first: VariantConfig = min(config.variants, key=lambda v: (v.cost, v.name))
    return {first.name: 1}


class SimPod:
    """One pod of the simulated cluster: its replica, when it was created and gets ready, its scrapes."""

    __slots__ = ("name", "serial", "variant", "created", "ready_at", "replica", "draining", "samples", "ended",
                 "deadline")

    def __init__(self, name: str, variant: int, created: float, ready_at: float, params: PerfParams,
                 serial: int = 0) -> None:
        self.name = name
        self.serial = serial  # creation order in the cluster
        self.variant = variant
        self.created = created
        self.ready_at = ready_at
        self.replica = FastReplica(params, ready_at)
        self.draining = False
        self.samples: deque[tuple[float, float, float, float]] = deque()  # (t, kv, waiting, running)
        self.ended = math.nan
        self.deadline = math.inf  # draining: when the grace period ends and what still runs is killed

    def deletion_cost(self) -> float:
        """What a scaler that sets pod-deletion-cost puts on this pod, from its last scrape: the actuator's own
        `pod_cost` (requests in flight, then KV cache in use)."""
        if not self.samples:
            return 0.0
        _, kv, waiting, running = self.samples[-1]
        return float(pod_cost(running, waiting, kv))


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
        self.replica_seconds_after_warmup = np.zeros(len(config.variants))  # billed from `config.warmup` on
        self._names = 0
        self.deletion_cost = False  # the policy sets pod-deletion-cost: the emptiest ready pods go first
        self.aborted = 0  # requests killed mid-generation by a terminated pod
        self.aborted_gpu_s = 0.0  # GPU-seconds those aborted runs had used
        if config.router not in ROUTERS:
            raise ValueError(f"unknown router {config.router!r}; known: {', '.join(ROUTERS)}")
        self.rng = np.random.default_rng(config.seed)

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
            pods.append(SimPod(f"{cfg.name}-{self._names}", v, now, now + delay, cfg.params, self._names))
        if len(pods) > n:
            # ReplicaSet order (controller.ActivePodsWithRanks): pods not ready first, then the lowest
            # pod-deletion-cost (when the policy sets it), then the newest.
            def rank(p: SimPod) -> tuple[bool, float, float, int]:
                return (p.ready_at <= now, p.deletion_cost() if self.deletion_cost else 0.0, -p.created, -p.serial)
            order = sorted(pods, key=rank)
            for pod in order[: len(pods) - n]:
                pods.remove(pod)
                if pod.ready_at > now:
                    pod.ended = now
                    continue
                self._requeue(pod.replica)
                if pod.replica.outstanding == 0:  # nothing to drain: gone at once
                    pod.ended = now
                    continue
                pod.draining = True
                pod.deadline = now + self.config.termination_grace_s
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
        """Hand each request to a ready pod as `config.router` picks it; to the gateway when none is ready."""
        cands = [p for pods in self.pods for p in pods if p.ready_at <= now]
        if not cands:
            self.gateway.extend(reqs)
            return
        if self.config.router == "service":
            for req, i in zip(reqs, self.rng.integers(0, len(cands), size=len(reqs)), strict=True):
                self._submit(cands[int(i)], req, now)
            return
        self._route_epp(list(reqs), cands, now)

    def _route_epp(self, reqs: list[SimRequest], cands: list[SimPod], now: float) -> None:
        """The endpoint picker: per request the highest 2 × queue score + 2 × KV score, a random one of the best,
        on metrics refreshed every `EPP_REFRESH` seconds (see the module's docstring)."""
        reps = [p.replica for p in cands]
        waiting = np.array([r.num_waiting for r in reps], dtype=float)
        used = np.array([r.used_blocks for r in reps], dtype=float)
        blocks = np.array([r.params.num_gpu_blocks for r in reps], dtype=float)
        slots = np.array([r.params.max_num_seqs - r.num_running for r in reps], dtype=float)
        block_size = np.array([r.params.block_size for r in reps])
        best = np.zeros(0, dtype=np.int64)
        epoch = math.nan
        for req in reqs:
            at = max(now, req.arrival)
            if at // EPP_REFRESH != epoch:  # a refresh: the picker sees what the requests before did
                epoch = at // EPP_REFRESH
                lo, hi = waiting.min(), waiting.max()
                queue_score = (hi - waiting) / (hi - lo) if hi > lo else np.ones(len(cands))
                total = EPP_QUEUE_WEIGHT * queue_score + EPP_KV_WEIGHT * (1.0 - np.minimum(1.0, used / blocks))
                best = np.flatnonzero(total >= total.max() - 1e-12)
            i = int(best[0] if len(best) == 1 else best[self.rng.integers(len(best))])
            need = -(-(req.prompt + 1) // int(block_size[i]))
            if waiting[i] == 0 and slots[i] > 0 and used[i] + need <= blocks[i]:  # admitted at its next step
                slots[i] -= 1
                used[i] += need
            else:
                waiting[i] += 1
            self._submit(cands[i], req, now)

    @staticmethod
    def _submit(pod: SimPod, req: SimRequest, now: float) -> None:
        req.variant = pod.variant
        pod.replica.submit(req, now)

    def advance(self, now: float, end: float) -> None:
        tick = end - now
        warm = now >= self.config.warmup - 1e-9
        for v, pods in enumerate(self.pods):
            self.replica_seconds[v] += len(pods) * tick
            if warm:
                self.replica_seconds_after_warmup[v] += len(pods) * tick
            for pod in pods:
                if pod.ready_at < end:
                    pod.replica.advance(end)
                    if pod.replica.finished:
                        self.finished += pod.replica.take_finished()
        still = []
        for pod in self.draining:
            self.replica_seconds[pod.variant] += tick
            if warm:
                self.replica_seconds_after_warmup[pod.variant] += tick
            pod.replica.advance(min(end, pod.deadline))
            self.finished += pod.replica.take_finished()
            if pod.replica.outstanding == 0:
                pod.ended = min(end, pod.deadline)
            elif end >= pod.deadline:
                self._kill(pod)
            else:
                still.append(pod)
        self.draining = still

    def _kill(self, pod: SimPod) -> None:
        """The grace period is over: what the pod still runs is aborted (retried by the client from the start)."""
        replica = pod.replica
        running = list(replica.running.values())
        share = 1.0 / max(1, len(running))  # each run's share of the batch's GPU time
        for req in running:
            used = max(0.0, pod.deadline - req.scheduled) * share if req.scheduled == req.scheduled else 0.0
            req.aborts += 1
            req.wasted += used
            self.aborted += 1
            self.aborted_gpu_s += used
        while replica.running:
            replica._preempt_newest()  # frees its blocks; back to waiting, to be handed back below
        self._requeue(replica)
        pod.ended = pod.deadline

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
                    metrics.append(PodMetrics(pod.name, r.kv_cache_usage, float(r.num_waiting), float(r.num_running),
                                              now))
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
