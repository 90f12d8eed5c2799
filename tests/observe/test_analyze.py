"""`kedascaler analyze`: every file from a recorded run, summary numbers recomputed from the records, a fixed-seed
record set with a known summary, the CLI, and the optional Prometheus pull (skipped cleanly when unreachable)."""

from __future__ import annotations

import argparse
import csv
import http.server
import json
import threading
import time
from collections import Counter

import pytest

from kedascaler.cli.analyze import add_analyze_parser, cmd_analyze
from kedascaler.observe import Observer, RecordWriter
from kedascaler.observe.analyze import CSV_FILES, PLOT_FILES, SUMMARY_FILES, analyze_file, analyze_records, load_records
from kedascaler.sim.fleet import OfferedLoad
from tests.observe.conftest import MODEL, make_reconciler
from tests.observe.synthetic import synthetic_records


def record_run(fleet, scraper, path, cycles: int = 8) -> None:
    """A real reconcile loop over the emulated fleet, KEDA's part played by applying desired replicas at once."""
    t0 = time.time()
    with RecordWriter(path) as writer:
        observer = Observer(records=writer, log_decisions=False)
        reconciler = make_reconciler(fleet, scraper)
        reconciler.clock = lambda: t0 + fleet.now
        for n in range(cycles):
            report = reconciler.run_once()
            observer.on_cycle(report)
            for d in report.decisions:
                fleet.deployment(d.key.name).set_replicas(d.desired_replicas)
            if n == cycles // 2:
                fleet.set_load(MODEL, OfferedLoad(rate=2.0))
            fleet.advance(15.0)


def parse(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kedascaler")
    add_analyze_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(args)


def test_analyze_a_recorded_run_writes_every_file_and_true_numbers(fleet, scraper, tmp_path):
    path = tmp_path / "decisions.jsonl"
    record_run(fleet, scraper, path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    out = tmp_path / "analysis"
    lines: list[str] = []
    assert cmd_analyze(parse(["analyze", str(path), "--out", str(out)]), out=lines.append) == 0
    for name in (*CSV_FILES, *PLOT_FILES, *SUMMARY_FILES, "prediction_error.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    # Recomputed here, straight from the records.
    assert summary["records"] == len(records) == 16
    assert summary["cycles"] == len({r["ts"] for r in records}) == 8
    assert summary["actions"]["scale-up"] == sum(r["reason"]["action"] == "scale-up" for r in records) > 0
    assert summary["actions"] == {**{a: 0 for a in summary["actions"]},
                                  **Counter(r["reason"]["action"] for r in records)}
    kv_t = records[0]["thresholds"]["kv_cache_threshold"]
    q_t = records[0]["thresholds"]["queue_length_threshold"]
    over = [(r["variant"], p["pod"]) for r in records for p in r["inputs"]["pods"]
            if p["kv_cache_usage"] >= kv_t or p["queue_length"] >= q_t]
    assert summary["saturation_events"] == len(over) > 0
    for r_variant in ("llama-a100", "llama-h100"):
        mine = [r for r in records if r["variant"] == r_variant]
        v = summary["variants"][f"llm/{r_variant}"]
        assert v["desired_max"] == max(r["result"]["desired_replicas"] for r in mine)
        assert v["desired_last"] == mine[-1]["result"]["desired_replicas"]
        kvs = [p["kv_cache_usage"] for r in mine for p in r["inputs"]["pods"]]
        assert v["kv_max"] == pytest.approx(max(kvs), abs=1e-4)
        assert v["saturation_events"] == sum(1 for name, _ in over if name == r_variant)
    rows = list(csv.DictReader((out / "decisions.csv").open()))
    assert len(rows) == len(records)
    assert len(list(csv.DictReader((out / "saturation_events.csv").open()))) == len(over)
    md = (out / "ANALYSIS_SUMMARY.md").read_text()
    assert f"{summary['records']} decisions" in md and f"{summary['cycles']} cycles" in md
    assert f"| scale-up | {summary['actions']['scale-up']} |" in md
    assert f"Saturation events (a pod at or over kvCacheThreshold or queueLengthThreshold): {len(over)}" in md
    assert "analysed 16 decisions in 8 cycles" in lines[0]


def test_a_fixed_seed_record_set_gives_a_known_summary(tmp_path):
    path = tmp_path / "seed42.jsonl"
    with RecordWriter(path) as writer:
        writer.write_all(synthetic_records(seed=42))
    analysis = analyze_file(path, tmp_path / "out")
    s = analysis.summary
    assert (s["records"], s["cycles"], s["duration_s"]) == (40, 20, 285.0)
    assert s["actions"] == {"bounds": 0, "hold": 14, "inactive": 0, "scale-down": 9, "scale-up": 11, "stale": 6}
    assert (s["scale_events"], s["desired_changes"], s["stale_decisions"]) == (20, 15, 6)
    assert (s["pods_seen"], s["pod_samples"], s["saturation_events"], s["saturated_cycles"]) == (9, 103, 64, 19)
    a100 = s["variants"]["llm/llama-a100"]
    assert (a100["desired_min"], a100["desired_max"], a100["kv_mean"], a100["kv_max"]) == (1, 6, 0.5908, 0.947)
    assert s["predictions"]["itl_ms"] == {"n": 19, "bias": -7.9705, "mae": 12.3074, "rmse": 15.3223,
                                          "p90_abs_error": 24.866}
    assert s["predictions"]["kv_per_replica"]["n"] == 19
    assert s["slo"] == {"checked": 20, "violations": 3, "by_metric": {"itl_ms": 3}}
    md = (tmp_path / "out" / "ANALYSIS_SUMMARY.md").read_text()
    assert "| itl_ms | 19 | -7.9705 | 12.3074 | 15.3223 | 24.866 |" in md
    assert "violations: 3 (itl_ms: 3)" in md
    assert len(list(csv.DictReader((tmp_path / "out" / "slo_violations.csv").open()))) == 3


def test_bad_input_exits_2_with_a_message(tmp_path, capsys):
    assert cmd_analyze(parse(["analyze", str(tmp_path / "missing.jsonl")]), out=lambda _: None) == 2
    assert "cannot read" in capsys.readouterr().err
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not json\n{\"a\": 1}\n\n")
    assert cmd_analyze(parse(["analyze", str(junk)]), out=lambda _: None) == 2
    assert "no decision records (2 invalid lines)" in capsys.readouterr().err


def test_invalid_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "mixed.jsonl"
    good = synthetic_records(seed=1, cycles=3)
    path.write_text("\n".join(json.dumps(r) for r in good) + "\n{truncated\n")
    records, bad = load_records(path)
    assert len(records) == 6 and bad == 1
    assert cmd_analyze(parse(["analyze", str(path)]), out=lambda _: None) == 0
    assert (tmp_path / "mixed-analysis" / "ANALYSIS_SUMMARY.md").is_file()


def test_unreachable_prometheus_is_skipped_cleanly(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in synthetic_records(cycles=3)) + "\n")
    token = tmp_path / "token"
    token.write_text("sekrit-token-value\n")
    lines: list[str] = []
    args = parse(["analyze", str(path), "--out", str(tmp_path / "o"), "--prometheus-url", "http://127.0.0.1:1",
                  "--prometheus-token-file", str(token)])
    assert cmd_analyze(args, out=lines.append) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["prometheus"]["status"].startswith("Prometheus at http://127.0.0.1:1 skipped")
    assert "sekrit" not in (tmp_path / "o" / "ANALYSIS_SUMMARY.md").read_text()
    assert any("skipped" in line for line in lines)


class FakePrometheus(http.server.BaseHTTPRequestHandler):
    seen_auth: list[str] = []

    def do_GET(self):  # noqa: N802
        FakePrometheus.seen_auth.append(self.headers.get("Authorization", ""))
        body = {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"model_name": "meta/llama"}, "values": [[1_700_000_000, "0.25"], [1_700_000_015, "NaN"],
                                                               [1_700_000_030, "0.5"]]}]}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_prometheus_latency_is_pulled_over_the_records_range(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        path = tmp_path / "r.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in synthetic_records(cycles=3)) + "\n")
        analysis = analyze_file(path, tmp_path / "o", prometheus_url=f"http://127.0.0.1:{server.server_port}",
                                prometheus_token="tok")
    finally:
        server.shutdown()
        server.server_close()
    prom = analysis.summary["prometheus"]
    assert prom["metrics"]["ttft_p90_s"] == {"points": 2, "mean": 0.375, "max": 0.5}
    assert (tmp_path / "o" / "latency.csv").is_file() and (tmp_path / "o" / "latency.png").is_file()
    assert FakePrometheus.seen_auth[-1] == "Bearer tok"
    assert "ttft_p90_s: mean 0.375, max 0.5 (2 points)" in (tmp_path / "o" / "ANALYSIS_SUMMARY.md").read_text()


def test_saturation_events_are_the_engines_verdict_from_the_recorded_steps(tmp_path):
    records = synthetic_records(seed=3, cycles=4)
    over = sum(1 for r in records for p in r["steps"]["pods"] if p["over"])
    assert over > 0
    # Take the verdict away from one saturated pod: analyze does not redo the threshold test.
    first = next(r for r in records if any(p["over"] for p in r["steps"]["pods"]))
    pod = next(p for p in first["steps"]["pods"] if p["over"])
    pod["over"], pod["saturated"] = "", False
    analysis = analyze_records(records, tmp_path / "o")
    assert analysis.summary["saturation_events"] == over - 1
    rows = list(csv.DictReader((tmp_path / "o" / "pods.csv").open()))
    mine = [row for row in rows if row["pod"] == pod["pod"] and float(row["ts"]) == first["ts"]]
    assert [row["saturated"] for row in mine] == ["False"]
    assert not any("no engine steps" in n for n in analysis.notes)


def test_records_without_steps_are_read_with_a_note(tmp_path):
    records = synthetic_records(seed=3, cycles=4)
    for r in records:
        del r["steps"]  # as written before records carried the engine's steps
    analysis = analyze_records(records, tmp_path / "o")
    assert analysis.summary["records"] == len(records) and analysis.summary["saturation_events"] == 0
    assert any(f"{len(records)} of {len(records)} records carry no engine steps" in n for n in analysis.notes)
    assert "carry no engine steps" in (tmp_path / "o" / "ANALYSIS_SUMMARY.md").read_text()
