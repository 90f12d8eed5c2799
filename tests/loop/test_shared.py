"""Two replicas of the scaler sharing state through what the leader publishes (the VA status), one restarted
mid-run: every replica answers the leader's number, and when the leader is lost the one that carries on keeps
the leader's hold instead of dropping it (no flapping)."""

from __future__ import annotations

import json

from kedascaler.loop.cycle import CycleInputs, CycleState, step
from kedascaler.loop.shared import adopt, export_memory, follow
from kedascaler.sim.config import SimConfig
from kedascaler.sim.scaler_policies import NAMESPACE, KedascalerPolicy
from kedascaler.sim.simulator import simulate
from kedascaler.sim.workloads import steps

INTERVAL = 15.0


def recorded_cycles() -> tuple[CycleState, list[CycleInputs]]:
    """Every cycle's inputs of a run (a step up, then down), as the leader gathered them."""
    cfg = SimConfig(tail=60)
    leader = KedascalerPolicy(cfg.model, slo=cfg.slo, scale_to_zero=False)
    fresh = leader.state
    seen: list[CycleInputs] = []
    gather = leader.inputs

    def keep(obs):
        seen.append(gather(obs))
        return seen[-1]

    leader.inputs = keep  # type: ignore[method-assign]
    simulate(steps([(0, 3.0), (120, 40.0), (300, 3.0)], 480, seed=1), leader, cfg)
    return fresh, seen


def numbers(decisions) -> dict[str, int]:
    return {d.key.name: d.desired_replicas for d in decisions}


def held(report) -> float:
    plan = report.decisions[0].steps.capacity_plan
    return plan.demand.held if plan is not None else 0.0


def test_two_replicas_answer_the_same_number_and_a_restarted_one_keeps_the_hold():
    fresh, cycles = recorded_cycles()
    model = (NAMESPACE, cycles[0].inventory.variants[0].model_id)
    keys = [v.key for v in cycles[0].inventory.variants]
    restart = next(i for i, c in enumerate(cycles) if c.now >= 315.0)  # the load just dropped: the hold matters
    lost = restart + 3  # then the leader is gone: the restarted replica carries on alone
    leader = follower = lonely = fresh
    published: dict = {}
    dropped = 0
    for i, inputs in enumerate(cycles[:lost + 4]):
        answer, leader = step(leader, inputs)  # after `lost` it no longer publishes: what it would have held
        if i < lost:
            published = json.loads(json.dumps(export_memory(leader, model, keys, inputs.now)))  # as it travels
        if i < restart:
            continue
        own, follower = step(adopt(follower, model, published), inputs)  # restarted at `restart`: fresh state
        alone, lonely = step(lonely, inputs)  # the same restart without the leader's memory
        if i < lost:  # one answer from every replica, from the first cycle after the restart
            assert numbers(follow(own.decisions, published, inputs.now, 2 * INTERVAL)) == numbers(answer.decisions)
        else:  # the leader is lost: the replica that carries on holds what the leader would have held...
            assert held(own) >= held(answer) * (1 - 1e-9), inputs.now
        dropped += held(alone) < held(answer) * (1 - 1e-9)
    assert dropped  # ...which a replica restarted without the memory would not


def test_adopting_only_adds_memory_and_ignores_what_it_cannot_read():
    fresh, cycles = recorded_cycles()
    model = (NAMESPACE, cycles[0].inventory.variants[0].model_id)
    keys = [v.key for v in cycles[0].inventory.variants]
    state = fresh
    for inputs in cycles[:30]:
        _, state = step(state, inputs)
    doc = export_memory(state, model, keys, cycles[29].now)
    assert adopt(state, model, doc).capacity.needs[model] == state.capacity.needs[model]  # itself: no change
    assert adopt(state, model, {"version": 99}) is state
    assert adopt(state, model, "garbage") is state  # type: ignore[arg-type]
    poisoned = adopt(fresh, model, {**doc, "needs": [[1.0, float("nan")], ["x", 2]], "arrivals": [[1, 2]]})
    assert poisoned.capacity.needs[model] == ()
    stale = follow((), doc, cycles[29].now + 3600, max_age=30.0)
    assert stale == ()
