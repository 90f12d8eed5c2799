"""Memory per cached pod: a realistic vLLM pod (tests/support/pods.py) as the Reflector stores it, whole and trimmed.

The pod watch's store keeps `trim_pod(pod)` (kedascaler/sources/kubernetes.py) instead of the whole object;
this measures both with tracemalloc over N pods parsed from one list body, as `Reflector._list` parses it.

    uv run python benchmarks/bench_pod_cache.py [--pods 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from kedascaler.sources.kubernetes import trim_deployment, trim_pod  # noqa: E402
from tests.support.pods import vllm_pod  # noqa: E402


def kib_per_object(body: bytes, keep) -> float:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = [keep(o) for o in json.loads(body)["items"]]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / len(store) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pods = [vllm_pod(f"llama-h100-5d8f9c7b6-{i:05d}", ip=f"10.0.{i // 250}.{i % 250}") for i in range(args.pods)]
    body = json.dumps({"items": pods}).encode()
    deploy = {"items": [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": p["metadata"],
                         "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "llama-h100"}},
                                  "template": {"metadata": {"labels": p["metadata"]["labels"]}, "spec": p["spec"]}},
                         "status": {"replicas": 4, "readyReplicas": 4}} for p in pods[: max(1, args.pods // 4)]]}
    dbody = json.dumps(deploy).encode()
    out = {"pods": args.pods, "json_kib_per_pod": round(len(body) / args.pods / 1024, 1),
           "whole_kib_per_pod": round(kib_per_object(body, lambda o: o), 1),
           "trimmed_kib_per_pod": round(kib_per_object(body, trim_pod), 2),
           "whole_kib_per_deployment": round(kib_per_object(dbody, lambda o: o), 1),
           "trimmed_kib_per_deployment": round(kib_per_object(dbody, trim_deployment), 2)}
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
