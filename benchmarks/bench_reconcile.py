"""Reconcile cost at fleet scale: CPU time and metrics queries per cycle for 100, 1,000 and 10,000 VAs.

A synthetic inventory (2 variants per model, 4 pods per variant) and a metrics source that answers like
Prometheus does (one batched answer for all pods, matched to variants by pod name), so the figure is the
scaler's own cost. The query count comes from the real PrometheusSource's fixed query list. Prints a table, exits 0.
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from collections.abc import Sequence

from kedascaler.board import DecisionBoard
from kedascaler.collect.base import CollectResult, PodSample, ScrapeTarget
from kedascaler.collect.files import StaticInventory
from kedascaler.collect.prometheus import cycle_queries
from kedascaler.reconcile import Reconciler

PODS_PER_VARIANT = 4


def documents(n_variants: int):
    for i in range(n_variants):
        model, acc = divmod(i, 2)
        name = f"m{model}-{'h100' if acc == 0 else 'a100'}"
        yield ("bench", {
            "apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
            "metadata": {"name": name, "namespace": f"ns{model % 50}"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": name}, "modelID": f"org/model-{model}",
                     "accelerator": "H100" if acc == 0 else "A100", "variantCost": "40" if acc == 0 else "20",
                     "minReplicas": 1, "maxReplicas": 64},
        })


class PrometheusLikeSource:
    """One answer per cycle for every pod, as the batched PromQL queries return it."""

    def __init__(self, samples: tuple[PodSample, ...]) -> None:
        self.samples = samples
        self.queries = len(cycle_queries())

    def collect(self, targets: Sequence[ScrapeTarget]) -> CollectResult:
        now = time.time()
        return CollectResult(tuple(PodSample(s.namespace, s.pod, s.model_name, s.kv_cache_usage, s.queue_length,
                                             s.running, now) for s in self.samples), (), self.queries)

    def close(self) -> None:
        pass


class Replicas:
    def status(self, spec):
        from kedascaler.collect.base import WorkloadStatus

        return WorkloadStatus(PODS_PER_VARIANT, PODS_PER_VARIANT, ())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(1)
    print(f"{'VAs':>7} {'pods':>7} {'queries/cycle':>14} {'CPU ms/cycle':>13} {'wall ms/cycle':>14} {'peak RSS MiB':>13}")
    for n in args.variants:
        inventory = StaticInventory.from_documents(documents(n))
        samples = tuple(
            PodSample(spec.key.namespace, f"{spec.target_name}-5d8f9c7b6-{p:05d}", spec.model_id,
                      rng.uniform(0.1, 0.9), rng.choice([0, 0, 1, 4, 9]), rng.randint(1, 64), 0.0)
            for spec in inventory.current().variants for p in range(PODS_PER_VARIANT))
        source = PrometheusLikeSource(samples)
        reconciler = Reconciler(inventory, source, DecisionBoard(), Replicas())
        reconciler.run_once()  # warm-up
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(args.cycles):
            report = reconciler.run_once()
        cpu = (time.process_time() - cpu0) / args.cycles * 1000
        wall = (time.perf_counter() - wall0) / args.cycles * 1000
        assert len(report.decisions) == n
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{n:>7} {len(samples):>7} {report.collect.queries:>14} {cpu:>13.1f} {wall:>14.1f} {rss:>13.0f}")


if __name__ == "__main__":
    main()
