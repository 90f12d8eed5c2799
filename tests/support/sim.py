"""Invariant checks on the simulator's internals, for tests (moved out of the package: no user calls them)."""

from __future__ import annotations

import random

from kedascaler.sim.perf import PerfParams
from kedascaler.sim.replica import DECODE, FastReplica, SimRequest
from kedascaler.sim.vllm_engine import FinishedRequest, Request, VLLMEngine


def blocks_held(replica: FastReplica) -> int:
    """Σ KV blocks held, recomputed from the running requests: must equal `replica.used_blocks`."""
    bs, d = replica.params.block_size, replica.decode_steps
    return sum(-(-(r.offset + d) // bs) if r.phase == DECODE else r.blocks for r in replica.running.values())


def replay_on_both(params: PerfParams, *, seed: int, rate: float, seconds: float, prompts: tuple[int, int],
                   outputs: tuple[int, int], until: float) -> tuple[list[SimRequest], dict[int, FinishedRequest]]:
    """The same Poisson arrivals on the fast replica and on the step-by-step engine: the fast replica's
    requests, and the engine's finished ones by id (to compare their latencies)."""
    rng = random.Random(seed)
    arrivals, t = [], 0.0
    while t < seconds:
        t += rng.expovariate(rate)
        arrivals.append((t, rng.randint(*prompts), rng.randint(*outputs)))
    fast, slow = FastReplica(params), VLLMEngine(params)
    fast_reqs: list[SimRequest] = []
    slow_done: list[FinishedRequest] = []
    for i, (a, pr, o) in enumerate(arrivals):
        fast.advance(a)
        fast_reqs.append(SimRequest(i, a, pr, o))
        fast.submit(fast_reqs[-1], a)
        slow_done += slow.step(a - slow.now)
        slow.add_request(Request(i, pr, o, a))
    fast.advance(until)
    slow_done += slow.step(until - slow.now)
    return fast_reqs, {f.id: f for f in slow_done}
