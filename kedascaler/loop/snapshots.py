"""The join: inventory + workload status + pod samples → one immutable `ModelSnapshot` per (namespace, model).

Pure functions shared by every cycle (`kedascaler.loop.cycle.step`), whether `serve` or `simulate` runs it.
Also the scale-to-zero settings of each model, from its VariantAutoscalings' `spec.scaleToZero` over the
global default, which the shell needs before the cycle (to know which gateway queues to read) and the cycle
uses to give each snapshot its idle window, gateway queue and last pushed request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from kedascaler.engine.frozen import quick
from kedascaler.engine.types import (
    Decision,
    ModelSnapshot,
    PodMetrics,
    SaturationConfig,
    VariantKey,
    VariantSpec,
    VariantState,
)
from kedascaler.sources.base import CollectResult, PodSample, ScrapeTarget, WorkloadStatus
from kedascaler.sources.gateway import ActivationReading, ModelRef
from kedascaler.spec.variant import VariantAutoscaling


@quick
@dataclass(frozen=True)
class ScaleToZeroSetting:
    """One model's scale to zero: its idle window (None: off, kept warm) and its gateway query override."""

    window: float | None
    query: str | None = None


def scale_to_zero_setting(variants: Sequence[VariantAutoscaling], default_window: float | None) -> ScaleToZeroSetting:
    """A model's setting from its VAs' `spec.scaleToZero` over the global default.

    `enabled: false` on any variant turns it off (window None); `idleWindowSeconds`: the largest of the
    variants' wins (the most careful); `activationQuery`: the first variant's (by name) that sets one.
    """
    windows: list[float] = []
    query = None
    for va in sorted(variants, key=lambda v: v.key.name):
        s2z = va.scale_to_zero
        if s2z.enabled is False:
            return ScaleToZeroSetting(None)
        if s2z.idle_window_s is not None:
            windows.append(s2z.idle_window_s)
        if query is None and s2z.activation_query is not None:
            query = s2z.activation_query
    return ScaleToZeroSetting(max(windows) if windows else default_window, query)


def scale_to_zero_settings(variants: Sequence[VariantAutoscaling], default_window: float | None
                           ) -> dict[ModelRef, ScaleToZeroSetting]:
    """Every model's scale-to-zero setting, by (namespace, modelID)."""
    by_model: dict[ModelRef, list[VariantAutoscaling]] = defaultdict(list)
    for va in variants:
        by_model[(va.key.namespace, va.model_id)].append(va)
    return {m: scale_to_zero_setting(vs, default_window) for m, vs in by_model.items()}


def with_activation(snapshots: Sequence[ModelSnapshot], settings: Mapping[ModelRef, ScaleToZeroSetting],
                    reading: ActivationReading | None, pushed: Mapping[ModelRef, float] | None) -> list[ModelSnapshot]:
    """Give each scale-to-zero snapshot its idle window, gateway queue and last pushed request.

    `reading`: the gateway queues (None: no gateway is read, push only — nothing waits where we could see it,
    so the queue is 0); `pushed`: the newest pushed request per model (None: no push endpoint)."""
    out = []
    for snap in snapshots:
        model = (snap.namespace, snap.model_id)
        setting = settings.get(model)
        if setting is None or setting.window is None:
            out.append(snap)
            continue
        queue = 0.0 if reading is None else reading.queue(model)  # None on a wake-up cycle: the push is the signal
        last = pushed.get(model) if pushed is not None else None
        out.append(replace(snap, idle_window=setting.window, gateway_queue=queue, last_request_at=last))
    return out


def static_status(spec: VariantSpec, urls: Sequence[str]) -> WorkloadStatus:
    """Local mode: the pods are the URLs listed on the VA; each counts as a ready replica."""
    pods = tuple(ScrapeTarget(spec.key, f"{spec.target_name}-{i}", url) for i, url in enumerate(urls))
    return WorkloadStatus(len(pods), len(pods), pods)


def owner_of(pod: str, namespace: str, by_target: Mapping[tuple[str, str], VariantSpec]) -> VariantSpec | None:
    """The variant whose Deployment owns a pod, by Kubernetes' naming (`<deployment>-<hash>-<id>`).

    The longest prefix wins: each name before a "-", from the last "-" to the first."""
    end = len(pod)
    while (end := pod.rfind("-", 0, end)) >= 0:
        spec = by_target.get((namespace, pod[:end]))
        if spec is not None:
            return spec
    return None


def assign_samples(samples: Sequence[PodSample], specs: Sequence[VariantSpec]) -> dict[VariantKey, list[PodSample]]:
    """Give each pod sample to its variant: by the scrape target when known, else by pod name."""
    by_target = {(s.key.namespace, s.target_name): s for s in specs}
    known = {s.key for s in specs}
    out: dict[VariantKey, list[PodSample]] = defaultdict(list)
    for sample in samples:
        if sample.variant is not None:
            if sample.variant in known:
                out[sample.variant].append(sample)
            continue
        spec = owner_of(sample.pod, sample.namespace, by_target)
        if spec is not None:
            out[spec.key].append(sample)
    return out


def expected_replicas(previous: Decision | None) -> int:
    """The replicas a variant runs by now, as far as the last cycle knew: those it counted, or fewer when
    it asked for fewer (HPA follows the answer); 0 with no previous decision."""
    if previous is None:
        return 0
    return max(0, min(previous.current_replicas, previous.desired_replicas))


def build_snapshots(state_variants: Sequence[VariantSpec], statuses: Mapping[VariantKey, WorkloadStatus | None],
                    samples: Mapping[VariantKey, list[PodSample]], collect: CollectResult,
                    saturation_for: Callable[[str, str], SaturationConfig], now: float,
                    previous: Mapping[VariantKey, Decision] | None = None) -> list[ModelSnapshot]:
    """Join specs, replica counts and pod metrics into one immutable snapshot per (namespace, model).

    With no workload source (Prometheus-only local mode) the pods reporting are all the scaler sees, so
    fewer of them than the variant should run is missing data, not a smaller fleet: the variant counts
    `expected_replicas(previous)` ready replicas, and the silent ones are ready pods without metrics."""
    previous = previous or {}
    failed = set(collect.failed_pods)
    global_failure = bool(collect.errors) and not collect.failed_pods
    groups: dict[tuple[str, str], list[VariantState]] = defaultdict(list)
    for spec in state_variants:
        pods = tuple(
            PodMetrics(s.pod, s.kv_cache_usage, s.queue_length, s.running, s.timestamp)
            for s in sorted(samples.get(spec.key, ()), key=lambda s: s.pod)
        )
        status = statuses.get(spec.key)
        if status is None:  # no workload source (Prometheus-only local mode): at least the pods reporting
            current = ready = max(len(pods), expected_replicas(previous.get(spec.key)))
        else:
            current, ready = status.current_replicas, status.ready_replicas
        # Not fresh when the source failed as a whole (Prometheus down), or every pod of this variant failed.
        variant_failed = status is not None and any(f"{spec.key.namespace}/{p.pod}" in failed for p in status.pods)
        fresh = not global_failure and (bool(pods) or not variant_failed)
        groups[(spec.key.namespace, spec.model_id)].append(VariantState(spec, current, ready, pods, fresh))
    return [
        ModelSnapshot(ns, model, tuple(sorted(vs, key=lambda v: v.spec.key.name)), saturation_for(ns, model), now)
        for (ns, model), vs in sorted(groups.items())
    ]
