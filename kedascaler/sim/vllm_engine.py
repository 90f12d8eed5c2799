"""A vLLM server's scheduler, emulated numerically: continuous batching advanced by explicit time.

`VLLMEngine` runs continuous batching under `max_num_seqs` and a per-step token budget, a KV cache of
16-token blocks, an FCFS waiting queue, preemption when the cache is full, and step times from the linear
performance model (`kedascaler.sim.perf`; with κ a decode step also pays for the KV its batch reads). It has
no clock of its own: time moves only when the caller says `step(dt)`, so a run is replayable. `Request` is
one request in flight, `FinishedRequest` one completed.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from kedascaler.sim.perf import PerfParams
from kedascaler.sim.vllm_stats import EngineState, EngineStats


@dataclass(slots=True)
class Request:
    """One request in flight: mutable, because the engine advances it token by token."""

    id: int
    prompt_tokens: int
    output_tokens: int
    created: float  # when the client sent it (at the fleet)
    arrival: float = -1.0  # when it reached this engine (vLLM's clock for TTFT); -1: same as created
    computed: int = 0  # tokens whose KV is in the cache
    generated: int = 0  # output tokens emitted
    blocks: int = 0  # KV blocks held
    scheduled_at: float | None = None  # first admitted to the running batch (vLLM ignores later preemptions)
    first_token_at: float | None = None
    last_token_at: float | None = None
    preemptions: int = 0

    def __post_init__(self) -> None:
        if self.arrival < 0:
            self.arrival = self.created

    @property
    def pending_tokens(self) -> int:
        """Known tokens (prompt + output so far) without KV yet: the prompt at first, then 1 per decode."""
        return self.prompt_tokens + self.generated - self.computed

    def restart(self, at: float) -> None:
        """Start over on another engine (a client retry): progress lost, creation time kept."""
        self.arrival = at
        self.computed = self.generated = self.blocks = 0
        self.scheduled_at = self.first_token_at = self.last_token_at = None


@dataclass(frozen=True)
class FinishedRequest:
    """A completed request, for SLO accounting: times in the emulated clock (seconds)."""

    id: int
    prompt_tokens: int
    output_tokens: int
    created: float
    arrival: float
    first_token_at: float
    finished_at: float
    preemptions: int = 0
    reason: str = "stop"
    model: str = ""
    pod: str = ""

    @property
    def ttft(self) -> float:
        """Time to first token from the client's point of view (includes any queueing at the fleet)."""
        return self.first_token_at - self.created

    @property
    def mean_itl(self) -> float:
        """Mean inter-token latency after the first token (0 for single-token outputs)."""
        return (self.finished_at - self.first_token_at) / max(1, self.output_tokens - 1)


@dataclass(frozen=True)
class _Step:
    """One engine step in progress: when it ends and what it computes (request, tokens)."""

    end: float
    work: tuple[tuple[Request, int], ...]


class VLLMEngine:
    """vLLM's scheduler loop, numerically: steps of continuous batching advanced by explicit time."""

    def __init__(self, params: PerfParams, start_time: float = 0.0) -> None:
        self.params = params
        self.stats = EngineStats()
        self._now = start_time
        self._free_at = start_time  # when the engine can start its next step
        self._step: _Step | None = None
        self._running: list[Request] = []
        self._waiting: deque[Request] = deque()
        self._future: list[tuple[float, int, Request]] = []  # requests sent but not yet arrived (heap)
        self._used_blocks = 0
        self._seq = 0

    @property
    def now(self) -> float:
        return self._now

    @property
    def capacity_tokens(self) -> int:
        return self.params.num_gpu_blocks * self.params.block_size

    def add_request(self, req: Request) -> FinishedRequest | None:
        """Queue a request at its `arrival` time (not before now); one that can never fit is aborted."""
        req.arrival = max(req.arrival, self._now)
        if req.prompt_tokens + req.output_tokens > self.capacity_tokens or req.prompt_tokens < 1:
            self.stats.finished["abort"] += 1
            return FinishedRequest(req.id, req.prompt_tokens, req.output_tokens, req.created, req.arrival,
                                   req.arrival, req.arrival, req.preemptions, "abort")
        self._seq += 1
        heapq.heappush(self._future, (req.arrival, self._seq, req))
        return None

    def state(self) -> EngineState:
        waiting = len(self._waiting) + sum(1 for t, _, _ in self._future if t <= self._now)
        return EngineState(self._now, len(self._running), waiting, self._used_blocks, self.params.num_gpu_blocks)

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def used_blocks(self) -> int:
        return self._used_blocks

    @property
    def outstanding(self) -> int:
        """Requests this engine owns and has not finished: running, waiting, and sent but not arrived."""
        return len(self._running) + len(self._waiting) + len(self._future)

    def take_waiting(self) -> list[Request]:
        """Hand back every request not running (to be routed elsewhere), oldest first."""
        taken = list(self._waiting) + [r for _, _, r in sorted(self._future)]
        self._waiting.clear()
        self._future.clear()
        return taken

    def step(self, dt: float) -> list[FinishedRequest]:
        """Advance the engine by `dt` seconds, running every step that ends by then; returns what finished."""
        end = self._now + max(0.0, dt)
        finished: list[FinishedRequest] = []
        while True:
            if self._step is not None:
                if self._step.end > end:
                    break
                step, self._step = self._step, None
                self._free_at = step.end
                finished += self._complete(step)
            self._release(self._free_at)
            work = self._schedule()
            if work:
                decoding = [r for r, n in work if n == 1 and r.generated > 0]
                decodes = len(decoding)
                prefill = sum(n for r, n in work) - decodes
                context = sum(r.computed for r in decoding) if self.params.kappa else 0  # KV the decodes read
                for req, _ in work:
                    if req.scheduled_at is None:
                        req.scheduled_at = self._free_at
                dt = self.params.step_seconds(decodes, prefill, context)
                self._step = _Step(self._free_at + dt, tuple(work))
                continue
            if self._future and self._future[0][0] <= end:
                self._free_at = max(self._free_at, self._future[0][0])
                continue
            self._free_at = max(self._free_at, end)
            break
        self._now = end  # arrivals up to `end` stay in the heap: state() counts them as waiting
        return finished

    def _release(self, t: float) -> None:
        """Requests whose arrival time has come join the waiting queue, in arrival order."""
        while self._future and self._future[0][0] <= t:
            self._waiting.append(heapq.heappop(self._future)[2])

    def _schedule(self) -> list[tuple[Request, int]]:
        """vLLM v1's schedule(): running requests first (preempting the newest when blocks run out), then
        waiting ones FCFS while there is room in the batch, the token budget and the cache."""
        p = self.params
        budget = p.max_num_batched_tokens
        free = p.num_gpu_blocks - self._used_blocks
        work: list[tuple[Request, int]] = []
        preempted = False
        i = 0
        while i < len(self._running) and budget > 0:
            req = self._running[i]
            chunk = min(req.pending_tokens, budget)
            need = -(-(req.computed + chunk) // p.block_size) - req.blocks
            while need > free:
                victim = self._running.pop()
                free += victim.blocks
                self._preempt(victim)
                preempted = True
                if victim is req:
                    break
            else:
                req.blocks += need
                free -= need
                budget -= chunk
                work.append((req, chunk))
                i += 1
        while not preempted and self._waiting and budget > 0 and len(self._running) < p.max_num_seqs:
            req = self._waiting[0]
            chunk = min(req.pending_tokens, budget)
            need = -(-(req.computed + chunk) // p.block_size) - req.blocks
            if need > free:
                break
            self._waiting.popleft()
            self._running.append(req)
            req.blocks += need
            free -= need
            budget -= chunk
            work.append((req, chunk))
        self._used_blocks = p.num_gpu_blocks - free
        return work

    def _preempt(self, req: Request) -> None:
        """Free a running request's blocks and put it first in line, to be recomputed (vLLM v1: no swap)."""
        req.computed = 0
        req.blocks = 0
        req.preemptions += 1
        self.stats.preemptions += 1
        self._waiting.appendleft(req)

    def _complete(self, step: _Step) -> list[FinishedRequest]:
        """Apply a finished step: chunks computed, a token sampled for each request that caught up."""
        t, stats = step.end, self.stats
        done: list[FinishedRequest] = []
        for req, chunk in step.work:
            req.computed += chunk
            if req.computed < req.prompt_tokens + req.generated:
                continue  # a prefill chunk; the prompt is not complete yet
            req.generated += 1
            stats.generation_tokens += 1
            if req.first_token_at is None:
                req.first_token_at = t
                stats.prompt_tokens += req.prompt_tokens
                stats.ttft.observe(t - req.arrival)
            else:
                stats.itl.observe(t - (req.last_token_at or t))
            req.last_token_at = t
            if req.generated >= req.output_tokens:
                self._used_blocks -= req.blocks
                req.blocks = 0
                stats.finished["stop"] += 1
                stats.e2e.observe(t - req.arrival)
                scheduled = req.arrival if req.scheduled_at is None else req.scheduled_at
                stats.queue_time.observe(scheduled - req.arrival)
                stats.prefill_time.observe(req.first_token_at - scheduled)
                stats.request_prompt_tokens.observe(req.prompt_tokens)
                stats.request_generation_tokens.observe(req.generated)
                done.append(FinishedRequest(req.id, req.prompt_tokens, req.output_tokens, req.created, req.arrival,
                                            req.first_token_at, t, req.preemptions))
        if done:
            self._running = [r for r in self._running if r.generated < r.output_tokens]
        return done
