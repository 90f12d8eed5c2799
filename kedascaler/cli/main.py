"""The `kedascaler` command: serve, demo, simulate, analyze, explain, validate.

Thin: it parses flags, builds the edges (inventory, metrics, server) and hands them to the reconcile loop.
Bad command-line input exits with code 2 and a message naming the flag; `serve` failing to start (a port in
use) exits 1 with one line saying why. `serve` itself lives in `kedascaler.cli.serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from kedascaler.cli.analyze import add_analyze_parser, cmd_analyze
from kedascaler.cli.explain import add_explain_parser, cmd_explain
from kedascaler.cli.serve import StartError, add_serve_parser, check_serve_args, serve
from kedascaler.cli.simulate import add_simulate_parser, cmd_simulate
from kedascaler.kits.argtypes import port, positive
from kedascaler.observe.records import configure_logging
from kedascaler.observe.wiring import Observability, add_observe_arguments

log = logging.getLogger("kedascaler")
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kedascaler", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS)
    sub = parser.add_subparsers(dest="command", required=True)

    add_serve_parser(sub)
    demo = sub.add_parser("demo", help="emulated vLLM fleet + the real gRPC server + a KEDA/HPA stand-in")
    demo.add_argument("--port", type=port, default=9090, help="gRPC port (default 9090; 0 picks a free one)")
    demo.add_argument("--duration", type=positive, help="run this many seconds, then exit 0 (default: until Ctrl-C)")
    demo.add_argument("--interval", type=positive, default=2.0, help="seconds between reconcile cycles (default 2)")
    demo.add_argument("--speed", type=positive, default=1.0, help="emulated seconds per real second (default 1)")
    demo.add_argument("--idle-window", type=positive, default=20.0,
                      help="emulated seconds without requests before the model goes to zero (default 20)")
    demo.add_argument("--activation-port", type=port, default=0,
                      help="port of POST /v1/activate/{namespace}/{model} on 127.0.0.1 (default 0: a free one)")

    add_observe_arguments(demo, metrics_port=0)
    add_analyze_parser(sub)
    add_explain_parser(sub)
    add_simulate_parser(sub)

    validate = sub.add_parser("validate", help="check an inventory folder; exit 2 when anything is invalid")
    validate.add_argument("folder", type=Path)
    for command in sub.choices.values():  # `kedascaler serve ... --log-level DEBUG` works too
        command.add_argument("--log-level", default=argparse.SUPPRESS, choices=LOG_LEVELS,
                             help="DEBUG, INFO (default), WARNING or ERROR")
    return parser


def cmd_validate(args: argparse.Namespace) -> int:
    from kedascaler.sources.files import FileInventory, yaml_files

    if not args.folder.is_dir():
        print(f"error: folder {args.folder} does not exist", file=sys.stderr)
        return 2
    if not yaml_files(args.folder):
        print(f"error: no YAML files (*.yaml, *.yml) in folder {args.folder}: nothing to validate", file=sys.stderr)
        return 2
    state = FileInventory(args.folder).current()
    if not state.variants and not state.problems:
        print(f"note: no VariantAutoscaling in {args.folder} (only ConfigMaps or other objects)", file=sys.stderr)
    for problem in state.problems:
        print(f"invalid: {problem}", file=sys.stderr)
    for spec in state.specs:
        bound = "∞" if spec.max_replicas is None else spec.max_replicas
        print(f"ok: VariantAutoscaling {spec.key} model={spec.model_id} accelerator={spec.accelerator} "
              f"cost={spec.cost:g} replicas={spec.min_replicas}..{bound}")
    return 2 if state.problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, getattr(args, "log_format", "plain"))
    if args.command == "analyze":
        return cmd_analyze(args)
    if args.command == "explain":
        return cmd_explain(args)
    if args.command == "simulate":
        return cmd_simulate(args)
    if args.command == "validate":
        return cmd_validate(args)
    if args.command == "serve":
        check_serve_args(args, parser)
        try:
            return asyncio.run(serve(args, parser))
        except StartError as exc:
            print(f"kedascaler serve: error: {exc}", file=sys.stderr)
            return 1
    if args.command == "demo":
        from kedascaler.cli.demo import run_demo

        observability = Observability(metrics_port=args.metrics_port, metrics_host=args.metrics_host,
                                      records=args.records, log_decisions=False)  # the demo prints its own lines
        return asyncio.run(run_demo(port=args.port, duration=args.duration, interval=args.interval, speed=args.speed,
                                    observability=observability, idle_window=args.idle_window,
                                    activation_port=args.activation_port))
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
