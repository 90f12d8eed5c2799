"""A fast, event-driven vLLM replica with the semantics of `vllm_engine.VLLMEngine`, for hour-long replays.

`VLLMEngine` runs every engine step one by one (about 100 steps a second per busy replica, each a Python
loop over the batch): right for the live demo, too slow to replay an hour for tens of replicas several
times. `FastReplica` keeps the same model and jumps over runs of identical decode steps:

* continuous batching under `max_num_seqs` and the per-step token budget `max_num_batched_tokens`;
  running requests first, then waiting ones FCFS; prompts prefilled in chunks mixed with decodes;
* step time from `PerfParams.step_seconds` (decode α + β·batch + κ·Σ context, prefill γ + δ·tokens, in ms);
* KV cache in `block_size`-token blocks, a request holds ceil(computed tokens / block_size) blocks;
  when a running request cannot get a block the newest running request is preempted (blocks freed,
  recomputed later, first in the waiting queue; no swap, as in vLLM v1);
* TTFT from the arrival at the replica's clock (a request that waited at the gateway keeps its arrival).

While the batch does not change, k decode steps take k·(α + β·n + κ·C) + κ·n·k(k−1)/2 (C: the batch's
context now, one token more per request each step); the next event is the earliest of: a
request finishing, the KV cache running out of blocks, a request arriving, the caller's horizon. Block
growth is exact: a decoding request needs a new block on the step that starts at a context length
divisible by the block size, so a histogram of (context mod block size) gives the blocks k steps need in
O(block size). Cost per request is O(log n), independent of its length.
"""

from __future__ import annotations

import copy
import heapq
import math
from collections import deque

from kedascaler.sim.perf import PerfParams, decode_steps_within

WAITING, PREFILL, DECODE, DONE = 0, 1, 2, 3


class SimRequest:
    """One request: its lengths, its times (seconds), and its progress on the replica that holds it."""

    __slots__ = ("id", "arrival", "prompt", "output", "generated", "computed", "target", "blocks", "offset",
                 "d_join", "g_join", "d_finish", "seq", "phase", "first_token", "finished", "preemptions",
                 "variant", "dispatched", "restarts", "scheduled", "prefill", "aborts", "wasted")

    def __init__(self, rid: int, arrival: float, prompt: int, output: int) -> None:
        self.id = rid
        self.arrival = arrival
        self.prompt = max(1, int(prompt))
        self.output = max(1, int(output))
        self.generated = 0  # output tokens emitted (while decoding: g_join + D - d_join)
        self.computed = 0  # tokens with KV in the cache (prefill phase)
        self.target = self.prompt  # tokens to prefill: prompt, or prompt + generated after a preemption
        self.blocks = 0  # blocks held (prefill phase)
        self.offset = 0  # decode phase: computed tokens = offset + D
        self.d_join = 0
        self.g_join = 0
        self.d_finish = 0
        self.seq = 0
        self.phase = WAITING
        self.first_token = math.nan
        self.finished = math.nan
        self.preemptions = 0
        self.variant = -1
        self.dispatched = arrival  # when it reached a replica (later than arrival if it waited at the gateway)
        self.restarts = 0  # times handed back by a terminating pod and started over
        self.scheduled = math.nan  # start of the step that first admitted it (vLLM's prefill time starts here)
        self.prefill = math.nan  # seconds from `scheduled` to the first token (observed by vLLM when it finishes)
        self.aborts, self.wasted = 0, 0.0  # runs killed by a terminated pod; the GPU-seconds they had used

    @property
    def ttft(self) -> float:
        return self.first_token - self.arrival

    @property
    def itl(self) -> float:
        """Mean inter-token latency after the first token (0 for one-token outputs)."""
        return (self.finished - self.first_token) / (self.output - 1) if self.output > 1 else 0.0


class Counters:
    """What vLLM's counters and histograms would have accumulated on one replica since it started, kept
    cheaply as running sums (a few float additions per engine step or run of steps): the simulator reads
    them at each reconcile and the difference of two reads is the window a collector's `rate()` sees."""

    __slots__ = ("t", "completed", "prompt_tokens", "output_tokens", "running_time", "gap_sum", "gaps",
                 "prefill_sum", "prefilled", "prefill_prompt", "ttft_sum", "first_tokens")

    def __init__(self, t: float = 0.0) -> None:
        self.t = t  # the replica's clock at the read (integrals run to here)
        self.completed = 0  # vllm:request_success_total
        self.prompt_tokens = 0  # vllm:prompt_tokens_total (counted when a prompt's prefill completes)
        self.output_tokens = 0  # vllm:generation_tokens_total
        self.running_time = 0.0  # ∫ num_requests_running dt (requests · s)
        self.gap_sum = 0.0  # inter_token_latency_seconds _sum (s): every decoded token's gap since the last one
        self.gaps = 0  # inter_token_latency_seconds _count
        # vLLM v1 observes its per-request histograms when a request finishes (as `vllm_engine.py` does):
        self.prefill_sum = 0.0  # request_prefill_time_seconds _sum (s): first token − first scheduled
        self.prefilled = 0  # its _count = request_prompt_tokens _count (requests finished)
        self.prefill_prompt = 0  # request_prompt_tokens _sum: Σ prompt tokens of the same requests
        self.ttft_sum = 0.0  # time_to_first_token_seconds _sum (s), from the arrival here, at the first token
        self.first_tokens = 0  # its _count


def _blocks(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


class FastReplica:
    """One vLLM replica, advanced by `advance(until)`; requests are handed over with `submit`."""

    def __init__(self, params: PerfParams, start: float = 0.0) -> None:
        self.params = params
        self.t = start
        self.decode_steps = 0  # D: decode iterations run so far (a mixed step counts as one)
        self.incoming: deque[SimRequest] = deque()  # handed over, not yet arrived (arrival order)
        self.waiting: deque[SimRequest] = deque()
        self.running: dict[int, SimRequest] = {}  # seq → request, in admission order (newest last)
        self.prefilling: list[SimRequest] = []  # running requests whose prefill is not complete
        self.decoding = 0
        self._hist = [0] * params.block_size  # decoding requests by offset mod block_size
        self._offset_sum = 0  # Σ offset of the decoding requests: their KV tokens are this + decoding · D
        self._finish: list[tuple[int, int, SimRequest]] = []  # (d_finish, seq, request)
        self.used_blocks = 0
        self.preemptions = 0
        self.finished: list[SimRequest] = []
        self._seq = 0
        self.busy_time = 0.0
        self.counters = Counters(start)

    # --- the gauges the scaler reads ---

    @property
    def kv_cache_usage(self) -> float:
        return self.used_blocks / self.params.num_gpu_blocks

    @property
    def num_waiting(self) -> int:
        """vllm:num_requests_waiting (requests handed over whose arrival has come count as waiting)."""
        return len(self.waiting) + sum(1 for r in self.incoming if r.arrival <= self.t)

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def outstanding(self) -> int:
        """Everything this replica owes: running, waiting, and handed over but not arrived."""
        return len(self.running) + len(self.waiting) + len(self.incoming)

    def read_counters(self) -> Counters:
        """A copy of the counters now (the replica's clock may be a little past the caller's: the last step)."""
        out = copy.copy(self.counters)
        out.t = self.t
        return out

    # --- input ---

    def submit(self, req: SimRequest, at: float) -> None:
        """Hand a request over; it joins the waiting queue at max(at, its arrival), never before the clock."""
        req.dispatched = max(at, req.arrival)
        if req.prompt + req.output > self.params.num_gpu_blocks * self.params.block_size:
            req.phase = DONE  # can never fit: vLLM rejects it (no first token: counts as a miss)
            self.finished.append(req)
            return
        if self.incoming and self.incoming[-1].dispatched > req.dispatched:
            req.dispatched = self.incoming[-1].dispatched  # keep the deque in order
        self.incoming.append(req)

    # --- the loop ---

    def advance(self, until: float) -> None:
        """Run the engine until its clock reaches `until` (the last step may end a little after it)."""
        p = self.params
        while True:
            incoming = self.incoming
            while incoming and incoming[0].dispatched <= self.t:
                self.waiting.append(incoming.popleft())
            if self.t >= until:
                return
            if not self.running and not self.waiting:
                if incoming and incoming[0].dispatched < until:
                    self.t = incoming[0].dispatched
                    continue
                self.t = until
                return
            if self._mixed_step():
                continue
            n = self.decoding
            if n == 0:
                # Waiting requests that cannot be admitted and nothing running: only possible when the
                # head needs more blocks than the whole cache (refused at submit), so just wait.
                t = until if not incoming else min(until, incoming[0].dispatched)
                self.counters.running_time += len(self.running) * max(0.0, t - self.t)
                self.t = t
                return
            tau = (p.alpha + p.beta * n + p.kappa * self._context_tokens()) / 1000.0
            grow = p.kappa * n / 1000.0  # each decode step reads n more tokens of KV than the one before
            heap = self._finish
            while heap[0][2].phase != DECODE or heap[0][2].seq != heap[0][1]:
                heapq.heappop(heap)
            k = heap[0][0] - self.decode_steps
            horizon = until if not incoming else min(until, incoming[0].dispatched)
            k = min(k, decode_steps_within(horizon - self.t, tau, grow))
            k = self._fit_blocks(k)
            if k == 0:
                self._preempt_newest()
                continue
            self.used_blocks += self._blocks_for(k)
            self.decode_steps += k
            c = self.counters
            if grow:
                span = k * tau + grow * k * (k - 1) / 2
                c.running_time += len(self.running) * span
                c.gap_sum += n * span
            else:  # the constant-step expressions, kept as they were (same floats)
                span = k * tau
                c.running_time += len(self.running) * k * tau
                c.gap_sum += n * k * tau
            self.t += span
            self.busy_time += span
            c.gaps += n * k
            c.output_tokens += n * k
            self._pop_finished()

    # --- steps ---

    def _context_tokens(self) -> int:
        """Σ context length of the decoding requests: the KV their next decode step reads."""
        return self._offset_sum + self.decoding * self.decode_steps

    def _blocks_for(self, k: int) -> int:
        """New blocks the decoding requests need over the next k decode steps (exact)."""
        bs = self.params.block_size
        full, rem = divmod(k, bs)
        need = full * self.decoding
        d, hist = self.decode_steps, self._hist
        for j in range(rem):
            need += hist[(-(d + j)) % bs]
        return need

    def _fit_blocks(self, k: int) -> int:
        """The largest k' ≤ k whose decode steps fit in the free blocks."""
        free = self.params.num_gpu_blocks - self.used_blocks
        if self._blocks_for(k) <= free:
            return k
        bs, n = self.params.block_size, self.decoding
        cycles = free // n
        steps, free = cycles * bs, free - cycles * n
        d, hist = self.decode_steps + steps, self._hist
        for j in range(bs):
            need = hist[(-(d + j)) % bs]
            if need > free:
                break
            free -= need
            steps += 1
        return min(k, steps)

    def _mixed_step(self) -> bool:
        """One step that prefills (continuing chunks, then new admissions) alongside one decode of each
        decoding request. False (and nothing done) when there is no prefill work that can run."""
        p = self.params
        bs = p.block_size
        free = p.num_gpu_blocks - self.used_blocks
        can_admit = self.waiting and len(self.running) < p.max_num_seqs
        if not self.prefilling and not can_admit:
            return False
        need_dec = self._hist[(-self.decode_steps) % bs] if self.decoding else 0
        preempted = False
        while need_dec > free and self.decoding:
            self._preempt_newest()
            preempted = True
            free = p.num_gpu_blocks - self.used_blocks
            need_dec = self._hist[(-self.decode_steps) % bs] if self.decoding else 0
        budget = p.max_num_batched_tokens - self.decoding
        free -= need_dec
        chunks: list[tuple[SimRequest, int, int]] = []
        for req in self.prefilling:
            if budget <= 0:
                break
            chunk = min(req.target - req.computed, budget)
            need = _blocks(req.computed + chunk, bs) - req.blocks
            if need > free:
                break
            chunks.append((req, chunk, need))
            free -= need
            budget -= chunk
        if not preempted:
            waiting = self.waiting
            while waiting and budget > 0 and len(self.running) < p.max_num_seqs:
                req = waiting[0]
                chunk = min(req.target - req.computed, budget)
                need = _blocks(req.computed + chunk, bs) - req.blocks
                if need > free:
                    break
                waiting.popleft()
                self._seq += 1
                req.seq = self._seq
                req.phase = PREFILL
                self.running[req.seq] = req
                self.prefilling.append(req)
                chunks.append((req, chunk, need))
                free -= need
                budget -= chunk
        if not chunks:
            if self.prefilling and not self.decoding:
                self._preempt_newest()  # a chunk cannot get blocks and nothing will free any: vLLM preempts
                return True
            return False
        tokens = sum(c for _, c, _ in chunks)
        dt = p.step_seconds(self.decoding, tokens, self._context_tokens())
        counters = self.counters
        counters.running_time += len(self.running) * dt
        counters.gap_sum += self.decoding * dt
        counters.gaps += self.decoding
        counters.output_tokens += self.decoding
        start = self.t
        for req, _, _ in chunks:
            if req.scheduled != req.scheduled:  # NaN: first admitted in this step
                req.scheduled = start
        self.used_blocks += need_dec
        self.decode_steps += 1
        self.t += dt
        self.busy_time += dt
        t, d = self.t, self.decode_steps
        for req, chunk, need in chunks:
            req.computed += chunk
            req.blocks += need
            self.used_blocks += need
            if req.computed < req.target:
                continue
            self.prefilling.remove(req)
            req.generated += 1
            counters.output_tokens += 1
            if req.first_token != req.first_token:  # NaN: the first token of this request
                req.first_token = t
                req.prefill = t - req.scheduled
                counters.prompt_tokens += req.prompt
                counters.ttft_sum += t - req.dispatched
                counters.first_tokens += 1
            if req.generated >= req.output:
                self._finish_request(req, t, req.blocks)
                continue
            req.phase = DECODE
            req.offset = req.computed - d
            self._offset_sum += req.offset
            req.d_join, req.g_join = d, req.generated
            req.d_finish = d + req.output - req.generated
            self._hist[req.offset % bs] += 1
            self.decoding += 1
            heapq.heappush(self._finish, (req.d_finish, req.seq, req))
        self._pop_finished()
        return True

    def _pop_finished(self) -> None:
        heap, d, bs = self._finish, self.decode_steps, self.params.block_size
        while heap and heap[0][0] <= d:
            _, seq, req = heapq.heappop(heap)
            if req.phase != DECODE or req.seq != seq:
                continue
            self._hist[req.offset % bs] -= 1
            self._offset_sum -= req.offset
            self.decoding -= 1
            req.generated = req.output
            self._finish_request(req, self.t, _blocks(req.offset + d, bs))

    def _finish_request(self, req: SimRequest, t: float, blocks: int) -> None:
        c = self.counters
        c.completed += 1
        if req.prefill == req.prefill:  # per-request histograms, observed at the finish as vLLM v1 does
            c.prefill_sum += req.prefill
            c.prefilled += 1
            c.prefill_prompt += req.prompt
        req.phase = DONE
        req.finished = t
        self.used_blocks -= blocks
        del self.running[req.seq]
        self.finished.append(req)

    def _preempt_newest(self) -> None:
        """Free the newest running request's blocks; it goes first in line, to be recomputed."""
        seq = next(reversed(self.running))
        req = self.running.pop(seq)
        bs = self.params.block_size
        if req.phase == DECODE:
            d = self.decode_steps
            self._hist[req.offset % bs] -= 1
            self._offset_sum -= req.offset
            self.decoding -= 1
            self.used_blocks -= _blocks(req.offset + d, bs)
            req.generated = req.g_join + d - req.d_join
        else:
            self.prefilling.remove(req)
            self.used_blocks -= req.blocks
        req.phase = WAITING
        req.computed = req.blocks = 0
        req.target = req.prompt + req.generated
        req.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(req)

    def take_finished(self) -> list[SimRequest]:
        out, self.finished = self.finished, []
        return out
