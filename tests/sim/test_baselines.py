"""The baselines, each pinned to its upstream behaviour on small hand-made cases (shared helpers here), and their
actuation through their own ScaledObjects: keda-queue, hpa-kv, the HPA rules, static-peak, every settings()."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from kedascaler.engine.types import PodMetrics
from kedascaler.sim.baselines import HPAKVPolicy, KedaQueuePolicy, StaticPolicy, WVAPolicy, WVAV2Policy
from kedascaler.sim.baselines.wva_common import WVA_HPA
from kedascaler.sim.config import SimConfig, VariantConfig, default_variants
from kedascaler.sim.keda_hpa import KEDAConfig, ScalingState, hpa_step
from kedascaler.sim.perf import perf_params_for
from kedascaler.sim.policy_api import Observation, PodCounters, VariantView
from kedascaler.sim.replica import Counters
from kedascaler.sim.simulator import simulate
from kedascaler.sim.workloads import steps

H100, A100 = default_variants()
# two variants where the pricier one per replica is the cheaper one per unit of KV capacity
SMALL = VariantConfig("small", "A100", 10.0, perf_params_for("A100", max_num_seqs=32, num_gpu_blocks=500))
BIG = VariantConfig("big", "H100", 15.0, perf_params_for("H100", max_num_seqs=48, num_gpu_blocks=2000))


def counters(t: float, prompt: int = 0, finished: int = 0, output: int = 0, completed: int = 0) -> Counters:
    c = Counters(t)
    c.prefill_prompt, c.prefilled, c.output_tokens, c.completed = prompt, finished, output, completed
    return c


def view(cfg: VariantConfig, current: int, ready: int, pods: list[tuple[float, float]], now: float = 0.0,
         reads: list[Counters] | None = None, waiting: list[float] | None = None) -> VariantView:
    """A variant with `current` replicas, `ready` of them ready, and the (kv, queue) of those that report metrics
    (the same values as the last scrape, unless `waiting` gives the last scrape's queues); `reads` are the
    counters of the pods that report metrics, in order."""
    metrics = tuple(PodMetrics(f"{cfg.name}-{i}", kv, q, 10, now) for i, (kv, q) in enumerate(pods))
    latest = metrics if waiting is None else tuple(
        PodMetrics(m.pod, m.kv_cache_usage, w, 10, now) for m, w in zip(metrics, waiting, strict=True))
    pods_counters = tuple(PodCounters(m.pod, c, 0) for m, c in zip(metrics, reads or (), strict=False))
    return VariantView(cfg, current, ready, metrics, latest, pods_counters)


def obs(now: float, *views: VariantView, gateway: int = 0) -> Observation:
    return Observation(now, tuple(views), gateway)


def a100_h100(now: float, a100: tuple[int, int, list[tuple[float, float]]],
              h100: tuple[int, int, list[tuple[float, float]]] = (0, 0, [])) -> Observation:
    """The default variants: (current, ready, [(kv, queue) per pod with metrics]) each."""
    return obs(now, view(H100, *h100, now=now), view(A100, *a100, now=now))


# --- keda-queue and hpa-kv: HPA's AverageValue formula and tolerance, on the cheapest variant only ---


def _queue_at(now: float, current: int, waiting: list[float]) -> Observation:
    return obs(now, view(H100, 0, 0, []), view(A100, current, current, [(0.5, q) for q in waiting], now=now))


@pytest.mark.parametrize(("current", "waiting", "expected"), [
    (2, [20, 10], 6),  # ceil(30 / 5) = 6, within max(100%, 4 pods) per 15 s
    (6, [20, 11], 6),  # 31 / (5 × 6) = 1.03: inside the 10% tolerance
    (6, [20, 14], 7),  # 34 / 30 = 1.13: ceil(34 / 5) = 7
    (1, [40, 0], 5),  # ceil(40 / 5) = 8, capped at 1 + 4 pods in the first 15 s
])
def test_keda_queue_desired_is_ceil_of_summed_waiting_over_five(current, waiting, expected):
    policy = KedaQueuePolicy()
    out = policy.decide(_queue_at(0.0, current, waiting))
    assert out == {"llama-a100": expected}  # the H100 is never touched: no cost-aware choice


def test_keda_queue_reads_the_last_scrape_and_keeps_one_replica():
    policy = KedaQueuePolicy()
    last = obs(0.0, view(H100, 0, 0, []), view(A100, 2, 2, [(0.9, 40), (0.9, 40)], waiting=[5, 5]))
    assert policy.decide(last) == {"llama-a100": 2}  # an instant query: 10 waiting now, not the window's 80
    times = range(15, 330, 15)
    later = {t: policy.decide(_queue_at(t, 2, [0, 0]))["llama-a100"] for t in times}
    assert min(later.values()) == 1  # minReplicaCount 1
    assert min(t for t, n in later.items() if n == 1) >= 300  # HPA's default 300 s scale-down window


@pytest.mark.parametrize(("current", "kv", "expected"), [
    (2, [0.9, 0.8], 3),  # ceil(1.7 / 0.7) = 3
    (3, [0.8, 0.7, 0.7], 3),  # 2.2 / (0.7 × 3) = 1.05: inside the tolerance
    (3, [0.95, 0.95, 0.95], 5),  # ceil(2.85 / 0.7) = 5
])
def test_hpa_kv_desired_is_ceil_of_summed_kv_usage_over_point_seven(current, kv, expected):
    policy = HPAKVPolicy()
    views = (view(H100, 0, 0, []), view(A100, current, current, [(u, 0) for u in kv]))
    assert policy.decide(obs(0.0, *views)) == {"llama-a100": expected}


def test_hpa_kv_counts_a_pod_that_is_not_scraped_yet_as_nothing():
    policy = HPAKVPolicy()
    views = (view(H100, 0, 0, []), view(A100, 3, 3, [(0.9, 0), (0.9, 0)]))  # the third pod: no series yet
    assert policy.decide(obs(0.0, *views)) == {"llama-a100": 3}  # 1.8 / 2.1 = 0.86 → ceil(1.8 / 0.7) = 3


# --- the HPA rules of WVA's ScaledObject: no stabilisation, max(100% per 30 s, 5 pods per 15 s) ---


def test_wva_hpa_rules_limit_growth_per_period_and_scale_down_at_once():
    keda = KEDAConfig(5, 30, 0, 100)
    state = ScalingState(replicas=2)
    seen = []
    for t in (0, 15, 30):
        state = hpa_step(state, 20, t, WVA_HPA, keda)
        seen.append(state.replicas)
    # 2 + 5 pods (more than 2 × 2); 15 s on, the event has left the 15 s period (Kubernetes counts events strictly
    # within it): 7 + 5; then 12 + 5 = 17 beats 100% of the 7 at the start of the 30 s period
    assert seen == [7, 12, 17]
    assert hpa_step(state, 1, 45, WVA_HPA, keda).replicas == 1  # no 300 s window: straight down


# --- static-peak ---


def test_static_peak_never_changes():
    w = steps([(0, 3.0), (120, 20.0)], 300, seed=7)
    run = simulate(w, StaticPolicy({"llama-h100": 1, "llama-a100": 2}), SimConfig(tail=60))
    assert run.scaling_actions.sum() == 0
    assert np.all(run.series["replicas"] == np.array([1, 2]))


# --- every baseline states its configuration and the commit it follows ---


@pytest.mark.parametrize("policy", [WVAPolicy(), WVAV2Policy(), KedaQueuePolicy(), HPAKVPolicy()],
                         ids=lambda p: p.name)
def test_each_baseline_states_its_upstream_commit_and_settings(policy):
    settings = policy.settings()
    assert re.search(r"[0-9a-f]{40}", settings["follows"]) and settings["deviations"]
    so = settings["scaled_object"]
    assert so["query"] and so["threshold"] > 0 and so["metricType"] == "AverageValue"
    assert math.isclose(policy.interval, math.gcd(*(round(x) for x in (
        policy.cycle, policy.exporter_scrape, so["pollingInterval_s"], so["hpa"]["sync_period_s"],
        policy.sync_phase) if x > 0)))
