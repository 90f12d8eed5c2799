"""SLO sizing cost at fleet scale: the queueing model and the sizer for 100, 1,000 and 10,000 variants.

Synthetic variants (2 per model: an H100-class and an A100-class profile with ±30 % jitter, max batch 64 to
1024, chat-sized requests) and Premium-like targets. Times, per fleet size (best of --repeat runs):
- `metrics`: `replica_metrics` at one arrival rate per variant (one steady-state solve each);
- `capacity`: `max_arrival_rate`, the bisection for the largest λ within ITL and TTFT targets;
- `size_models`: the whole sizing step (capacity + cheapest allocation + predictions) for all models.
Prints a table, exits 0. No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from kedascaler.engine.perfmodel import PerfModel
from kedascaler.engine.queueing import ReplicaArrays, max_arrival_rate, replica_metrics
from kedascaler.engine.sizing import ModelDemand, SloTargets, VariantOption, Workload, size_models
from kedascaler.engine.types import VariantKey

PROFILES = {"H100": (7.0, 0.035, 15.4, 0.00034, 40.0), "A100": (11.0, 0.06, 25.0, 0.0007, 20.0)}


def fleet(n_variants: int, seed: int = 0) -> list[ModelDemand]:
    rng = np.random.default_rng(seed)
    demands = []
    for m in range(n_variants // 2):
        options = []
        for acc, (a, b, g, d, cost) in PROFILES.items():
            jitter = rng.uniform(0.7, 1.3, 4)
            perf = PerfModel(a * jitter[0], b * jitter[1], g * jitter[2], d * jitter[3],
                             max_batch_size=int(rng.choice([64, 128, 256, 512, 1024])))
            options.append(VariantOption(VariantKey(f"ns{m % 50}", f"m{m}-{acc.lower()}"), cost, perf, acc,
                                         min_replicas=1, max_replicas=64))
        workload = Workload(float(rng.uniform(0.5, 300.0)), float(rng.uniform(100, 1500)), float(rng.uniform(50, 400)))
        demands.append(ModelDemand(f"ns{m % 50}", f"org/model-{m}", workload, SloTargets(24.0, 500.0),
                                   tuple(options), priority=int(rng.integers(1, 4))))
    return demands


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'variants':>9} {'metrics':>10} {'capacity':>10} {'size_models':>12} {'per variant':>12}")
    for n in args.sizes:
        demands = fleet(n)
        models = [v.perf for d in demands for v in d.variants]
        prompt = [d.workload.prompt_tokens for d in demands for _ in d.variants]
        output = [d.workload.output_tokens for d in demands for _ in d.variants]
        arrays = ReplicaArrays.from_models(models, prompt, output)
        rates = 0.5 * arrays.peak_rate()
        pool = {"H100": n * 4, "A100": n * 4}
        t_metrics = best_of(args.repeat, lambda a=arrays, r=rates: replica_metrics(a, r))
        t_capacity = best_of(args.repeat, lambda a=arrays: max_arrival_rate(a, 24.0, 500.0))
        t_size = best_of(args.repeat, lambda d=demands, p=pool: size_models(d, p))
        print(f"{len(models):>9} {t_metrics * 1e3:>8.1f}ms {t_capacity * 1e3:>8.1f}ms {t_size * 1e3:>10.1f}ms "
              f"{t_size / len(models) * 1e6:>10.1f}µs")


if __name__ == "__main__":
    main()
