"""Observability: /metrics (wva_* gauges and the scaler's health), decision records, JSON logs, analysis.

    observer = Observer(records=RecordWriter("decisions.jsonl"))
    MetricsServer(observer.registry, port=8080).start()
    ScalerServer(board, interceptors=[observer.interceptor()])
    reconciler.run_forever(interval, on_cycle=observer.on_cycle)
"""

from kedascaler.observe.interceptor import MetricsInterceptor
from kedascaler.observe.metrics import InstrumentedSource, MetricsServer, Observer, ScalerMetrics
from kedascaler.observe.records import (
    SCHEMA_ID,
    JsonFormatter,
    RecordWriter,
    SecretFilter,
    configure_logging,
    load_schema,
    scrub,
)
from kedascaler.observe.wiring import Observability, add_observe_arguments

__all__ = ["Observer", "MetricsServer", "MetricsInterceptor", "InstrumentedSource", "ScalerMetrics", "RecordWriter",
           "configure_logging", "JsonFormatter", "SecretFilter", "scrub", "load_schema", "SCHEMA_ID",
           "Observability", "add_observe_arguments"]
