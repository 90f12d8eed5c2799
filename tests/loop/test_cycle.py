"""The pure cycle step: what one cycle decides from its inputs and the state it is given, nothing hidden."""

from __future__ import annotations

import copy

import pytest

from kedascaler.engine.types import PodMetrics, VariantKey, VariantSpec
from kedascaler.loop.cycle import CycleConfig, CycleInputs, CycleState, Stage, step
from kedascaler.sim.config import SimConfig
from kedascaler.sim.policies import KedascalerPolicy
from kedascaler.sim.policy_api import Observation, VariantView
from kedascaler.sources.base import CollectResult, CounterReading, PodSample, WorkloadStatus
from kedascaler.sources.gateway import ActivationReading
from kedascaler.sources.scrape import GENERATION_TOKENS, PROMPT_TOKENS, SUCCESS
from kedascaler.spec.inventory import InventoryState
from kedascaler.spec.variant import ScaleToZero, VariantAutoscaling

NS = "llm"
A, B = "model-a", "model-b"


def va(name: str, model: str, cost: float = 10.0, **kw) -> VariantAutoscaling:
    return VariantAutoscaling(VariantSpec(VariantKey(NS, name), model, name, cost=cost, max_replicas=10), **kw)


INVENTORY = InventoryState(variants=(va("a-a100", A, 20.0), va("b-a100", B, 20.0)))


def sample(pod: str, variant: str, kv: float, queue: float = 0.0, counters: CounterReading | None = None) -> PodSample:
    return PodSample(NS, pod, "m", kv, queue, 4.0, 100.0, variant=VariantKey(NS, variant), counters=counters)


def inputs(*samples: PodSample, now: float = 100.0, replicas: int = 1, **kw) -> CycleInputs:
    statuses = {v.key: WorkloadStatus(replicas, replicas) for v in INVENTORY.variants}
    return CycleInputs(INVENTORY, statuses, CollectResult(tuple(samples)), now, **kw)


def counters(at: float, done: float, running: float = 4.0) -> CounterReading:
    return CounterReading(at, {SUCCESS: done, PROMPT_TOKENS: 200.0 * done, GENERATION_TOKENS: 100.0 * done},
                          running, 0.0, 16_000)


def test_the_same_state_and_inputs_give_the_same_decisions_and_the_state_given_is_not_changed():
    state = CycleState()
    cycle = inputs(sample("a-a100-0", "a-a100", 0.95, 9), sample("b-a100-0", "b-a100", 0.2))
    before = copy.deepcopy(state)
    first, after = step(state, cycle)
    again, _ = step(state, cycle)
    assert state == before  # a value in, a new value out
    assert [(d.key, d.desired_replicas, str(d.reason)) for d in first.decisions] == \
        [(d.key, d.desired_replicas, str(d.reason)) for d in again.decisions]
    assert {d.key.name: d.desired_replicas for d in first.decisions}["a-a100"] > 1  # saturated: scale up
    assert after.previous == {d.key: d for d in first.decisions} and after.cycles == 1


def test_missing_metrics_hold_the_decision_kept_in_the_state():
    _, state = step(CycleState(), inputs(sample("a-a100-0", "a-a100", 0.95, 9), sample("b-a100-0", "b-a100", 0.2)))
    held = state.previous[VariantKey(NS, "a-a100")].desired_replicas
    report, _ = step(state, inputs(now=115.0))  # every pod silent this cycle
    decision = next(d for d in report.decisions if d.key.name == "a-a100")
    assert decision.stale and decision.desired_replicas == held


def test_a_wake_up_cycle_decides_its_models_and_keeps_the_others_decisions():
    _, state = step(CycleState(CycleConfig(pushes=True)),
                    inputs(sample("a-a100-0", "a-a100", 0.5), sample("b-a100-0", "b-a100", 0.5)))
    b_before = state.previous[VariantKey(NS, "b-a100")]
    report, state = step(state, inputs(now=101.0, models=frozenset({(NS, A)}), pushed={(NS, A): 101.0}))
    assert [d.key.name for d in report.decisions] == ["a-a100"] and report.models == ((NS, A),)
    assert state.previous[VariantKey(NS, "b-a100")] is b_before


def test_usage_comes_from_two_counter_readings_kept_in_the_state():
    _, state = step(CycleState(), inputs(sample("a-a100-0", "a-a100", 0.3, counters=counters(100.0, 1000.0))))
    assert (NS, "a-a100-0") in state.counters
    report, state = step(state, inputs(sample("a-a100-0", "a-a100", 0.3, counters=counters(115.0, 1030.0)),
                                       now=115.0))
    (usage,) = report.usage[VariantKey(NS, "a-a100")]
    assert usage.window_s == 15.0 and usage.completed_rate == pytest.approx(2.0)
    assert usage.prompt_tokens_rate == pytest.approx(400.0) and usage.kv_capacity_tokens == 16_000
    # a restarted pod (counters went down) gives no usage, never a negative rate
    report, state = step(state, inputs(sample("a-a100-0", "a-a100", 0.3, counters=counters(130.0, 3.0)), now=130.0))
    assert report.usage.get(VariantKey(NS, "a-a100"), ()) == ()
    # a pod not read for the forget window is forgotten
    config = CycleConfig(forget_counters_after=60.0)
    _, state = step(CycleState(config), inputs(sample("b-a100-0", "b-a100", 0.3, counters=counters(100.0, 5.0)),
                                               sample("a-a100-0", "a-a100", 0.3, counters=counters(100.0, 5.0))))
    _, state = step(state, inputs(sample("a-a100-0", "a-a100", 0.3, counters=counters(200.0, 9.0)), now=200.0))
    assert set(state.counters) == {(NS, "a-a100-0")}


def test_errors_carry_the_stage_they_come_from():
    config = CycleConfig(gateway=True, idle_window=300.0)
    at_zero_allowed = InventoryState(variants=tuple(
        VariantAutoscaling(v.spec, scale_to_zero=ScaleToZero(idle_window_s=60.0)) for v in INVENTORY.variants))
    cycle = CycleInputs(at_zero_allowed, {v.key: WorkloadStatus(1, 1) for v in INVENTORY.variants},
                        CollectResult((), ("prometheus: connection refused",)), 100.0,
                        gateway=ActivationReading({}, ("gateway query failed",)))
    report, _ = step(CycleState(config), cycle)
    assert {(e.stage, str(e)) for e in report.errors} == {
        (Stage.ACTIVATION, "gateway query failed"), (Stage.COLLECT, "prometheus: connection refused")}


def test_the_simulator_runs_the_same_step_as_serve():
    """What the kedascaler policy answers is what `step` decides from the inputs it builds: no copy of the loop."""
    policy = KedascalerPolicy(model_id=A)
    views = tuple(VariantView(v, 1, 1, (PodMetrics(f"{v.name}-0", 0.9, 7.0, 4.0, 99.0),)) for v in SimConfig().variants)
    obs = Observation(100.0, views, 0)
    expected, _ = step(policy.state, policy.inputs(obs))
    answered = policy.targets(obs)  # the value KEDA reads; `decide` then runs KEDA and HPA on it
    assert {d.key.name: float(d.desired_replicas) for d in expected.decisions} == \
        {name: t.value for name, t in answered.items()}
    assert policy.state.previous == {d.key: d for d in expected.decisions}
    assert sum(d.desired_replicas for d in expected.decisions) > 2  # both saturated: the model grows


def profiled(name: str, accelerator: str, cost: float, alpha: float, beta: float) -> tuple[str, dict]:
    return ("test", {"apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
                     "metadata": {"name": name, "namespace": NS},
                     "spec": {"scaleTargetRef": {"kind": "Deployment", "name": name}, "modelID": A,
                              "accelerator": accelerator, "variantCost": str(cost), "minReplicas": 0,
                              "maxReplicas": 10, "variantProfile": {"maxBatchSize": 256, "perfParms": {
                                  "decodeParms": {"alpha": alpha, "beta": beta},
                                  "prefillParms": {"gamma": 20.0, "delta": 0.0005}}}}})


@pytest.mark.parametrize("mode", ["capacity", "hybrid", "model", "saturation"])
def test_a_wake_up_cycle_decides_a_model_as_a_full_cycle_would(mode):
    """A push wakes a model at zero between cycles: that cycle takes the model's SLO plan (its mode, its route,
    its variants), the one the next full cycle takes too — not a saturation-only answer the next cycle undoes."""
    from kedascaler.loop.planner import PlannerSettings
    from kedascaler.spec.inventory import build_inventory

    inventory = build_inventory([profiled("a-h100", "H100", 40.0, 7.0, 0.035),
                                 profiled("a-a100", "A100", 20.0, 11.0, 0.06)])
    assert not inventory.problems
    at_zero = {v.key: WorkloadStatus(0, 0) for v in inventory.variants}
    state = CycleState(CycleConfig(idle_window=60.0, pushes=True, planner=PlannerSettings(mode)))
    report, state = step(state, CycleInputs(inventory, at_zero, CollectResult(), 100.0, pushed={}))
    assert all(not d.active and d.desired_replicas == 0 for d in report.decisions)
    pushed = {(NS, A): 130.0}
    woken, _ = step(state, CycleInputs(inventory, at_zero, CollectResult(), 130.0, pushed=pushed,
                                       models=frozenset({(NS, A)})))
    full, _ = step(state, CycleInputs(inventory, at_zero, CollectResult(), 130.0, pushed=pushed))

    def seen(report):
        return [(d.key, d.desired_replicas, d.active, d.steps.route, d.steps.taken, d.steps.capacity_plan is None)
                for d in report.decisions]
    assert sum(d.desired_replicas for d in woken.decisions) >= 1
    assert seen(woken) == seen(full)
