"""The `kedascaler-hybrid` policy: the engine sized by the queueing model from the measured workload, with
saturation as the guard-rail, on a small step scenario."""

from __future__ import annotations

import numpy as np
import pytest

from kedascaler.sim.policies import EXTRA_POLICY_NAMES, POLICY_NAMES, KedascalerHybridPolicy, make_policies
from kedascaler.sim.simulator import SimConfig, simulate
from kedascaler.sim.workloads import steps


def test_hybrid_is_selectable_but_not_run_by_default():
    assert "kedascaler-hybrid" in EXTRA_POLICY_NAMES and "kedascaler-hybrid" not in POLICY_NAMES


def test_the_measured_workload_is_the_last_minute_of_arrivals():
    w = steps([(0, 2.0), (60, 10.0)], 180, seed=3)
    policy = KedascalerHybridPolicy(w, SimConfig().slo)
    m = policy.measured(120.0)
    seen = (w.times > 60.0) & (w.times <= 120.0)
    assert m.arrival_rate == pytest.approx(seen.sum() / 60.0)
    assert m.prompt_tokens == pytest.approx(w.prompt_tokens[seen].mean())
    assert m.output_tokens == pytest.approx(w.output_tokens[seen].mean())
    assert policy.measured(0.0).arrival_rate == 0.0


@pytest.fixture(scope="module")
def step_runs():
    w = steps([(0, 3.0), (120, 20.0)], 360, seed=7)
    cfg = SimConfig(tail=120)
    out = {}
    for policy in make_policies(["kedascaler", "kedascaler-hybrid"], w, cfg):
        signals: list[tuple[float, str]] = []
        decide = policy.decide

        def recorded(obs, policy=policy, decide=decide, signals=signals):
            answer = decide(obs)
            signals.append((obs.now, next(iter(policy.previous.values())).reason.signal))
            return answer

        policy.decide = recorded
        out[policy.name] = (policy, simulate(w, policy, cfg), signals)
    return out


def test_hybrid_plans_by_slo_capacity_and_saturation_guards_the_step(step_runs):
    policy, run, signals = step_runs["kedascaler-hybrid"]
    sizing = policy.last_sizing
    assert sizing is not None and not sizing.fallback  # true perf params and the Standard SLO: a real plan
    # At 3 req/s the model plan decides (one replica carries it); after the step to 20 req/s the queue that
    # builds on the lone replica makes saturation ask for more than the model plan: the guard-rail takes over.
    assert all(signal == "slo_capacity" for t, signal in signals if 15 <= t <= 120)
    assert any(signal != "slo_capacity" for t, signal in signals if 120 < t <= 240)
    _, saturation, sat_signals = step_runs["kedascaler"]
    assert all(signal != "slo_capacity" for _, signal in sat_signals)
    # Never fewer than saturation asks: after the step the hybrid fleet is no smaller than saturation's.
    after = slice(int(150 / 5), int(300 / 5))
    total = run.series["replicas"].sum(axis=1)
    assert np.all(total[after] >= saturation.series["replicas"].sum(axis=1)[after])
