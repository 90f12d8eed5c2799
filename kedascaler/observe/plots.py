"""The PNGs of `kedascaler analyze` (matplotlib, Agg backend): decisions, KV cache and queue per pod, replicas per
model, prediction errors and, with Prometheus, vLLM latency. Without matplotlib: none, and a note says so."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_all(out: Path, tables: dict[str, list[dict[str, Any]]], latency: Sequence[dict[str, Any]],
             notes: list[str]) -> list[Path]:
    """The PNGs (matplotlib, Agg); without matplotlib, none, and a note says so."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        notes.append("matplotlib is not installed: no plots (pip install 'kedascaler[plots]').")
        return []
    written = []
    t0 = min((d["ts"] for d in tables["decisions"]), default=0.0)
    written.append(_plot_decisions(plt, out / "decisions.png", tables["decisions"], t0))
    written.append(_plot_pods(plt, out / "kv_cache.png", tables["pods"], tables["aggregate"], t0,
                              "kv_cache_usage", "kv_mean", "KV-cache usage (fraction)",
                              "KV cache per pod and model mean"))
    written.append(_plot_pods(plt, out / "queue.png", tables["pods"], tables["aggregate"], t0,
                              "queue_length", "queue_total", "waiting requests", "Queue per pod and model total"))
    written.append(_plot_replicas(plt, out / "replicas.png", tables["aggregate"], t0))
    if tables["predictions"]:
        written.append(_plot_predictions(plt, out / "prediction_error.png", tables["predictions"]))
    if latency:
        written.append(_plot_latency(plt, out / "latency.png", latency, t0))
    return written


def _save(plt: Any, fig: Any, path: Path) -> Path:
    """Write a finished figure and free it (matplotlib keeps every open figure otherwise)."""
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_decisions(plt: Any, path: Path, rows: Sequence[dict[str, Any]], t0: float) -> Path:
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in rows:
        by[f"{d['namespace']}/{d['variant']}"].append(d)
    keys = sorted(by)[:12]
    fig, axes = plt.subplots(max(1, len(keys)), 1, figsize=(11, 2.6 * max(1, len(keys))), sharex=True, squeeze=False)
    marks = {"scale-up": ("^", "tab:green"), "scale-down": ("v", "tab:red"), "stale": ("x", "tab:gray"),
             "bounds": ("s", "tab:purple")}
    # strict=False: with no variant there is still one (empty) axis, and nothing to draw on it
    for ax, key in zip(axes[:, 0], keys, strict=False):
        seq = by[key]
        t = [d["ts"] - t0 for d in seq]
        ax.step(t, [d["current"] for d in seq], where="post", label="current", color="tab:blue")
        ax.step(t, [d["desired"] for d in seq], where="post", label="desired", color="tab:orange", linestyle="--")
        for action, (marker, color) in marks.items():
            pts = [(d["ts"] - t0, d["desired"]) for d in seq if d["action"] == action]
            if pts:
                ax.scatter(*zip(*pts, strict=True), marker=marker, color=color, label=action, zorder=3)
        ax.set_ylabel("replicas")
        ax.set_title(key, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("seconds since first record")
    fig.suptitle("Scaling decisions (markers: actions; reasons in decisions.csv)")
    return _save(plt, fig, path)


def _plot_pods(plt: Any, path: Path, pods: Sequence[dict[str, Any]], aggregate: Sequence[dict[str, Any]], t0: float,
               field_: str, agg_field: str, ylabel: str, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(11, 4))
    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for p in pods:
        if p[field_] is not None:
            by[f"{p['variant']}/{p['pod']}"].append((p["ts"] - t0, p[field_]))
    for key, pts in sorted(by.items())[:30]:
        ax.plot(*zip(*pts, strict=True), linewidth=0.8, alpha=0.6, label=key if len(by) <= 10 else None)
    models: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for a in aggregate:
        if a[agg_field] is not None:
            models[a["model"]].append((a["ts"] - t0, a[agg_field]))
    for model, pts in sorted(models.items()):
        ax.plot(*zip(*pts, strict=True), linewidth=2.2, color="black", label=f"{model} ({agg_field})")
    ax.set_xlabel("seconds since first record")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    return _save(plt, fig, path)


def _plot_replicas(plt: Any, path: Path, aggregate: Sequence[dict[str, Any]], t0: float) -> Path:
    fig, ax = plt.subplots(figsize=(11, 4))
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in aggregate:
        by[f"{a['namespace']}/{a['model']}"].append(a)
    for model, seq in sorted(by.items()):
        t = [a["ts"] - t0 for a in seq]
        ax.step(t, [a["current"] for a in seq], where="post", label=f"{model} current")
        ax.step(t, [a["ready"] for a in seq], where="post", label=f"{model} ready", linestyle=":")
        ax.step(t, [a["desired"] for a in seq], where="post", label=f"{model} desired", linestyle="--")
    ax.set_xlabel("seconds since first record")
    ax.set_ylabel("replicas (all variants)")
    ax.set_title("Replicas per model")
    ax.legend(fontsize=7, loc="upper left")
    return _save(plt, fig, path)


def _plot_predictions(plt: Any, path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    by: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by[r["quantity"]].append(r["error"])
    fig, axes = plt.subplots(1, len(by), figsize=(5 * len(by), 3.5), squeeze=False)
    for ax, (quantity, errors) in zip(axes[0], sorted(by.items()), strict=True):
        ax.hist(errors, bins=min(30, max(5, len(errors) // 3)), color="tab:blue", alpha=0.8)
        ax.axvline(0, color="black", linewidth=1)
        ax.set_title(f"{quantity}: predicted(N) − observed(N+1)", fontsize=9)
        ax.set_xlabel("error")
        ax.set_ylabel("cycles")
    return _save(plt, fig, path)


def _plot_latency(plt: Any, path: Path, rows: Sequence[dict[str, Any]], t0: float) -> Path:
    fig, ax = plt.subplots(figsize=(11, 4))
    by: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        by[(r["model"], r["metric"])].append((r["ts"] - t0, r["value"]))
    for (model, metric), pts in sorted(by.items()):
        ax.plot(*zip(*sorted(pts), strict=True), label=f"{model} {metric}")
    ax.set_xlabel("seconds since first record")
    ax.set_ylabel("seconds")
    ax.set_title("vLLM latency (Prometheus)")
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


__all__ = ["plot_all"]
