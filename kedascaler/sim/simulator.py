"""The simulator: a workload replayed through a fleet of vLLM replicas under one scaling policy, fast.

One run is a fixed-step loop (`tick`, default 0.25 s) over a simulated cluster. It starts from the same warm
fleet for every policy, the oracles included (`SimConfig.initial_fleet`, default one replica of the cheapest
variant, ready at t = 0); a fixed fleet (`StaticPolicy`, static-peak) is by definition its own fleet from t = 0.

1. pods whose start-up delay has passed become ready and take the requests queued at the gateway;
2. control, on its own clocks (multiples of the tick): Prometheus scrapes every `scrape_interval` s (the
   scaler reads the worst value of each pod over `metrics_window`, as `max_over_time[1m]` does; 0 means
   direct reads), the policy reconciles every `policy.interval` s (and at once, a wake-up cycle, when a
   policy with `wake_on_gateway` has requests waiting at the gateway and no replica), KEDA polls activation
   every `keda.polling_interval` s (a policy with `push_activation` is acted on at once, as external-push
   is) and HPA syncs every `hpa.sync_period` s (`kedascaler.sim.keda_hpa`);
   policies marked `direct` (oracle, static) set replicas themselves;
3. the tick's arrivals are routed to a ready pod of any variant of the model by `SimConfig.router` (`epp`,
   llm-d's endpoint picker, or `service`, a random pod: `kedascaler.sim.cluster`), or queue at the gateway when
   no pod is ready; a request stays on the pod it was given;
4. every pod's `FastReplica` runs to the end of the tick (steps inside are exact, not tick-bound).

Scale-down removes pods that are not ready first, then the newest ready ones; a removed pod hands its
waiting requests back to the gateway and finishes those it is running (draining), billed until empty.
Cost is billed for every pod that exists, starting, serving or draining (in total, and from
`SimConfig.warmup` on). Nothing reads the wall clock; the router's random choices come from `SimConfig.seed`:
same workload, config and policy → same result.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from kedascaler.sim.baselines import StaticPolicy
from kedascaler.sim.cluster import Cluster, initial_fleet
from kedascaler.sim.config import SLO, SimConfig, VariantConfig
from kedascaler.sim.keda_hpa import KEDAConfig, ScalingState, hpa_step, keda_step
from kedascaler.sim.policy_api import Observation, Policy, Prediction, Target
from kedascaler.sim.replica import SimRequest
from kedascaler.sim.workloads import Workload


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
    router: str = "epp"  # SimConfig.router of the run
    fixed_fleet: bool = False  # a fixed fleet (static-peak): it started from its own fleet, not the run's
    warmup: float = 0.0  # SimConfig.warmup: the scores "after warm-up" count requests arriving after it
    initial_fleet: dict[str, int] = field(default_factory=dict)  # warm replicas per variant at t = 0
    replica_seconds_after_warmup: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per variant, t ≥ warmup
    aborts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # per request: runs killed
    aborted_gpu_s: float = 0.0  # GPU-seconds the killed runs had used, thrown away
    deletion_cost: bool = False  # the policy set pod-deletion-cost (emptiest pods removed first)

    @property
    def cost(self) -> np.ndarray:
        """Per variant: replica-seconds × cost per hour / 3600."""
        return self.replica_seconds * np.array([v.cost for v in self.variants]) / 3600.0

    @property
    def cost_after_warmup(self) -> np.ndarray:
        """Per variant: the cost billed from the warm-up's end on."""
        return self.replica_seconds_after_warmup * np.array([v.cost for v in self.variants]) / 3600.0


def _every(interval: float, tick: float) -> int:
    return max(1, round(interval / tick)) if interval > 0 else 0


def start_fleet(policy: Policy, config: SimConfig) -> dict[str, int]:
    """The warm replicas per variant `policy` starts from: the run's initial fleet, the same for every policy;
    a fixed fleet (`StaticPolicy`: static-peak) is by definition its own fleet from t = 0."""
    if isinstance(policy, StaticPolicy):
        return dict(policy.initial(config))
    return initial_fleet(config)


def simulate(workload: Workload, policy: Policy, config: SimConfig | None = None,
             progress: Callable[[float], None] | None = None) -> RunResult:
    """Replay `workload` under `policy`; `progress(fraction)` is called now and then."""
    config = config or SimConfig()
    tick = config.tick
    cluster = Cluster(config, policy.instant_start)
    cluster.deletion_cost = bool(getattr(policy, "sets_deletion_cost", False))
    nv = len(config.variants)
    names = [v.name for v in config.variants]
    start = start_fleet(policy, config)
    if set(start) - set(names):
        raise ValueError(f"initial fleet names unknown variants: {sorted(set(start) - set(names))}")
    for v, n in enumerate(start.get(name, 0) for name in names):
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
                replicas = cast("dict[str, int]", out)  # a direct policy answers replicas
                for v, name in enumerate(names):
                    if name in replicas:
                        cluster.set_replicas(v, int(replicas[name]), now)
            else:
                board.update(cast("dict[str, Target]", out))
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
            row: dict[str, list[float]] = {k: [] for k in samples}
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
        router=config.router, fixed_fleet=isinstance(policy, StaticPolicy), warmup=config.warmup,
        initial_fleet={n: int(start.get(n, 0)) for n in names},
        replica_seconds_after_warmup=cluster.replica_seconds_after_warmup.copy(),
        aborts=np.array([r.aborts for r in reqs], dtype=np.int64), aborted_gpu_s=cluster.aborted_gpu_s,
        deletion_cost=cluster.deletion_cost,
    )


# The run's set-up lives in `kedascaler.sim.config` and the policy contract in `kedascaler.sim.policy_api`;
# re-exported for `sim/policies.py`, `cli/simulate.py` and the policy tests until they import from there.
__all__ = ["RunResult", "simulate"]
