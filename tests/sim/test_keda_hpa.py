"""KEDA + HPA as the Deployment sees them: AverageValue arithmetic, tolerance, policies, activation."""

from __future__ import annotations

from kedascaler.sim.keda_hpa import HPABehavior, KEDAConfig, ScalingState, hpa_step, keda_step

HPA = HPABehavior()
KEDA = KEDAConfig()


def test_target_one_turns_the_value_into_the_replica_count():
    state = hpa_step(ScalingState(replicas=2), value=4, now=0, behavior=HPA, keda=KEDA)
    assert state.replicas == 4


def test_ten_percent_tolerance_hides_eleven_at_ten_replicas():
    assert hpa_step(ScalingState(replicas=10), value=11, now=0, behavior=HPA, keda=KEDA).replicas == 10
    assert hpa_step(ScalingState(replicas=10), value=12, now=0, behavior=HPA, keda=KEDA).replicas == 12


def test_scale_up_policy_caps_a_jump_at_max_of_double_and_plus_four():
    assert hpa_step(ScalingState(replicas=1), value=20, now=0, behavior=HPA, keda=KEDA).replicas == 5
    assert hpa_step(ScalingState(replicas=8), value=40, now=0, behavior=HPA, keda=KEDA).replicas == 16


def test_scale_down_waits_for_the_stabilisation_window():
    state = ScalingState(replicas=6)
    state = hpa_step(state, value=6, now=0, behavior=HPA, keda=KEDA)
    for t in range(15, 300, 15):
        state = hpa_step(state, value=2, now=t, behavior=HPA, keda=KEDA)
        assert state.replicas == 6
    state = hpa_step(state, value=2, now=315, behavior=HPA, keda=KEDA)
    assert state.replicas == 2


def test_keda_wakes_from_zero_and_returns_to_zero_after_cooldown():
    state = keda_step(ScalingState(replicas=0), active=True, value=0, now=0, behavior=HPA, keda=KEDA)
    assert state.replicas == 1
    state = keda_step(state, active=False, value=1, now=100, behavior=HPA, keda=KEDA)
    assert state.replicas == 1
    state = keda_step(state, active=False, value=0, now=301, behavior=HPA, keda=KEDA)
    assert state.replicas == 0
    assert keda_step(state, active=False, value=0, now=400, behavior=HPA, keda=KEDA).replicas == 0
