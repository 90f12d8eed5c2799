"""Capacity mode's reasons in words, from the numbers of its plan (`CapacityPlan`). Pure.

One clause per step of `kedascaler.engine.capacity`: the demand (rate, forecast, backlog and drain, headroom,
hold), the capacity per replica of each variant and its source, the mix and the switching penalty, the guard.
"""

from __future__ import annotations

from kedascaler.engine.capacity_types import CapacityPlan, CapacitySource, DemandView


def demand_message(d: DemandView) -> str:
    """The demand in capacity units and the hysteresis around it."""
    text = (f"demand {d.target:.3g} req/s (arriving {d.latest:.3g} now, {d.short:.3g} short, {d.long:.3g} long; "
            f"{d.prompt_tokens:.0f} prompt / {d.output_tokens:.0f} output tokens, {d.tokens_per_s:.4g} tokens/s")
    if d.handed_back > 0:
        text += f"; {d.handed_back:.3g} req/s routed again from pods gone not counted"
    if d.forecast > d.short * (1 + 1e-9):
        text += f"; forecast {d.forecast:.3g} in {d.hold_window:g}s"
    if d.backlog > 0:
        text += f"; backlog {d.backlog:.0f}" if d.backlog >= 1 else f"; backlog {d.backlog:.2g}"
        if d.gateway_queue > 0:
            text += f" ({d.gateway_queue:g} at the gateway)"
        text += f" drained at {d.drain:.3g} req/s over {d.drain_horizon:g}s"
    text += f"; need {max(d.need, d.up):.3g} with headroom"
    if d.held > max(d.need, d.up) * (1 + 1e-9):
        text += f"; held at {d.held:.3g}, the largest need of the last {d.hold_window:g}s"
    return text + ")"


def capacity_message(plan: CapacityPlan) -> str:
    """The whole account of one capacity plan."""
    caps = ", ".join(
        f"{c.key.name} {c.per_replica:.3g} ({c.source})" if c.source != CapacitySource.NONE
        else f"{c.key.name} none ({c.reason})" for c in plan.variants)
    chosen = ", ".join(f"{n} × {k.name}" for k, n in plan.mix if n) or "no replicas"
    text = (f"capacity: {demand_message(plan.demand)}; per replica: {caps}; mix {chosen} = "
            f"{plan.mix_capacity:.3g} req/s, cost {plan.mix_cost:g} (now {plan.current_capacity:.3g} req/s asked, "
            f"{plan.ready_capacity:.3g} ready)")
    if plan.guard:
        text += f"; {plan.guard}"
    if plan.hold_kept is not None:
        text += (f"; the hold keeps the {plan.hold_kept:.3g} req/s asked for and starts nothing for the "
                 f"{plan.demand.held:.3g} it holds")
    if plan.short:
        text += "; short: the limits do not allow enough capacity"
    if plan.switch_note:
        text += f"; {plan.switch_note}"
    return text


__all__ = ["capacity_message", "demand_message"]
