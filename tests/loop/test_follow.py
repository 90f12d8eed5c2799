"""Two replicas of the scaler, one restarted mid-run: every replica answers KEDA the leader's number and active
flag (read from the VA statuses the leader writes), and when the leader is lost the restarted replica that takes
over keeps the hold it was serving instead of dropping it — no flapping of the desired count or the flag."""

from __future__ import annotations

from dataclasses import replace

from kedascaler.engine.types import Decision, Reason, VariantKey
from kedascaler.loop.cycle import CycleInputs, CycleState, step
from kedascaler.loop.follow import Follower, floor_at, published, serve_leaders
from kedascaler.sim.config import SimConfig
from kedascaler.sim.scaler_policies import KedascalerPolicy
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


def answers(decisions) -> dict[str, tuple[int, bool]]:
    return {d.key.name: (d.desired_replicas, d.active) for d in decisions}


def test_a_restarted_replica_answers_the_leaders_number_then_keeps_its_hold_when_it_takes_over():
    fresh, cycles = recorded_cycles()  # a step up to 40 req/s at t=120, down to 3 at t=300
    restart = next(i for i, c in enumerate(cycles) if c.now >= 315.0)  # the load just dropped: the hold matters
    lost = restart + 3  # then the leader is gone: the restarted replica carries on alone
    statuses: dict[VariantKey, dict] = {}
    leading = [True]
    follower = Follower(lambda key: statuses.get(key), lambda: leading[0])
    leader = own = lonely = fresh
    taken_over = dropped = 0
    for i, inputs in enumerate(cycles[:lost + 7]):  # 7 cycles of 15 s: within the 120 s takeover window
        answer, leader = step(leader, inputs)  # what the old leader decides (and, after `lost`, would have)
        if i < lost:
            statuses.update({d.key: {"desiredReplicas": d.desired_replicas, "active": d.active}
                             for d in answer.decisions})  # the leader's status writes, seen by the watch
        else:
            leading[0] = False  # its Lease is no longer renewed
        if i < restart:
            continue
        mine, own = step(own, inputs)  # restarted at `restart`: a fresh memory
        alone, lonely = step(lonely, inputs)  # the same restart, serving only itself
        served = answers(follower(mine.decisions, inputs.now))
        if i < lost:  # one answer from every replica, from the first cycle after the restart
            assert served == answers(answer.decisions), inputs.now
        else:  # the restarted replica leads: never below what the old leader would have answered
            taken_over += 1
            for name, (n, active) in answers(answer.decisions).items():
                assert served[name][0] >= n and (served[name][1] or not active), (inputs.now, served, name)
        dropped += answers(alone.decisions) != answers(answer.decisions)
    assert taken_over == 7
    assert dropped  # ...which a restarted replica on its own memory does not do


KEY = VariantKey("llm", "a")


def decision(n: int, active: bool = True, stale: bool = False) -> Decision:
    return Decision(KEY, "m", n, active, Reason("hold", "x", message="own"), stale=stale)


def test_only_well_formed_statuses_are_followed():
    assert published({"desiredReplicas": 3, "active": True}) == (3, True)
    for bad in (None, "x", {}, {"desiredReplicas": "3", "active": True}, {"desiredReplicas": True, "active": True},
                {"desiredReplicas": -1, "active": True}, {"desiredReplicas": 2, "active": "yes"}):
        assert published(bad) is None, bad  # type: ignore[arg-type]
    (d,) = serve_leaders([decision(1)], {KEY: (4, True)})
    assert (d.desired_replicas, d.active) == (4, True) and "the leader's decision (4, active)" in d.reason.message
    (same,) = serve_leaders([decision(1)], {})
    assert same == decision(1)


def test_after_the_takeover_window_a_new_leader_answers_on_its_own():
    leading = [True]
    follower = Follower(lambda key: {"desiredReplicas": 5, "active": True}, lambda: leading[0], takeover_s=120.0)
    assert follower([decision(2)], 0.0)[0].desired_replicas == 5
    leading[0] = False
    assert follower([decision(2)], 60.0)[0].desired_replicas == 5  # taking over: the hold it served
    assert follower([decision(2, stale=True)], 90.0)[0].desired_replicas == 2  # stale: the held decision as it is
    assert follower([decision(7)], 100.0)[0].desired_replicas == 7  # a floor, never a cap
    assert follower([decision(2)], 121.0)[0].desired_replicas == 2  # its own memory from here on
    assert floor_at([replace(decision(1), desired_replicas=1)], {KEY: 3}, 9.0)[0].desired_replicas == 3
