"""The Grafana dashboard: valid JSON, every PromQL expression valid (promtool) and naming only metrics the
Observer exports, and a ConfigMap template that only renders when enabled."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from kedascaler.observe import Observer
from tests.observe.test_metrics import promtool
from tests.observe.test_records import fake_report

CHART = Path(__file__).resolve().parents[2] / "charts" / "kedascaler"
DASHBOARD = CHART / "dashboards" / "kedascaler.json"
METRIC = re.compile(r"\b((?:wva|kedascaler)_[a-z_]+)\b")


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def expressions(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])
            if p.get("datasource", {}).get("type") == "prometheus"]


def exported_names() -> set[str]:
    observer = Observer(log_decisions=False)
    observer.on_cycle(fake_report())
    observer.metrics.grpc_requests.labels("m", "OK").inc()
    observer.metrics.grpc_duration.labels("m", "OK").observe(0.1)
    observer.metrics.grpc_open_streams.labels("m")
    observer.metrics.source_duration.labels("s").observe(0.1)
    return {s.name for family in observer.registry.collect() for s in family.samples}


def test_dashboard_shape():
    d = load()
    assert d["uid"] == "kedascaler" and d["title"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"] for p in d["panels"]).lower()
    for topic in ("desired vs current", "saturation", "spare", "decisions", "reconcile", "grpc", "open streams"):
        assert topic in titles, topic
    assert {v["name"] for v in d["templating"]["list"]} >= {"datasource", "namespace", "model", "variant"}


def test_every_metric_in_the_dashboard_is_exported():
    names = exported_names()
    used = {m for e in expressions(load()) for m in METRIC.findall(e)}
    assert used and used <= names, sorted(used - names)
    for wva in ("wva_desired_replicas", "wva_current_replicas", "wva_saturation_level", "wva_spare_kv",
                "wva_spare_queue", "wva_last_scaling_decision_timestamp"):
        assert wva in used


def test_every_expression_is_valid_promql(tmp_path):
    binary = promtool()
    rules = []
    for i, expr in enumerate(expressions(load())):
        concrete = expr.replace("$__rate_interval", "1m").replace("$namespace", ".*").replace("$model", ".*")
        rules.append({"record": f"dashboard:expr_{i}", "expr": concrete.replace("$variant", ".*")})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([binary, "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_ships_the_dashboard_as_a_sidecar_configmap_when_enabled():
    from tests.support.helm import render_chart

    off, _ = render_chart(CHART)
    assert not any(obj["metadata"]["name"].endswith("-dashboard") for _, obj in off if obj["kind"] == "ConfigMap")
    on, _ = render_chart(CHART, {"grafanaDashboard.enabled": True})
    (obj,) = [obj for _, obj in on if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "kedascaler-dashboard"]
    assert obj["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(obj["data"]["kedascaler.json"]) == load()
