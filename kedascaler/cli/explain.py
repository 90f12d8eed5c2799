"""`kedascaler explain NAMESPACE/NAME --records FILE`: the latest decision of one variant, in words.

Rendered from the decision record (`serve --records FILE`, schema `kedascaler.decision-record/v1`): the
signals the pods reported, the thresholds, the capacity the model needs and runs, the mix over its variants,
what held the decision back, and the engine's own reason. Every number is the engine's (the record carries its
steps); nothing is worked out again here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

EXAMPLE = "example:\n  kedascaler explain llm/llama-8b-a100 --records /var/run/kedascaler/decisions.jsonl"


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every default shown, and the example kept on its own line."""


def add_explain_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `explain` subcommand to a `kedascaler` argument parser's subparsers."""
    parser = subparsers.add_parser(
        "explain", help="the latest decision of one variant in words, from a decision-record file",
        description="Say why kedascaler wants the replicas it wants for one variant: the signals, thresholds, "
                    "capacity, the mix over the model's variants and what held the decision, from the latest "
                    "decision record of that variant (JSONL written by `serve --records FILE` or "
                    "`demo --records FILE`).",
        epilog=EXAMPLE, formatter_class=_Formatter)
    parser.add_argument("variant", metavar="NAMESPACE/NAME",
                        help="the variant: its VariantAutoscaling (or CRD-free ScaledObject), e.g. llm/llama-8b-a100")
    parser.add_argument("--records", type=Path, required=True, default=argparse.SUPPRESS,
                        help="decision records, one JSON object per line (serve --records FILE), e.g. decisions.jsonl")
    parser.add_argument("--json", action="store_true", default=False,
                        help="print the decision record itself instead of the words, e.g. for jq")
    return parser


def latest(lines: Iterable[str], namespace: str, name: str) -> tuple[dict[str, Any] | None, set[str]]:
    """The newest record of the variant (by `ts`, the file's order breaking ties) and every variant seen."""
    found: dict[str, Any] | None = None
    seen: set[str] = set()
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or "variant" not in record:
            continue
        seen.add(f"{record.get('namespace')}/{record.get('variant')}")
        if (record.get("namespace"), record.get("variant")) == (namespace, name) and (
                found is None or (record.get("ts") or 0) >= (found.get("ts") or 0)):
            found = record
    return found, seen


def _n(value: Any, digits: int = 3) -> str:
    """A number as the reasons write it; '-' when the engine had none."""
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _signals(record: Mapping[str, Any]) -> list[str]:
    steps = record.get("steps") or {}
    pods = {p["pod"]: p for p in (steps.get("pods") or [])}
    lines = []
    for pod in (record.get("inputs") or {}).get("pods") or []:
        analysed = pods.get(pod["pod"])
        verdict = ""
        if analysed is not None:
            verdict = (f"; saturated ({analysed['over']})" if analysed.get("saturated") else
                       f"; spare kv {_n(analysed.get('spare_kv'))}, spare queue {_n(analysed.get('spare_queue'))}")
        lines.append(f"  {pod['pod']}: kv cache {_n(pod.get('kv_cache_usage'))}, queue {_n(pod.get('queue_length'))}, "
                     f"running {_n(pod.get('running'))}{verdict}")
    if not lines:
        lines.append("  no pod reported metrics (at zero replicas, the gateway and pushed requests decide)")
    for key, label in (("observed_itl_ms", "observed ITL"), ("observed_ttft_ms", "observed TTFT")):
        if record.get(key) is not None:
            lines.append(f"  {label} {_n(record[key])} ms")
    return lines


def _thresholds(record: Mapping[str, Any]) -> list[str]:
    t = record.get("thresholds")
    lines = []
    if t:
        lines.append(f"  a replica is saturated at kv cache {_n(t['kv_cache_threshold'])} or queue "
                     f"{_n(t['queue_length_threshold'])}; the model scales up when average spare kv < "
                     f"{_n(t['kv_spare_trigger'])} or spare queue < {_n(t['queue_spare_trigger'])}")
    slo = record.get("slo")
    if slo:
        lines.append(f"  service class targets: ITL {_n(slo.get('itl_ms'))} ms, TTFT {_n(slo.get('ttft_ms'))} ms")
    return lines or ["  not recorded"]


def _capacity(steps: Mapping[str, Any]) -> list[str]:
    replicas = steps.get("model_replicas") or {}
    lines = [f"  the model needs {_n(steps.get('needed_replicas'))} replicas for kv "
             f"{_n(steps.get('estimated_kv_total'))} and queue {_n(steps.get('estimated_queue_total'))} in all "
             f"(binding signal: "
             f"{steps.get('binding_signal') or '-'}); floor {_n(steps.get('floor'))}, goal {_n(steps.get('goal'))}",
             f"  it runs {_n(replicas.get('current'))} ({_n(replicas.get('ready'))} ready, "
             f"{_n(replicas.get('pending'))} starting); {_n(replicas.get('analysed'))} pods analysed; average spare "
             f"kv {_n(steps.get('avg_spare_kv'))}, spare queue {_n(steps.get('avg_spare_queue'))}"]
    if steps.get("arrival_rate") is not None or steps.get("capacity") is not None:
        lines.append(f"  model-based plan: sized for {_n(steps.get('arrival_rate'))} req/s, carries "
                     f"{_n(steps.get('capacity'))} req/s")
    return lines


def _mix(record: Mapping[str, Any], steps: Mapping[str, Any]) -> list[str]:
    plan = steps.get("plan") or []
    if not plan:
        return ["  no plan recorded"]
    rows = [("variant", "current", "target", "saturation asks", "model asks")]
    rows += [(("* " if v["variant"] == record.get("variant") else "  ") + v["variant"], _n(v.get("current")),
              _n(v.get("target")), _n(v.get("saturation")), _n(v.get("model"))) for v in plan]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    taken = f"  plan taken: {steps.get('taken') or 'saturation'} (route {steps.get('route')}, model action " \
            f"{steps.get('model_action') or '-'})"
    return [taken] + ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _holds(record: Mapping[str, Any], steps: Mapping[str, Any]) -> list[str]:
    replicas = steps.get("model_replicas") or {}
    inputs = record.get("inputs") or {}
    lines = []
    if record.get("stale"):
        lines.append("  no fresh metrics: the previous decision is held, and nothing scales down on missing data")
    if steps.get("stale_variants"):
        lines.append("  metrics not fresh for " + ", ".join(steps["stale_variants"]))
    if replicas.get("missing"):
        lines.append(f"  {replicas['missing']} ready pod(s) without metrics: counted at the average, no scale-down")
    if replicas.get("pending"):
        lines.append(f"  {replicas['pending']} replica(s) starting: counted as capacity on its way")
    reason = record.get("reason") or {}
    if reason.get("action") == "bounds":
        lines.append(f"  bounded by {reason.get('signal')}: min {_n(inputs.get('min_replicas'))}, max "
                     f"{_n(inputs.get('max_replicas'))}")
    total, goal = sum(v.get("target") or 0 for v in steps.get("plan") or []), steps.get("goal")
    if goal is not None and steps.get("model_action") == "scale-up" and total < goal:
        lines.append(f"  capped at {total} by the variants' maxReplicas (the model's goal is {goal})")
    if goal is not None and steps.get("model_action") == "scale-down" and total > goal:
        lines.append(f"  held at {total} by the variants' minReplicas (the model's goal is {goal})")
    return lines or ["  none"]


def explain(record: Mapping[str, Any]) -> str:
    """The decision record in words: one heading per part, each the engine's numbers."""
    steps = record.get("steps") or {}
    result, reason, inputs = record.get("result") or {}, record.get("reason") or {}, record.get("inputs") or {}
    replicas = inputs.get("replicas") or {}
    brief = " ".join(str(x) for x in (reason.get("action"), reason.get("signal")) if x)
    if reason.get("value") is not None:
        brief += f" value={_n(reason['value'])}"
    if reason.get("threshold") is not None:
        brief += f" threshold={_n(reason['threshold'])}"
    bound = "unbounded" if inputs.get("max_replicas") is None else inputs["max_replicas"]
    parts = [
        f"{record.get('namespace')}/{record.get('variant')}: model {record.get('model')}, accelerator "
        f"{record.get('accelerator') or '-'}, cost {_n(record.get('variant_cost'))}, replicas "
        f"{_n(inputs.get('min_replicas'))}..{bound}; mode {record.get('scaling_mode') or '-'}",
        f"decided at {record.get('time')} (cycle {record.get('cycle')}): {result.get('desired_replicas')} replicas "
        f"wanted, {replicas.get('current')} asked now ({replicas.get('ready')} ready); "
        f"{'active' if result.get('active') else 'inactive (scaled to zero)'}; metrics "
        f"{_n(record.get('data_age_s'))} s old",
        f"reason: {brief}",
        "", "signals:", *_signals(record),
        "", "thresholds:", *_thresholds(record),
        "", "capacity:", *(_capacity(steps) if steps else ["  no steps recorded"]),
        "", "the mix:", *_mix(record, steps),
        "", "holds:", *_holds(record, steps),
    ]
    if record.get("predicted_itl_ms") is not None or record.get("predicted_ttft_ms") is not None:
        parts += ["", f"predicted for the plan: ITL {_n(record.get('predicted_itl_ms'))} ms, TTFT "
                      f"{_n(record.get('predicted_ttft_ms'))} ms"]
    if reason.get("message"):
        parts += ["", "in the engine's words:", f"  {reason['message']}"]
    return "\n".join(parts)


def cmd_explain(args: argparse.Namespace, out: Callable[[str], Any] = print) -> int:
    """0 with the explanation; 2 when the variant, the file or a record of the variant is missing."""
    namespace, sep, name = args.variant.partition("/")
    if not sep or not namespace or not name or "/" in name:
        print(f"kedascaler explain: expected NAMESPACE/NAME, got {args.variant!r}", file=sys.stderr)
        return 2
    try:
        with args.records.open(encoding="utf-8") as lines:
            record, seen = latest(lines, namespace, name)
    except OSError as exc:
        print(f"kedascaler explain: cannot read --records {args.records}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if record is None:
        known = ", ".join(sorted(seen)[:20]) or "none"
        print(f"kedascaler explain: no decision record of {args.variant} in {args.records} (variants there: {known})",
              file=sys.stderr)
        return 2
    out(json.dumps(record, indent=2) if args.json else explain(record))
    return 0
