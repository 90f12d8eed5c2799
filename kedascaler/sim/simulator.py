"""The simulator: a workload replayed through a fleet of vLLM replicas under one scaling policy, fast.

One run is a fixed-step loop (`tick`, default 0.25 s) over a simulated cluster:

1. pods whose start-up delay has passed become ready and take the requests queued at the gateway;
2. control, on its own clocks (multiples of the tick): Prometheus scrapes every `scrape_interval` s (the
   scaler reads the worst value of each pod over `metrics_window`, as `max_over_time[1m]` does; 0 means
   direct reads), the policy reconciles every `policy.interval` s (and at once, a wake-up cycle, when a
   policy with `wake_on_gateway` has requests waiting at the gateway and no replica), KEDA polls activation
   every `keda.polling_interval` s (a policy with `push_activation` is acted on at once, as external-push
   is) and HPA syncs every `hpa.sync_period` s (`kedascaler.sim.keda_hpa`);
   policies marked `direct` (oracle, static) set replicas themselves;
3. the tick's arrivals are routed to the least-loaded ready pod (queued requests, then batch fill,
   then KV usage, as `fleet.py` ranks pods; across all variants of the model), or queue at the gateway when no pod is ready;
4. every pod's `FastReplica` runs to the end of the tick (steps inside are exact, not tick-bound).

Scale-down removes pods that are not ready first, then the newest ready ones; a removed pod hands its
waiting requests back to the gateway and finishes those it is running (draining), billed until empty.
Cost is billed for every pod that exists, starting, serving or draining. Nothing reads the wall clock:
same workload, config and policy → same result.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

from kedascaler.sources.base import PodUsage
from kedascaler.engine.types import PodMetrics
from kedascaler.sim.perf import PerfParams, perf_params_for
from kedascaler.sim.keda_hpa import HPABehavior, KEDAConfig, ScalingState, hpa_step, keda_step
from kedascaler.sim.replica import Counters, FastReplica, SimRequest
from kedascaler.sim.workloads import Workload

# Server limits of the default profile: the demo's (`kedascaler.demo.SERVER_LIMITS`) — a small share of the
# GPU's memory for the KV cache and a small batch, so that a chat workload needs several replicas, as a
# larger model would. `vllm-defaults` keeps vLLM's own limits (one replica then carries tens of req/s).
PROFILES: Mapping[str, Mapping[str, dict]] = {
    "demo": {"H100": dict(max_num_seqs=48, num_gpu_blocks=1600), "A100": dict(max_num_seqs=32, num_gpu_blocks=1000)},
    "vllm-defaults": {"H100": {}, "A100": {}},
}


@dataclass(frozen=True)
class VariantConfig:
    """One variant: a Deployment of the model on one accelerator, with its cost per replica-hour."""

    name: str
    accelerator: str
    cost: float  # per replica and hour
    params: PerfParams
    startup_delay: float = 90.0
    min_replicas: int = 0
    max_replicas: int = 100


def default_variants(profile: str = "demo", startup_delay: float = 90.0) -> tuple[VariantConfig, ...]:
    """H100 (cost 40) and A100 (cost 20) serving one model, with the profile's server limits."""
    limits = PROFILES[profile]
    return (VariantConfig("llama-h100", "H100", 40.0, perf_params_for("H100", **limits["H100"]), startup_delay),
            VariantConfig("llama-a100", "A100", 20.0, perf_params_for("A100", **limits["A100"]), startup_delay))


@dataclass(frozen=True)
class SLO:
    """A service class: TTFT and mean ITL targets (seconds)."""

    name: str = "Standard"
    ttft: float = 1.0
    itl: float = 0.05


@dataclass(frozen=True)
class SimConfig:
    variants: tuple[VariantConfig, ...] = field(default_factory=default_variants)
    model: str = "meta/llama-3.1-8b"
    tick: float = 0.25
    scrape_interval: float = 15.0  # 0: the scaler reads the pods directly
    metrics_window: float = 60.0  # max_over_time window of the scaler's queries
    hpa: HPABehavior = field(default_factory=HPABehavior)
    keda: KEDAConfig = field(default_factory=KEDAConfig)
    slo: SLO = field(default_factory=SLO)
    tail: float = 600.0  # simulated time after the workload's end, for requests in flight to finish
    sample_interval: float = 5.0  # time series resolution


@dataclass(frozen=True)
class PodCounters:
    """One ready pod's vLLM counters as a collector would read them at a reconcile (cumulative since the pod
    started: a policy that learns takes the difference with its previous read)."""

    name: str
    counters: Counters
    backlog: int  # running + waiting now (vllm:num_requests_running + vllm:num_requests_waiting)

    def usage_since(self, before: PodCounters) -> PodUsage | None:
        """The pod's usage between an earlier read and this one, with the fields and units that
        `kedascaler.sources.scrape.usage_between` computes from real vLLM metrics: rates from the counters'
        deltas, means from the histograms' Δ_sum ÷ Δ_count (None when nothing was observed), except
        `mean_running`, the exact time average ∫ running dt ÷ span (a scrape only has the two end points).
        None when the span is not positive."""
        a, b = self.counters, before.counters
        span = a.t - b.t
        if not span > 0:
            return None
        gaps, prefilled, first = a.gaps - b.gaps, a.prefilled - b.prefilled, a.first_tokens - b.first_tokens
        return PodUsage(
            window_s=span, completed_rate=(a.completed - b.completed) / span,
            prompt_tokens_rate=(a.prompt_tokens - b.prompt_tokens) / span,
            output_tokens_rate=(a.output_tokens - b.output_tokens) / span,
            backlog_growth_rate=(self.backlog - before.backlog) / span,
            mean_running=(a.running_time - b.running_time) / span,
            itl_ms=(a.gap_sum - b.gap_sum) / gaps * 1000.0 if gaps > 0 else None,
            prefill_ms=(a.prefill_sum - b.prefill_sum) / prefilled * 1000.0 if prefilled > 0 else None,
            prompt_tokens_mean=(a.prefill_prompt - b.prefill_prompt) / prefilled if prefilled > 0 else None,
            ttft_ms=(a.ttft_sum - b.ttft_sum) / first * 1000.0 if first > 0 else None)


@dataclass(frozen=True)
class VariantView:
    """A variant as a policy sees it at a reconcile: Deployment replicas, ready pods, their metrics."""

    config: VariantConfig
    current: int
    ready: int
    pods: tuple[PodMetrics, ...]  # worst value of each ready pod over the metrics window (kedascaler's, WVA's queries)
    latest: tuple[PodMetrics, ...] = ()  # the last scrape of each ready pod (an instant PromQL query)
    counters: tuple[PodCounters, ...] = ()  # each ready pod's counters, for policies with `reads_counters`


@dataclass(frozen=True)
class Observation:
    now: float
    variants: tuple[VariantView, ...]
    gateway_queue: int  # requests waiting for any ready pod


@dataclass(frozen=True)
class Target:
    """A policy's answer for one variant: the metric value KEDA reads (AverageValue, target 1) and activity."""

    value: float
    active: bool


class Policy(Protocol):
    name: str
    interval: float  # seconds between reconciles
    direct: bool  # True: sets replicas itself (no KEDA/HPA); False: answers through KEDA + HPA
    instant_start: bool  # True: its pods are ready at once (the oracle)

    def initial(self, config: SimConfig) -> dict[str, int]: ...

    def decide(self, obs: Observation) -> dict[str, Target] | dict[str, int]: ...

    def keda_min_replicas(self, variant: VariantConfig) -> int: ...


class _Pod:
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


class Prediction(NamedTuple):
    """A model-based decision's predicted latencies for one variant, and what its pods showed over the next
    reconcile interval (token-weighted mean ITL, mean TTFT from the arrival at the pod; NaN: nothing observed)."""

    t: float  # the decision
    variant: str
    itl_pred_ms: float
    itl_obs_ms: float
    ttft_pred_ms: float
    ttft_obs_ms: float
    settled: bool  # the variant ran the planned replicas, all ready, throughout the interval
    # the same model and parameters evaluated at the load each of the variant's ready pods actually took
    # over the interval (the fleet that ran, which lags the plan while pods start or HPA holds a scale-down)
    itl_ran_ms: float = math.nan
    ttft_ran_ms: float = math.nan


@dataclass
class RunResult:
    """Everything one run produced, as arrays (the report scores them)."""

    policy: str
    workload: str
    variants: tuple[VariantConfig, ...]
    slo: SLO
    arrival: np.ndarray
    ttft: np.ndarray  # inf: never got a first token
    itl: np.ndarray  # per request mean ITL; inf: not finished
    served_by: np.ndarray  # variant index, -1: never served
    preemptions: np.ndarray
    gateway_wait: np.ndarray  # seconds from arrival to the pod that served it (gateway queue, and any restart)
    restarts: np.ndarray  # times a request was handed back by a terminating pod
    times: np.ndarray  # sample times
    series: dict[str, np.ndarray]  # name → (samples,) or (samples, variants)
    replica_seconds: np.ndarray  # per variant
    scaling_actions: np.ndarray  # per variant: changes of the Deployment's replicas
    zero_time: float  # seconds with no ready pod while the workload ran
    duration: float
    decisions: list[tuple[float, str]] = field(default_factory=list)  # (t, reason text) of the policy, if any
    # policies that predict latencies (model-based sizing): one row per (decision, variant) with an outcome
    predictions: list[Prediction] = field(default_factory=list)
    learning: dict = field(default_factory=dict)  # policies that learn: what they learned and when (report.py)

    @property
    def cost(self) -> np.ndarray:
        """Per variant: replica-seconds × cost per hour / 3600."""
        return self.replica_seconds * np.array([v.cost for v in self.variants]) / 3600.0


def _restart(req: SimRequest) -> None:
    """A request handed back by a terminating pod starts over (the client's retry): progress lost, arrival kept."""
    req.phase = 0
    req.generated = req.computed = req.blocks = 0
    req.target = req.prompt
    req.first_token = math.nan
    req.variant = -1
    req.scheduled = math.nan
    req.prefill = math.nan
    req.restarts += 1


def _every(interval: float, tick: float) -> int:
    return max(1, round(interval / tick)) if interval > 0 else 0


class Cluster:
    """The simulated model: Deployments of pods per variant, the gateway queue, and the router."""

    def __init__(self, config: SimConfig, instant_start: bool) -> None:
        self.config = config
        self.instant_start = instant_start
        self.pods: list[list[_Pod]] = [[] for _ in config.variants]  # per variant, oldest first
        self.draining: list[_Pod] = []
        self.gateway: deque[SimRequest] = deque()
        self.finished: list[SimRequest] = []
        self.actions = np.zeros(len(config.variants), dtype=np.int64)
        self.replica_seconds = np.zeros(len(config.variants))
        self._names = 0

    def replicas(self, v: int) -> int:
        return len(self.pods[v])

    def ready(self, v: int, now: float) -> list[_Pod]:
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
            pods.append(_Pod(f"{cfg.name}-{self._names}", v, now, now + delay, cfg.params))
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
            _restart(req)
        if back:
            self.gateway = deque(sorted(list(self.gateway) + back, key=lambda r: (r.arrival, r.id)))

    def route(self, reqs: list[SimRequest] | deque, now: float) -> None:
        """Least-loaded ready pod, as `fleet.py` ranks them: queued requests, then batch fill, then KV usage,
        then name; the gateway when no pod is ready."""
        cands = [p for pods in self.pods for p in pods if p.ready_at <= now]
        if not cands:
            self.gateway.extend(reqs)
            return
        keys = []
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


def simulate(workload: Workload, policy: Policy, config: SimConfig | None = None,
             progress: Callable[[float], None] | None = None) -> RunResult:
    """Replay `workload` under `policy`; `progress(fraction)` is called now and then."""
    config = config or SimConfig()
    tick = config.tick
    cluster = Cluster(config, policy.instant_start)
    nv = len(config.variants)
    names = [v.name for v in config.variants]
    for v, n in enumerate(policy.initial(config).get(name, 0) for name in names):
        cluster.set_replicas(v, n, -1e9)  # warm at the start: ready since long before t = 0
        for pod in cluster.pods[v]:
            pod.replica.t = 0.0
            pod.ready_at = min(pod.ready_at, 0.0)
    cluster.actions[:] = 0
    states = [ScalingState(replicas=cluster.replicas(v)) for v in range(nv)]
    kedas = [KEDAConfig(config.keda.polling_interval, config.keda.cooldown_period,
                        policy.keda_min_replicas(cfg), min(cfg.max_replicas, config.keda.max_replicas))
             for cfg in config.variants]
    board: dict[str, Target] = {}
    every_scrape = _every(config.scrape_interval, tick)
    every_policy = _every(policy.interval, tick)
    every_hpa = _every(config.hpa.sync_period, tick)
    every_poll = _every(config.keda.polling_interval, tick)
    every_sample = _every(config.sample_interval, tick)
    n_ticks = math.ceil((workload.duration + config.tail) / tick)
    times, prompt, output = workload.times, workload.prompt_tokens, workload.output_tokens
    reqs = [SimRequest(i, float(times[i]), int(prompt[i]), int(output[i])) for i in range(len(times))]
    nxt = 0
    zero_time = 0.0
    samples: dict[str, list] = {k: [] for k in ("replicas", "ready", "pods", "kv", "waiting", "running")}
    sample_t, gateway_q = [], []
    decisions: list[tuple[float, str]] = []
    reads_counters = bool(getattr(policy, "reads_counters", False))
    for step in range(n_ticks):
        now = step * tick
        end = now + tick
        if nxt >= len(reqs) and not cluster.gateway and now > workload.duration and all(
                p.replica.outstanding == 0 for pods in cluster.pods for p in pods) and not cluster.draining:
            break  # all done: nothing left to simulate but idle pods
        if cluster.gateway and any(p.ready_at <= now for pods in cluster.pods for p in pods):
            pending, cluster.gateway = list(cluster.gateway), deque()
            cluster.route(pending, now)
        if every_scrape and step % every_scrape == 0:
            cluster.scrape(now, config.metrics_window)
        wake = (getattr(policy, "wake_on_gateway", False) and bool(cluster.gateway)
                and all(cluster.replicas(v) == 0 for v in range(nv)))
        if step % every_policy == 0 or wake:
            obs = Observation(now, cluster.view(now, direct=every_scrape == 0, counters=reads_counters),
                              len(cluster.gateway))
            out = policy.decide(obs)
            note = getattr(policy, "last_note", None)
            if note:
                decisions.append((now, note))
            if policy.direct:
                for v, name in enumerate(names):
                    if name in out:
                        cluster.set_replicas(v, int(out[name]), now)
            else:
                board.update(out)
                if getattr(policy, "push_activation", False):  # external-push: KEDA acts on the flag at once
                    for v, name in enumerate(names):
                        target = board.get(name)
                        if target is not None and target.active and states[v].replicas == 0:
                            states[v] = keda_step(states[v], True, target.value, now, config.hpa, kedas[v])
                            cluster.set_replicas(v, states[v].replicas, now)
        if not policy.direct:
            poll = step % every_poll == 0
            sync = step % every_hpa == 0
            for v, name in enumerate(names):
                target = board.get(name)
                if target is None:
                    continue
                if poll:
                    states[v] = keda_step(states[v], target.active, target.value, now, config.hpa, kedas[v])
                elif sync and states[v].replicas > 0:
                    states[v] = hpa_step(states[v], target.value, now, config.hpa, kedas[v])
                cluster.set_replicas(v, states[v].replicas, now)
        batch = []
        while nxt < len(reqs) and reqs[nxt].arrival < end:
            batch.append(reqs[nxt])
            nxt += 1
        if batch:
            cluster.route(batch, now)
        if not any(p.ready_at <= now for pods in cluster.pods for p in pods) and now < workload.duration:
            zero_time += tick
        cluster.advance(now, end)
        if step % every_sample == 0:
            sample_t.append(now)
            gateway_q.append(len(cluster.gateway))
            row = {k: [] for k in samples}
            for v in range(nv):
                ready = cluster.ready(v, now)
                row["replicas"].append(cluster.replicas(v))
                row["ready"].append(len(ready))
                row["pods"].append(cluster.replicas(v) + sum(1 for p in cluster.draining if p.variant == v))
                row["kv"].append(float(np.mean([p.replica.kv_cache_usage for p in ready])) if ready else 0.0)
                row["waiting"].append(sum(p.replica.num_waiting for p in ready))
                row["running"].append(sum(p.replica.num_running for p in ready))
            for k in samples:
                samples[k].append(row[k])
        if progress is not None and step % 2000 == 0:
            progress(min(1.0, now / max(1.0, workload.duration)))
    n = len(reqs)
    ttft = np.array([r.ttft if r.first_token == r.first_token else math.inf for r in reqs]) if n else np.zeros(0)
    itl = np.array([r.itl if r.finished == r.finished else math.inf for r in reqs]) if n else np.zeros(0)
    series = {k: np.array(v, dtype=float).reshape(len(sample_t), nv) for k, v in samples.items()}
    series["gateway"] = np.array(gateway_q, dtype=float)
    return RunResult(
        policy=policy.name, workload=workload.name, variants=config.variants, slo=config.slo,
        arrival=times.copy(), ttft=ttft, itl=itl,
        served_by=np.array([r.variant if r.finished == r.finished else -1 for r in reqs], dtype=np.int64),
        preemptions=np.array([r.preemptions for r in reqs], dtype=np.int64),
        gateway_wait=np.array([r.dispatched - r.arrival for r in reqs]),
        restarts=np.array([r.restarts for r in reqs], dtype=np.int64),
        times=np.array(sample_t), series=series, replica_seconds=cluster.replica_seconds.copy(),
        scaling_actions=cluster.actions.copy(), zero_time=zero_time, duration=workload.duration,
        decisions=decisions, predictions=list(getattr(policy, "predictions", ())),
        learning=dict(policy.learning()) if hasattr(policy, "learning") else {},
    )
