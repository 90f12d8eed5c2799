"""One answer from every scaler replica: capacity mode's memory as a document the leader publishes and every
other replica adopts. Pure.

Every replica of the scaler answers KEDA, and KEDA's calls land on any of them. Given the same metrics they
compute the same demand and capacity, but the hysteresis depends on memory: the needs of the hold window, the
arrival history behind the forecast, the start-ups measured, the recent capacity estimates. A replica that
restarted, or one that started later, remembers less, and would answer a lower number than the leader for one
hold window (HPA then sees the count flap between replicas).

So the leader publishes, per model, its decisions and the memory behind them (`export_memory`: a small
JSON-able document, the windows' worth only — the leader writes it where it writes the VariantAutoscaling's
status). Every other replica
- serves the leader's decisions while they are fresh (`follow`: the same number from every replica), and
- merges the memory into its own before each cycle (`adopt`): the union of the needs and of the arrival
  samples, the longer start-ups, and the leader's capacity estimates in place of its own (the smoothing window:
  its own take over within a few cycles once the leader stops publishing). Merging only ever adds memory, so a hold can
  only get longer, never shorter: when the leader is lost, the replica that takes over (or one that restarted)
  holds what the leader held, and answers on its own only once the leader's decisions are stale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from kedascaler.engine.capacity_types import DemandSample
from kedascaler.engine.types import Decision, VariantKey
from kedascaler.loop.capacity import CapacityState, Startup
from kedascaler.loop.cycle import CycleState
from kedascaler.sources.gateway import ModelRef

VERSION = 1
KEEP = 600.0  # s of needs and arrivals published (the longest hold and long window a model uses by default)


def export_memory(state: CycleState, model: ModelRef, variants: Sequence[VariantKey], now: float,
                  keep: float = KEEP) -> dict[str, Any]:
    """The memory capacity mode keeps for one model (its `variants`), as the leader publishes it."""
    cap = state.capacity
    keys = sorted((k for k in variants if k in cap.startups or k in cap.estimates), key=str)
    return {
        "version": VERSION, "at": now,
        "needs": [[t, n] for t, n in cap.needs.get(model, ()) if t > now - keep],
        "arrivals": [[s.at, s.rate, s.completed, s.prompt_rate, s.output_rate, s.window]
                     for s in cap.history.get(model, ()) if s.at > now - keep],
        "variants": {k.name: {"startups": list(cap.startups[k].samples) if k in cap.startups else [],
                              "estimates": list(cap.estimates.get(k, ()))} for k in keys},
        "decisions": {k.name: [d.desired_replicas, d.decided_at] for k in variants
                      if (d := state.previous.get(k)) is not None},
    }


def follow(decisions: Sequence[Decision], document: Mapping[str, Any], now: float, max_age: float
           ) -> tuple[Decision, ...]:
    """This replica's decisions with the leader's number wherever the leader decided within `max_age` s (the
    same answer from every replica); its own where the leader's is missing or stale."""
    if not isinstance(document, Mapping) or document.get("version") != VERSION:
        return tuple(decisions)
    theirs = document.get("decisions") or {}
    out = []
    for d in decisions:
        found = theirs.get(d.key.name) if isinstance(theirs, Mapping) else None
        if (isinstance(found, (list, tuple)) and len(found) == 2 and _finite(found[0]) and _finite(found[1])
                and 0 <= now - float(found[1]) <= max_age):
            n = int(found[0])
            reason = replace(d.reason, message=f"the leader's decision of t={float(found[1]):g} ({n}); "
                                               f"this replica's own: {d.desired_replicas}; {d.reason.message}")
            d = replace(d, desired_replicas=n, active=n > 0 or d.active, reason=reason)
        out.append(d)
    return tuple(out)


def adopt(state: CycleState, model: ModelRef, document: Mapping[str, Any]) -> CycleState:
    """Merge a published memory into this replica's (see the module docstring); a document of another version,
    or not a mapping, changes nothing."""
    if not isinstance(document, Mapping) or document.get("version") != VERSION:
        return state
    cap = state.capacity
    needs = dict(cap.needs)
    merged = {round(t, 3): n for t, n in needs.get(model, ())}
    for t, n in _pairs(document.get("needs")):
        merged[round(t, 3)] = max(n, merged.get(round(t, 3), -math.inf))
    needs[model] = tuple(sorted(merged.items()))
    history = dict(cap.history)
    samples = {round(s.at, 3): s for s in history.get(model, ())}
    for row in document.get("arrivals") or ():
        if isinstance(row, (list, tuple)) and len(row) == 6 and all(_finite(x) for x in row):
            samples.setdefault(round(float(row[0]), 3), DemandSample(*(float(x) for x in row)))
    history[model] = tuple(samples[t] for t in sorted(samples))
    startups, estimates = dict(cap.startups), dict(cap.estimates)
    for name, found in (document.get("variants") or {}).items():
        if not isinstance(found, Mapping):
            continue
        key = VariantKey(model[0], str(name))
        mine = startups.get(key, Startup())
        theirs = tuple(float(x) for x in found.get("startups") or () if _finite(x))
        if theirs and (mine.measured is None or max(theirs) > mine.measured):
            startups[key] = replace(mine, samples=(*mine.samples, *theirs)[-5:])
        leaders = tuple(float(x) for x in found.get("estimates") or () if _finite(x))
        if leaders:  # the leader's estimates while it publishes: the same capacity, so the same replicas
            estimates[key] = leaders
    return replace(state, capacity=CapacityState(history, needs, cap.lengths, cap.saturated, cap.points, startups,
                                                 cap.models, cap.carried, estimates))


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pairs(rows: object) -> list[tuple[float, float]]:
    if not isinstance(rows, (list, tuple)):
        return []
    return [(float(r[0]), float(r[1])) for r in rows
            if isinstance(r, (list, tuple)) and len(r) == 2 and _finite(r[0]) and _finite(r[1])]


__all__ = ["KEEP", "VERSION", "adopt", "export_memory", "follow"]
