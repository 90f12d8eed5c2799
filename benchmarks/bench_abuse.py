"""Abuse: what hostile clients cost a running `kedascaler serve`, in memory and in other callers' latency.

`serve` runs as its own process on loopback (a one-VA inventory, the activation endpoint on, /metrics on).
A sampler in this process calls IsActive every 5 ms for the whole run, as KEDA would, and the server's RSS is
read from /proc every 50 ms. The attacks come from a third process, one after the other:

  (a) metadata: 40 GetMetricSpec calls, 8 at a time, each with a unique 3.5 MB trigger metadata value;
  (b) activation flood: 10 s of POST /v1/activate for the model from 96 keep-alive connections (more than
      the endpoint's 64 connection slots), as fast as they are answered.

Targets: RSS growth < 50 MB and IsActive p99 < 50 ms under each. Also printed: the status codes the attacker
got, and (b) the reconcile cycles the flood caused beyond the schedule.

    uv run python benchmarks/bench_abuse.py [--flood-seconds 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import grpc  # noqa: E402

from kedascaler.proto import externalscaler_pb2 as pb  # noqa: E402
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc  # noqa: E402

NS, VA_NAME, MODEL = "bench", "llama-a100", "meta/llama-3.1-8b"
INVENTORY = f"""
apiVersion: llmd.ai/v1alpha1
kind: VariantAutoscaling
metadata: {{name: {VA_NAME}, namespace: {NS}}}
spec:
  scaleTargetRef: {{kind: Deployment, name: {VA_NAME}}}
  modelID: {MODEL}
  minReplicas: 0
"""
RSS_TARGET_MB, P99_TARGET_MS = 50.0, 50.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """serve's RSS with its answering process's (its child: `kedascaler.cli.answerer`)."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        children = []
    total = 0.0
    for one in (pid, *children):
        try:
            with open(f"/proc/{one}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def cycles(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    match = re.search(r"^kedascaler_reconcile_cycles_total (\S+)$", text, re.M)
    return float(match.group(1)) if match else float("nan")


# -- the attacker process --
def attack_metadata(target: str, calls: int, size: int, parallel: int, out: mp.Queue) -> None:
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
    stub = pb_grpc.ExternalScalerStub(channel)

    def one(i: int) -> str:
        value = f"{i:06d}" + os.urandom(size // 2).hex()[: size - 6]  # unique, never seen before
        ref = pb.ScaledObjectRef(name=VA_NAME, namespace=NS, scalerMetadata={"variantAutoscaling": value})
        try:
            stub.GetMetricSpec(ref, timeout=30)
            return "OK"
        except grpc.RpcError as exc:
            return exc.code().name

    with ThreadPoolExecutor(parallel) as pool:
        codes = Counter(pool.map(one, range(calls)))
    channel.close()
    out.put(dict(codes))


def attack_activation(port: int, seconds: float, connections: int, out: mp.Queue) -> None:
    deadline = time.monotonic() + seconds
    path = f"/v1/activate/{NS}/{MODEL}"
    codes: Counter = Counter()
    lock = threading.Lock()

    def worker() -> None:
        mine: Counter = Counter()
        conn = None
        while time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("POST", path, body=b"", headers={"Content-Length": "0"})
                answer = conn.getresponse()
                answer.read()
                mine[answer.status] += 1
                if answer.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                mine["connection error"] += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()
        with lock:
            codes.update(mine)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({str(k): v for k, v in codes.items()})


# -- the measuring side --
class Sampler:
    """IsActive every `every` s and the server's RSS every 50 ms, in threads, labelled by the current phase."""

    def __init__(self, target: str, pid: int, every: float = 0.005) -> None:
        self.pid = pid
        self.every = every
        self.phase = "baseline"
        self.latency: dict[str, list[float]] = {}
        self.errors: Counter = Counter()
        self.rss: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._channel = grpc.insecure_channel(target)
        self._stub = pb_grpc.ExternalScalerStub(self._channel)
        self._threads = [threading.Thread(target=self._calls, daemon=True),
                         threading.Thread(target=self._memory, daemon=True)]

    def start(self) -> Sampler:
        for t in self._threads:
            t.start()
        return self

    def _calls(self) -> None:
        ref = pb.ScaledObjectRef(name=VA_NAME, namespace=NS)
        while not self._stop.is_set():
            phase = self.phase
            started = time.perf_counter()
            try:
                self._stub.IsActive(ref, timeout=10)
                self.latency.setdefault(phase, []).append((time.perf_counter() - started) * 1000)
            except grpc.RpcError as exc:
                self.errors[(phase, exc.code().name)] += 1
            time.sleep(self.every)

    def _memory(self) -> None:
        while not self._stop.is_set():
            self.rss.setdefault(self.phase, []).append(rss_mb(self.pid))
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._channel.close()


def run_attack(sampler: Sampler, phase: str, target, args: tuple, settle: float = 2.0) -> dict:
    sampler.phase = phase
    queue: mp.Queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=target, args=(*args, queue))
    started = time.monotonic()
    proc.start()
    codes = queue.get(timeout=600)
    proc.join(30)
    elapsed = time.monotonic() - started
    sampler.phase = phase + " (after)"
    time.sleep(settle)  # what the attack left behind is measured too
    return {"codes": codes, "seconds": round(elapsed, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood-seconds", type=float, default=10.0)
    parser.add_argument("--metadata-calls", type=int, default=40)
    parser.add_argument("--metadata-bytes", type=int, default=3_500_000)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--serve-root", type=Path, default=ROOT,
                        help="run `serve` from this checkout (e.g. an older commit, for a before/after)")
    args = parser.parse_args()

    grpc_port, metrics_port, activation_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "va.yaml").write_text(INVENTORY)
        interval = 15.0
        server = subprocess.Popen(
            [sys.executable, "-m", "kedascaler.cli.main", "serve", "--inventory", folder, "--port", str(grpc_port),
             "--metrics-port", str(metrics_port), "--activation-port", str(activation_port),
             "--interval", str(interval)],
            cwd=args.serve_root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            return measure(server, args, grpc_port, metrics_port, activation_port, interval)
        finally:
            server.terminate()
            server.wait(30)


def measure(server: subprocess.Popen, args, grpc_port: int, metrics_port: int, activation_port: int,
            interval: float) -> int:
    target = f"127.0.0.1:{grpc_port}"
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        deadline = time.monotonic() + 60
        while True:
            try:
                stub.IsActive(pb.ScaledObjectRef(name=VA_NAME, namespace=NS), timeout=2)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise SystemExit("serve never answered IsActive") from None
                time.sleep(0.2)
    sampler = Sampler(target, server.pid).start()
    time.sleep(3)
    results: dict[str, dict] = {}
    results["metadata"] = run_attack(sampler, "metadata", attack_metadata,
                                     (target, args.metadata_calls, args.metadata_bytes, 8))
    sampler.phase = "between"
    time.sleep(1)
    before = cycles(metrics_port)
    results["activation"] = run_attack(sampler, "activation", attack_activation,
                                       (activation_port, args.flood_seconds, 96))
    after = cycles(metrics_port)
    sampler.stop()
    flood = results["activation"]
    flood["cycles"] = after - before
    flood["scheduled_cycles"] = round(flood["seconds"] / interval, 1)
    flood["posts"] = sum(flood["codes"].values())

    base_rss = min(sampler.rss["baseline"])
    figures = {"baseline": {"rss_mb": round(base_rss, 1),
                            "isactive_p50_ms": round(percentile(sampler.latency["baseline"], 50), 2),
                            "isactive_p99_ms": round(percentile(sampler.latency["baseline"], 99), 2)}}
    ok = True
    for name in ("metadata", "activation"):
        during = sampler.latency.get(name, []) + sampler.latency.get(name + " (after)", [])
        start_rss = min(sampler.rss.get("baseline" if name == "metadata" else "between", [base_rss]))
        peak = max(sampler.rss.get(name, [0]) + sampler.rss.get(name + " (after)", [0]))
        growth = peak - start_rss
        p99 = percentile(during, 99)
        errors = {f"{k[1]}": v for k, v in sampler.errors.items() if k[0].startswith(name)}
        figures[name] = {**results[name], "rss_growth_mb": round(growth, 1),
                         "isactive_calls": len(during), "isactive_errors": errors,
                         "isactive_p50_ms": round(percentile(during, 50), 2), "isactive_p99_ms": round(p99, 2),
                         "isactive_max_ms": round(max(during, default=float("nan")), 2)}
        ok = ok and growth < RSS_TARGET_MB and p99 < P99_TARGET_MS and not errors
    print(f"baseline: RSS {base_rss:.0f} MB, IsActive p50 {figures['baseline']['isactive_p50_ms']} ms, "
          f"p99 {figures['baseline']['isactive_p99_ms']} ms")
    print("| attack | sent | answers | RSS growth MB | IsActive p50 ms | p99 ms | max ms | IsActive errors |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    m, a = figures["metadata"], figures["activation"]
    print(f"| (a) metadata | {args.metadata_calls} GetMetricSpec, unique {args.metadata_bytes / 1e6:.1f} MB value | "
          f"{m['codes']} | {m['rss_growth_mb']} | {m['isactive_p50_ms']} | {m['isactive_p99_ms']} | "
          f"{m['isactive_max_ms']} | {m['isactive_errors'] or 'none'} |")
    print(f"| (b) activation flood | {a['posts']:,} POSTs in {a['seconds']} s, 96 connections | {a['codes']}; "
          f"{a['cycles']:.0f} cycles ({a['scheduled_cycles']} scheduled) | {a['rss_growth_mb']} | "
          f"{a['isactive_p50_ms']} | {a['isactive_p99_ms']} | {a['isactive_max_ms']} | "
          f"{a['isactive_errors'] or 'none'} |")
    print(f"targets: RSS growth < {RSS_TARGET_MB:g} MB, IsActive p99 < {P99_TARGET_MS:g} ms: "
          f"{'met' if ok else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
