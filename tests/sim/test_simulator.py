"""The simulator: the fast replica against closed forms and the step-by-step engine, the loop, determinism."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from kedascaler.sim.config import SimConfig, default_variants
from kedascaler.sim.perf import perf_params_for
from kedascaler.sim.policies import KedascalerPolicy, OraclePolicy, OracleStartupPolicy, StaticPolicy, WVAPolicy
from kedascaler.sim.replica import FastReplica, SimRequest
from kedascaler.sim.simulator import simulate
from kedascaler.sim.workloads import azure_csv, poisson, steps
from tests.support.sim import blocks_held, replay_on_both

SLICE = Path(__file__).parent / "data" / "azure-conv-slice.csv"


def test_one_request_alone_gets_the_model_s_ttft_and_itl():
    p = perf_params_for("H100")
    r = FastReplica(p)
    req = SimRequest(0, 1.0, prompt=500, output=101)
    r.submit(req, 1.0)
    r.advance(100.0)
    assert req.ttft == pytest.approx((p.gamma + p.delta * 500) / 1000)
    assert req.itl == pytest.approx((p.alpha + p.beta * 1) / 1000)
    assert r.used_blocks == 0 and r.outstanding == 0


def test_a_full_batch_reaches_the_throughput_of_the_performance_model():
    p = perf_params_for("A100", max_num_seqs=32, num_gpu_blocks=10_000)
    r = FastReplica(p)
    reqs = [SimRequest(i, 0.0, 200, 100) for i in range(32)]
    for q in reqs:
        r.submit(q, 0.0)
    r.advance(1000.0)
    makespan = max(q.finished for q in reqs)
    # WVA's μ(n) has one prefill step; 32 × 200 prompt tokens over a 2048-token budget take 4 steps, each with
    # its own fixed cost γ (the decodes of the first admitted ride along in those steps).
    steps = -(-32 * 200 // p.max_num_batched_tokens)
    expected = 32 / p.max_throughput(200, 100, 32) + (steps - 1) * p.gamma / 1000
    assert makespan == pytest.approx(expected, rel=0.01)
    assert min(q.itl for q in reqs) == pytest.approx(p.itl_seconds(32), rel=0.01)  # the last admitted: pure decodes


def test_steady_load_below_capacity_keeps_latency_at_the_model_s_numbers():
    p = perf_params_for("A100", max_num_seqs=32, num_gpu_blocks=1000)
    rng = random.Random(3)
    r, reqs, t = FastReplica(p), [], 0.0
    while t < 300:
        t += rng.expovariate(4.0)  # ≈ 1/3 of the replica's capacity for these lengths
        reqs.append(SimRequest(len(reqs), t, 200, 100))
        r.advance(t)
        r.submit(reqs[-1], t)
    r.advance(1000)
    ttft = np.array([q.ttft for q in reqs])
    itl = np.array([q.itl for q in reqs])
    assert np.median(ttft) < 0.1
    assert p.itl_seconds(1) <= np.median(itl) <= p.itl_seconds(32) + p.gamma / 1000


def test_kv_cache_full_grows_the_queue_and_preempts():
    p = perf_params_for("A100", max_num_seqs=64, num_gpu_blocks=200)  # 3200 tokens of KV
    r = FastReplica(p)
    reqs = [SimRequest(i, 0.01 * i, 300, 400) for i in range(40)]
    max_waiting = 0
    for q in reqs:
        r.advance(q.arrival)
        r.submit(q, q.arrival)
    for t in np.arange(0.5, 600, 0.5):
        r.advance(float(t))
        max_waiting = max(max_waiting, r.num_waiting)
        assert r.used_blocks == blocks_held(r) <= p.num_gpu_blocks
    assert max_waiting > 10
    assert r.preemptions > 0
    assert all(q.finished == q.finished for q in reqs)  # all finished in the end
    assert r.used_blocks == 0


def test_fast_replica_agrees_with_the_step_by_step_engine():
    p = perf_params_for("A100", max_num_seqs=32, num_gpu_blocks=1000)
    fast_reqs, slow_by_id = replay_on_both(p, seed=1, rate=5.0, seconds=120, prompts=(50, 1500),
                                           outputs=(10, 300), until=2000)
    assert len(slow_by_id) == len(fast_reqs)
    fast_ttft = np.mean([q.ttft for q in fast_reqs])
    slow_ttft = np.mean([slow_by_id[q.id].ttft for q in fast_reqs])
    assert fast_ttft == pytest.approx(slow_ttft, rel=0.1)
    fast_itl = np.mean([q.itl for q in fast_reqs])
    slow_itl = np.mean([slow_by_id[q.id].mean_itl for q in fast_reqs])
    assert fast_itl == pytest.approx(slow_itl, rel=0.05)


def _small() -> tuple:
    return steps([(0, 2.0), (60, 12.0)], 240, seed=5), SimConfig(tail=120)


def test_same_seed_same_results():
    w, cfg = _small()
    a = simulate(w, KedascalerPolicy(), cfg)
    b = simulate(steps([(0, 2.0), (60, 12.0)], 240, seed=5), KedascalerPolicy(), cfg)
    np.testing.assert_array_equal(a.ttft, b.ttft)
    np.testing.assert_array_equal(a.series["replicas"], b.series["replicas"])
    assert a.cost.tolist() == b.cost.tolist()


def test_static_fleet_serves_everything_and_bills_the_whole_run():
    w, cfg = _small()
    run = simulate(w, StaticPolicy({"llama-a100": 2}), cfg)
    assert run.scaling_actions.sum() == 0
    assert np.all(np.isfinite(run.itl))
    assert run.series["replicas"][:, 1].min() == run.series["replicas"][:, 1].max() == 2
    billed = run.replica_seconds[1]
    assert billed == pytest.approx(2 * run.times[-1], rel=0.05)


def test_pods_start_after_the_start_up_delay_and_requests_wait_at_the_gateway_meanwhile():
    w = steps([(0, 0.0), (100, 3.0)], 200, seed=1)
    cfg = SimConfig(variants=default_variants(startup_delay=60.0), tail=120)
    run = simulate(w, KedascalerPolicy(), cfg)  # one warm replica: no gateway wait
    assert run.gateway_wait.max() == 0
    oracle = OraclePolicy(w, cfg)
    run = simulate(w, oracle, cfg)  # instant start-up
    assert np.all(np.isfinite(run.ttft))


def test_every_policy_starts_from_the_same_warm_fleet_but_a_fixed_one():
    w, cfg = _small()
    policies = [KedascalerPolicy(), WVAPolicy(), OraclePolicy(w, cfg), OracleStartupPolicy(w, cfg)]
    for policy in policies:
        run = simulate(w, policy, cfg)
        assert run.initial_fleet == {"llama-h100": 0, "llama-a100": 1}, policy.name
        assert not run.fixed_fleet
    static = simulate(w, StaticPolicy({"llama-h100": 2}), cfg)  # static-peak: its fleet from t = 0, by definition
    assert static.fixed_fleet and static.initial_fleet == {"llama-h100": 2, "llama-a100": 0}
    assert static.series["ready"][0].tolist() == [2, 0]
    other = SimConfig(tail=120, initial_fleet=(("llama-h100", 1), ("llama-a100", 2)))
    run = simulate(w, WVAPolicy(), other)
    assert run.initial_fleet == {"llama-h100": 1, "llama-a100": 2}
    with pytest.raises(ValueError, match="unknown variants"):
        simulate(w, WVAPolicy(), SimConfig(initial_fleet=(("llama-l40s", 1),)))


def test_cost_after_the_warm_up_is_billed_from_it_on():
    w, _ = _small()
    run = simulate(w, StaticPolicy({"llama-a100": 2}), SimConfig(tail=120, warmup=100.0))
    assert run.warmup == 100.0
    assert run.replica_seconds_after_warmup[1] == pytest.approx(run.replica_seconds[1] - 2 * 100.0)
    assert run.cost_after_warmup.sum() < run.cost.sum()


def test_a_trace_slice_replays():
    w = azure_csv(SLICE)
    assert len(w) == 600
    run = simulate(w, KedascalerPolicy(), SimConfig(tail=300))
    assert np.isfinite(run.ttft).mean() > 0.99
    assert run.cost.sum() > 0


def test_poisson_below_capacity_meets_the_slo_on_a_static_fleet():
    w = poisson(3.0, 300, seed=2)
    run = simulate(w, StaticPolicy({"llama-a100": 1}), SimConfig(tail=200))
    ok = (run.ttft <= 1.0) & (run.itl <= 0.05)
    assert ok.mean() > 0.99


def test_simulate_command_writes_the_report(tmp_path, capsys):
    from kedascaler.cli.simulate import main

    rc = main(["--trace", str(SLICE), "--policy", "kedascaler", "--policy", "wva", "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    # both oracles always run: "× oracle" refers to oracle-startup, "× bound" to oracle
    assert "| kedascaler |" in out and "| oracle-startup |" in out and "| oracle |" in out
    assert "× oracle: all / warm" in out and "× bound: all / warm" in out and "Router: epp" in out
    for name in ("summary.md", "results.json", "replicas.png", "kv_queue.png", "latency.png", "cost_vs_slo.png"):
        assert (tmp_path / name).stat().st_size > 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["capacity_req_s_per_replica"]) == {"llama-h100", "llama-a100"}
    assert all(c > 0 for c in results["capacity_req_s_per_replica"].values())
    assert results["router"] == "epp" and results["warmup_s"] == 300.0
    assert results["initial_fleet"] == {"llama-h100": 0, "llama-a100": 1}
    scores = {s["policy"]: s for s in results["scores"]}
    assert scores["oracle-startup"]["cost_ratio"] == 1.0 and scores["oracle"]["cost_ratio_bound"] == 1.0
    assert scores["wva"]["after_warmup"]["requests"] == int(np.sum(azure_csv(SLICE).times >= 300.0))
    assert "static-peak is by definition its fixed fleet" in (tmp_path / "summary.md").read_text()


def test_simulate_command_takes_the_router(tmp_path, capsys):
    from kedascaler.cli.simulate import main

    rc = main(["--trace", str(SLICE), "--policy", "wva", "--router", "service", "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    assert "Router: service" in capsys.readouterr().out
    assert json.loads((tmp_path / "results.json").read_text())["router"] == "service"


def test_simulate_command_refuses_a_missing_trace(tmp_path, capsys):
    from kedascaler.cli.simulate import main

    assert main(["--trace", str(tmp_path / "nope.csv"), "--quiet"]) == 2
    assert "cannot read the workload" in capsys.readouterr().err
