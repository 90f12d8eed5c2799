"""`kedascaler analyze RECORDS.jsonl [--prometheus-url URL] [--out DIR]`: the decision records as CSVs, plots
and ANALYSIS_SUMMARY.md (see kedascaler.observe.analyze)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_analyze_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `analyze` subcommand to a `kedascaler` argument parser's subparsers."""
    parser = subparsers.add_parser(
        "analyze", help="analyse a decision-record file (--records of serve/demo): CSVs, plots, summary",
        description="Turn decision records (JSONL, written by `serve --records FILE` or `demo --records FILE`) into "
                    "CSVs, PNG plots and ANALYSIS_SUMMARY.md: scaling timeline with reasons, KV cache and queue per "
                    "pod and model, saturation events, prediction at cycle N against observation at N+1, SLO "
                    "violations.")
    parser.add_argument("records", type=Path, help="decision records, one JSON object per line")
    parser.add_argument("--out", type=Path, help="output folder (default: <records>-analysis next to the file)")
    parser.add_argument("--prometheus-url", help="also pull vLLM TTFT/ITL quantiles over the records' time range "
                                                 "(best effort; skipped on error)")
    parser.add_argument("--prometheus-token-file", type=Path, help="bearer token file for --prometheus-url")
    return parser


def cmd_analyze(args: argparse.Namespace, out=print) -> int:
    """Run the analysis; 0 on success, 2 when the records cannot be read or hold no record."""
    from kedascaler.observe.analyze import RecordsError, analyze_file

    out_dir = args.out or args.records.with_name(args.records.stem + "-analysis")
    token = None
    if getattr(args, "prometheus_token_file", None) is not None:
        try:
            token = args.prometheus_token_file.read_text().strip()
        except OSError as exc:
            print(f"kedascaler analyze: cannot read --prometheus-token-file {args.prometheus_token_file}: "
                  f"{exc.strerror or exc}", file=sys.stderr)
            return 2
    try:
        analysis = analyze_file(args.records, out_dir, prometheus_url=args.prometheus_url, prometheus_token=token)
    except RecordsError as exc:
        print(f"kedascaler analyze: {exc}", file=sys.stderr)
        return 2
    s = analysis.summary
    out(f"analysed {s['records']} decisions in {s['cycles']} cycles ({s['start']} .. {s['end']}); "
        f"scale events {s['scale_events']}, saturation events {s['saturation_events']}, "
        f"stale {s['stale_decisions']}")
    if "prometheus" in s:
        out(s["prometheus"]["status"])
    for note in analysis.notes:
        out(f"note: {note}")
    out(f"wrote {len(analysis.files)} files to {out_dir} (summary: {out_dir / 'ANALYSIS_SUMMARY.md'})")
    return 0


def main(argv: list[str] | None = None) -> int:  # `python -m kedascaler.cli.analyze` until cli.py wires it
    parser = argparse.ArgumentParser(prog="kedascaler")
    add_analyze_parser(parser.add_subparsers(dest="command", required=True))
    return cmd_analyze(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
