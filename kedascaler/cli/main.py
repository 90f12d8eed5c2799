"""The `kedascaler` command: serve, demo, simulate, analyze, validate.

Thin: it parses flags, builds the edges (inventory, metrics, server) and hands them to the reconcile loop.
Bad command-line input exits with code 2 and a message naming the flag.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from kedascaler.cli.analyze import add_analyze_parser, cmd_analyze
from kedascaler.cli.simulate import add_simulate_parser, cmd_simulate
from kedascaler.engine.sizing import CAPACITY, MODES
from kedascaler.kits.argtypes import non_negative, port, positive
from kedascaler.observe.records import configure_logging
from kedascaler.observe.wiring import Observability, add_observe_arguments

log = logging.getLogger("kedascaler")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kedascaler", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the external scaler (gRPC) and its reconcile loop")
    source = serve.add_mutually_exclusive_group()
    source.add_argument("--inventory", type=Path, help="folder of VariantAutoscaling and ConfigMap YAML (no cluster)")
    source.add_argument("--kubernetes", action="store_true",
                        help="watch the Kubernetes API (in-cluster or --kubeconfig)")
    serve.add_argument("--kubeconfig", help="kubeconfig file (implies --kubernetes when given alone)")
    serve.add_argument("--namespace", help="only VariantAutoscalings in this namespace (default: all)")
    serve.add_argument("--label-selector", help="only VariantAutoscalings with these labels (sharding)")
    serve.add_argument("--controller-namespace", default="kedascaler-system",
                       help="where the ConfigMaps and the Lease live")
    serve.add_argument("--prometheus-url", help="read vLLM metrics from Prometheus (default: scrape pods directly)")
    serve.add_argument("--prometheus-token-file", type=Path, help="bearer token file for Prometheus")
    serve.add_argument("--prometheus-ca-file", type=Path, help="CA bundle for Prometheus over TLS")
    serve.add_argument("--port", type=port, default=9090, help="gRPC port (default 9090)")
    serve.add_argument("--interval", type=positive, default=15.0, help="seconds between reconcile cycles (default 15)")
    serve.add_argument("--stale-after", type=positive, default=300.0,
                       help="answer UNAVAILABLE when the metrics behind a decision are older than this (default 300 s)")
    serve.add_argument("--idle-window", type=positive, default=300.0,
                       help="seconds without requests before a model whose variants all have minReplicas 0 "
                            "goes to zero (default 300)")
    serve.add_argument("--no-scale-to-zero", action="store_true", help="keep every model warm (never report inactive)")
    serve.add_argument("--activation-port", type=port,
                       help="serve POST /v1/activate/{namespace}/{model} on this port, "
                            "for gateways to wake a cold model at once")
    serve.add_argument("--activation-prometheus-url",
                       help="where to read the gateway's queue for cold models (default: --prometheus-url)")
    serve.add_argument("--activation-query", help="PromQL for requests waiting per model at the gateway "
                       "(default: sum by (target_model_name) (inference_extension_flow_control_queue_size))")
    serve.add_argument("--scaling-mode", choices=MODES, default=CAPACITY,
                       help="for VAs without spec.scalingMode: capacity (the default: size for the arrival rate in "
                       "capacity units, the cheapest mix per unit of capacity, hysteresis held by the engine), "
                       "saturation (KV cache and queue only), model (size for the service class's ITL/TTFT with the "
                       "queueing model) or hybrid (the model plan, never below what saturation asks). Capacity, "
                       "model and hybrid fall back to saturation, per model, until they can size it")
    serve.add_argument("--headroom", type=non_negative, default=0.05,
                       help="capacity mode: capacity kept above the forecast demand, as a fraction (default 0.05)")
    serve.add_argument("--startup-seconds", type=positive,
                       help="capacity mode: pod start-up (created → ready) for variants without spec.startupSeconds "
                       "before one is measured (default 120)")
    serve.add_argument("--hold-window", type=positive,
                       help="capacity mode: scale down only to the largest need of this many seconds (default: each "
                       "model's start-up time, measured)")
    serve.add_argument("--refit-interval", type=positive, default=60.0,
                       help="seconds between two fits of a variant's performance parameters (default 60)")
    serve.add_argument("--tls-cert", type=Path, help="server certificate (PEM) for TLS")
    serve.add_argument("--tls-key", type=Path, help="server private key (PEM) for TLS")
    serve.add_argument("--tls-client-ca", type=Path, help="CA that client certificates must chain to (mTLS)")

    demo = sub.add_parser("demo", help="emulated vLLM fleet + the real gRPC server + a KEDA/HPA stand-in")
    demo.add_argument("--port", type=port, default=9090, help="gRPC port (default 9090; 0 picks a free one)")
    demo.add_argument("--duration", type=positive, help="run this many seconds, then exit 0 (default: until Ctrl-C)")
    demo.add_argument("--interval", type=positive, default=2.0, help="seconds between reconcile cycles (default 2)")
    demo.add_argument("--speed", type=positive, default=1.0, help="emulated seconds per real second (default 1)")
    demo.add_argument("--idle-window", type=positive, default=20.0,
                      help="emulated seconds without requests before the model goes to zero (default 20)")
    demo.add_argument("--activation-port", type=port, default=0,
                      help="port of POST /v1/activate/{namespace}/{model} (default 0: a free one)")

    add_observe_arguments(serve)
    add_observe_arguments(demo, metrics_port=0)
    add_analyze_parser(sub)
    add_simulate_parser(sub)

    validate = sub.add_parser("validate", help="check an inventory folder; exit 2 when anything is invalid")
    validate.add_argument("folder", type=Path)
    return parser


def capacity_settings(args: argparse.Namespace):
    """Capacity mode's settings from `serve`'s flags (the engine's defaults where a flag is not given)."""
    from kedascaler.engine.capacity_types import CapacitySettings

    settings = CapacitySettings(headroom=args.headroom, hold_window=args.hold_window)
    if args.startup_seconds is not None:
        settings = CapacitySettings(headroom=args.headroom, hold_window=args.hold_window,
                                    default_startup=args.startup_seconds)
    return settings


def _tls_config(args: argparse.Namespace, parser: argparse.ArgumentParser):
    from kedascaler.server.app import TLSConfig

    if not args.tls_cert and not args.tls_key:
        if args.tls_client_ca:
            parser.error("--tls-client-ca needs --tls-cert and --tls-key (mTLS is TLS plus client certificates)")
        return None
    if not (args.tls_cert and args.tls_key):
        parser.error("--tls-cert and --tls-key go together: give both")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key),
                       ("--tls-client-ca", args.tls_client_ca)):
        if path is not None and not path.is_file():
            parser.error(f"{flag}: file {path} does not exist")
    return TLSConfig(str(args.tls_cert), str(args.tls_key), str(args.tls_client_ca) if args.tls_client_ca else None)


def cmd_validate(args: argparse.Namespace) -> int:
    from kedascaler.sources.files import FileInventory

    if not args.folder.is_dir():
        print(f"error: folder {args.folder} does not exist", file=sys.stderr)
        return 2
    state = FileInventory(args.folder).current()
    for problem in state.problems:
        print(f"invalid: {problem}", file=sys.stderr)
    for spec in state.specs:
        bound = "∞" if spec.max_replicas is None else spec.max_replicas
        print(f"ok: VariantAutoscaling {spec.key} model={spec.model_id} accelerator={spec.accelerator} "
              f"cost={spec.cost:g} replicas={spec.min_replicas}..{bound}")
    return 2 if state.problems else 0


async def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from kedascaler.loop.board import DecisionBoard
    from kedascaler.loop.reconcile import Reconciler
    from kedascaler.server.app import ScalerServer, run_until_signal
    from kedascaler.sources.base import Inventory, MetricsSource
    from kedascaler.sources.files import FileInventory

    tls = _tls_config(args, parser)
    after_cycle = None
    kube = None
    cleanups: list[Callable[[], None]] = []
    inventory: Inventory
    if args.inventory is not None:
        if not args.inventory.is_dir():
            parser.error(f"--inventory: folder {args.inventory} does not exist")
        inventory = FileInventory(args.inventory)
    else:
        from kedascaler.cli.kube import kubernetes_sources

        kube, status_writer, elector = kubernetes_sources(
            args.kubeconfig, args.namespace, args.label_selector, args.controller_namespace)
        kube.start()
        if not kube.wait_synced(30):
            log.warning("the Kubernetes inventory is not synced after 30 s (is the VariantAutoscaling CRD installed, "
                        "and may this ServiceAccount list it?); serving what is known and retrying")
        elector.start()
        inventory = kube
        after_cycle = (status_writer, elector)
        cleanups.append(elector.stop)
        cleanups.append(kube.stop)
    token = args.prometheus_token_file.read_text().strip() if args.prometheus_token_file else None
    metrics: MetricsSource
    if args.prometheus_url:
        from kedascaler.sources.prometheus import PrometheusSource

        metrics = PrometheusSource(args.prometheus_url, bearer_token=token,
                                   ca_file=str(args.prometheus_ca_file) if args.prometheus_ca_file else None)
    else:
        from kedascaler.sources.scrape import DirectScrapeSource

        metrics = DirectScrapeSource()
    obs = Observability.from_args(args, configure_logs=False)
    metrics_port = obs.start()
    if metrics_port:
        log.info("/metrics on port %d", metrics_port)
    cleanups.append(obs.stop)
    metrics = obs.instrument(metrics)
    from kedascaler.loop.inbox import ActivationInbox
    from kedascaler.server.activate import ActivationServer
    from kedascaler.sources.gateway import DEFAULT_ACTIVATION_QUERY, PrometheusActivationSource

    inbox = ActivationInbox() if args.activation_port is not None else None
    activation_url = args.activation_prometheus_url or args.prometheus_url
    activation = None
    if activation_url:
        activation = PrometheusActivationSource(
            activation_url, query=args.activation_query or DEFAULT_ACTIVATION_QUERY, bearer_token=token,
            ca_file=str(args.prometheus_ca_file) if args.prometheus_ca_file else None)
        cleanups.append(activation.close)
    board = DecisionBoard()
    from kedascaler.loop.planner import PlannerSettings

    planner = PlannerSettings(args.scaling_mode, refit_interval=args.refit_interval,
                              capacity=capacity_settings(args))
    reconciler = Reconciler(inventory, metrics, board, kube,
                            idle_window=None if args.no_scale_to_zero else args.idle_window,
                            activation=activation, inbox=inbox, planner=planner)
    if inbox is not None:
        activation_server = ActivationServer(board, inbox, port=args.activation_port)
        activation_server.start()
        log.info("activation endpoint on port %d: POST /v1/activate/{namespace}/{model}", activation_server.port)
        cleanups.append(activation_server.close)
    server = ScalerServer(board, port=args.port, tls=tls, stale_after=args.stale_after, interceptors=obs.interceptors)
    port = await server.start()
    log.info("kedascaler serving ExternalScaler on port %d (%s)", port, "TLS" if tls else "plaintext")

    def on_cycle(report) -> None:
        obs.on_cycle(report)
        if after_cycle is not None and kube is not None:
            writer, elector = after_cycle
            if elector.is_leader:  # every replica answers KEDA; only the leader writes status and events
                # on wake-up cycles, plans and parameters are the last full cycle's
                writer.write(report.decisions, kube.current(), kube.missing_targets(),
                             plans=reconciler.plans, parameters=reconciler.parameters)

    loop_task = asyncio.create_task(reconciler.run_forever(args.interval, on_cycle=on_cycle))
    try:
        await run_until_signal(server)
    finally:
        loop_task.cancel()
        metrics.close()
        for cleanup in cleanups:
            cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, getattr(args, "log_format", "plain"))
    if args.command == "analyze":
        return cmd_analyze(args)
    if args.command == "simulate":
        return cmd_simulate(args)
    if args.command == "validate":
        return cmd_validate(args)
    if args.command == "serve":
        if args.kubeconfig and not args.inventory:
            args.kubernetes = True
        if not args.inventory and not args.kubernetes:
            parser.error("serve needs a source of VariantAutoscalings: "
                         "--inventory DIR, or --kubernetes / --kubeconfig FILE")
        return asyncio.run(_serve(args, parser))
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
