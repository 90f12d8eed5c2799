"""kedascaler's policies behave as documented; every default policy scales on a step; the oracle is the cost
floor at its SLO. The baselines' own behaviour: tests/sim/test_baselines*.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kedascaler.engine.types import PodMetrics
from kedascaler.sim.config import SimConfig, default_variants
from kedascaler.sim.policies import (
    POLICY_NAMES,
    KedascalerPolicy,
    cheapest_mix,
    make_policies,
)
from kedascaler.sim.policy_api import Observation, VariantView
from kedascaler.sim.report import score
from kedascaler.sim.simulator import simulate
from kedascaler.sim.workloads import steps

H100, A100 = default_variants()


def _obs(now: float, a100: tuple[int, int, list[tuple[float, float]]], h100=(0, 0, [])) -> Observation:
    """(current, ready, [(kv, queue) per ready pod]) for each variant."""
    views = []
    for cfg, (current, ready, pods) in ((H100, h100), (A100, a100)):
        metrics = tuple(PodMetrics(f"{cfg.name}-{i}", kv, q, 10, now) for i, (kv, q) in enumerate(pods))
        views.append(VariantView(cfg, current, ready, metrics, metrics))
    return Observation(now, tuple(views), 0)


def test_kedascaler_asks_for_the_whole_size_in_one_cycle():
    out = KedascalerPolicy().targets(_obs(0, (2, 2, [(0.95, 30), (0.95, 30)])))
    assert out["llama-a100"].value + out["llama-h100"].value > 3


def test_cheapest_mix_covers_the_rate_at_least_cost():
    cap = {"llama-h100": 3.0, "llama-a100": 1.0}
    assert cheapest_mix(0, (H100, A100), cap) == {"llama-h100": 0, "llama-a100": 0}
    assert cheapest_mix(1, (H100, A100), cap) == {"llama-h100": 0, "llama-a100": 1}
    assert cheapest_mix(5.5, (H100, A100), cap) == {"llama-h100": 2, "llama-a100": 0}


def _step_runs():
    w = steps([(0, 3.0), (120, 20.0)], 420, seed=7)
    cfg = SimConfig(tail=180)
    return w, cfg, {p.name: simulate(w, p, cfg) for p in make_policies(POLICY_NAMES, w, cfg)}


@pytest.fixture(scope="module")
def step_runs():
    return _step_runs()


def test_every_default_name_builds_its_policy_and_hpa_util_is_gone(step_runs):
    w, cfg, runs = step_runs
    assert list(runs) == list(POLICY_NAMES)
    baselines = ("wva", "wva-v2", "keda-queue", "hpa-kv", "static-peak")
    assert [n for n in POLICY_NAMES if n in baselines] == list(baselines) and "hpa-util" not in POLICY_NAMES
    assert POLICY_NAMES[:2] == ("kedascaler", "kedascaler-warm") and POLICY_NAMES[-1] == "oracle"
    with pytest.raises(ValueError, match="unknown policy"):
        make_policies(["hpa-util"], w, cfg)


def test_baselines_scale_up_on_the_step(step_runs):
    _, _, runs = step_runs
    for name in ("kedascaler", "keda-queue", "hpa-kv"):  # wva, wva-v2: their warm H100 + A100 carry 20 req/s
        total = runs[name].series["replicas"].sum(axis=1)
        assert total.max() > total[0], name


def test_oracle_is_the_cost_floor_at_its_slo(step_runs):
    w, cfg, runs = step_runs
    scores = {n: score(r, w, {"llama-h100": 1.0, "llama-a100": 1.0}) for n, r in runs.items()}
    floor = scores["oracle"]
    assert floor.slo_attainment >= 95.0
    for name, s in scores.items():
        if s.slo_attainment >= floor.slo_attainment:
            assert floor.cost <= s.cost + 1e-9, name


def test_kedascaler_goes_to_zero_when_idle_and_wakes_on_the_gateway_queue():
    w = steps([(0, 2.0), (60, 0.0), (900, 2.0)], 960, seed=3)
    cfg = SimConfig(tail=200)
    run = simulate(w, KedascalerPolicy(), cfg)  # scale to zero: idle window 300 s, then KEDA's cooldown 300 s
    total = run.series["replicas"].sum(axis=1)
    assert total[(run.times > 700) & (run.times < 900)].max() == 0
    assert run.zero_time > 0
    woke = run.times[(run.times >= 900) & (total > 0)]
    late = run.arrival >= 900
    first = run.arrival[late].min()
    # a wake-up cycle, pushed to KEDA: by the next 5 s sample, not a 15 s reconcile or a 30 s poll later
    assert len(woke) and woke[0] <= first + cfg.sample_interval + cfg.tick
    assert np.all(np.isfinite(run.ttft[late]))
    assert run.gateway_wait[late].max() >= cfg.variants[1].startup_delay - 1  # the cold start is paid
    warm = simulate(w, KedascalerPolicy(scale_to_zero=False), cfg)
    assert warm.series["replicas"].sum(axis=1).min() >= 1


def test_the_kedascaler_policy_runs_the_hpa_behaviour_the_examples_ship():
    """The simulator judges kedascaler under the ScaledObject a user installs, not under HPA's defaults."""
    import yaml

    from kedascaler.sim.keda_hpa import HPAPolicy
    from kedascaler.sim.scaler_policies import SCALED_OBJECT

    path = Path(__file__).resolve().parents[2] / "examples" / "kubernetes" / "scaledobjects.yaml"
    shipped = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "ScaledObject"]
    hpa = SCALED_OBJECT.hpa

    def rules(direction: dict) -> tuple[HPAPolicy, ...]:
        return tuple(HPAPolicy(p["type"], p["value"], float(p["periodSeconds"])) for p in direction["policies"])

    for so in shipped:
        behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == hpa.scale_up_stabilization
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == hpa.scale_down_stabilization
        assert rules(behavior["scaleUp"]) == hpa.scale_up_policies
        assert rules(behavior["scaleDown"]) == hpa.scale_down_policies
        assert so["spec"]["cooldownPeriod"] == SCALED_OBJECT.cooldown_period
    assert KedascalerPolicy().direct and KedascalerPolicy().scaled_object is SCALED_OBJECT


def test_kedascaler_min1_runs_the_engine_at_wvas_floor_of_one_replica_per_variant():
    """`kedascaler-min1` (on request) is kedascaler-warm with minReplicas 1 on every variant, as WVA's two-variant
    benchmark runs WVA: the H100 is started at t = 0 and never let go, where kedascaler-warm keeps only the A100."""
    w = steps([(0, 3.0)], 300, seed=7)
    cfg = SimConfig(tail=60)
    warm, floor = make_policies(["kedascaler-warm", "kedascaler-min1"], w, cfg)
    assert floor.name == "kedascaler-min1" and floor.settings()["min_replicas_per_variant"] == 1
    runs = {p.name: simulate(w, p, cfg) for p in (warm, floor)}
    h100 = [v.name for v in runs["kedascaler-min1"].variants].index("llama-h100")
    ready_after_start = runs["kedascaler-min1"].series["ready"][runs["kedascaler-min1"].times >= 120, h100]
    assert ready_after_start.min() >= 1
    assert runs["kedascaler-warm"].series["replicas"][:, h100].max() == 0  # 3 req/s: one A100 carries it
