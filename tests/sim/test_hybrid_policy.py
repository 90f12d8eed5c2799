"""SLO sizing in the simulator, through the shared cycle step: `kedascaler-hybrid-profile` (true coefficients
as a user-given `variantProfile`) and `kedascaler-hybrid` / `kedascaler-model` (coefficients LEARNED by the real
planner), the workload measured from the pods' vLLM counters by all three; their predictions and what they learned."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kedascaler.engine.types import VariantKey
from kedascaler.sim.config import SimConfig, VariantConfig
from kedascaler.sim.perf import perf_params_for
from kedascaler.sim.policies import (
    EXTRA_POLICY_NAMES,
    NAMESPACE,
    POLICY_NAMES,
    KedascalerSloPolicy,
    make_policies,
)
from kedascaler.sim.policy_api import PodCounters
from kedascaler.sim.replica import Counters, FastReplica, SimRequest
from kedascaler.sim.report import learning_table, prediction_table
from kedascaler.sim.simulator import simulate
from kedascaler.sim.workloads import poisson, steps


def test_names_are_selectable_but_not_run_by_default():
    for name in ("kedascaler-hybrid", "kedascaler-model", "kedascaler-hybrid-profile"):
        assert name in EXTRA_POLICY_NAMES and name not in POLICY_NAMES
    w = poisson(1.0, 10, seed=1)
    slo_sizing = [n for n in EXTRA_POLICY_NAMES if n != "kedascaler-min1"]  # min1: tests/sim/test_policies.py
    made = make_policies(slo_sizing, w, SimConfig())
    assert [p.name for p in made] == slo_sizing
    assert all(isinstance(p, KedascalerSloPolicy) and p.reads_counters for p in made)
    assert [p.profile for p in made] == [False, False, True]  # only the profile policy is given perfParms
    assert [p.mode for p in made] == ["hybrid", "model", "hybrid"]


# --- counters ---

def test_counters_add_up_to_what_the_replica_did():
    params = perf_params_for("A100")  # vLLM's default limits: no preemption at this load
    rng = np.random.default_rng(4)
    times = np.sort(rng.uniform(0, 60, 200))
    reqs = [SimRequest(i, float(t), int(rng.integers(20, 600)), int(rng.integers(1, 300)))
            for i, t in enumerate(times)]
    rep = FastReplica(params)
    for r in reqs:
        rep.advance(r.arrival)
        rep.submit(r, r.arrival)
    rep.advance(1000.0)
    c = rep.read_counters()
    assert rep.preemptions == 0 and all(r.finished == r.finished for r in reqs)
    assert c.completed == len(reqs) == c.prefilled == c.first_tokens
    assert c.prompt_tokens == c.prefill_prompt == sum(r.prompt for r in reqs)
    assert c.output_tokens == sum(r.output for r in reqs)
    assert c.gaps == sum(r.output - 1 for r in reqs)
    assert c.gap_sum == pytest.approx(sum(r.finished - r.first_token for r in reqs), rel=1e-9)
    assert c.ttft_sum == pytest.approx(sum(r.first_token - r.dispatched for r in reqs), rel=1e-9)
    assert c.prefill_sum == pytest.approx(sum(r.first_token - r.scheduled for r in reqs), rel=1e-9)
    # ∫ running dt: each request runs from the step that admitted it to its finish
    assert c.running_time == pytest.approx(sum(r.finished - r.scheduled for r in reqs), rel=1e-9)
    assert c.t == rep.t


def test_usage_between_two_reads_has_the_collectors_fields_and_units():
    a, b = Counters(0.0), Counters(0.0)
    b.t = 15.0
    b.completed, b.prompt_tokens, b.output_tokens = 30, 6900, 6000
    b.running_time, b.gap_sum, b.gaps = 150.0, 60.0, 6000
    b.prefill_sum, b.prefilled, b.prefill_prompt = 0.9, 30, 6900
    b.ttft_sum, b.first_tokens = 1.5, 30
    before, after = PodCounters("p", a, 4), PodCounters("p", b, 10)
    u = after.usage_since(before)
    assert u.window_s == 15.0
    assert u.completed_rate == pytest.approx(2.0) and u.prompt_tokens_rate == pytest.approx(460.0)
    assert u.output_tokens_rate == pytest.approx(400.0) and u.backlog_growth_rate == pytest.approx(0.4)
    assert u.mean_running == pytest.approx(10.0) and u.itl_ms == pytest.approx(10.0)
    assert u.prefill_ms == pytest.approx(30.0) and u.prompt_tokens_mean == pytest.approx(230.0)
    assert u.ttft_ms == pytest.approx(50.0)
    assert after.usage_since(after) is None  # no time between the reads
    idle = PodCounters("p", Counters(20.0), 10).usage_since(after)
    assert idle is None or idle.itl_ms is None  # nothing observed: no mean (a read back in time gives nothing)


def run_recording(names, w, cfg) -> dict:
    """Each policy's run, with (t, signal, message) of its first variant's decision at every reconcile."""
    out = {}
    for policy in make_policies(names, w, cfg):
        signals: list[tuple[float, str, str]] = []
        decide = policy.decide

        def recorded(obs, policy=policy, decide=decide, signals=signals):
            answer = decide(obs)
            d = next(iter(policy.previous.values()))
            signals.append((obs.now, d.reason.signal, d.reason.message))
            return answer

        policy.decide = recorded
        out[policy.name] = (policy, simulate(w, policy, cfg), signals)
    return out


# --- learning, on one A100 variant (saturation only ever adds replicas of the cheapest variant) ---

def _a100_only() -> SimConfig:
    return SimConfig(variants=(VariantConfig("llama-a100", "A100", 20.0, perf_params_for("A100", max_num_seqs=32,
                                                                                         num_gpu_blocks=1000)),),
                     tail=60)


@pytest.fixture(scope="module")
def learned_runs():
    w = steps([(0, 1.5), (150, 3.5), (300, 5.5)], 540, seed=5)
    cfg = _a100_only()
    return run_recording(["kedascaler-hybrid", "kedascaler-model"], w, cfg)


def test_the_planner_learns_the_true_coefficients_from_the_counters(learned_runs):
    policy, run, _ = learned_runs["kedascaler-hybrid"]
    v = run.learning["variants"]["llama-a100"]
    assert v["usable_at"] is not None and v["last_usable"]
    alpha, beta, gamma, delta = v["last"]
    true = perf_params_for("A100")
    assert alpha == pytest.approx(true.alpha, rel=0.1)
    # effective decode slope: the prefill stalls mixed into decode steps come on top of β
    assert true.beta * 0.8 <= beta <= true.beta * 3.0
    # the prefill line: γ plus the decode work of the steps a prefill shares, within 20 %
    assert gamma == pytest.approx(true.gamma, rel=0.2)
    assert 0 <= delta <= 5 * true.delta
    # the workload is measured from the counters too: λ close to the last level's 5.5 req/s
    workload = policy.last_plan.workload if policy.last_plan is not None else None
    assert workload is not None and workload.arrival_rate == pytest.approx(5.5, rel=0.35)


def test_learned_hybrid_falls_back_until_the_fit_is_usable_then_sizes(learned_runs):
    for name in ("kedascaler-hybrid", "kedascaler-model"):
        policy, run, signals = learned_runs[name]
        first = run.learning["first_model_based"]
        assert first is not None and first == run.learning["variants"]["llama-a100"]["usable_at"]
        before = [s for s in signals if s[0] < first]
        assert before and all(sig != "slo_capacity" and "fallback to saturation" in msg for _, sig, msg in before)
        assert run.learning["model_based_cycles"] > 0
        assert run.learning["model_taken_cycles"] > 0
    # model mode: every model-based cycle takes the model plan
    _, run, signals = learned_runs["kedascaler-model"]
    first = run.learning["first_model_based"]
    assert all(sig == "slo_capacity" for t, sig, _ in signals if t >= first)


def test_predictions_are_recorded_and_reported(learned_runs):
    runs = [r for _, r, _ in learned_runs.values()]
    for run in runs:
        assert run.predictions
        first = run.learning["first_model_based"]
        assert all(p.t >= first and p.variant == "llama-a100" for p in run.predictions)
        assert all(p.itl_pred_ms > 0 for p in run.predictions)
        observed = [p for p in run.predictions if math.isfinite(p.itl_obs_ms)]
        assert observed and all(p.itl_obs_ms > 0 for p in observed)
        # the model at the load the pods actually took: close to what they showed (loose: no tuning to the test)
        ran = [p for p in observed if math.isfinite(p.itl_ran_ms)]
        assert ran and np.median([abs(p.itl_ran_ms - p.itl_obs_ms) / p.itl_obs_ms for p in ran]) < 0.3
    text = prediction_table(runs)
    assert "| kedascaler-hybrid |" in text and "| kedascaler-model |" in text and "%" in text
    assert "fleet that ran" in text
    learned = learning_table(runs)
    assert "llama-a100" in learned and "11.00 / 0.060 / 25.0 / 0.00070" in learned
    assert prediction_table([]) == "" and learning_table([]) == ""


def test_a_never_started_variant_does_not_keep_the_learned_plan_on_saturation():
    # The default two variants: saturation scales the cheapest (A100) only, the H100 never starts, so it is
    # never observed and never gets parameters. After the warm-up the planner sizes the model over the A100
    # (the H100 keeps its replicas: none), so both learned modes become model-based.
    w = poisson(4.0, 420, seed=2)
    cfg = SimConfig(tail=30)
    for policy in make_policies(["kedascaler-hybrid", "kedascaler-model"], w, cfg):
        run = simulate(w, policy, cfg)
        learning = run.learning
        assert learning["variants"]["llama-h100"]["usable_at"] is None
        first = learning["first_model_based"]
        assert first is not None and first == learning["variants"]["llama-a100"]["usable_at"]
        assert learning["model_based_cycles"] > 0 and learning["model_taken_cycles"] > 0
        assert run.predictions and {p.variant for p in run.predictions} == {"llama-a100"}
        plan = policy.last_plan
        assert plan.model_based and [v.key.name for v in plan.sizing.variants] == ["llama-a100"]
        assert plan.sizes(VariantKey(NAMESPACE, "llama-a100")) and not plan.sizes(VariantKey(NAMESPACE, "llama-h100"))
        assert "sized over llama-a100" in plan.note and "llama-h100" in plan.note
        assert run.series["replicas"][:, 0].max() == 0  # the H100 is held where it was: none


# --- the profile hybrid (true coefficients as a variantProfile, the workload from the counters) ---

def test_the_profile_policy_gives_the_true_coefficients_as_the_variant_profile():
    policy = KedascalerSloPolicy(SimConfig().slo, profile=True)
    cfg = SimConfig()
    for v in cfg.variants:
        va = policy.variant(v)
        assert va.profile.perf is not None and va.profile.max_batch_size == v.params.max_num_seqs
        assert (va.profile.perf.alpha, va.profile.perf.delta) == (v.params.alpha, v.params.delta)
        assert va.slo_class_ref == ("serviceclass", "standard")


@pytest.fixture(scope="module")
def step_runs():
    w = steps([(0, 3.0), (120, 20.0)], 360, seed=7)
    cfg = SimConfig(tail=120)
    return run_recording(["kedascaler", "kedascaler-hybrid-profile"], w, cfg)


def test_hybrid_plans_by_slo_capacity_and_saturation_guards_the_step(step_runs):
    policy, run, signals = step_runs["kedascaler-hybrid-profile"]
    sizing = policy.last_plan.sizing if policy.last_plan is not None else None
    assert sizing is not None and not sizing.fallback  # true perf params and the Standard SLO: a real plan
    # At 3 req/s the model plan decides (one replica carries it); after the step to 20 req/s the queue that
    # builds on the lone replica makes saturation ask for more than the model plan: the guard-rail takes over.
    assert all(signal == "slo_capacity" for t, signal, _ in signals if 15 <= t <= 120)
    assert any(signal != "slo_capacity" for t, signal, _ in signals if 120 < t <= 240)
    _, saturation, sat_signals = step_runs["kedascaler"]
    assert all(signal != "slo_capacity" for _, signal, _ in sat_signals)
    # Never fewer than saturation asks: after the step the hybrid fleet is no smaller than saturation's.
    after = slice(int(150 / 5), int(300 / 5))
    total = run.series["replicas"].sum(axis=1)
    assert np.all(total[after] >= saturation.series["replicas"].sum(axis=1)[after])
