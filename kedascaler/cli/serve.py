"""`kedascaler serve`: its flags, their checks, and the real edges composed around the reconcile loop.

Bad flags exit 2 at parse time with a message naming the flag; what can only fail once running (a port in
use, a kubeconfig that does not load) is a `StartError`: one line, exit 1, no traceback, and whatever was
started before it is stopped again.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kedascaler.cli.after_cycle import CycleSink, MetricsHealthLog, heap_policy
from kedascaler.engine.capacity_types import CapacitySettings
from kedascaler.engine.sizing import CAPACITY, MODES
from kedascaler.kits.argtypes import count, http_url, non_negative, port, positive
from kedascaler.kits.httpserver import is_loopback
from kedascaler.kits.watchedfile import TokenFile
from kedascaler.observe.wiring import Observability, add_observe_arguments

log = logging.getLogger("kedascaler")

_DEFAULTS = {"max_streams": 2_048, "max_concurrent_rpcs": 4_096}  # = kedascaler.server.app's (imported late)


CYCLE_NICE = 10  # the cycle thread's nice: the answering process wins a contended CPU (kits/priority.py)


class StartError(Exception):
    """`serve` could not start: the message is the whole story (the port, the file, what to do)."""


def capacity_settings(args: argparse.Namespace) -> CapacitySettings:
    """Capacity mode's settings from `serve`'s flags (the engine's defaults where a flag is not given)."""
    if args.startup_seconds is not None:
        return CapacitySettings(headroom=args.headroom, hold_window=args.hold_window,
                                default_startup=args.startup_seconds)
    return CapacitySettings(headroom=args.headroom, hold_window=args.hold_window)


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    serve = sub.add_parser("serve", help="run the external scaler (gRPC) and its reconcile loop")
    source = serve.add_mutually_exclusive_group()
    source.add_argument("--inventory", type=Path, help="folder of VariantAutoscaling and ConfigMap YAML (no cluster)")
    source.add_argument("--kubernetes", action="store_true",
                        help="watch the Kubernetes API (in-cluster or --kubeconfig)")
    serve.add_argument("--kubeconfig", help="kubeconfig file (implies --kubernetes when given alone)")
    serve.add_argument("--namespace", help="only VariantAutoscalings in this namespace (default: all)")
    serve.add_argument("--label-selector", help="only VariantAutoscalings with these labels (sharding)")
    serve.add_argument("--no-pod-deletion-cost", action="store_true",
                       help="do not set controller.kubernetes.io/pod-deletion-cost on the pods of variants scaling "
                       "down (default: the leader marks the emptiest pods to go first; needs patch on pods)")
    serve.add_argument("--scaledobjects", action="store_true",
                       help="also watch KEDA ScaledObjects: a variant described by one (trigger metadata modelID, or "
                       "WVA v0.9's llm-d.ai/managed annotations) needs no VariantAutoscaling")
    serve.add_argument("--controller-namespace", default="kedascaler-system",
                       help="where the ConfigMaps and the Lease live")
    serve.add_argument("--prometheus-url", type=http_url,
                       help="read vLLM metrics from Prometheus (default: scrape pods directly)")
    serve.add_argument("--prometheus-token-file", type=Path,
                       help="bearer token file for Prometheus (re-read when it changes: projected tokens rotate)")
    serve.add_argument("--prometheus-ca-file", type=Path, help="CA bundle for Prometheus over TLS")
    serve.add_argument("--port", type=port, default=9090, help="gRPC port (default 9090)")
    serve.add_argument("--health-port", type=port,
                       help="also serve grpc.health.v1 Check on this port, plaintext even with --tls-cert, for the "
                            "kubelet's probes: service 'liveness' (up) and '' (ready: the inventory synced)")
    serve.add_argument("--shutdown-grace", type=positive, default=5.0,
                       help="on SIGTERM: health NOT_SERVING, no new calls, and calls in flight get this many "
                            "seconds to finish (default 5)")
    serve.add_argument("--interval", type=positive, default=15.0, help="seconds between reconcile cycles (default 15)")
    serve.add_argument("--stale-after", type=positive, default=300.0,
                       help="answer UNAVAILABLE when the metrics behind a decision are older than this (default 300 s)")
    serve.add_argument("--idle-window", type=positive, default=300.0,
                       help="seconds without requests before a model whose variants all have minReplicas 0 "
                            "goes to zero (default 300)")
    serve.add_argument("--no-scale-to-zero", action="store_true", help="keep every model warm (never report inactive)")
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
    serve.add_argument("--tls-cert", type=Path, help="server certificate (PEM) for TLS; reloaded when it changes")
    serve.add_argument("--tls-key", type=Path, help="server private key (PEM) for TLS")
    serve.add_argument("--tls-client-ca", type=Path, help="CA that client certificates must chain to (mTLS)")
    serve.add_argument("--max-streams", type=count, default=_DEFAULTS["max_streams"],
                       help="open StreamIsActive/StreamMetricSpec streams at most, one per ScaledObject with an "
                            f"external-push trigger, ~30 KB each (default {_DEFAULTS['max_streams']})")
    serve.add_argument("--max-concurrent-rpcs", type=count, default=_DEFAULTS["max_concurrent_rpcs"],
                       help="gRPC calls in progress at most, streams included; must exceed --max-streams "
                            f"(default {_DEFAULTS['max_concurrent_rpcs']})")

    push = serve.add_argument_group("scale from zero")
    push.add_argument("--activation-port", type=port,
                      help="serve POST /v1/activate/{namespace}/{model} on this port, "
                           "for gateways to wake a cold model at once")
    push.add_argument("--activation-host",
                      help="address of the activation endpoint (default: 0.0.0.0 with --activation-token-file, "
                           "else 127.0.0.1; another address needs a token or --activation-insecure)")
    push.add_argument("--activation-token-file", type=Path,
                      help="callers of the activation endpoint must send 'Authorization: Bearer <the file's "
                           "token>'; the file is re-read when it changes")
    push.add_argument("--activation-max-connections", type=count, default=16,
                      help="open connections to the activation endpoint at most, one thread each; one more gets "
                           "503 (default 16: a gateway keeps a few alive)")
    push.add_argument("--activation-insecure", action="store_true",
                      help="allow the activation endpoint on a non-loopback address with no token: anyone who "
                           "reaches the port can wake models")
    push.add_argument("--gateway-queue", action="store_true",
                      help="wake cold models on the gateway's queue (llm-d EndpointPicker flow control), read from "
                           "--prometheus-url each cycle; a model the gateway's metrics never mention is not known, "
                           "so it is kept warm")
    push.add_argument("--activation-prometheus-url", type=http_url,
                      help="read the gateway's queue from this Prometheus instead (implies --gateway-queue)")
    push.add_argument("--activation-query", help="PromQL for requests waiting per model at the gateway, one series "
                      "per target_model_name (default: llm-d router v0.10's llm_d_epp_flow_control_queue_size, else "
                      "the older inference_extension_flow_control_queue_size, in one query)")

    trust = serve.add_argument_group("what a VariantAutoscaling may ask for (cluster mode)")
    trust.add_argument("--allow-metrics-endpoints-annotation", action="store_true",
                       help="scrape the URLs a VA lists in kedascaler.llmd.ai/metrics-endpoints in cluster mode too "
                            "(always honoured with --inventory): whoever may create a VA then chooses what the "
                            "scaler fetches")
    trust.add_argument("--allow-activation-queries", action="store_true",
                       help="run a VA's own spec.scaleToZero.activationQuery (arbitrary PromQL, with the scaler's "
                            "Prometheus token); default: the --activation-query for every model")
    add_observe_arguments(serve)
    return serve


def no_wake_up_warning() -> str:
    return ("scale to zero is on but nothing can wake a model at zero (no --gateway-queue, no --activation-port): "
            "every model is kept warm; give one of them, or --no-scale-to-zero to say so")


def check_serve_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """What argparse cannot check alone; each failure exits 2 naming the flag."""
    if args.kubeconfig and args.inventory:
        parser.error("--kubeconfig and --inventory exclude each other: --inventory reads VariantAutoscalings from "
                     "a folder, --kubeconfig from a cluster; give one")
    if args.kubeconfig:
        args.kubernetes = True
    if not args.inventory and not args.kubernetes:
        parser.error("serve needs a source of VariantAutoscalings: --inventory DIR, or --kubernetes / "
                     "--kubeconfig FILE")
    if args.inventory is not None and not args.inventory.is_dir():
        parser.error(f"--inventory: folder {args.inventory} does not exist")
    if args.max_concurrent_rpcs <= args.max_streams:
        parser.error(f"--max-concurrent-rpcs ({args.max_concurrent_rpcs}) must be larger than --max-streams "
                     f"({args.max_streams}): unary calls (GetMetrics, IsActive) need room beside the streams")
    args.prometheus_token = _token(parser, "--prometheus-token-file", args.prometheus_token_file)
    args.activation_token = _token(parser, "--activation-token-file", args.activation_token_file)
    if args.activation_prometheus_url:
        args.gateway_queue = True
    if args.gateway_queue and not args.prometheus_url:
        parser.error("--gateway-queue reads the gateway's queue from Prometheus: give --prometheus-url "
                     "(or --activation-prometheus-url URL)")
    if args.activation_query and not args.gateway_queue:
        parser.error("--activation-query is the gateway-queue query: give --gateway-queue too")
    if args.activation_port is None:
        for flag, given in (("--activation-host", args.activation_host),
                            ("--activation-token-file", args.activation_token_file),
                            ("--activation-insecure", args.activation_insecure)):
            if given:
                parser.error(f"{flag} configures the activation endpoint: give --activation-port too")
        return
    if args.activation_host is None:
        args.activation_host = "0.0.0.0" if args.activation_token is not None else "127.0.0.1"
    if args.activation_token is None and not args.activation_insecure and not is_loopback(args.activation_host):
        parser.error(f"--activation-host {args.activation_host} with no authentication: give "
                     "--activation-token-file FILE (callers send 'Authorization: Bearer <token>'), keep it on "
                     "127.0.0.1, or accept the risk with --activation-insecure")


def _token(parser: argparse.ArgumentParser, flag: str, path: Path | None) -> TokenFile | None:
    if path is None:
        return None
    token = TokenFile(path)
    try:
        token.token()
    except ValueError as exc:
        parser.error(f"{flag}: {exc}")
    return token


def tls_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Any:
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


async def serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Compose and run `serve`; StartError when something cannot start (what started is stopped again)."""
    cleanups: list[Callable[[], None]] = []
    try:
        return await _serve(args, parser, cleanups)
    finally:
        for cleanup in reversed(cleanups):
            cleanup()


async def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser,
                 cleanups: list[Callable[[], None]]) -> int:
    from kedascaler.cli.answerer import AnswerConfig, Answerer
    from kedascaler.kits.clock import SteadyClock
    from kedascaler.loop.board import DecisionBoard
    from kedascaler.loop.inbox import ActivationInbox
    from kedascaler.loop.planner import PlannerSettings
    from kedascaler.loop.reconcile import Reconciler
    from kedascaler.server.activate import ActivationServer
    from kedascaler.server.app import run_until_signal
    from kedascaler.sources.base import Inventory, MetricsSource
    from kedascaler.sources.files import FileInventory
    from kedascaler.sources.gateway import DEFAULT_ACTIVATION_QUERY, PrometheusActivationSource

    tls = tls_config(args, parser)
    clock = SteadyClock()  # every age and timer on one clock that wall-clock jumps never move (kits/clock.py)
    after_cycle = None
    kube = None
    deletion = None
    follow = None
    inventory: Inventory
    if args.inventory is not None:
        inventory = FileInventory(args.inventory)
    else:
        kube, status_writer, elector = _kubernetes(args)
        cleanups.append(kube.stop)
        kube.start()  # synced or not, gRPC binds at once: readiness waits for the sync (below), liveness does not
        cleanups.append(elector.stop)
        elector.start()
        cleanups.append(status_writer.close)  # what waits is written before the lease is given up
        inventory = kube
        after_cycle = (status_writer, elector)
        from kedascaler.loop.follow import Follower

        follow = Follower(kube.va_status, lambda: elector.other_leads)  # replicas answer the leader's numbers
        if not args.no_pod_deletion_cost:
            from kedascaler.actuate.deletion_cost import DeletionCostWriter

            deletion = DeletionCostWriter(kube.api_client, leading=lambda: elector.is_leader)
            cleanups.append(deletion.close)
    token = args.prometheus_token
    ca_file = str(args.prometheus_ca_file) if args.prometheus_ca_file else None
    metrics: MetricsSource
    if args.prometheus_url:
        from kedascaler.sources.prometheus import PrometheusSource

        metrics = PrometheusSource(args.prometheus_url, bearer_token=token, ca_file=ca_file, clock=clock)
    else:
        from kedascaler.sources.scrape import DirectScrapeSource

        metrics = DirectScrapeSource(clock=clock)
    cleanups.append(metrics.close)
    obs = Observability.from_args(args, configure_logs=False)
    if deletion is not None:  # pods annotated, requests protected (docs/scaling-down.md)
        obs.observer.register(deletion.collector())
    cleanups.append(obs.stop)
    metrics_port = _started("/metrics", obs.start)
    if metrics_port:
        log.info("/metrics on port %d", metrics_port)
    metrics = obs.instrument(metrics)

    inbox = ActivationInbox(clock=clock) if args.activation_port is not None else None
    activation_url = (args.activation_prometheus_url or args.prometheus_url) if args.gateway_queue else None
    if not args.no_scale_to_zero and activation_url is None and inbox is None:
        log.warning(no_wake_up_warning())
        if after_cycle is not None:
            after_cycle[0].wake_up = False  # and each VA with minReplicas 0 says so in its ScaleToZero condition
    activation = None
    if activation_url:
        activation = PrometheusActivationSource(
            activation_url, query=args.activation_query or DEFAULT_ACTIVATION_QUERY, bearer_token=token,
            ca_file=ca_file)
        cleanups.append(activation.close)
    board = DecisionBoard()
    planner = PlannerSettings(args.scaling_mode, refit_interval=args.refit_interval,
                              capacity=capacity_settings(args))
    reconciler = Reconciler(inventory, metrics, board, kube, clock,
                            idle_window=None if args.no_scale_to_zero else args.idle_window,
                            activation=activation, inbox=inbox, planner=planner,
                            activation_queries=args.allow_activation_queries, follow=follow)
    if inbox is not None:
        if args.activation_token is None and not is_loopback(args.activation_host):
            log.warning("activation endpoint on %s without authentication (--activation-insecure): anyone who "
                        "reaches it can wake models", args.activation_host)
        activation_server = ActivationServer(board, inbox, host=args.activation_host, port=args.activation_port,
                                             token=args.activation_token, insecure=args.activation_insecure,
                                             max_connections=args.activation_max_connections)
        cleanups.append(activation_server.close)
        _started("the activation endpoint", activation_server.start)
    # KEDA is answered from a process of its own, on a mirror of the board: no cycle shares its GIL
    server = Answerer(board, AnswerConfig(
        port=args.port, tls=tls, stale_after=args.stale_after, max_streams=args.max_streams,
        max_concurrent_rpcs=args.max_concurrent_rpcs, health_port=args.health_port, grace=args.shutdown_grace,
        ready=kube is None, clock_offset=clock.offset, log_level=getattr(args, "log_level", "INFO"),
        log_format=getattr(args, "log_format", "plain")))
    cleanups.append(server.kill)
    try:
        port_bound = await server.start()
    except (OSError, ValueError) as exc:
        raise StartError(str(exc)) from None
    obs.observer.serve_rpc_metrics(server.collector())
    log.info("kedascaler serving ExternalScaler on port %d (%s; answered by process %s)", port_bound,
             "TLS" if tls else "plaintext", server.pid)
    if server.health_port is not None:
        log.info("kedascaler health on port %d (plaintext)", server.health_port)
    health = MetricsHealthLog(args.stale_after)

    heap = heap_policy()  # no full collection holding the GIL for a second while serve's loop waits (kits/heap.py)
    on_cycle = CycleSink(obs, health, reconciler, kube, after_cycle, deletion, heap)

    async def cycles() -> None:
        if kube is not None and not await server.ready_when(lambda: kube.wait_synced(0), wait=30.0):
            log.warning("the Kubernetes inventory is not synced after 30 s (is the VariantAutoscaling CRD installed, "
                        "and may this ServiceAccount list it?); readiness stays NOT_SERVING until it syncs, cycles "
                        "run with what is known")
        heap.start()
        await reconciler.run_forever(args.interval, on_cycle=on_cycle, nice=CYCLE_NICE)

    loop_task = asyncio.create_task(cycles())
    try:
        await run_until_signal(server)
    finally:
        lost = server.ended_on_its_own
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
    if lost:  # exit 1, so the kubelet restarts the container: nothing answers KEDA any more
        log.error("the gRPC server's process ended on its own (exit code %s): serve stops", server.exitcode)
        return 1
    return 0


def _started(what: str, start: Callable[[], Any]) -> Any:
    """Run a server's start(); a port in use (OSError) or a bad file (ValueError) becomes a StartError."""
    try:
        return start()
    except (OSError, ValueError) as exc:
        raise StartError(f"{what}: {exc}") from None


def _kubernetes(args: argparse.Namespace) -> Any:
    from kedascaler.cli.kube import kubernetes_sources

    try:
        return kubernetes_sources(args.kubeconfig, args.namespace, args.label_selector, args.controller_namespace,
                                  scaled_objects=args.scaledobjects,
                                  metrics_endpoints_annotation=args.allow_metrics_endpoints_annotation)
    except Exception as exc:  # noqa: BLE001 - ConfigException, OSError, YAML errors: the kubeconfig did not load
        where = f"kubeconfig {args.kubeconfig}" if args.kubeconfig else "the in-cluster config or ~/.kube/config"
        raise StartError(f"cannot load {where}: {exc}") from None
