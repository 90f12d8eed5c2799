"""The emulated fleet: start-up delay, least-loaded routing, the fleet queue, draining, and `Workloads`."""

from __future__ import annotations

import threading

import pytest

from kedascaler.engine.types import VariantKey, VariantSpec
from kedascaler.sim.fleet import EmulatedFleet
from kedascaler.sim.load import OfferedLoad
from kedascaler.sim.perf import perf_params_for


def spec(target: str, model: str = "llama", name: str = "llama-h100") -> VariantSpec:
    return VariantSpec(key=VariantKey("default", name), model_id=model, target_name=target)


def test_new_pods_get_ready_after_the_startup_delay_and_requests_wait_at_the_fleet_meanwhile():
    fleet = EmulatedFleet(seed=1)
    dep = fleet.add_deployment("llama-h100", "llama", "H100", startup_delay=30.0)
    fleet.set_load("llama", OfferedLoad(rate=5.0))
    dep.set_replicas(2)
    assert (dep.current_replicas, dep.ready_replicas) == (2, 0)
    fleet.advance(29.5)
    assert (dep.current_replicas, dep.ready_replicas) == (2, 0)
    assert fleet.queue_sizes() == {"llama": fleet.queued_for("llama")} and fleet.queued_for("llama") > 50
    fleet.advance(1.0)
    assert dep.ready_replicas == 2
    assert fleet.queue_sizes() == {"llama": 0}
    assert all(p.state().running + p.state().waiting > 0 for p in dep.pods)


def test_a_lone_pod_under_overload_serves_the_model_rate():
    """Through the fleet: the backlog built during start-up puts full batches in lockstep, at μ(n)."""
    params = perf_params_for("H100", max_num_seqs=16)
    fleet = EmulatedFleet(seed=2)
    dep = fleet.add_deployment("d", "m", params=params, startup_delay=5.0, replicas=1)
    mu = params.max_throughput(200, 100)
    fleet.set_load("m", OfferedLoad(rate=2 * mu, prompt_tokens=200, output_tokens=100, fixed_lengths=True))
    fleet.advance(20.0)
    fleet.drain_finished()
    fleet.advance(40.0)
    assert len(fleet.drain_finished()) / 40.0 == pytest.approx(mu, rel=0.05)
    assert dep.pods[0].state().waiting > 100


def test_routing_sends_new_requests_to_the_least_loaded_ready_pod():
    fleet = EmulatedFleet(seed=3)
    dep = fleet.add_deployment("d", "m", startup_delay=0.0, replicas=1)
    fleet.advance(0.1)
    (busy,) = dep.pods
    for _ in range(20):
        fleet.submit("m", 200, 500)
    fleet.advance(0.5)
    dep.set_replicas(2)
    fleet.advance(0.1)
    (idle,) = [p for p in dep.pods if p is not busy]
    for _ in range(5):
        fleet.submit("m", 200, 500)
        fleet.advance(0.1)
    assert busy.state().running == 20
    assert idle.state().running == 5


def test_routing_spreads_even_load_across_pods_and_deployments_of_the_model():
    fleet = EmulatedFleet(seed=4)
    a = fleet.add_deployment("m-h100", "m", "H100", startup_delay=0.0, replicas=2)
    b = fleet.add_deployment("m-a100", "m", "A100", startup_delay=0.0, replicas=1)
    other = fleet.add_deployment("n-h100", "n", "H100", startup_delay=0.0, replicas=1)
    fleet.advance(0.1)
    for _ in range(30):
        fleet.submit("m", 100, 1000)
    fleet.advance(0.5)
    counts = [p.state().running for p in a.pods + b.pods]
    assert counts == [10, 10, 10]
    assert other.pods[0].state().running == 0


def test_scaling_down_drains_the_removed_pod_and_loses_no_request():
    fleet = EmulatedFleet(seed=5)
    dep = fleet.add_deployment("d", "m", params=perf_params_for("H100", max_num_seqs=4), startup_delay=0.0,
                               replicas=2)
    fleet.advance(0.1)
    newest = dep.pods[-1]
    ids = {fleet.submit("m", 100, 200) for _ in range(20)}
    fleet.advance(0.2)
    assert newest.state().running == 4 and newest.state().waiting > 0
    dep.set_replicas(1)
    assert (dep.current_replicas, dep.ready_replicas) == (1, 1)
    assert dep.draining_pods == (newest,)
    assert newest.state().waiting == 0 and newest.state().running == 4
    fleet.advance(60.0)
    assert dep.draining_pods == ()
    finished = fleet.drain_finished()
    assert {f.id for f in finished} == ids
    assert sum(f.pod == newest.name for f in finished) == 4


def test_scaling_down_removes_starting_pods_first():
    fleet = EmulatedFleet()
    dep = fleet.add_deployment("d", "m", startup_delay=10.0, replicas=1)
    fleet.advance(10.0)
    (ready,) = dep.pods
    dep.set_replicas(3)
    assert dep.ready_replicas == 1
    dep.set_replicas(1)
    assert dep.pods == (ready,)
    dep.set_replicas(0)
    assert dep.current_replicas == 0 and dep.ready_pods == ()


def test_status_maps_a_variant_to_its_deployment_with_scrape_targets_of_ready_pods():
    threads_before = threading.active_count()
    with EmulatedFleet(seed=6) as fleet:
        dep = fleet.add_deployment("llama-h100", "llama", startup_delay=5.0, replicas=1)
        fleet.advance(5.0)
        dep.set_replicas(2)
        status = fleet.status(spec("llama-h100"))
        assert status is not None
        assert (status.current_replicas, status.ready_replicas) == (2, 1)
        (target,) = status.pods
        assert target.variant == VariantKey("default", "llama-h100")
        assert target.pod == dep.ready_pods[0].name and target.pod.startswith("llama-h100-")
        assert target.url == f"http://127.0.0.1:{dep.ready_pods[0].port}/metrics"
        assert fleet.status(spec("missing")) is None
    assert all(p.url is None for p in dep.pods)
    assert threading.active_count() == threads_before  # no server thread left behind


def test_same_seed_same_run():
    def once() -> list:
        fleet = EmulatedFleet(seed=7)
        fleet.add_deployment("d", "m", startup_delay=1.0, replicas=2)
        fleet.set_load("m", OfferedLoad(rate=30.0))
        fleet.advance(20.0)
        return fleet.drain_finished()

    assert once() == once()
