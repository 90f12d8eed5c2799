"""The observability flags of `kedascaler serve` / `demo`, and one object that starts and stops what they ask for.

    add_observe_arguments(serve)                      # --metrics-port, --metrics-host, --log-format, --records
    obs = Observability.from_args(args)               # configures logging; opens the records file
    obs.start()                                       # /metrics server (unless --metrics-port 0)
    ScalerServer(board, ..., interceptors=obs.interceptors)
    Reconciler(inventory, obs.instrument(metrics_source), board, workloads)
    reconciler.run_forever(interval, on_cycle=obs.on_cycle)   # or call obs.on_cycle(report) in your own callback
    obs.stop()
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from kedascaler.kits.argtypes import port
from kedascaler.loop.cycle import CycleReport
from kedascaler.observe.metrics import MetricsServer, Observer
from kedascaler.observe.records import RecordWriter, configure_logging
from kedascaler.sources.base import MetricsSource


def add_observe_arguments(parser: argparse.ArgumentParser, *, metrics_port: int = 8080) -> None:
    """Add --metrics-port, --metrics-host, --log-format and --records to a subcommand's parser."""
    group = parser.add_argument_group("observability")
    group.add_argument("--metrics-port", type=port, default=metrics_port,
                       help=f"port of /metrics (wva_* gauges and scaler health; default {metrics_port}; 0: off)")
    group.add_argument("--metrics-host", default="0.0.0.0", help="address /metrics listens on (default 0.0.0.0)")
    group.add_argument("--log-format", choices=("plain", "json"), default="plain",
                       help="log lines as text or as one JSON object each (decisions carry their full record)")
    group.add_argument("--records", type=Path, metavar="FILE",
                       help="append every decision record to FILE (JSONL) for `kedascaler analyze`")


class Observability:
    """The Observer, its /metrics server and its records file, started and stopped together."""

    def __init__(self, *, metrics_port: int | None = 8080, metrics_host: str = "0.0.0.0",
                 records: Path | None = None, log_decisions: bool = True) -> None:
        self.records = RecordWriter(records) if records is not None else None
        self.observer = Observer(records=self.records, log_decisions=log_decisions)
        self.metrics_server = (MetricsServer(self.observer.registry, port=metrics_port, host=metrics_host,
                                             render=self.observer.exposition_chunks) if metrics_port else None)

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, configure_logs: bool = True) -> Observability:
        """From the flags of `add_observe_arguments` (and --log-level, when the parser has it)."""
        if configure_logs:
            configure_logging(getattr(args, "log_level", "INFO"), getattr(args, "log_format", "plain"))
        return cls(metrics_port=getattr(args, "metrics_port", 8080),
                   metrics_host=getattr(args, "metrics_host", "0.0.0.0"), records=getattr(args, "records", None))

    @property
    def interceptors(self) -> list:
        return [self.observer.interceptor()]

    def instrument(self, source: MetricsSource) -> MetricsSource:
        return self.observer.instrument(source)

    def on_cycle(self, report: CycleReport, then: Callable[[CycleReport], None] | None = None) -> None:
        self.observer.on_cycle(report)
        if then is not None:
            then(report)

    def start(self) -> int | None:
        """Start /metrics; returns its port (None when off)."""
        return self.metrics_server.start() if self.metrics_server is not None else None

    def stop(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.records is not None:
            self.records.close()
