"""Emulated Deployments of vLLM pods, and a fleet that offers them load: the cluster the scaler sees.

`EmulatedFleet` owns the clock (explicit: `advance(dt)`), generates Poisson arrivals per model, routes
each request to the least-loaded ready pod of that model (across all its Deployments) and queues it at
the fleet, like a gateway, when none is ready. It implements `Workloads`, so the reconcile loop reads
replicas and scrape targets from it as it would from Kubernetes.

Scaling down: a removed pod leaves the Deployment at once (not counted, not a scrape target), hands its
waiting requests back to the fleet to be routed again, finishes the requests it is running (graceful
termination), then closes. Pods not ready yet are removed first, then the most recently started.

The fleet is also the gateway: `inference_extension_flow_control_queue_size{target_model_name=...}` (the
requests it queues per model while no pod is ready, `queued_for`) is exposed on a /metrics endpoint of its
own registry (`gateway_url` once started), as the llm-d EndpointPicker does: the scale-from-zero signal.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from kedascaler.sources.base import ScrapeTarget, WorkloadStatus
from kedascaler.engine.types import VariantKey, VariantSpec
from kedascaler.sim.emulator import EmulatedPod, FinishedRequest, PerfParams, Request, _MetricsServer, perf_params_for

GATEWAY_QUEUE_METRIC = "inference_extension_flow_control_queue_size"  # llm-d EndpointPicker flow control

_EPS = 1e-9  # float slack on time comparisons, so that t accumulated by ticks still reaches ready_at
_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' pod-name alphabet


@dataclass(frozen=True)
class OfferedLoad:
    """Load on one model: Poisson arrivals at `rate` req/s, token counts around the means."""

    rate: float
    prompt_tokens: float = 230.0  # ShareGPT-like means (vllm.md)
    output_tokens: float = 203.0
    fixed_lengths: bool = False  # True: every request has exactly the mean lengths (for closed-form checks)


class EmulatedDeployment:
    """One variant's Deployment: replicas asked for, pods that become ready after `startup_delay` seconds.

    Made by `EmulatedFleet.add_deployment`; all methods are safe to call while the fleet advances.
    """

    def __init__(self, fleet: EmulatedFleet, name: str, model: str, accelerator: str, params: PerfParams,
                 startup_delay: float, namespace: str, seed: str) -> None:
        self.name = name
        self.model = model
        self.accelerator = accelerator
        self.params = params
        self.startup_delay = startup_delay
        self.namespace = namespace
        self._fleet = fleet
        self._pods: list[EmulatedPod] = []  # oldest first
        self._ready: set[str] = set()
        self._draining: list[EmulatedPod] = []
        self._rng = random.Random(seed)

    def __repr__(self) -> str:
        return f"EmulatedDeployment({self.name!r}, model={self.model!r}, {self.ready_replicas}/{self.current_replicas})"

    def set_replicas(self, n: int) -> None:
        """Ask for `n` replicas: new pods get ready `startup_delay` seconds from now; removed pods drain."""
        if n < 0:
            raise ValueError(f"replicas must be >= 0, got {n}")
        with self._fleet._lock:
            now = self._fleet.now
            while len(self._pods) < n:
                pod = EmulatedPod(self._new_pod_name(), self.model, self.params, start_time=now,
                                  ready_at=now + self.startup_delay)
                self._pods.append(pod)
            if len(self._pods) > n:
                # Not-ready pods go first, then the newest ready ones (what a ReplicaSet prefers).
                order = sorted(range(len(self._pods)), key=lambda i: (self._pods[i].name in self._ready, -i))
                doomed = {id(self._pods[i]) for i in order[: len(self._pods) - n]}
                for pod in [p for p in self._pods if id(p) in doomed]:
                    self._remove(pod)
                self._pods = [p for p in self._pods if id(p) not in doomed]
            self._update_readiness(now)

    @property
    def current_replicas(self) -> int:
        with self._fleet._lock:
            return len(self._pods)

    @property
    def ready_replicas(self) -> int:
        with self._fleet._lock:
            return len(self._ready)

    @property
    def pods(self) -> tuple[EmulatedPod, ...]:
        """The Deployment's pods (ready or starting), oldest first; draining pods are not included."""
        with self._fleet._lock:
            return tuple(self._pods)

    @property
    def ready_pods(self) -> tuple[EmulatedPod, ...]:
        with self._fleet._lock:
            return tuple(p for p in self._pods if p.name in self._ready)

    @property
    def draining_pods(self) -> tuple[EmulatedPod, ...]:
        with self._fleet._lock:
            return tuple(self._draining)

    def targets(self, variant: VariantKey) -> tuple[ScrapeTarget, ...]:
        """Scrape targets of the ready pods that are serving HTTP."""
        return tuple(ScrapeTarget(variant, p.name, p.url) for p in self.ready_pods if p.url)

    # --- driven by the fleet, under its lock ---

    def _new_pod_name(self) -> str:
        taken = {p.name for p in self._pods + self._draining}
        while True:
            name = f"{self.name}-{''.join(self._rng.choice(_SUFFIX_CHARS) for _ in range(5))}"
            if name not in taken:
                return name

    def _remove(self, pod: EmulatedPod) -> None:
        if pod.name not in self._ready:
            pod.close()
            return
        self._ready.discard(pod.name)
        self._fleet._requeue(self.model, pod.take_waiting())
        self._draining.append(pod)

    def _update_readiness(self, now: float) -> None:
        for pod in self._pods:
            if pod.name not in self._ready and pod.ready_at <= now + _EPS:
                self._ready.add(pod.name)
                if self._fleet.started:
                    pod.start()

    def _step(self, dt: float) -> list[FinishedRequest]:
        finished: list[FinishedRequest] = []
        for pod in self._pods + self._draining:
            finished += pod.step(dt)
        gone = [p for p in self._draining if p.engine.outstanding == 0]
        for pod in gone:
            pod.close()
        if gone:
            self._draining = [p for p in self._draining if p.engine.outstanding]
        return finished

    def _close(self) -> None:
        for pod in self._pods + self._draining:
            pod.close()


class _Arrivals:
    """Poisson arrivals of one model: the next arrival time, and token counts drawn from a seeded generator."""

    def __init__(self, load: OfferedLoad, now: float, rng: random.Random) -> None:
        self.load = load
        self._rng = rng
        self.next_at = now + self._gap()

    def _gap(self) -> float:
        return self._rng.expovariate(self.load.rate) if self.load.rate > 0 else math.inf

    def _tokens(self, mean: float) -> int:
        if self.load.fixed_lengths:
            return max(1, round(mean))
        return max(1, min(round(8 * mean), round(self._rng.expovariate(1.0 / mean))))

    def until(self, t: float) -> Iterable[tuple[float, int, int]]:
        """(arrival time, prompt tokens, output tokens) of every arrival before `t`."""
        while self.next_at < t:
            yield self.next_at, self._tokens(self.load.prompt_tokens), self._tokens(self.load.output_tokens)
            self.next_at += self._gap()


class _GatewayCollector:
    """The fleet's per-model queue under the inference gateway's name, labelled target_model_name."""

    def __init__(self, fleet: EmulatedFleet) -> None:
        self._fleet = fleet

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily(GATEWAY_QUEUE_METRIC, "Requests queued in flow control, waiting for a ready endpoint.",
                              labels=["target_model_name"])
        with self._fleet._lock:
            models = sorted(self._fleet._queue)
            sizes = [len(self._fleet._queue[m]) for m in models]
        for model, size in zip(models, sizes):
            g.add_metric([model], float(size))
        yield g


class EmulatedFleet:
    """Deployments of emulated vLLM pods under offered load, with an explicit clock; a `Workloads`.

    Time moves only in `advance(dt)` (in ticks of at most `tick` seconds: routing and readiness happen at
    tick boundaries). One thread may advance while others scrape the pods or call `status`.
    """

    def __init__(self, *, seed: int = 0, tick: float = 0.05, start_time: float = 0.0,
                 keep_finished: int = 200_000) -> None:
        if tick <= 0:
            raise ValueError("tick must be > 0")
        self.seed = seed
        self.tick = tick
        self._now = start_time
        self._lock = threading.RLock()
        self._advancing = threading.Lock()
        self._deployments: dict[str, EmulatedDeployment] = {}
        self._arrivals: dict[str, _Arrivals] = {}
        self._queue: dict[str, deque[Request]] = {}  # per model, requests waiting for a ready pod
        self._finished: deque[FinishedRequest] = deque(maxlen=keep_finished)
        self._next_id = 0
        self._started = False
        self.gateway_registry = CollectorRegistry(auto_describe=False)  # the gateway's own, not the global one
        self.gateway_registry.register(_GatewayCollector(self))
        self._gateway: _MetricsServer | None = None
        self._gateway_thread: threading.Thread | None = None

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
            self._arrivals[model] = _Arrivals(load, self._now, rng)
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
            while self._now < end - _EPS:
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

    @property
    def queued(self) -> int:
        """Requests waiting at the fleet (the gateway) because their model has no ready pod."""
        with self._lock:
            return sum(len(q) for q in self._queue.values())

    def queued_for(self, model: str) -> int:
        with self._lock:
            return len(self._queue.get(model, ()))

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
            if self._gateway is None:
                self._gateway = _MetricsServer(self.gateway_registry, "127.0.0.1")
                self._gateway_thread = threading.Thread(target=self._gateway.serve_forever, args=(0.1,),
                                                        name="fleet-gateway", daemon=True)
                self._gateway_thread.start()

    def close(self) -> None:
        """Stop every pod's HTTP server; the model state stays, so a closed fleet can still be inspected."""
        with self._lock:
            self._started = False
            for dep in self._deployments.values():
                dep._close()
            gateway, thread, self._gateway, self._gateway_thread = self._gateway, self._gateway_thread, None, None
        if gateway is not None:
            gateway.shutdown()
            gateway.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def gateway_url(self) -> str | None:
        """`http://127.0.0.1:PORT/metrics` of the emulated gateway while started, else None."""
        gateway = self._gateway
        return f"http://127.0.0.1:{gateway.server_address[1]}/metrics" if gateway else None

    def gateway_exposition(self) -> str:
        """What a scrape of the gateway's /metrics returns (no HTTP needed)."""
        return generate_latest(self.gateway_registry).decode()

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
