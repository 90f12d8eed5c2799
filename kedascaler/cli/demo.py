"""`kedascaler demo`: an emulated vLLM fleet, the real reconcile loop and gRPC server, and a KEDA+HPA stand-in.

Everything a cluster would do runs in this process on loopback: emulated pods serve vLLM's /metrics over
HTTP, the scaler scrapes them directly, answers over real gRPC, and the stand-in calls GetMetricSpec,
GetMetrics and IsActive like KEDA and applies HPA's arithmetic so the replicas really change.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from dataclasses import dataclass

import grpc

from kedascaler.engine.capacity_types import CapacitySettings
from kedascaler.engine.sizing import CAPACITY
from kedascaler.engine.types import VariantKey, VariantSpec
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.cycle import CycleReport
from kedascaler.loop.inbox import ActivationInbox
from kedascaler.loop.planner import PlannerSettings
from kedascaler.loop.reconcile import Reconciler
from kedascaler.observe.wiring import Observability
from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.server.activate import ActivationServer
from kedascaler.server.app import ScalerServer
from kedascaler.sim.fleet import EmulatedFleet
from kedascaler.sim.keda_hpa import HPABehavior, KEDAConfig, ScalingState, keda_step
from kedascaler.sim.load import OfferedLoad
from kedascaler.sim.perf import perf_params_for
from kedascaler.sources.files import StaticInventory
from kedascaler.sources.gateway import GatewayMetricsSource
from kedascaler.sources.scrape import DirectScrapeSource
from kedascaler.spec.inventory import build_inventory

NAMESPACE = "demo"
MODEL = "meta/llama-3.1-8b"


@dataclass(frozen=True)
class DemoVariant:
    name: str
    accelerator: str
    cost: float
    min_replicas: int
    max_replicas: int
    start_replicas: int


VARIANTS = (
    DemoVariant("llama-8b-h100", "H100", 40.0, 0, 6, 0),
    DemoVariant("llama-8b-a100", "A100", 20.0, 0, 4, 0),
)
# Small servers so that a laptop can offer enough load to fill them: the batch and the KV cache bind early.
SERVER_LIMITS = {"H100": dict(max_num_seqs=48, num_gpu_blocks=1600), "A100": dict(max_num_seqs=32, num_gpu_blocks=1000)}
STARTUP_DELAY = 6.0  # emulated seconds to load the model
SLO_ITL_MS, SLO_TTFT_MS = 24.0, 500.0  # the Premium service class the demo's model belongs to


def demo_documents() -> list[tuple[str, dict]]:
    """The VariantAutoscalings of the demo, as a user would write them."""
    return [
        ("demo", {
            "apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
            "metadata": {"name": v.name, "namespace": NAMESPACE},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": v.name},
                     "modelID": MODEL, "accelerator": v.accelerator, "variantCost": str(v.cost),
                     "minReplicas": v.min_replicas, "maxReplicas": v.max_replicas,
                     # no perfParms: α, β, γ, δ are learned from the pods' metrics (capacity mode sizes with them)
                     "variantProfile": {"maxBatchSize": SERVER_LIMITS[v.accelerator]["max_num_seqs"]},
                     "sloClassRef": {"name": "serviceclass", "key": "premium"}},
        })
        for v in VARIANTS
    ] + [("demo", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "serviceclass", "namespace": NAMESPACE},
        "data": {"premium": f"name: Premium\npriority: 1\ndata:\n  - model: {MODEL}\n"
                            f"    slo-tpot: {SLO_ITL_MS:g}\n    slo-ttft: {SLO_TTFT_MS:g}\n"},
    })]


def load_profile(t: float, span: float) -> float:
    """Offered req/s at emulated time t: none (the model is cold), quiet, ramp up, peak, ramp down, none again."""
    x = (t % span) / span
    low, peak = 2.0, 60.0
    if x < 0.04 or x >= 0.85:
        return 0.0
    if x < 0.1:
        return low
    if x < 0.45:
        return low + (peak - low) * (x - 0.1) / 0.35
    if x < 0.6:
        return peak
    return peak - (peak - low) * (x - 0.6) / 0.25


def build_fleet(seed: int = 7) -> EmulatedFleet:
    fleet = EmulatedFleet(seed=seed, tick=0.05)
    for v in VARIANTS:
        params = perf_params_for(v.accelerator, **SERVER_LIMITS[v.accelerator])
        fleet.add_deployment(v.name, MODEL, v.accelerator, params=params, startup_delay=STARTUP_DELAY,
                             replicas=v.start_replicas, namespace=NAMESPACE)
    return fleet


class FleetClock:
    """Advances the emulated fleet in a background thread, `speed` emulated seconds per real second."""

    def __init__(self, fleet: EmulatedFleet, speed: float, span: float, step: float = 0.1) -> None:
        self.fleet, self.speed, self.span, self.step = fleet, speed, span, step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-clock", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            rate = load_profile(self.fleet.now, self.span)
            current = self.fleet.load(MODEL)
            if rate <= 0:
                if current is not None:
                    self.fleet.set_load(MODEL, None)
            elif current is None or abs(current.rate - rate) > 0.5:
                self.fleet.set_load(MODEL, OfferedLoad(rate))
            self.fleet.advance(self.step * self.speed)
            next_at += self.step
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class KedaStandIn:
    """Calls the real gRPC server as KEDA does and applies HPA's arithmetic to the emulated Deployments."""

    def __init__(self, fleet: EmulatedFleet, address: str, specs: list[VariantSpec], sync: float) -> None:
        self.fleet = fleet
        self.address = address
        self.specs = specs
        self.sync = sync
        # Kubernetes defaults scaled down to the demo's time: scale-down stabilisation 20 s instead of 300 s.
        self.behavior = HPABehavior(sync_period=sync, scale_down_stabilization=20.0, policy_period=sync)
        self.states = {s.key: ScalingState(fleet.deployment(s.target_name).current_replicas, last_active=0.0)
                       for s in specs}

    async def run(self) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            names: dict[VariantKey, str] = {}
            while len(names) < len(self.specs):  # as KEDA does, retry until the scaler has decided once
                for spec in self.specs:
                    ref = pb.ScaledObjectRef(name=spec.key.name, namespace=spec.key.namespace)
                    try:
                        specs = await stub.GetMetricSpec(ref)
                    except grpc.aio.AioRpcError:
                        await asyncio.sleep(0.5)
                        break
                    names[spec.key] = specs.metricSpecs[0].metricName
            while True:
                await asyncio.sleep(self.sync)
                for spec in self.specs:
                    await self._sync_one(stub, spec, names[spec.key])

    async def _sync_one(self, stub: pb_grpc.ExternalScalerStub, spec: VariantSpec, metric: str) -> None:
        ref = pb.ScaledObjectRef(name=spec.key.name, namespace=spec.key.namespace)
        try:
            metrics = await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=metric))
            active = (await stub.IsActive(ref)).result
        except grpc.aio.AioRpcError:
            return  # KEDA keeps the current replicas on errors (until its fallback threshold)
        value = metrics.metricValues[0].metricValueFloat
        keda = KEDAConfig(polling_interval=self.sync, cooldown_period=30.0, min_replicas=spec.min_replicas,
                          max_replicas=spec.max_replicas or 100)
        state = keda_step(self.states[spec.key], active, value, self.fleet.now, self.behavior, keda)
        self.states[spec.key] = state
        deployment = self.fleet.deployment(spec.target_name)
        if deployment.current_replicas != state.replicas:
            deployment.set_replicas(state.replicas)


def format_cycle(report: CycleReport, fleet: EmulatedFleet) -> list[str]:
    """One line per variant: load, KV cache, queue, current → desired replicas, and the reason."""
    load = fleet.load(MODEL)
    rate = load.rate if load is not None else 0.0
    gateway = fleet.queued_for(MODEL)
    decisions = {d.key: d for d in report.decisions}
    lines = []
    for snap in report.snapshots:
        for v in snap.variants:
            d = decisions.get(v.spec.key)
            kv = max((p.kv_cache_usage for p in v.pods), default=math.nan)
            queue = sum(p.queue_length for p in v.pods)
            desired = "?" if d is None else str(d.desired_replicas)
            reason = "" if d is None else str(d.reason)
            active = "" if d is None else ("active  " if d.active else "inactive")
            lines.append(
                f"t={fleet.now:6.0f}s load {rate:5.1f} req/s gw {gateway:3d} | "
                f"{v.spec.key.name:<14} {v.spec.accelerator:<4} "
                f"cost {v.spec.cost:>4g} | kv max {kv:4.2f} queue {queue:4.0f} | replicas {v.current_replicas} "
                f"({v.ready_replicas} ready) -> {desired:<2} {active} | {reason}"
            )
    return lines


def format_sizing(report: CycleReport, said: dict[tuple[str, str], str]) -> list[str]:
    """A line when a model's SLO sizing changes state: which parameters it uses, or why it falls back."""
    lines = []
    for model, plan in report.plans.items():
        capacity = next((d.steps.capacity_plan for d in report.decisions
                         if (d.key.namespace, d.model_id) == model and d.steps.capacity_plan is not None), None)
        if plan.mode == CAPACITY and capacity is not None:
            state = "capacity mode, per replica: " + ", ".join(
                f"{c.key.name} {c.per_replica:.3g} req/s ({c.source})" for c in capacity.variants)
        elif plan.mode == CAPACITY:
            state = "capacity mode, saturation until the pods' usage is read"
        elif plan.model_based:
            learned = [f"{k.name} α={p.coefficients.alpha:.3g} β={p.coefficients.beta:.3g} "
                       f"γ={p.coefficients.gamma:.3g} δ={p.coefficients.delta:.2g} ({p.source})"
                       for k, p in sorted(report.parameters.items(), key=lambda kv: kv[0].name)
                       if p.coefficients is not None]
            state = "model-based sizing (" + plan.mode + "), " + "; ".join(learned)
        else:
            state = "saturation only: " + plan.why_not
        key = re.sub(r"[\d.]+", "#", state)  # a new line when the state changes, not every refit or count
        if said.get(model) != key:
            said[model] = key
            lines.append(f"   sizing {model[1]}: {state}")
    return lines


async def run_demo(port: int = 9090, duration: float | None = None, interval: float = 2.0, speed: float = 1.0,
                   out=print, observability: Observability | None = None, idle_window: float = 20.0,
                   activation_port: int = 0) -> int:
    """Run the demo until `duration` seconds pass (then return 0) or until cancelled (Ctrl-C)."""
    state = build_inventory(demo_documents())
    fleet = build_fleet()
    fleet.start()  # pods' /metrics and the gateway's queue metric
    span = (duration * speed) if duration else 240.0
    board = DecisionBoard()
    scraper = DirectScrapeSource(timeout=1.0, window_clock=lambda: fleet.now)  # rates per emulated second
    planner = PlannerSettings(CAPACITY, refit_interval=10.0,
                              capacity=CapacitySettings(default_startup=STARTUP_DELAY, short_window=20.0,
                                                        long_window=60.0, trend_window=30.0))
    obs = observability or Observability(metrics_port=0, log_decisions=False)
    metrics_port = obs.start()
    assert fleet.gateway_url is not None  # started above
    gateway = GatewayMetricsSource(fleet.gateway_url)
    inbox = ActivationInbox()
    reconciler = Reconciler(StaticInventory(state), obs.instrument(scraper), board, workloads=fleet,
                            idle_window=idle_window, activation=gateway, inbox=inbox, planner=planner)
    activation_server = ActivationServer(board, inbox, host="127.0.0.1", port=activation_port)
    activation_server.start()
    server = ScalerServer(board, port=port, host="127.0.0.1", grace=2.0, interceptors=obs.interceptors)
    bound = await server.start()
    out(f"kedascaler demo: gRPC ExternalScaler on 127.0.0.1:{bound}; model {MODEL} on "
        + ", ".join(f"{v.name} ({v.accelerator}, cost {v.cost:g})" for v in VARIANTS))
    out(f"try: .venv/bin/grpcurl -plaintext 127.0.0.1:{bound} list")
    out(f"wake a cold model: curl -X POST {activation_server.url}/v1/activate/{NAMESPACE}/{MODEL}")
    if metrics_port:
        out(f"/metrics: http://127.0.0.1:{metrics_port}/metrics")
    clock = FleetClock(fleet, speed, span)
    clock.start()
    stand_in = KedaStandIn(fleet, f"127.0.0.1:{bound}", list(state.specs), sync=interval)

    sizing_said: dict[tuple[str, str], str] = {}

    def on_cycle(report: CycleReport) -> None:
        obs.on_cycle(report)
        for line in format_cycle(report, fleet):
            out(line)
        for line in format_sizing(report, sizing_said):
            out(line)

    tasks = [asyncio.create_task(reconciler.run_forever(interval, on_cycle=on_cycle)),
             asyncio.create_task(stand_in.run())]
    try:
        if duration:
            await asyncio.sleep(duration)
        else:
            await asyncio.Event().wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop(1.0)
        clock.stop()
        scraper.close()
        activation_server.close()
        gateway.close()
        fleet.close()
        obs.stop()
        out("kedascaler demo: stopped")
    return 0
