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
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class ScalerMetrics:
    """The metric families, created once in one registry. Names and label sets are the public contract."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        # the per-variant families (wva_*, SLO sizing, capacity) and the per-model staleness are yielded at
        # scrape by `kedascaler.observe.gauges.VariantGauges`, registered in the same registry
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
        self.grpc_requests = Counter("kedascaler_grpc_requests", "gRPC requests handled, by method and status code.",
                                     ("method", "code"), registry=registry)
        self.grpc_duration = Histogram("kedascaler_grpc_request_duration_seconds",
                                       "gRPC handling time (streams: their whole life), by method and code.",
                                       ("method", "code"), buckets=GRPC_BUCKETS, registry=registry)
        self.grpc_open_streams = Gauge("kedascaler_grpc_open_streams", "Server-streaming calls open now, by method.",
                                       ("method",), registry=registry)
        self.grpc_loop_lag = Histogram("kedascaler_grpc_loop_lag_seconds",
                                       "How late the event loop answering gRPC woke from a timer (every 0.1 s): "
                                       "what a call waited behind other work.", buckets=LAG_BUCKETS,
                                       registry=registry)
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
