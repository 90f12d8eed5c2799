"""The report's PNG plots: replicas over time, KV cache and queue, latency percentiles, cost against SLO.

matplotlib is the optional extra `plots`: `plot` raises ImportError without it (`write_report` then writes
the numbers alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from kedascaler.sim.simulator import RunResult
from kedascaler.sim.workloads import Workload


class Scored(Protocol):
    """What the plots read of a `kedascaler.sim.report.Score` (the latencies by name: ttft_p50 … itl_p99)."""

    @property
    def policy(self) -> str: ...
    @property
    def cost(self) -> float: ...
    @property
    def slo_attainment(self) -> float: ...


def plot(out: Path, workload: Workload, runs: list[RunResult], scores: Sequence[Scored]) -> list[Path]:
    """replicas.png, kv_queue.png, latency.png and cost_vs_slo.png under `out`; returns them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    bt, rate = workload.rate(10.0)
    n = len(runs)
    names = [v.name for v in runs[0].variants] if runs else []
    # 1. load and replicas over time, per policy, per variant
    fig, axes = plt.subplots(n, 1, figsize=(11, 2.2 * n + 0.6), sharex=True, squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        ax2 = ax.twinx()
        ax2.fill_between(bt, rate, step="post", color="0.85", label="arrivals (req/s)")
        ax2.set_ylabel("req/s", color="0.5")
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
        for v, name in enumerate(names):
            ax.step(run.times, run.series["replicas"][:, v], where="post", label=f"{name} desired")
            ax.step(run.times, run.series["ready"][:, v], where="post", linestyle=":", label=f"{name} ready")
        ax.set_ylabel("replicas")
        ax.set_title(run.policy, fontsize=9, loc="left")
    axes[0, 0].legend(fontsize=7, ncol=4, loc="upper right")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    files.append(out / "replicas.png")
    fig.savefig(files[-1], dpi=90)
    plt.close(fig)
    # 2. KV cache and queue
    fig, axes = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    for run in runs:
        ready = run.series["ready"]
        kv = (run.series["kv"] * ready).sum(axis=1) / np.maximum(1, ready.sum(axis=1))
        axes[0].plot(run.times, kv, label=run.policy, linewidth=1)
        waiting = run.series["waiting"].sum(axis=1) + run.series["gateway"]
        axes[1].plot(run.times, waiting, label=run.policy, linewidth=1)
    axes[0].set_ylabel("mean KV-cache usage")
    axes[1].set_ylabel("waiting (pods + gateway)")
    axes[1].set_yscale("symlog")
    axes[1].set_xlabel("time (s)")
    axes[0].legend(fontsize=7, ncol=3)
    fig.tight_layout()
    files.append(out / "kv_queue.png")
    fig.savefig(files[-1], dpi=90)
    plt.close(fig)
    # 3. latency percentiles with the SLO lines
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(scores))
    for ax, (label, keys, line) in zip(axes, [("TTFT (s)", ("ttft_p50", "ttft_p95", "ttft_p99"), runs[0].slo.ttft),
                                              ("ITL (s)", ("itl_p50", "itl_p95", "itl_p99"), runs[0].slo.itl)],
                                       strict=True):
        for j, k in enumerate(keys):
            vals = [min(getattr(s, k), 1e4) for s in scores]
            ax.bar(x + (j - 1) * 0.27, vals, 0.27, label=k.split("_")[1])
        ax.axhline(line, color="red", linestyle="--", label="SLO")
        ax.set_yscale("log")
        ax.set_xticks(x, [s.policy for s in scores], rotation=30, fontsize=8)
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.tight_layout()
    files.append(out / "latency.png")
    fig.savefig(files[-1], dpi=90)
    plt.close(fig)
    # 4. cost vs SLO attainment
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, s in enumerate(sorted(scores, key=lambda s: s.cost)):  # labels alternate above/below by cost rank
        ax.scatter(s.cost, s.slo_attainment, s=40)
        ax.annotate(s.policy, (s.cost, s.slo_attainment), fontsize=8, xytext=(4, 4 if i % 2 else -10),
                    textcoords="offset points")
    ax.set_xlabel("GPU cost (cost units)")
    ax.set_ylabel("SLO attainment (%)")
    ax.set_xscale("log")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    files.append(out / "cost_vs_slo.png")
    fig.savefig(files[-1], dpi=90)
    plt.close(fig)
    return files
