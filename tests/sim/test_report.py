"""Scores over the whole run and after the warm-up, the cost ratios to oracle-startup and to the oracle, the table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kedascaler.sim.config import SimConfig
from kedascaler.sim.policies import StaticPolicy
from kedascaler.sim.report import run_setup, score, score_runs, table, with_ratios
from kedascaler.sim.simulator import simulate
from kedascaler.sim.workloads import steps

CAPS = {"llama-h100": 20.0, "llama-a100": 9.0}


@pytest.fixture(scope="module")
def runs():
    w = steps([(0, 2.0), (60, 6.0)], 200, seed=5)
    cfg = SimConfig(tail=120, warmup=100.0)
    small, big = simulate(w, StaticPolicy({"llama-a100": 1}), cfg), simulate(w, StaticPolicy({"llama-a100": 3}), cfg)
    return w, [dataclasses.replace(small, policy="oracle"), dataclasses.replace(big, policy="oracle-startup"),
               dataclasses.replace(big, policy="wva")]


def test_scores_after_the_warm_up_count_the_requests_arriving_after_it(runs):
    w, (run, *_) = runs
    s = score(run, w, CAPS)
    late = run.arrival >= 100.0
    ok = (run.ttft <= run.slo.ttft) & (run.itl <= run.slo.itl)
    assert s.warmup_s == 100.0 and s.after_warmup.requests == int(late.sum()) > 0
    assert s.after_warmup.slo_attainment == pytest.approx(100.0 * ok[late].mean())
    assert s.after_warmup.cost == pytest.approx(float(run.cost_after_warmup.sum())) and s.after_warmup.cost < s.cost
    assert s.after_warmup.ttft_p99 == pytest.approx(float(np.percentile(run.ttft[late], 99, method="higher")))


def test_ratios_refer_to_oracle_startup_and_the_bound_to_oracle(runs):
    w, rs = runs
    scores = {s.policy: s for s in score_runs(rs, w, CAPS)}
    ref, low = scores["oracle-startup"], scores["oracle"]
    s = scores["wva"]
    assert s.cost_ratio == pytest.approx(s.cost / ref.cost) and s.cost_ratio_bound == pytest.approx(s.cost / low.cost)
    assert s.after_warmup.cost_ratio == pytest.approx(s.after_warmup.cost / ref.after_warmup.cost)
    assert s.after_warmup.cost_ratio_bound == pytest.approx(s.after_warmup.cost / low.after_warmup.cost)
    alone = with_ratios([score(rs[2], w, CAPS)])  # neither oracle ran: no ratios
    assert alone[0].cost_ratio is None and alone[0].cost_ratio_bound is None
    assert alone[0].after_warmup.cost_ratio is None


def test_the_table_shows_both_ratios_and_the_warm_scores(runs):
    w, rs = runs
    text = table(score_runs(rs, w, CAPS))
    head, _, *rows = text.splitlines()
    assert "× oracle: all / warm" in head and "× bound: all / warm" in head
    assert all(row.count("|") == head.count("|") for row in rows)
    wva = next(r for r in rows if r.startswith("| wva |")).split(" | ")
    assert wva[5] == "1.00 / 1.00"  # the same fleet as oracle-startup


def test_the_set_up_names_the_router_the_warm_up_and_the_shared_start(runs):
    _, rs = runs
    setup = run_setup(rs)
    assert setup["router"] == "epp" and setup["warmup_s"] == 100.0
    assert setup["initial_fleet"] == {"llama-h100": 0, "llama-a100": 1}  # all three are fixed fleets: the first


def test_the_report_states_each_baseline_s_upstream_configuration(tmp_path):
    """results.json and summary.md say which upstream file and commit each baseline follows, and how it is set up."""
    import json

    from kedascaler.sim.policies import make_policies, policy_settings
    from kedascaler.sim.report import write_report
    from kedascaler.sim.workloads import poisson

    w, cfg = poisson(1.0, 60.0, seed=2), SimConfig(tail=30)
    policies = make_policies(["wva", "keda-queue"], w, cfg)
    runs = [simulate(w, p, cfg) for p in policies]
    capacity = {v.name: 5.0 for v in cfg.variants}
    write_report(tmp_path, w, runs, score_runs(runs, w, capacity), capacity, {}, {}, policy_settings(policies))
    stated = json.loads((tmp_path / "results.json").read_text())["policy_settings"]
    assert set(stated) == {"wva", "keda-queue"}
    assert "@" in stated["wva"]["follows"] and stated["wva"]["cycle_s"] == 30
    assert stated["keda-queue"]["deviations"]
    summary = (tmp_path / "summary.md").read_text()
    assert "- `wva`: llm-d/llm-d-workload-variant-autoscaler@" in summary
