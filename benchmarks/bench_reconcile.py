"""Reconcile cost at fleet scale: CPU time and metrics queries per cycle for 100, 1,000 and 10,000 VAs.

A synthetic inventory (2 variants per model, 4 pods per variant) and a metrics source that answers like
Prometheus does (one batched answer for all pods, matched to variants by pod name, with each pod's usage
over the window as the usage query gives it), so the figure is the scaler's own cost. The query count comes
from the real PrometheusSource's fixed query list.

`--scaling-mode`: `off` is the saturation engine alone (no planner); `saturation`, `hybrid` or `model` run
the reconcile loop with SLO sizing (`PlannerSettings`) in that global mode (as `serve --scaling-mode`
does), every VA with a `variantProfile` and a service class, so each model is sized every cycle. Prints a
table, exits 0.
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from collections.abc import Sequence

from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.planner import PlannerSettings
from kedascaler.loop.reconcile import Reconciler
from kedascaler.sources.base import CollectResult, PodSample, PodUsage, ScrapeTarget
from kedascaler.sources.files import StaticInventory
from kedascaler.sources.prometheus import cycle_queries
from kedascaler.spec.inventory import build_inventory

PODS_PER_VARIANT = 4
WINDOW_S = 60.0  # the usage window (PrometheusSource's default 1m)
MODES = ("off", "saturation", "hybrid", "model")


def documents(n_variants: int):
    models = (n_variants + 1) // 2
    yield ("bench", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "serviceclass", "namespace": "kedascaler"},
        "data": {"standard": "name: Standard\npriority: 2\ndata:\n" + "".join(
            f"  - model: org/model-{m}\n    slo-tpot: 40\n    slo-ttft: 1000\n" for m in range(models))},
    })
    for i in range(n_variants):
        model, acc = divmod(i, 2)
        name = f"m{model}-{'h100' if acc == 0 else 'a100'}"
        yield ("bench", {
            "apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
            "metadata": {"name": name, "namespace": f"ns{model % 50}"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": name}, "modelID": f"org/model-{model}",
                     "accelerator": "H100" if acc == 0 else "A100", "variantCost": "40" if acc == 0 else "20",
                     "minReplicas": 1, "maxReplicas": 64,
                     "sloClassRef": {"name": "serviceclass", "key": "standard"},
                     "variantProfile": {"maxBatchSize": 256, "perfParms": {
                         "decodeParms": {"alpha": 7.0 if acc == 0 else 11.0, "beta": 0.035 if acc == 0 else 0.06},
                         "prefillParms": {"gamma": 15.4 if acc == 0 else 25.0,
                                          "delta": 0.00034 if acc == 0 else 0.0007}}}},
        })


def usage(rng: random.Random, running: float) -> PodUsage:
    """A pod's window as the usage query reports it: ~2-8 req/s, ShareGPT-like lengths, ITL from the batch."""
    completed = rng.uniform(2.0, 8.0)
    prompt, output = rng.uniform(150, 300), rng.uniform(150, 250)
    return PodUsage(window_s=WINDOW_S, completed_rate=completed, prompt_tokens_rate=completed * prompt,
                    output_tokens_rate=completed * output, backlog_growth_rate=rng.uniform(-0.2, 0.2),
                    mean_running=running, itl_ms=7.0 + 0.035 * running * rng.uniform(0.9, 1.1),
                    prefill_ms=15.4 + 0.00034 * prompt * rng.uniform(0.9, 1.1), prompt_tokens_mean=prompt,
                    ttft_ms=rng.uniform(20, 60))


class PrometheusLikeSource:
    """One answer per cycle for every pod, as the batched PromQL queries return it."""

    def __init__(self, samples: tuple[PodSample, ...]) -> None:
        self.samples = samples
        self.queries = len(cycle_queries())

    def collect(self, targets: Sequence[ScrapeTarget]) -> CollectResult:
        now = time.time()
        return CollectResult(tuple(PodSample(s.namespace, s.pod, s.model_name, s.kv_cache_usage, s.queue_length,
                                             s.running, now, usage=s.usage) for s in self.samples), (), self.queries)

    def close(self) -> None:
        pass


class Replicas:
    def status(self, spec):
        from kedascaler.sources.base import WorkloadStatus

        return WorkloadStatus(PODS_PER_VARIANT, PODS_PER_VARIANT, ())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--scaling-mode", nargs="+", choices=MODES, default=["off", "hybrid"],
                        help="off: no planner (saturation engine only); else the planner's global mode "
                             "(default: off hybrid, one row each)")
    args = parser.parse_args()
    print(f"{'VAs':>7} {'pods':>7} {'scaling mode':>13} {'queries/cycle':>14} {'CPU ms/cycle':>13} "
          f"{'wall ms/cycle':>14} {'peak RSS MiB':>13} {'model-sized':>12}")
    for n in args.variants:
        state = build_inventory(documents(n))  # each VA with a variantProfile and a sloClassRef
        inventory = StaticInventory(state)
        assert not inventory.current().problems, inventory.current().problems[:3]
        rng = random.Random(1)
        samples = []
        for spec in inventory.current().specs:
            for p in range(PODS_PER_VARIANT):
                running = rng.randint(1, 64)
                samples.append(PodSample(spec.key.namespace, f"{spec.target_name}-5d8f9c7b6-{p:05d}", spec.model_id,
                                         rng.uniform(0.1, 0.9), rng.choice([0, 0, 1, 4, 9]), running, 0.0,
                                         usage=usage(rng, running)))
        for mode in args.scaling_mode:
            source = PrometheusLikeSource(tuple(samples))
            planner = None if mode == "off" else PlannerSettings(mode)
            reconciler = Reconciler(inventory, source, DecisionBoard(), Replicas(), planner=planner)
            reconciler.run_once()  # warm-up
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(args.cycles):
                report = reconciler.run_once()
            cpu = (time.process_time() - cpu0) / args.cycles * 1000
            wall = (time.perf_counter() - wall0) / args.cycles * 1000
            assert len(report.decisions) == n
            sized = sum(1 for plan in report.plans.values() if plan.model_based)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak of the process so far
            print(f"{n:>7} {len(samples):>7} {mode:>13} {report.collect.queries:>14} {cpu:>13.1f} {wall:>14.1f} "
                  f"{rss:>13.0f} {sized if planner else '-':>12}", flush=True)


if __name__ == "__main__":
    main()
