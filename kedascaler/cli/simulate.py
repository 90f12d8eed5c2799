"""`kedascaler simulate`: replay a scenario or a trace under several scaling policies, and report.

Wire it into `kedascaler/cli/main.py` with `add_simulate_parser(sub)` in `build_parser()` and
`if args.command == "simulate": return cmd_simulate(args)` in `main()`; or run it alone:
`python -m kedascaler.cli.simulate --scenario overlapping-jobs --out /tmp/sim`.
`--suite` runs the whole scenario suite instead (`kedascaler.sim.suite`) and prints its leaderboard.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from kedascaler.kits.argtypes import non_negative, positive
from kedascaler.sim import leaderboard
from kedascaler.sim.cluster import ROUTERS
from kedascaler.sim.config import SLO, SimConfig, default_variants
from kedascaler.sim.policies import (
    EXTRA_POLICY_NAMES,
    POLICY_NAMES,
    make_policies,
    policy_settings,
    workload_capacity,
)
from kedascaler.sim.profile_data import SCORING_PROFILE, ProfileError, load_profile, profile_names
from kedascaler.sim.report import BOUND, REFERENCE, score_runs, setup_lines, sizing_sections, table, write_report
from kedascaler.sim.scenarios import SCENARIOS, SUITE, SUITE_NAMES, scenario, suite_scenario
from kedascaler.sim.simulator import simulate
from kedascaler.sim.suite import SuiteSettings, known_policies, run_suite, suite_data, suite_policies, write_suite
from kedascaler.sim.workloads import load_file, rescale


def add_simulate_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `simulate` subcommand to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "simulate", help="replay a workload through simulated vLLM replicas under several scaling policies",
        description="Replay a scenario or a trace through simulated vLLM replicas under each policy, on the same "
                    "arrivals; print a summary table and write summary.md, results.json and plots.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--scenario", choices=sorted(SCENARIOS), help="a built-in workload")
    src.add_argument("--trace", type=Path, help="CSV (time_s,prompt_tokens,output_tokens or Azure's TIMESTAMP,"
                                                "ContextTokens,GeneratedTokens) or JSONL with the same keys")
    src.add_argument("--suite", action="store_true", help="every scenario of the suite; prints a leaderboard")
    p.add_argument("--policy", action="append", choices=POLICY_NAMES + EXTRA_POLICY_NAMES + ("all",), dest="policies",
                   help=f"a policy to run (repeat; 'all': every one; default: {', '.join(POLICY_NAMES)})")
    p.add_argument("--out", type=Path, help="folder for summary.md, results.json and plots (default: none)")
    p.add_argument("--seed", type=int, default=0, help="seed for generated arrivals and rate scaling (default 0)")
    p.add_argument("--speedup", type=positive, default=1.0, help="compress the workload's time by this factor")
    p.add_argument("--rate-scale", type=positive, default=1.0, help="multiply (or thin) the requests by this factor")
    prof = p.add_mutually_exclusive_group()
    prof.add_argument("--profile", choices=profile_names(), default=SCORING_PROFILE,
                      help="replica profile: the variants, their costs and step-time parameters per accelerator "
                           f"(kedascaler/sim/profiles/; default {SCORING_PROFILE}, the calibrated 80 GB pair; "
                           "demo: the live demo's small limits)")
    prof.add_argument("--profile-file", type=Path, metavar="PATH",
                      help="a replica profile of your own (YAML, the bundled profiles' shape), e.g. from your "
                           "benchmark; see docs/simulator.md, 'Replica profiles'")
    p.add_argument("--startup-delay", type=non_negative, default=90.0,
                   help="pod start-up delay in seconds (default 90)")
    p.add_argument("--scrape-interval", type=non_negative, default=15.0,
                   help="Prometheus scrape interval in seconds; 0 reads pods directly (default 15)")
    p.add_argument("--slo-ttft", type=positive, default=1000.0, help="TTFT target in ms (default 1000, Standard)")
    p.add_argument("--slo-itl", type=positive, default=50.0, help="ITL target in ms (default 50, Standard)")
    p.add_argument("--tick", type=positive, default=0.25, help="control granularity in seconds (default 0.25)")
    p.add_argument("--router", choices=ROUTERS, default="epp",
                   help="how requests reach the pods: epp, llm-d's endpoint picker (queue and KV scorers), or "
                        "service, a Kubernetes Service (a random pod); default epp")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_suite_arguments(p)
    p.set_defaults(func=cmd_simulate)
    return p


def add_suite_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `--suite` (it also reads --policy, --out, --seed unless --seeds, --startup-delay, --scrape-interval,
    --slo-ttft, --slo-itl, --tick and --quiet; each scenario brings its own fleet, so --profile is not used)."""
    g = p.add_argument_group("scenario suite (--suite)")
    g.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="processes, one scenario each at a time (default: the CPU count)")
    g.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="run the suite once per seed (arrivals and router choices) and judge each scenario by its "
                        "worst seed; instead of --seed")
    g.add_argument("--only", action="append", choices=SUITE_NAMES, metavar="SCENARIO",
                   help=f"run only this suite scenario (repeat; default all: {', '.join(SUITE_NAMES)})")


def cmd_suite(args: argparse.Namespace) -> int:
    """Run the suite, print the leaderboard, write suite.json, suite.md and plots; 0, or 2 on bad input."""
    settings = SuiteSettings(seed=args.seed, startup_delay=args.startup_delay, scrape_interval=args.scrape_interval,
                             tick=args.tick, slo=_slo(args), router=args.router)
    scenarios = [suite_scenario(n) for n in dict.fromkeys(args.only)] if args.only else list(SUITE)
    policies = suite_policies(args.policies)
    seeds = list(dict.fromkeys(args.seeds)) if getattr(args, "seeds", None) else [args.seed]
    jobs = max(1, min(args.jobs or os.cpu_count() or 1, len(scenarios) * len(seeds)))
    quiet = getattr(args, "quiet", False)
    started = time.perf_counter()

    def progress(res, k: int, n: int) -> None:
        if not quiet:
            print(f"[{k}/{n}] {res.scenario:<22} seed {res.seed:<3} {res.requests:>6} requests, "
                  f"{sum(res.runtime_s.values()):5.1f} s "
                  f"for {len(res.runtime_s)} policies ({time.perf_counter() - started:5.1f} s)", file=sys.stderr,
                  flush=True)

    try:
        results = run_suite(scenarios, policies, settings, jobs, progress, seeds)
    except (OSError, KeyError, ValueError) as exc:
        print(f"kedascaler simulate --suite: {exc}", file=sys.stderr)
        return 2
    data = suite_data(results, settings, policies, time.perf_counter() - started, jobs)
    print(leaderboard.full(data))
    print()
    print(leaderboard.leaderboard(data))
    print(leaderboard.footer(data))
    if args.out is not None:
        files = write_suite(args.out, results, data)
        print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _slo(args: argparse.Namespace) -> SLO:
    return SLO("Standard" if (args.slo_ttft, args.slo_itl) == (1000.0, 50.0) else "custom",
               args.slo_ttft / 1000.0, args.slo_itl / 1000.0)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run the policies, print the table, write the report; 0 on success, 2 on bad input."""
    if getattr(args, "suite", False):
        return cmd_suite(args)
    try:
        if args.trace is not None:
            workload = load_file(args.trace, speedup=args.speedup, rate_scale=args.rate_scale, seed=args.seed)
        else:
            workload = rescale(scenario(args.scenario, args.seed), speedup=args.speedup,
                               rate_scale=args.rate_scale, seed=args.seed)
    except (OSError, KeyError, ValueError) as exc:
        print(f"kedascaler simulate: cannot read the workload: {exc}", file=sys.stderr)
        return 2
    profile_file = getattr(args, "profile_file", None)
    try:
        profile = load_profile(profile_file if profile_file is not None else args.profile)
    except ProfileError as exc:
        print(f"kedascaler simulate: {exc}", file=sys.stderr)
        return 2
    config = SimConfig(variants=default_variants(profile, args.startup_delay), tick=args.tick,
                       scrape_interval=args.scrape_interval, router=getattr(args, "router", "epp"), seed=args.seed,
                       slo=SLO("Standard" if (args.slo_ttft, args.slo_itl) == (1000.0, 50.0) else "custom",
                               args.slo_ttft / 1000.0, args.slo_itl / 1000.0))
    requested = args.policies or POLICY_NAMES
    names = list(dict.fromkeys(n for p in requested for n in (known_policies() if p == "all" else (p,))))
    names += [n for n in (REFERENCE, BOUND) if n not in names]  # the floor and the bound the ratios refer to
    policies = make_policies(names, workload, config)
    runs, runtime = [], {}
    quiet = getattr(args, "quiet", False)
    for i, policy in enumerate(policies):
        def progress(f: float, i: int = i, name: str = policy.name) -> None:
            if not quiet:
                print(f"\r[{i + 1}/{len(policies)}] {name:<12} {f * 100:5.1f}%", end="", file=sys.stderr, flush=True)

        started = time.perf_counter()
        runs.append(simulate(workload, policy, config, progress))
        runtime[policy.name] = round(time.perf_counter() - started, 3)
        if not quiet:
            print(f"\r[{i + 1}/{len(policies)}] {policy.name:<12} done in {runtime[policy.name]:.1f} s",
                  file=sys.stderr, flush=True)
    capacity = workload_capacity(workload, config.variants, config.slo)
    scores = score_runs(runs, workload, capacity)
    print(f"{workload.name}: {len(workload)} requests over {workload.duration:.0f} s; SLO {config.slo.name} "
          f"TTFT ≤ {config.slo.ttft * 1000:.0f} ms, ITL ≤ {config.slo.itl * 1000:.0f} ms")
    print("\n".join(setup_lines(runs)))
    print(table(scores))
    sections = sizing_sections(runs, "\nPredictions of the model-based plans (|predicted − observed| ÷ observed, "
                               "next interval):", "Parameters learned online (α, β, γ, δ in ms):")
    if sections:
        print("\n".join(sections).rstrip("\n"))
    if args.out is not None:
        settings = {"profile": profile.name if profile_file is None else str(profile_file),
                    "startup_delay_s": args.startup_delay,
                    "scrape_interval_s": args.scrape_interval, "tick_s": args.tick, "seed": args.seed,
                    "speedup": args.speedup, "rate_scale": args.rate_scale,
                    "variants": "; ".join(f"{v.name} {v.accelerator} cost {v.cost:g} "
                                          f"max_num_seqs {v.params.max_num_seqs} "
                                          f"kv_blocks {v.params.num_gpu_blocks}" for v in config.variants)}
        files = write_report(args.out, workload, runs, scores, capacity, settings, runtime,
                             policy_settings(policies))
        print("wrote " + ", ".join(str(f) for f in files))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kedascaler")
    sub = parser.add_subparsers(dest="command", required=True)
    add_simulate_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "simulate":
        argv = ["simulate"] + argv
    args = parser.parse_args(argv)
    return cmd_simulate(args)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["add_simulate_parser", "add_suite_arguments", "cmd_simulate", "cmd_suite", "main"]
