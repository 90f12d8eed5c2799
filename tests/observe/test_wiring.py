"""Everything wired as `serve` would: flags, JSON logs, the reconcile loop feeding the Observer, the gRPC server
with the interceptor, /metrics over HTTP and the records file — then `analyze` on what was recorded."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging

import grpc
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from kedascaler.observe import MetricsServer
from kedascaler.observe.analyze import analyze_file
from kedascaler.observe.wiring import Observability, add_observe_arguments
from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.server.app import ScalerServer
from tests.observe.conftest import make_reconciler


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--log-level", default="INFO")
    add_observe_arguments(p)
    return p


def test_flags_parse_and_reject_bad_ports(capsys):
    args = parser().parse_args(["--metrics-port", "0", "--log-format", "json", "--records", "r.jsonl"])
    assert (args.metrics_port, args.log_format, str(args.records)) == (0, "json", "r.jsonl")
    assert parser().parse_args([]).metrics_port == 8080
    with pytest.raises(SystemExit):
        parser().parse_args(["--metrics-port", "70000"])
    err = capsys.readouterr().err
    assert "--metrics-port" in err and "must be within 0-65535, got 70000" in err


async def test_serve_wiring_end_to_end(fleet, scraper, tmp_path):
    records = tmp_path / "decisions.jsonl"
    args = parser().parse_args(["--metrics-port", "0", "--metrics-host", "127.0.0.1", "--log-format", "json",
                                "--records", str(records)])
    obs = Observability.from_args(args)
    assert obs.metrics_server is None  # --metrics-port 0: off; here any free port instead
    obs.metrics_server = MetricsServer(obs.observer.registry, port=0, host="127.0.0.1",
                                       render=obs.observer.exposition)
    stream = io.StringIO()
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_kedascaler_handler", False)]
    ours[0].setStream(stream)
    reconciler = make_reconciler(fleet, obs.instrument(scraper))
    server = ScalerServer(reconciler.board, port=0, host="127.0.0.1", interceptors=obs.interceptors)
    grpc_port = await server.start()
    metrics_port = obs.start()
    seen = []
    loop = asyncio.create_task(reconciler.run_forever(0.2, on_cycle=lambda r: obs.on_cycle(r, then=seen.append)))
    try:
        while len(seen) < 3:
            await asyncio.sleep(0.05)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            assert (await stub.IsActive(pb.ScaledObjectRef(name="llama-a100", namespace="llm"))).result
        text = await asyncio.to_thread(lambda: requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await server.stop(0)
        obs.stop()
        root.removeHandler(ours[0])
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(text) for s in f.samples}
    assert any(n == "wva_desired_replicas" for n, _ in values)
    assert values[("kedascaler_grpc_requests_total",
                   (("code", "OK"), ("method", "/externalscaler.ExternalScaler/IsActive")))] == 1.0
    assert values[("kedascaler_reconcile_cycles_total", ())] >= 3
    logged = [json.loads(line) for line in stream.getvalue().splitlines()]
    # at INFO each variant's decision when it changes (its first here), not every cycle; the records file: all
    assert sum(1 for e in logged if e["logger"] == "kedascaler.decisions") >= 2
    analysis = analyze_file(records, tmp_path / "analysis")
    assert analysis.summary["records"] >= 6 and analysis.summary["cycles"] >= 3
