"""Reasons in words: a decision's `Reason` rendered from its `DecisionSteps`. Pure.

The engine computes the numbers (`kedascaler.engine.decide`); this module only says them, in the words of the
docs, so that the text a user reads in logs, CR status and the simulator is always the numbers the observers
show. One function per part of the message:

- `saturation_message`: what the model needs and runs, and why a move is capped or refused;
- `moves`: the per-variant changes in the order the selector made them;
- `plan_message`: the whole text of one route (saturation, model, hybrid, stale);
- `reason`: the Reason of one decision, with the activation (scale to zero) added last.
"""

from __future__ import annotations

from collections.abc import Sequence

from kedascaler.engine.explain_capacity import capacity_message
from kedascaler.engine.modes import hybrid_reason
from kedascaler.engine.selector import scale_down_order, scale_up_order
from kedascaler.engine.types import Action, DecisionSteps, Reason, Route, ScalingMode, VariantTarget

EXCESS_NOTE = "takes the replicas other variants may not run above their max"
MODEL_ONLY_NOTE = "model mode: saturation is not consulted"


def plural(n: int, word: str) -> str:
    """`1 replica`, `2 replicas`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def takes_excess(steps: DecisionSteps) -> bool:
    """The variant holds its replicas only to take what variants over their max hand over (no threshold)."""
    return steps.action == Action.BOUNDS and steps.signal == "max_replicas" and steps.threshold is None


def moves(plan: Sequence[VariantTarget], targets: Sequence[int], direction: Action | None) -> str:
    """The per-variant moves, in the order the selector made them, e.g. '+3 on a100 (A100), cost 20, cheapest'."""
    wanted = {v.key: n for v, n in zip(plan, targets, strict=True)}
    order = scale_down_order(plan) if direction == Action.SCALE_DOWN else scale_up_order(plan)
    cheapest, priciest = scale_up_order(plan)[0].key, scale_down_order(plan)[0].key
    parts = []
    for v in order:
        diff = wanted[v.key] - v.current
        if diff == 0:
            continue
        tag = ", cheapest" if diff > 0 and v.key == cheapest and len(plan) > 1 else ""
        tag = ", most expensive" if diff < 0 and v.key == priciest and len(plan) > 1 else tag
        parts.append(f"{diff:+d} on {v.label}, cost {v.cost:g}{tag}")
    return "; ".join(parts)


def why_no_scale_down(steps: DecisionSteps) -> str:
    """Name the rule that keeps replicas which the load alone would let go."""
    if steps.stale_variants:
        return "metrics not fresh for " + ", ".join(k.name for k in steps.stale_variants)
    if steps.missing_total:
        return f"{plural(steps.missing_total, 'ready pod')} without metrics"
    if not steps.analysed_total:
        return "no replica reported metrics yet"
    return "fewer than 2 replicas"


def saturation_message(steps: DecisionSteps) -> str:
    """The numbers behind the model's saturation plan, in the words of the docs."""
    cfg = steps.model_thresholds
    triggers = ("" if cfg is None
                else f" (spare triggers kv {cfg.kv_spare_trigger:g}, queue {cfg.queue_spare_trigger:g})")
    text = (f"model needs {plural(steps.needed_replicas, 'replica')} for kv {steps.estimated_kv_total:.2f} and queue "
            f"{steps.estimated_queue_total:.3g}{triggers}; runs {steps.current_total}")
    if steps.pending_total:
        text += f" ({steps.pending_total} starting)"
    if steps.missing_total:
        text += f"; {plural(steps.missing_total, 'ready pod')} without metrics counted at the average"
    if steps.floor > steps.needed_replicas:
        text += f"; floor {steps.floor}"
    total = steps.saturation_total
    if steps.model_action == Action.HOLD and steps.goal < steps.current_total:
        text += f"; no scale-down: {why_no_scale_down(steps)}"
    if steps.model_action == Action.SCALE_UP and total < steps.goal:
        text += f"; capped at {total} by max_replicas"
    if steps.model_action == Action.SCALE_DOWN and total > steps.goal:
        text += f"; held at {total} by min_replicas"
    changes = moves(steps.plan, [v.saturation or 0 for v in steps.plan], steps.model_action)
    return f"{text}; {changes}" if changes else text


def _direction(total: int, current: int) -> Action:
    return Action.SCALE_UP if total > current else Action.SCALE_DOWN if total < current else Action.HOLD


def model_based_message(steps: DecisionSteps) -> str:
    """Hybrid and model mode: the plan taken and why, the sizing's account, the saturation plan beside it."""
    model_only = steps.route == Route.MODEL
    label = "model" if model_only else "hybrid"
    taken = steps.taken or ScalingMode.SATURATION
    why = MODEL_ONLY_NOTE if model_only else hybrid_reason(taken, steps.model_total, steps.saturation_total,
                                                           steps.total, steps.current_total)
    text = (f"{label}, {taken} plan taken ({why}); slo: {steps.sizing_note or ''}; "
            f"saturation: {saturation_message(steps)}")
    changes = moves(steps.plan, [v.target for v in steps.plan], _direction(steps.total, steps.current_total))
    return f"{text}; {label} moves: {changes}" if changes else text


def stale_message(steps: DecisionSteps, model_id: str) -> str:
    """No fresh metrics: why, and what is held instead."""
    if len(steps.stale_variants) == len(steps.plan):
        why = "metrics could not be read for any variant"
    else:
        why = f"none of {plural(steps.ready_total, 'ready replica')} reported metrics"
    if steps.held_decided_at is not None:
        held = f"holding the decision of t={steps.held_decided_at:g} ({steps.held_desired} replicas)"
    else:
        held = "no previous decision, holding current replicas"
    return f"no fresh metrics for model {model_id}: {why}; {held}; never scales down on missing data"


def plan_message(steps: DecisionSteps, model_id: str) -> str:
    """The message of one route, before the activation is added."""
    if steps.route == Route.STALE:
        return stale_message(steps, model_id)
    if steps.route == Route.INACTIVE:
        message = steps.activation.message if steps.activation is not None else "inactive"
        return f"model {model_id} {message}; every variant to 0"
    if steps.route in (Route.MODEL, Route.HYBRID):
        return model_based_message(steps)
    if steps.route == Route.CAPACITY and steps.capacity_plan is not None:
        return capacity_message(steps.capacity_plan)
    text = saturation_message(steps)
    if steps.sizing_note is not None:
        text += f"; {steps.sizing_note}"
    return f"{text}; {EXCESS_NOTE}" if takes_excess(steps) else text


def reason(steps: DecisionSteps, model_id: str, message: str | None = None) -> Reason:
    """The decision's Reason: its numbers from the steps and the message rendered from them (`message`: the
    route's `plan_message`, when the caller rendered it already for another variant of the model)."""
    if steps.action is None:
        raise ValueError("steps without an action have no reason to render")
    if message is None:
        message = plan_message(steps, model_id)
    act = steps.activation
    if act is None or steps.route == Route.INACTIVE:
        return Reason(steps.action, steps.signal, steps.value, steps.threshold, message)
    if steps.woken:
        return Reason(Action.SCALE_UP, act.signal, act.value, None, f"woken from zero, {act.message}; {message}")
    return Reason(steps.action, steps.signal, steps.value, steps.threshold, f"{message}; {act.message}")


__all__ = ["EXCESS_NOTE", "MODEL_ONLY_NOTE", "model_based_message", "moves", "plan_message", "plural", "reason",
           "saturation_message", "stale_message", "takes_excess", "why_no_scale_down"]
