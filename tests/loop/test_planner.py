"""SLO-driven sizing in the reconcile loop, as docs/slo-sizing.md tells it.

A model served on A100s belongs to the Premium class (ITL 24 ms, TTFT 500 ms). Emulated vLLM pods are
scraped directly each cycle; the counters' deltas give the window's usage. Without a `variantProfile` the
scaler first decides by saturation and says why in the VA status (`FallbackToSaturation`: no usable
parameters yet); once the robust fits of α, β, γ, δ are good it sizes from the queueing model
(`ModelBased`, source `estimated`) and publishes the estimates. With a user-given profile the model plan
is used from the first window with counters. Emulated time drives everything: no sleeps, no wall clock.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kedascaler.actuate.status import status_for
from kedascaler.engine.types import VariantKey
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.planner import PlannerSettings, workload_from_usage
from kedascaler.loop.reconcile import Reconciler
from kedascaler.sim.fleet import EmulatedFleet
from kedascaler.sim.load import OfferedLoad
from kedascaler.sim.perf import perf_params_for
from kedascaler.sources import scrape
from kedascaler.sources.base import PodUsage
from kedascaler.sources.files import StaticInventory
from kedascaler.sources.scrape import DirectScrapeSource
from kedascaler.spec.inventory import build_inventory

MODEL = "meta/llama-3.1-8b"
A100 = VariantKey("llm", "llama-a100")
H100 = VariantKey("llm", "llama-h100")
TRUE_A100 = perf_params_for("A100", max_num_seqs=64)
SERVICECLASS = ("test", {
    "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "serviceclass", "namespace": "llm"},
    "data": {"premium": "name: Premium\npriority: 1\ndata:\n  - model: meta/llama-3.1-8b\n"
                        "    slo-tpot: 24\n    slo-ttft: 500\n"}})


def va(name: str, accelerator: str, cost: int, *, profile: dict | None = None, mode: str | None = None,
       slo_class: bool = True, max_replicas: int = 10) -> tuple[str, dict]:
    spec: dict = {"scaleTargetRef": {"kind": "Deployment", "name": name}, "modelID": MODEL,
                  "accelerator": accelerator, "variantCost": str(cost), "minReplicas": 1,
                  "maxReplicas": max_replicas, "variantProfile": {"maxBatchSize": 64}}
    if slo_class:
        spec["sloClassRef"] = {"name": "serviceclass", "key": "premium"}
    if profile is not None:
        spec["variantProfile"]["perfParms"] = profile
    if mode is not None:
        spec["scalingMode"] = mode
    return ("test", {"apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
                     "metadata": {"name": name, "namespace": "llm"}, "spec": spec})


def true_profile(p=TRUE_A100) -> dict:
    return {"decodeParms": {"alpha": str(p.alpha), "beta": str(p.beta)},
            "prefillParms": {"gamma": str(p.gamma), "delta": str(p.delta)}}


class Rig:
    """Emulated A100 pods + direct scraping + Reconciler with a planner, all on the fleet's clock."""

    def __init__(self, docs, monkeypatch, *, mode: str = "hybrid", replicas: int = 1, h100: bool = False) -> None:
        state = build_inventory(docs)
        self.fleet = EmulatedFleet(seed=1, tick=0.05)
        self.fleet.add_deployment("llama-a100", MODEL, "A100", params=TRUE_A100, startup_delay=5.0,
                                  replicas=replicas, namespace="llm")
        if h100:  # a second variant that runs no replica: nothing to learn its parameters from
            self.fleet.add_deployment("llama-h100", MODEL, "H100", params=perf_params_for("H100", max_num_seqs=64),
                                      startup_delay=5.0, replicas=0, namespace="llm")
        self.fleet.advance(5.0)
        self.fleet.start()
        # direct scraping stamps samples (and so the usage windows) with the clock: the fleet's
        monkeypatch.setattr(scrape, "time", SimpleNamespace(time=lambda: self.fleet.now))
        self.source = DirectScrapeSource()
        self.planner = PlannerSettings(mode)
        self.reconciler = Reconciler(StaticInventory(state), self.source, DecisionBoard(), workloads=self.fleet,
                                     clock=lambda: self.fleet.now, planner=self.planner)

    def cycle(self, rate: float, seconds: float = 15.0):
        self.fleet.set_load(MODEL, OfferedLoad(rate=rate))
        self.fleet.advance(seconds)
        return self.reconciler.run_once()

    def close(self) -> None:
        self.fleet.close()
        self.source.close()


@pytest.fixture
def rig_factory(monkeypatch):
    rigs: list[Rig] = []

    def make(docs, **kw) -> Rig:
        rigs.append(Rig(docs, monkeypatch, **kw))
        return rigs[-1]
    yield make
    for rig in rigs:
        rig.close()


def sizing_status(report, key=A100):
    decision = next(d for d in report.decisions if d.key == key)
    plan = report.plans[(key.namespace, MODEL)]
    status = status_for(decision, plan=plan, params=report.parameters.get(key))
    condition = next(c for c in status["conditions"] if c["type"] == "ModelBasedSizing")
    return decision, plan, status, condition


def test_learned_parameters_take_over_from_saturation_once_the_fit_is_good(rig_factory):
    rig = rig_factory([va("llama-a100", "A100", 20), SERVICECLASS])
    seen = []
    for rate in [1, 2, 3, 4, 5, 6, 7, 8] * 4:  # a spread of batch sizes: the decode line has a slope to find
        seen.append(sizing_status(rig.cycle(float(rate))))

    decision, plan, status, condition = seen[2]
    assert not plan.model_based
    assert condition["status"] == "False" and condition["reason"] == "FallbackToSaturation"
    assert "no usable performance model" in condition["message"] and "llama-a100" in condition["message"]
    assert decision.predicted_itl_ms is None and "predicted" not in status

    decision, plan, status, condition = seen[-1]
    assert plan.model_based, plan.why_not
    assert condition["status"] == "True" and condition["reason"] == "ModelBased"
    assert "estimated parameters" in condition["message"] and "ITL 24 ms" in condition["message"]
    assert status["scalingMode"] == "hybrid"
    estimate = status["performanceEstimate"]
    assert estimate["usable"] and estimate["source"] == "estimated"
    # Effective coefficients (ITL includes the prefill stalls): close to, and not below, the true step times.
    assert TRUE_A100.alpha * 0.95 <= estimate["alpha"] <= TRUE_A100.alpha * 1.15
    assert TRUE_A100.gamma * 0.9 <= estimate["gamma"] <= TRUE_A100.gamma * 1.1
    assert estimate["decode"]["samples"] >= 20
    # The plan's prediction reaches the decision (and from there the records and /metrics).
    assert decision.predicted_itl_ms is not None and 0 < decision.predicted_itl_ms <= 24
    assert status["predicted"]["itlMs"] == pytest.approx(decision.predicted_itl_ms, rel=1e-3)
    first = next(i for i, s in enumerate(seen) if s[1].model_based)
    assert all(s[1].model_based for s in seen[first:]), "once usable, the learned parameters stay in use"


def test_a_user_profile_sizes_from_the_first_window_and_scales_up_in_one_cycle(rig_factory):
    rig = rig_factory([va("llama-a100", "A100", 20, profile=true_profile()), SERVICECLASS])
    first = rig.cycle(2.0)  # the first scrape of a pod has no previous reading: no usage yet
    assert not first.plans[("llm", MODEL)].model_based
    decision, plan, status, condition = sizing_status(rig.cycle(2.0))
    assert plan.model_based and condition["reason"] == "ModelBased"
    assert "variantProfile parameters" in condition["message"]
    assert decision.desired_replicas == 1

    decision, plan, _, _ = sizing_status(rig.cycle(40.0))  # far beyond one A100 within 24 ms ITL
    wanted = plan.sizing.targets[A100]
    assert wanted >= 3, plan.sizing.reason
    # Hybrid: never fewer than saturation asks for, and the model plan's count at least.
    assert decision.desired_replicas >= wanted
    assert plan.workload.arrival_rate == pytest.approx(40.0, rel=0.35)


def test_saturation_mode_on_a_va_keeps_its_model_off_the_queueing_model(rig_factory):
    rig = rig_factory([va("llama-a100", "A100", 20, profile=true_profile(), mode="saturation"), SERVICECLASS])
    rig.cycle(4.0)
    decision, plan, status, condition = sizing_status(rig.cycle(4.0))
    assert plan.mode == "saturation" and plan.sizing is None
    assert status["scalingMode"] == "saturation"
    assert condition["reason"] == "SaturationMode" and condition["status"] == "False"
    assert decision.reason.signal != "slo_capacity"


def test_a_model_without_a_service_class_falls_back_and_says_how_to_fix_it(rig_factory):
    rig = rig_factory([va("llama-a100", "A100", 20, profile=true_profile(), slo_class=False), SERVICECLASS])
    rig.cycle(4.0)
    _, plan, _, condition = sizing_status(rig.cycle(4.0))
    assert not plan.model_based
    assert condition["reason"] == "FallbackToSaturation"
    assert "sloClassRef" in condition["message"]


def test_parameters_that_cannot_describe_a_server_fall_back_with_the_reason(rig_factory):
    zero = {"decodeParms": {"alpha": "0", "beta": "0"}, "prefillParms": {"gamma": "25", "delta": "0.0007"}}
    rig = rig_factory([va("llama-a100", "A100", 20, profile=zero), SERVICECLASS])
    rig.cycle(4.0)
    decision, plan, _, condition = sizing_status(rig.cycle(4.0))
    assert not plan.model_based and condition["reason"] == "FallbackToSaturation"
    assert "variantProfile" in condition["message"] and "llama-a100" in condition["message"]
    assert decision.reason.signal != "slo_capacity"  # decided by saturation, with a decision all the same


def test_model_mode_follows_the_plan_down_where_hybrid_waits_for_saturation(rig_factory):
    docs = [va("llama-a100", "A100", 20, profile=true_profile(), mode="model"), SERVICECLASS]
    rig = rig_factory(docs, replicas=4)
    rig.cycle(1.0)
    decision, plan, _, _ = sizing_status(rig.cycle(1.0))
    assert plan.mode == "model" and plan.model_based
    assert decision.desired_replicas == plan.sizing.targets[A100] == 1
    assert decision.reason.signal == "slo_capacity" and decision.reason.action == "scale-down"


def usage(completed=None, backlog=0.0, prompt=None, output=None) -> PodUsage:
    return PodUsage(window_s=15.0, completed_rate=completed, prompt_tokens_rate=prompt, output_tokens_rate=output,
                    backlog_growth_rate=backlog, mean_running=None, itl_ms=None, prefill_ms=None,
                    prompt_tokens_mean=None, ttft_ms=None)


def test_arrival_rate_counts_what_finished_and_what_piled_up():
    pods = [usage(3.0, 1.0, prompt=600.0, output=450.0), usage(2.0, 0.5, prompt=400.0, output=300.0)]
    workload, why = workload_from_usage(pods)
    assert why == ""
    assert workload.arrival_rate == pytest.approx(6.5)  # 5 finished/s + 1.5/s more in the pods
    assert (workload.prompt_tokens, workload.output_tokens) == (pytest.approx(200.0), pytest.approx(150.0))


def test_workload_without_counters_or_lengths_says_why():
    assert workload_from_usage([usage(None)])[1].startswith("no request counters")
    workload, why = workload_from_usage([usage(0.0, 2.0, prompt=0.0, output=0.0)])
    assert workload is None and "mean prompt/output tokens unknown" in why
    workload, _ = workload_from_usage([usage(0.0, 2.0, prompt=0.0, output=0.0)], last_lengths=(300.0, 100.0))
    assert workload.arrival_rate == 2.0 and workload.prompt_tokens == 300.0
    draining, _ = workload_from_usage([usage(1.0, -5.0, prompt=100.0, output=100.0)])
    assert draining.arrival_rate == 0.0  # a queue draining faster than requests finish is no negative load


def test_estimates_and_predictions_reach_metrics_and_decision_records(rig_factory, tmp_path):
    import json

    import jsonschema
    from prometheus_client.parser import text_string_to_metric_families

    from kedascaler.observe import Observer, RecordWriter, load_schema

    rig = rig_factory([va("llama-a100", "A100", 20), SERVICECLASS])
    path = tmp_path / "decisions.jsonl"
    with RecordWriter(path) as writer:
        observer = Observer(records=writer, log_decisions=False)
        reports = []
        for rate in [1, 2, 3, 4, 5, 6, 7, 8] * 4:
            reports.append(rig.cycle(float(rate)))
            observer.on_cycle(reports[-1])
    last = reports[-1]
    decision = last.decisions[0]
    params = last.parameters[A100]
    series = {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k in ("parameter", "source", "line")))):
              s.value for f in text_string_to_metric_families(observer.exposition().decode()) for s in f.samples}
    assert series[("kedascaler_perf_estimate_ms", (("parameter", "alpha"),))] == pytest.approx(
        params.estimate.decode.intercept)
    assert series[("kedascaler_perf_estimate_ms", (("parameter", "gamma"),))] == pytest.approx(
        params.estimate.prefill.intercept)
    assert series[("kedascaler_perf_estimate_usable", ())] == 1.0
    assert series[("kedascaler_model_based_sizing", (("source", "estimated"),))] == 1.0
    assert series[("kedascaler_predicted_itl_ms", ())] == pytest.approx(decision.predicted_itl_ms)
    assert series[("kedascaler_perf_estimate_samples", (("line", "decode"),))] == params.decode_samples

    records = [json.loads(line) for line in path.read_text().splitlines()]
    validator = jsonschema.Draft202012Validator(load_schema())
    for record in records:
        validator.validate(record)
    assert all(r["scaling_mode"] == "hybrid" and r["slo"] == {"itl_ms": 24.0, "ttft_ms": 500.0} for r in records)
    early, late = records[2], records[-1]
    assert early.get("predicted_itl_ms") is None and early["observed_itl_ms"] > 0
    # The prediction at cycle N is comparable with the observation at N+1: both are there, in ms.
    predicted = [r["predicted_itl_ms"] for r in records[:-1] if r.get("predicted_itl_ms") is not None]
    observed = [records[i + 1]["observed_itl_ms"] for i, r in enumerate(records[:-1])
                if r.get("predicted_itl_ms") is not None]
    assert predicted and len(predicted) == len(observed)
    assert late["predicted_itl_ms"] == pytest.approx(decision.predicted_itl_ms)
    # With one replica at these rates the model's ITL prediction is within 25 % of what the pods then showed.
    errors = sorted(abs(p - o) / o for p, o in zip(predicted, observed, strict=True))
    assert errors[len(errors) // 2] < 0.25, errors


def test_a_variant_never_run_does_not_keep_its_model_on_saturation(rig_factory):
    docs = [va("llama-a100", "A100", 20), va("llama-h100", "H100", 40), SERVICECLASS]
    docs[1][1]["spec"]["minReplicas"] = 0
    rig = rig_factory(docs, h100=True)
    reports = [rig.cycle(float(rate)) for rate in [1, 2, 3, 4, 5, 6, 7, 8] * 4]
    decision, plan, status, condition = sizing_status(reports[-1], A100)
    assert plan.model_based and condition["reason"] == "ModelBased", condition["message"]
    assert set(plan.sizing.targets) == {A100}  # sized over the variant it could learn
    assert "sized over llama-a100" in plan.note and "llama-h100" in plan.note
    held, _, held_status, held_condition = sizing_status(reports[-1], H100)
    assert held_condition["status"] == "False" and held_condition["reason"] == "FallbackToSaturation"
    assert "no usable parameters" in held_condition["message"]
    assert held.desired_replicas == 0 and "performanceEstimate" not in held_status
