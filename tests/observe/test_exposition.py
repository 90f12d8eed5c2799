"""/metrics writes the per-variant families itself (`VariantGauges.text`): the bytes prometheus_client would write,
for every family and label, including values that need escaping, a variant that leaves and a wake-up cycle."""

from __future__ import annotations

import gzip
import urllib.request
from dataclasses import replace

import pytest
from prometheus_client import generate_latest

from kedascaler.observe.gauges import CHUNK_LINES
from kedascaler.observe.metrics import MetricsServer, Observer
from tests.support.fleets import fleet_reports


class _Only:
    def __init__(self, collector):
        self.collector = collector

    def collect(self):
        return self.collector.collect()


def test_the_variant_text_is_what_prometheus_client_writes():
    observer = Observer(clock=lambda: 1_000.0)
    checked, seen = 0, set()
    for seed in range(10):  # every scaling mode: capacity, SLO sizing, fits, staleness, scale to zero
        for report in fleet_reports(seed, cycles=3):
            observer.on_cycle(report)
            fast = observer.gauges.text().encode()
            assert fast == generate_latest(_Only(observer.gauges)), f"seed {seed}"
            checked += fast.count(b"\n")
            seen |= {line.split(b"{")[0] for line in fast.splitlines() if not line.startswith(b"#")}
    assert checked > 10_000
    assert {b"kedascaler_capacity_demand_rps", b"kedascaler_perf_estimate_ms", b"wva_scaling_decisions_created",
            b"kedascaler_predicted_itl_ms", b"kedascaler_metrics_staleness_seconds", b"wva_spare_kv"} <= seen


def test_label_values_are_escaped_as_the_text_format_wants():
    observer = Observer(clock=lambda: 1_000.0)
    report = fleet_reports(3, cycles=1)[0]
    odd = report.decisions[0]
    weird = replace(odd, model_id='org/"odd"\\model\nname')
    observer.on_cycle(replace(report, decisions=(weird, *report.decisions[1:])))
    fast = observer.gauges.text().encode()
    assert fast == generate_latest(_Only(observer.gauges))
    assert b'model="org/\\"odd\\"\\\\model\\nname"' in fast


def test_the_text_comes_in_small_pieces_that_join_to_the_same_bytes():
    """A scrape at 10,000 variants is 250,000 lines: joined, encoded and copied whole, each step held the GIL for
    16-30 ms while RPCs waited. The pieces are at most CHUNK_LINES lines, and together the same bytes."""
    observer = Observer(clock=lambda: 1_000.0)
    for report in fleet_reports(2, cycles=2):
        observer.on_cycle(report)
    pieces = observer.gauges.chunks(lines=50)
    assert len(pieces) > 3
    assert all(piece.count(b"\n") <= 50 * 2 for piece in pieces)  # a line is a sample, or HELP + TYPE
    assert b"".join(pieces) == generate_latest(_Only(observer.gauges))
    assert max(p.count(b"\n") for p in observer.exposition_chunks()[1:]) <= 2 * CHUNK_LINES
    assert b"".join(observer.exposition_chunks()) == observer.exposition()


@pytest.mark.parametrize("whole", [True, False], ids=["bytes", "pieces"])
def test_metrics_server_serves_the_exposition_plain_and_gzipped(whole):
    observer = Observer(clock=lambda: 1_000.0)
    for report in fleet_reports(1, cycles=2):
        observer.on_cycle(report)
    render = observer.exposition if whole else observer.exposition_chunks
    with MetricsServer(observer.registry, port=0, host="127.0.0.1", render=render) as server:
        plain = urllib.request.urlopen(server.url, timeout=10).read()
        request = urllib.request.Request(server.url, headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            zipped = gzip.decompress(response.read())
    assert plain == zipped
    assert plain == observer.exposition()
    assert b"# TYPE kedascaler_reconcile_cycles_total counter" in plain and b"wva_desired_replicas{" in plain
