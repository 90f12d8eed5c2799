"""Routing as deployed: a Kubernetes Service (a random pod) and llm-d's endpoint picker (queue and KV scorers,
random ties, metrics refreshed every 50 ms); a request stays on the pod it was given."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from kedascaler.sim.cluster import EPP_REFRESH, Cluster
from kedascaler.sim.config import SimConfig
from kedascaler.sim.policy_api import Observation
from kedascaler.sim.replica import SimRequest
from kedascaler.sim.simulator import simulate
from kedascaler.sim.workloads import Workload

H100, A100 = 0, 1  # variant indices of default_variants()


def _cluster(router: str, h100: int = 2, a100: int = 2, seed: int = 0) -> Cluster:
    c = Cluster(SimConfig(router=router, seed=seed), instant_start=True)
    c.set_replicas(H100, h100, 0.0)
    c.set_replicas(A100, a100, 0.0)
    return c


def _reqs(n: int, at: float = 0.0, prompt: int = 200, first: int = 0) -> list[SimRequest]:
    return [SimRequest(first + i, at, prompt, 50) for i in range(n)]


def _per_pod(c: Cluster) -> Counter:
    return Counter({p.name: len(p.replica.incoming) for pods in c.pods for p in pods})


def test_service_picks_a_ready_pod_at_random_per_request():
    c = _cluster("service")
    c.route(_reqs(4000), 0.0)
    counts = _per_pod(c)
    assert len(counts) == 4 and all(900 <= n <= 1100 for n in counts.values()), counts
    again = _cluster("service")
    again.route(_reqs(4000), 0.0)
    assert _per_pod(again) == counts  # the run's seed: the same picks
    other = _cluster("service", seed=1)
    other.route(_reqs(4000), 0.0)
    assert _per_pod(other) != counts


def test_epp_breaks_ties_at_random_not_by_name():
    c = _cluster("epp")
    c.route(_reqs(400), 0.0)  # one refresh: every idle pod scores the same for all of them
    counts = _per_pod(c)
    assert len(counts) == 4 and all(70 <= n <= 130 for n in counts.values()), counts
    by_variant = Counter({v: sum(len(p.replica.incoming) for p in c.pods[v]) for v in (H100, A100)})
    assert by_variant[H100] > 150 and by_variant[A100] > 150


def test_epp_scores_two_times_the_queue_score_plus_two_times_free_kv():
    c = _cluster("epp", h100=0, a100=2)
    a, b = c.pods[A100]
    b.replica.waiting.extend(_reqs(4, first=100))  # b: 4 waiting, KV empty; a: none waiting, KV 90% full
    a.replica.used_blocks = int(0.9 * a.replica.params.num_gpu_blocks)
    req = _reqs(1)
    c.route(req, 0.0)
    assert req[0] in a.replica.incoming  # a: 2 × 1 + 2 × 0.1 = 2.2 beats b: 2 × 0 + 2 × 1 = 2
    c = _cluster("epp", h100=0, a100=2)
    a, b = c.pods[A100]
    a.replica.used_blocks, b.replica.used_blocks = 300, 100  # same queue: the emptier KV cache wins
    req = _reqs(1)
    c.route(req, 0.0)
    assert req[0] in b.replica.incoming


def test_epp_sees_metrics_refreshed_every_50_ms():
    c = _cluster("epp", h100=0, a100=2)
    a, b = c.pods[A100]
    a.replica.used_blocks = 50  # 5% of the A100's 1000 blocks; b is empty
    herd = _reqs(3, at=0.0, prompt=1600)  # 101 blocks each
    c.route(herd, 0.0)
    assert all(r in b.replica.incoming for r in herd)  # one refresh: all see b at 0%
    late = _reqs(1, at=EPP_REFRESH + 0.01, prompt=1600, first=10)
    c.route(late, 0.0)  # the next refresh shows b at ≈ 30%
    assert late[0] in a.replica.incoming


def test_an_unknown_router_is_refused():
    with pytest.raises(ValueError, match="unknown router"):
        Cluster(SimConfig(router="round-robin"), instant_start=False)


class _AddH100s:
    """Keeps the A100 it starts with and asks for four H100s at once (ready after the start-up delay)."""

    name = "add-h100s"
    interval = 15.0
    direct = True
    instant_start = False

    def initial(self, config: SimConfig) -> dict[str, int]:
        return {}

    def decide(self, obs: Observation) -> dict[str, int]:
        return {"llama-a100": 1, "llama-h100": 4}

    def keda_min_replicas(self, variant) -> int:
        return 0


@pytest.mark.parametrize("router", ["epp", "service"])
def test_a_request_queued_on_a_pod_stays_there_when_new_pods_become_ready(router):
    rng = np.random.default_rng(4)
    burst = np.sort(rng.uniform(0.0, 10.0, 3000))  # 300 req/s on one A100: a queue that outlasts the start-up
    after = np.sort(rng.uniform(120.0, 130.0, 50))
    times = np.concatenate([burst, after])
    w = Workload("burst", times, np.full(len(times), 300), np.full(len(times), 200), 140.0)
    run = simulate(w, _AddH100s(), SimConfig(router=router, tail=600))
    early, late = run.arrival < 10.0, run.arrival >= 120.0
    assert np.max(run.arrival[early] + run.ttft[early]) > 150.0  # the queue outlasted the H100s' start-up (90 s)
    assert np.all(run.served_by[early] == A100)  # queued on the A100 before the H100s were ready: served there
    assert np.all(run.restarts == 0) and np.all(run.gateway_wait == 0)
    assert np.mean(run.served_by[late] == H100) > 0.5  # new arrivals do reach the H100s
