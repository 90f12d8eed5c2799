"""The scaler's metric families, created once in one registry: names, help texts and label sets are the contract.

Per variant (`VARIANT_LABELS`): the WVA-compatible decision surface that HPA reads through Prometheus Adapter
(`wva_desired_replicas` with target value 1, the current and ready replicas, saturation and spare capacity,
the active flag), SLO sizing's learned parameters and predictions; and the scaler's own health (reconcile
cycles, the metrics source, gRPC). See docs/observability.md for the full list.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kedascaler.engine.types import Action

VARIANT_LABELS = ("variant", "namespace", "model", "accelerator")
ACTIONS = tuple(Action)  # scale-up, scale-down, hold, stale, bounds, inactive
# usage: the optional usage query (a warning)
STAGES = ("workload", "collect", "activation", "usage", "engine", "slo", "other")

# Reconcile cycles take milliseconds (emulated) to seconds (a big fleet behind a slow Prometheus).
CYCLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# gRPC answers come from the board: sub-millisecond normally; streams last minutes to hours.
GRPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0, 60.0, 600.0, 3600.0)


class ScalerMetrics:
    """The metric families, created once in one registry. Names and label sets are the public contract."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        def g(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, VARIANT_LABELS, registry=registry)

        # -- per variant: the WVA-compatible decision surface (HPA via Prometheus Adapter, target value 1) --
        self.desired = g("wva_desired_replicas", "Replicas kedascaler wants for the variant (what KEDA is told).")
        self.current = g("wva_current_replicas", "Replicas the variant's Deployment runs now (spec.replicas).")
        self.ready = g("wva_ready_replicas", "Ready replicas of the variant's Deployment.")
        self.saturation = g("wva_saturation_level",
                            "Max KV-cache usage (0-1) over the variant's pods with fresh metrics; 0 with none.")
        self.spare_kv = g("wva_spare_kv", "Mean spare KV-cache fraction (kvCacheThreshold - usage) over the "
                          "variant's non-saturated pods; 0 when none.")
        self.spare_queue = g("wva_spare_queue", "Mean spare queue (queueLengthThreshold - waiting) over the "
                             "variant's non-saturated pods; 0 when none.")
        self.active = g("wva_active", "1 when the variant's model is active (requests arriving or queued), else 0.")
        self.last_scaling = g("wva_last_scaling_decision_timestamp",
                              "Unix time of the last decision that changed the variant's desired replicas.")
        self.decision_stale = g("wva_decision_stale", "1 when the variant's decision is held on stale metrics.")
        self.decisions = Counter("wva_scaling_decisions", "Decisions per variant by action and binding signal.",
                                 (*VARIANT_LABELS, "action", "signal"), registry=registry)
        # -- SLO sizing: the performance parameters learned online, and what the model plan predicts --
        self.perf_estimate = Gauge("kedascaler_perf_estimate_ms",
                                   "Performance parameter fitted online (ms): alpha, beta (decode), gamma, delta "
                                   "(prefill).", (*VARIANT_LABELS, "parameter"), registry=registry)
        self.perf_fit_r2 = Gauge("kedascaler_perf_estimate_r2", "R² of the online fit, by line (decode, prefill).",
                                 (*VARIANT_LABELS, "line"), registry=registry)
        self.perf_fit_samples = Gauge("kedascaler_perf_estimate_samples",
                                      "Observations in the fit's sliding window, by line.", (*VARIANT_LABELS, "line"),
                                      registry=registry)
        self.perf_fit_usable = Gauge("kedascaler_perf_estimate_usable",
                                     "1 when both fitted lines pass the quality checks, else 0.", VARIANT_LABELS,
                                     registry=registry)
        self.model_based = Gauge("kedascaler_model_based_sizing",
                                 "1 when the variant's model is sized by the queueing model this cycle (model or "
                                 "hybrid mode with usable inputs), 0 when it falls back to saturation.",
                                 (*VARIANT_LABELS, "source"), registry=registry)
        self.predicted_itl = Gauge("kedascaler_predicted_itl_ms",
                                   "ITL the queueing model predicts for the variant under the plan taken (ms).",
                                   VARIANT_LABELS, registry=registry)
        self.predicted_ttft = Gauge("kedascaler_predicted_ttft_ms",
                                    "TTFT the queueing model predicts for the variant under the plan taken (ms).",
                                    VARIANT_LABELS, registry=registry)
        # -- capacity mode: the demand, the capacity per replica, the mix, the hold (DecisionSteps.capacity_plan) --
        self.capacity_demand = Gauge("kedascaler_capacity_demand_rps",
                                     "Capacity mode: the variant's model's demand in req/s, by kind (latest, short, "
                                     "long, forecast, need, held, target).", (*VARIANT_LABELS, "kind"),
                                     registry=registry)
        self.capacity_per_replica = Gauge("kedascaler_capacity_per_replica_rps",
                                          "Capacity mode: req/s one replica of the variant carries at the SLO, by "
                                          "source (model, measured, prior, none).", (*VARIANT_LABELS, "source"),
                                          registry=registry)
        self.capacity_mix = g("kedascaler_capacity_mix_replicas", "Capacity mode: the variant's replicas in the mix.")
        self.capacity_hold = g("kedascaler_capacity_hold",
                               "Capacity mode: 1 when the hold keeps capacity this cycle's demand alone does not need.")
        # -- the scaler's own health --
        self.cycle_duration = Histogram("kedascaler_reconcile_duration_seconds", "Duration of one reconcile cycle.",
                                        buckets=CYCLE_BUCKETS, registry=registry)
        self.cycles = Counter("kedascaler_reconcile_cycles", "Reconcile cycles completed.", registry=registry)
        self.cycle_errors = Counter("kedascaler_reconcile_errors", "Errors met by reconcile cycles, by stage.",
                                    ("stage",), registry=registry)
        self.last_cycle = Gauge("kedascaler_last_reconcile_timestamp_seconds", "Unix time the last cycle ended.",
                                registry=registry)
        self.variants = Gauge("kedascaler_variants", "VariantAutoscalings decided in the last cycle.",
                              registry=registry)
        self.source_duration = Histogram("kedascaler_metrics_source_duration_seconds",
                                         "Time to collect the vLLM metrics of one cycle (all queries or scrapes).",
                                         ("source",), buckets=CYCLE_BUCKETS, registry=registry)
        self.source_queries = Counter("kedascaler_metrics_source_queries",
                                      "PromQL queries (or pod scrapes) made by the metrics source.", registry=registry)
        self.source_failures = Counter("kedascaler_metrics_source_failures",
                                       "Metrics-source failures: whole collections, or single pods.", ("kind",),
                                       registry=registry)
        self.source_samples = Gauge("kedascaler_metrics_source_samples", "Pod samples read in the last cycle.",
                                    registry=registry)
        self.staleness = Gauge("kedascaler_metrics_staleness_seconds",
                               "Seconds since the newest metrics behind the model's decisions were taken.",
                               ("namespace", "model"), registry=registry)
        self.grpc_requests = Counter("kedascaler_grpc_requests", "gRPC requests handled, by method and status code.",
                                     ("method", "code"), registry=registry)
        self.grpc_duration = Histogram("kedascaler_grpc_request_duration_seconds",
                                       "gRPC handling time (streams: their whole life), by method and code.",
                                       ("method", "code"), buckets=GRPC_BUCKETS, registry=registry)
        self.grpc_open_streams = Gauge("kedascaler_grpc_open_streams", "Server-streaming calls open now, by method.",
                                       ("method",), registry=registry)
        self.records = Counter("kedascaler_decision_records", "Decision records emitted (log and file).",
                               registry=registry)


def variant_label_sets(registry: CollectorRegistry, name: str = "wva_desired_replicas") -> set[tuple[str, ...]]:
    """The (variant, namespace, model, accelerator) label sets a metric has now (for tests and debugging)."""
    out = set()
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name:
                out.add(tuple(sample.labels[k] for k in VARIANT_LABELS))
    return out


__all__ = ["ACTIONS", "CYCLE_BUCKETS", "GRPC_BUCKETS", "STAGES", "VARIANT_LABELS", "ScalerMetrics",
           "variant_label_sets"]
