"""A fleet of emulated vLLM Deployments under offered load: the cluster the scaler sees, and its gateway.

`EmulatedFleet` owns the clock (explicit: `advance(dt)`), generates Poisson arrivals per model
(`kedascaler.sim.load`), routes each request to the least-loaded ready pod of that model (across all its
Deployments, `kedascaler.sim.deployment`) and queues it at the fleet, like a gateway, when none is ready.
It implements `Workloads`, so the reconcile loop reads replicas and scrape targets from it as it would
from Kubernetes.

The fleet is also the gateway: the requests it queues per model while no pod is ready (`queued_for`) are
exposed on a /metrics endpoint of its own registry (`gateway_url` once started), as the llm-d router's
EndpointPicker does: the scale-from-zero signal. `gateway_generation` picks the router it plays:
"inference-extension" (before llm-d router v0.10: `inference_extension_flow_control_queue_size{target_model_name}`),
"llm-d" (v0.10: `llm_d_epp_flow_control_queue_size{fairness_id, priority, inference_pool, model_name,
target_model_name}`, plus `llm_d_epp_request_running` and `llm_d_epp_inflight_tokens` per model and
`llm_d_epp_flow_control_pool_saturation{inference_pool, stage}`), or "both" (a router mid-migration).
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from kedascaler.engine.types import VariantSpec
from kedascaler.kits.httpserver import HttpServerThread
from kedascaler.sim.deployment import TIME_SLACK, EmulatedDeployment
from kedascaler.sim.emulator import EmulatedPod, MetricsHandler
from kedascaler.sim.load import OfferedLoad, PoissonArrivals
from kedascaler.sim.perf import PerfParams, perf_params_for
from kedascaler.sim.vllm_engine import FinishedRequest, Request
from kedascaler.sources.base import WorkloadStatus
from kedascaler.sources.gateway import (
    EPP_QUEUE_METRIC,
    INFLIGHT_TOKENS_METRIC,
    LEGACY_QUEUE_METRIC,
    MODEL_LABEL,
    POOL_SATURATION_METRIC,
    REQUEST_RUNNING_METRIC,
)

GATEWAY_GENERATIONS = ("inference-extension", "llm-d", "both")
EMULATED_POOL = "emulated-pool"  # the one InferencePool the emulated router fronts


class _GatewayCollector:
    """The fleet's per-model queue (and, as llm-d's router v0.10, its other EPP metrics) at scrape time."""

    def __init__(self, fleet: EmulatedFleet) -> None:
        self._fleet = fleet

    def collect(self) -> Iterator[Metric]:
        queues = sorted(self._fleet.queue_sizes().items())
        generation = self._fleet.gateway_generation
        help_text = "Requests queued in flow control, waiting for a ready endpoint."
        if generation in ("inference-extension", "both"):
            g = GaugeMetricFamily(LEGACY_QUEUE_METRIC, help_text, labels=[MODEL_LABEL])
            for model, size in queues:
                g.add_metric([model], float(size))
            yield g
        if generation not in ("llm-d", "both"):
            return
        g = GaugeMetricFamily(EPP_QUEUE_METRIC, help_text, labels=["fairness_id", "priority", "inference_pool",
                                                                   "model_name", MODEL_LABEL])
        for model, size in queues:
            g.add_metric(["default", "0", EMULATED_POOL, model, model], float(size))
        yield g
        running, tokens, saturation = self._fleet.epp_load()
        for name, text, values in ((REQUEST_RUNNING_METRIC, "Requests running on the pool's endpoints.", running),
                                   (INFLIGHT_TOKENS_METRIC, "Tokens of the requests in flight.", tokens)):
            g = GaugeMetricFamily(name, text, labels=[MODEL_LABEL])
            for model, value in sorted(values.items()):
                g.add_metric([model], float(value))
            yield g
        g = GaugeMetricFamily(POOL_SATURATION_METRIC, "Saturation of the pool per stage (0-1).",
                              labels=["inference_pool", "stage"])
        for stage, value in sorted(saturation.items()):
            g.add_metric([EMULATED_POOL, stage], value)
        yield g


class EmulatedFleet:
    """Deployments of emulated vLLM pods under offered load, with an explicit clock; a `Workloads`.

    Time moves only in `advance(dt)` (in ticks of at most `tick` seconds: routing and readiness happen at
    tick boundaries). One thread may advance while others scrape the pods or call `status`.
    """

    def __init__(self, *, seed: int = 0, tick: float = 0.05, start_time: float = 0.0,
                 keep_finished: int = 200_000, gateway_generation: str = "inference-extension") -> None:
        if tick <= 0:
            raise ValueError("tick must be > 0")
        if gateway_generation not in GATEWAY_GENERATIONS:
            raise ValueError(f"gateway_generation must be one of {GATEWAY_GENERATIONS}, got {gateway_generation!r}")
        self.gateway_generation = gateway_generation
        self.seed = seed
        self.tick = tick
        self._now = start_time
        self._lock = threading.RLock()
        self._advancing = threading.Lock()
        self._deployments: dict[str, EmulatedDeployment] = {}
        self._arrivals: dict[str, PoissonArrivals] = {}
        self._queue: dict[str, deque[Request]] = {}  # per model, requests waiting for a ready pod
        self._finished: deque[FinishedRequest] = deque(maxlen=keep_finished)
        self._next_id = 0
        self._started = False
        self.gateway_registry = CollectorRegistry(auto_describe=False)  # the gateway's own, not the global one
        self.gateway_registry.register(_GatewayCollector(self))
        self._gateway = HttpServerThread(MetricsHandler, host="127.0.0.1", name="fleet-gateway",
                                         what="the emulated gateway's /metrics", owner=self.gateway_registry)

    # --- set-up ---

    def add_deployment(self, name: str, model: str, accelerator: str = "H100", *, params: PerfParams | None = None,
                       startup_delay: float = 60.0, replicas: int = 0, namespace: str = "default"
                       ) -> EmulatedDeployment:
        """A Deployment serving `model` on `accelerator` (defaults from `perf_params_for`), at `replicas`."""
        with self._lock:
            if name in self._deployments:
                raise ValueError(f"deployment {name!r} exists")
            dep = EmulatedDeployment(self, name, model, accelerator, params or perf_params_for(accelerator),
                                     startup_delay, namespace, seed=f"{self.seed}:{name}")
            self._deployments[name] = dep
            self._queue.setdefault(model, deque())
        if replicas:
            dep.set_replicas(replicas)
        return dep

    def deployment(self, name: str) -> EmulatedDeployment:
        with self._lock:
            return self._deployments[name]

    @property
    def deployments(self) -> tuple[EmulatedDeployment, ...]:
        with self._lock:
            return tuple(self._deployments.values())

    def set_load(self, model: str, load: OfferedLoad | None) -> None:
        """Offer `load` to `model` from now on (None or rate 0: no more arrivals)."""
        with self._lock:
            if load is None or load.rate <= 0:
                self._arrivals.pop(model, None)
                return
            rng = random.Random(f"{self.seed}:{model}:{self._now!r}")
            self._arrivals[model] = PoissonArrivals(load, self._now, rng)
            self._queue.setdefault(model, deque())

    def load(self, model: str) -> OfferedLoad | None:
        with self._lock:
            a = self._arrivals.get(model)
            return a.load if a else None

    def submit(self, model: str, prompt_tokens: int, output_tokens: int) -> int:
        """Send one request now (as a trace replay would); returns its id."""
        with self._lock:
            req = self._new_request(prompt_tokens, output_tokens, self._now)
            self._route(model, req)
            return req.id

    # --- time ---

    @property
    def now(self) -> float:
        return self._now

    def advance(self, dt: float) -> None:
        """Move the fleet's clock by `dt` seconds: pods get ready, requests arrive, are routed and served."""
        with self._advancing:
            end = self._now + dt
            while self._now < end - TIME_SLACK:
                with self._lock:
                    h = min(self.tick, end - self._now)
                    self._tick(h)
            with self._lock:
                for dep in self._deployments.values():
                    dep._update_readiness(self._now)
                self._flush_queue()

    def _tick(self, h: float) -> None:
        t0 = self._now
        for dep in self._deployments.values():
            dep._update_readiness(t0)
        self._flush_queue()
        for model, arrivals in self._arrivals.items():
            for at, prompt, output in arrivals.until(t0 + h):
                self._route(model, self._new_request(prompt, output, at))
        for dep in self._deployments.values():
            for f in dep._step(h):
                self._finished.append(f)
        self._now = t0 + h

    # --- what the fleet knows ---

    def queued_for(self, model: str) -> int:
        """Requests for `model` waiting at the fleet (the gateway) because the model has no ready pod."""
        with self._lock:
            return len(self._queue.get(model, ()))

    def queue_sizes(self) -> dict[str, int]:
        """`queued_for` of every model the fleet has seen (the gateway's queue metric)."""
        with self._lock:
            return {model: len(queue) for model, queue in self._queue.items()}

    def epp_load(self) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        """What the emulated llm-d router exports besides its queue: per model the requests running on its
        pods and its tokens in flight (prompt plus output of those queued at the fleet, KV-cache tokens in the
        pods), and the pool's saturation per stage over the ready pods (decode: mean KV-cache use; prefill:
        mean waiting ÷ batch limit; effective: the larger)."""
        with self._lock:
            running: dict[str, float] = {}
            tokens: dict[str, float] = {}
            kv, waiting = [], []
            for model, queue in self._queue.items():
                tokens[model] = float(sum(r.prompt_tokens + r.output_tokens for r in queue))
                running.setdefault(model, 0.0)
            for pod in (p for d in self._deployments.values() for p in d.ready_pods):
                engine, p = pod.engine, pod.params
                model = pod.model
                running[model] = running.get(model, 0.0) + engine.running_count
                tokens[model] = tokens.get(model, 0.0) + engine.used_blocks * p.block_size
                kv.append(engine.used_blocks / p.num_gpu_blocks)
                waiting.append(min(1.0, (engine.outstanding - engine.running_count) / p.max_num_seqs))
            decode = sum(kv) / len(kv) if kv else 0.0
            prefill = sum(waiting) / len(waiting) if waiting else 0.0
            return running, tokens, {"decode": decode, "prefill": prefill, "effective": max(decode, prefill)}

    def drain_finished(self) -> list[FinishedRequest]:
        """Requests finished since the last call (the most recent `keep_finished` of them)."""
        with self._lock:
            out = list(self._finished)
            self._finished.clear()
            return out

    def status(self, spec: VariantSpec) -> WorkloadStatus | None:
        """The Deployment named by the VariantAutoscaling's scaleTargetRef, or None when there is none."""
        with self._lock:
            dep = self._deployments.get(spec.target_name)
            if dep is None:
                return None
            return WorkloadStatus(dep.current_replicas, dep.ready_replicas, dep.targets(spec.key))

    # --- HTTP lifecycle ---

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        """Serve /metrics for every ready pod (and for pods as they get ready), and the gateway's /metrics."""
        with self._lock:
            self._started = True
            for dep in self._deployments.values():
                for pod in dep.ready_pods + dep.draining_pods:
                    pod.start()
            if not self._gateway.started:
                self._gateway.start()

    def close(self) -> None:
        """Stop every pod's HTTP server; the model state stays, so a closed fleet can still be inspected."""
        with self._lock:
            self._started = False
            for dep in self._deployments.values():
                dep._close()
        self._gateway.close()  # outside the lock: a scrape in flight reads the queue under it

    @property
    def gateway_url(self) -> str | None:
        """`http://127.0.0.1:PORT/metrics` of the emulated gateway while started, else None."""
        base = self._gateway.url
        return f"{base}/metrics" if base is not None else None

    def __enter__(self) -> EmulatedFleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- routing ---

    def _new_request(self, prompt: int, output: int, at: float) -> Request:
        self._next_id += 1
        return Request(self._next_id, int(prompt), int(output), created=at)

    def _ready_pods(self, model: str) -> list[EmulatedPod]:
        return [p for d in self._deployments.values() if d.model == model for p in d.ready_pods]

    def _route(self, model: str, req: Request) -> None:
        """To the least-loaded ready pod (fewest queued, then the emptiest batch, then KV); else the fleet queue."""
        pods = self._ready_pods(model)
        if not pods:
            self._queue.setdefault(model, deque()).append(req)
            return
        pod = min(pods, key=_load_key)
        done = pod.add_request(req)
        if done is not None:
            self._finished.append(done)

    def _requeue(self, model: str, requests: list[Request]) -> None:
        """Requests handed back by a pod going away: they start over elsewhere, ahead of newer ones."""
        for req in requests:
            req.restart(self._now)
        self._queue.setdefault(model, deque()).extendleft(reversed(requests))
        self._flush_queue()

    def _flush_queue(self) -> None:
        for model, queue in self._queue.items():
            if not queue or not self._ready_pods(model):
                continue
            while queue:
                req = queue.popleft()
                req.arrival = max(req.arrival, self._now)
                self._route(model, req)


def _load_key(pod: EmulatedPod) -> tuple[float, float, float, str]:
    """How loaded a pod is, for least-loaded routing: queued requests, batch fill, KV usage, then name."""
    engine, p = pod.engine, pod.params  # O(1) reads: a flushed backlog routes thousands of requests at once
    queued = engine.outstanding - engine.running_count  # waiting, plus sent in this tick and not arrived yet
    return (queued, engine.running_count / p.max_num_seqs, engine.used_blocks / p.num_gpu_blocks, pod.name)


# OfferedLoad lives in `kedascaler.sim.load`; re-exported for `cli/demo.py` until it imports it from there.
__all__ = ["EmulatedFleet", "OfferedLoad"]
