"""The scenario suite: fixed, seeded workloads, each with the fleet it runs on, that `simulate --suite` scores.

A `Scenario` is a name, a one-line description of its shape, a workload builder (seed → `Workload`: same
seed, same arrivals) and its fleet (profile + variants; the default two-variant H100 + A100 fleet for all
but `three-accelerators`). `SUITE` is the suite in order; `suite_scenario(name)` finds one. Durations are
modest (20 min to 1 h simulated) so that the whole suite runs in minutes.

`SCENARIOS` / `scenario(name, seed)` are the workloads `simulate --scenario` offers: the suite's on the
default fleet and a few older shapes (`step`, `ramp`, `bursts`, `diurnal` over 1 h, `idle-then-burst`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kedascaler.sim.config import VariantConfig, default_variants
from kedascaler.sim.profile_data import SCORING_PROFILE
from kedascaler.sim.workloads import (
    Workload,
    azure_csv,
    bursts,
    diurnal,
    flash_crowd,
    heavy_tailed_lengths,
    lognormal_lengths,
    overlapping_jobs,
    ramp,
    sequential_jobs,
    steps,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONV_TRACE = REPO_ROOT.parent / "shared" / "traces" / "azure-llm-2023-conv.csv"  # ../shared/traces from the repo


def conv_trace_path() -> Path:
    """The Azure conversation trace, `../shared/traces/azure-llm-2023-conv.csv` from the repository root."""
    if not CONV_TRACE.is_file():
        raise FileNotFoundError(
            f"scenario azure-conv needs the Azure LLM inference trace 2023 (conversation) at {CONV_TRACE}: "
            "../shared/traces/azure-llm-2023-conv.csv from the repository root (Azure/AzurePublicDataset, "
            "data/AzureLLMInferenceTrace_conv.csv)")
    return CONV_TRACE


@functools.lru_cache(maxsize=2)
def _conv(path: Path) -> Workload:
    return azure_csv(path)


# --- fleets -------------------------------------------------------------------------------------------------

THREE_ACCELERATOR_PROFILE = "llama-3.1-8b-h100-a100-l40s"  # the calibrated H100 + A100 + L40S (48 GB) fleet


def three_accelerator_fleet(profile: str = THREE_ACCELERATOR_PROFILE, startup_delay: float = 90.0
                            ) -> tuple[VariantConfig, ...]:
    """H100, A100 and L40S variants of the calibrated three-accelerator profile (costs in cloud list-price ratio)."""
    return default_variants(profile, startup_delay)


Fleet = Callable[[str, float], tuple[VariantConfig, ...]]  # (profile, startup delay) → variants


@dataclass(frozen=True)
class Scenario:
    """One workload of the suite and the fleet it runs on."""

    name: str
    description: str
    build: Callable[[int], Workload]  # seed → workload
    fleet: Fleet = default_variants
    profile: str = SCORING_PROFILE

    def workload(self, seed: int = 0) -> Workload:
        """The scenario's arrivals for `seed`, named after the scenario."""
        w = self.build(seed)
        return dataclasses.replace(w, name=self.name, description=self.description)

    def variants(self, startup_delay: float = 90.0) -> tuple[VariantConfig, ...]:
        return self.fleet(self.profile, startup_delay)

    @property
    def fleet_label(self) -> str:
        return " + ".join(v.accelerator for v in self.variants()) + f" ({self.profile})"


# --- the suite ----------------------------------------------------------------------------------------------

_CONV_LIKE = lognormal_lengths(1155.0, 211.0, max_prompt=4096, max_total=4608)  # the conv trace's means
_LONG_OUT = lognormal_lengths(300.0, 1000.0, max_prompt=2048, max_total=6144)

SUITE: tuple[Scenario, ...] = (
    Scenario("azure-conv", "Azure LLM conversation trace 2023, one hour as recorded (mean 5.5 req/s, "
                           "prompts mean 1,155 tokens)",
             lambda seed: _conv(conv_trace_path())),
    Scenario("sequential-jobs", "seed experiment, sequential: 10, 15, 12 req/s jobs of 300 s, 60 s apart",
             lambda seed: sequential_jobs((10.0, 15.0, 12.0), seed=seed)),
    Scenario("sequential-jobs-high", "seed experiment, sequential, high: 20, 30, 15 req/s jobs of 300 s, 60 s apart",
             lambda seed: sequential_jobs((20.0, 30.0, 15.0), seed=seed)),
    Scenario("overlapping-jobs", "seed experiment: 10 + 15 + 12 req/s jobs of 480 s, 120 s apart (peak 37)",
             lambda seed: overlapping_jobs(seed=seed)),
    Scenario("overlapping-jobs-high", "seed experiment, high: 20 + 30 + 15 req/s jobs of 480 s, 120 s apart "
                                      "(peak 65)",
             lambda seed: overlapping_jobs((20.0, 30.0, 15.0), seed=seed)),
    Scenario("step-up-down", "staircase 2 → 10 → 20 → 8 → 2 req/s at 200, 400, 700, 900 s",
             lambda seed: steps([(0, 2.0), (200, 10.0), (400, 20.0), (700, 8.0), (900, 2.0)], 1200, seed=seed)),
    Scenario("flash-crowd", "3 req/s, at 300 s a rise to 30 req/s in 10 s, decaying back (time constant 120 s)",
             lambda seed: flash_crowd(3.0, 30.0, 300.0, 1200, seed=seed)),
    Scenario("on-off", "12 req/s for 120 s, then 720 s of nothing (idle window 300 s + cooldown 300 s "
                       "allow zero), three times",
             lambda seed: bursts(0.0, 12.0, 840, 120, 2520, seed=seed)),
    Scenario("diurnal-day", "a day compressed into 20 min: the rate follows a sine 1 → 20 → 1 req/s",
             lambda seed: diurnal(1.0, 20.0, 1200, 1200, seed=seed)),
    Scenario("long-prompts", "code-assistant-like: prompts mean ≈ 2k tokens (lognormal body, Pareto tail "
                             "to 8k), outputs mean 150; 2 → 6 → 3 req/s at 300, 900 s",
             lambda seed: steps([(0, 2.0), (300, 6.0), (900, 3.0)], 1200, seed=seed,
                                lengths=heavy_tailed_lengths())),
    Scenario("long-outputs", "outputs mean ≈ 1k tokens, prompts mean 300 (prompt + output ≤ 6,144); "
                             "1.5 → 4 → 2 req/s at 300, 900 s",
             lambda seed: steps([(0, 1.5), (300, 4.0), (900, 2.0)], 1200, seed=seed, lengths=_LONG_OUT)),
    Scenario("long-outputs-drop", "outputs mean ≈ 1k tokens, 16 → 2 req/s at 600 s: the scale-down lands on "
                                  "pods holding long generations (what pod-deletion-cost and the grace period decide)",
             lambda seed: steps([(0, 16.0), (600, 2.0)], 1200, seed=seed, lengths=_LONG_OUT)),
    Scenario("three-accelerators", "H100 (40) + A100 (20) + L40S (17.5): conv-like lengths (prompts mean 1,155), "
                                   "2 → 8 → 4 req/s at 300, 900 s; the variant chosen decides the cost",
             lambda seed: steps([(0, 2.0), (300, 8.0), (900, 4.0)], 1200, seed=seed, lengths=_CONV_LIKE),
             fleet=three_accelerator_fleet, profile=THREE_ACCELERATOR_PROFILE),
)
SUITE_NAMES: tuple[str, ...] = tuple(s.name for s in SUITE)


def suite_scenario(name: str) -> Scenario:
    for s in SUITE:
        if s.name == name:
            return s
    raise KeyError(f"unknown suite scenario {name!r}; known: {', '.join(SUITE_NAMES)}")


# --- `simulate --scenario`: name → (builder(seed), one-line description), on the default fleet ----------------

_OLDER: dict[str, tuple[Callable[[int], Workload], str]] = {
    "step": (lambda seed: steps([(0, 2.0), (300, 20.0), (900, 5.0)], 1500, seed=seed, name="step"),
             "2 → 20 → 5 req/s at 300 s and 900 s"),
    "ramp": (lambda seed: ramp(1.0, 30.0, 1200, seed=seed), "1 → 30 req/s linearly over 20 min"),
    "bursts": (lambda seed: bursts(2.0, 25.0, 300, 60, 1800, seed=seed), "25 req/s for 60 s every 5 min over 2 req/s"),
    "diurnal": (lambda seed: diurnal(1.0, 25.0, 1800, 3600, seed=seed), "sine 1 ↔ 25 req/s, period 30 min, 1 h"),
    "idle-then-burst": (lambda seed: steps([(0, 0.0), (900, 10.0), (1200, 0.0)], 1800, seed=seed,
                                           name="idle-then-burst"), "nothing for 15 min, 10 req/s for 5 min"),
}
SCENARIOS: dict[str, tuple[Callable[[int], Workload], str]] = {
    **{s.name: (s.workload, s.description) for s in SUITE if s.fleet is default_variants},
    **_OLDER,
}


def scenario(name: str, seed: int = 0) -> Workload:
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return SCENARIOS[name][0](seed)
