"""Activation: whether a model is active, with an idle window before it may go to zero. Pure, no clock.

A model is *active* while requests arrive or wait anywhere: at its pods (running, waiting, KV cache in use),
at the gateway while it has no ready pod (`ModelSnapshot.gateway_queue`), or pushed by a gateway or router
(`ModelSnapshot.last_request_at`, from `POST /v1/activate/...`). It turns inactive only after
`idle_window` seconds with none of these, measured from `snapshot.taken_at` — so at the first cycle whose
idle time reaches the window — and only when every variant of the model has `minReplicas: 0`.

The only state between cycles is `Decision.last_activity_at`, carried by the previous decisions the caller
already keeps. Missing activation data (a pod without metrics, a failed gateway query: None) never turns an
active model inactive: the idle timer may run out, but the model stays active until the data is back.
"""

from __future__ import annotations

from collections.abc import Mapping

from kedascaler.engine.saturation import analysed_pods
from kedascaler.engine.types import Action, Activation, Decision, ModelSnapshot, VariantKey

DEFAULT_IDLE_WINDOW = 300.0
INACTIVE = Action.INACTIVE
IDLE_SIGNAL = "idle_seconds"


def can_scale_to_zero(snapshot: ModelSnapshot) -> bool:
    """Scale to zero is on for the model (an idle window) and no variant's minReplicas forbids zero."""
    return snapshot.idle_window is not None and all(v.spec.min_replicas <= 0 for v in snapshot.variants)


def load_now(snapshot: ModelSnapshot) -> tuple[str, float] | None:
    """The first request signal seen now (pods, then gateway), as (signal, value); None when there is none."""
    pods = [p for v in snapshot.variants for p in analysed_pods(v)]
    for signal, value in (("running", sum(max(0.0, p.running) for p in pods)),
                          ("queue_length", sum(max(0.0, p.queue_length) for p in pods)),
                          ("kv_cache_usage", sum(max(0.0, p.kv_cache_usage) for p in pods)),
                          ("gateway_queue", snapshot.gateway_queue or 0.0)):
        if value > 0:
            return signal, value
    return None


def missing_data(snapshot: ModelSnapshot) -> str | None:
    """What activation data is missing this cycle (None: all of it is here), in words for the reason."""
    if snapshot.gateway_queue is None:
        return "gateway queue not known (the model is not seen in the gateway's metrics, or the query failed)"
    stale = [v.spec.key.name for v in snapshot.variants if not v.metrics_fresh]
    if stale:
        return "metrics not fresh for " + ", ".join(stale)
    silent = sum(max(0, v.ready_replicas - len(analysed_pods(v))) for v in snapshot.variants)
    if silent:
        return f"{silent} ready pod(s) without metrics"
    return None


def previous_activity(snapshot: ModelSnapshot, previous: Mapping[VariantKey, Decision]) -> tuple[float | None, bool]:
    """(newest last_activity_at of the model's previous decisions, whether the model was inactive then)."""
    prev = [previous[v.spec.key] for v in snapshot.variants if v.spec.key in previous]
    stamps = [d.last_activity_at for d in prev if d.last_activity_at is not None]
    was_inactive = bool(prev) and all(not d.active and d.desired_replicas == 0 for d in prev)
    return (max(stamps) if stamps else None), was_inactive


def activation(snapshot: ModelSnapshot, previous: Mapping[VariantKey, Decision]) -> Activation | None:
    """The model's activation this cycle; None when scale to zero is off for it (the model is kept warm)."""
    if not can_scale_to_zero(snapshot):
        return None
    assert snapshot.idle_window is not None
    t, window = snapshot.taken_at, max(0.0, snapshot.idle_window)
    last, was_inactive = previous_activity(snapshot, previous)
    asked = sum(v.current_replicas for v in snapshot.variants)
    busy = load_now(snapshot)
    if busy is not None:
        last = t
    pushed = snapshot.last_request_at
    if pushed is not None and (last is None or pushed > last):
        last = min(pushed, t)
        if busy is None:
            busy = ("request", t - last)

    def result(active: bool, signal: str, value: float | None, message: str, last_at: float | None = last
               ) -> Activation:
        idle = None if last_at is None else max(0.0, t - last_at)
        return Activation(active, last_at, idle, window, signal, value, active and asked == 0, message)

    if busy is not None and (busy[0] != "request" or t - (last or t) < window):
        signal, value = busy
        what = {"request": f"request pushed {value:.3g}s ago",
                "gateway_queue": f"{value:g} request(s) queued at the gateway"}
        return result(True, signal, value, f"active: {what.get(signal, f'{signal} {value:.3g} at the pods')}")
    gap = missing_data(snapshot)
    if last is None:
        if asked > 0:  # first sight of a model that runs: the idle timer starts now
            return result(True, "started", 0.0, f"active: idle timer starts now (window {window:g}s)", t)
        return result(False, IDLE_SIGNAL, None,
                      f"inactive: no replicas and no request seen since start (idle window {window:g}s)", None)
    idle = max(0.0, t - last)
    if idle < window:
        return result(True, "recent", idle, f"active: last request {idle:.0f}s ago, idle window {window:g}s")
    if gap is not None and not was_inactive:
        return result(True, "missing_data", idle, f"active: idle {idle:.0f}s ≥ window {window:g}s but {gap}; "
                      "missing data never turns a model inactive")
    return result(False, IDLE_SIGNAL, idle, f"inactive: idle {idle:.0f}s ≥ idle window {window:g}s "
                  "(no request arriving, queued or running)")


__all__ = ["DEFAULT_IDLE_WINDOW", "IDLE_SIGNAL", "INACTIVE", "Activation", "activation", "can_scale_to_zero",
           "load_now", "missing_data", "previous_activity"]
