"""Load offered to the emulated fleet: Poisson arrivals per model, with token counts around given means."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class OfferedLoad:
    """Load on one model: Poisson arrivals at `rate` req/s, token counts around the means."""

    rate: float
    prompt_tokens: float = 230.0  # ShareGPT-like means (vllm.md)
    output_tokens: float = 203.0
    fixed_lengths: bool = False  # True: every request has exactly the mean lengths (for closed-form checks)


class PoissonArrivals:
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
