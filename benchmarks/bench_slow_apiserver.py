"""A slow API server: what it costs `kedascaler serve --kubeconfig`'s gRPC answers, and how many writes it gets.

The API server is the tests' in-memory fixture (`tests/support/kube_apiserver.py`) with every status PATCH
taking `--delay` seconds (0.5 s by default). It holds `--vas` VariantAutoscalings (10), each with a Deployment,
a pod whose metrics port is closed, and a key another controller wrote into its status (`observedGeneration`).
`serve` runs as its own process (`--interval 1`); from the moment its gRPC port is bound, this process calls
the gRPC health check (what the kubelet's probes call) every 0.5 s with a 1 s deadline for `--seconds` (10).

Printed: the probes answered and those that hit DEADLINE_EXCEEDED, their latency p50/p99/max, and the status
PATCHes sent in the window. `--serve-root DIR` runs another checkout's `serve` (a `git archive` of an older
commit: "before").

    uv run python benchmarks/bench_slow_apiserver.py [--delay 0.5] [--vas 10] [--seconds 10] [--serve-root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import grpc  # noqa: E402
import yaml  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from tests.support.kube_apiserver import FakeApiServer, deployment, pod, va  # noqa: E402


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--delay", type=float, default=0.5, help="seconds per status PATCH")
    parser.add_argument("--vas", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--serve-root", type=Path, default=ROOT, help="the checkout whose serve runs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    api = FakeApiServer().start()
    api.patch_delay_s = args.delay
    for i in range(args.vas):
        name = f"llama-{i}"
        obj = va(name, "meta/llama", maxReplicas=4)
        obj["status"] = {"observedGeneration": 1}  # another controller's key
        api.put(obj)
        api.put(deployment(name, replicas=1, ready=1))
        api.put(pod(f"{name}-x-1", app=name, ip="127.0.0.1", port_annotation=str(closed_port())))
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "bench",
            "clusters": [{"name": "bench", "cluster": {"server": api.url}}], "users": [{"name": "bench", "user": {}}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}]}))
        proc = subprocess.Popen(
            [sys.executable, "-m", "kedascaler.cli.main", "serve", "--kubeconfig", str(kubeconfig), "--port", "0",
             "--interval", "1", "--metrics-port", "0", "--no-pod-deletion-cost"],
            cwd=args.serve_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": str(args.serve_root), "POD_NAME": "bench-0"})
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
        try:
            port = None
            deadline = time.monotonic() + 60
            while port is None and time.monotonic() < deadline:
                found = [re.search(r"serving ExternalScaler on port (\d+)", line) for line in list(lines)]
                port = next((int(m.group(1)) for m in found if m), None)
                time.sleep(0.05)
            if port is None:
                print("".join(lines)[-2000:])
                return 1
            patches_before = api.count("PATCH", "/status")
            ok, late, latencies = 0, 0, []
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                end = time.monotonic() + args.seconds
                while time.monotonic() < end:
                    started = time.perf_counter()
                    try:
                        stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                        ok += 1
                    except grpc.RpcError as exc:
                        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                            raise
                        late += 1
                    latencies.append((time.perf_counter() - started) * 1000)
                    time.sleep(0.5)
            patches = api.count("PATCH", "/status") - patches_before
        finally:
            proc.terminate()
            proc.wait(30)
            api.stop()
    result = {"probes": ok + late, "deadline_exceeded": late, "p50_ms": round(percentile(latencies, 0.5), 1),
              "p99_ms": round(percentile(latencies, 0.99), 1), "max_ms": round(max(latencies), 1),
              "status_patches": patches, "vas": args.vas, "delay_s": args.delay, "seconds": args.seconds}
    print(f"{result['probes']} health probes in {args.seconds:g} s: {late} DEADLINE_EXCEEDED; latency p50 "
          f"{result['p50_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms; {patches} status PATCHes "
          f"({args.vas} VAs, {args.delay:g} s per PATCH)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
