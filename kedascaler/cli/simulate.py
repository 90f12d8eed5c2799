"""`kedascaler simulate`: replay a scenario or a trace under several scaling policies, and report.

Wire it into `kedascaler/cli/main.py` with `add_simulate_parser(sub)` in `build_parser()` and
`if args.command == "simulate": return cmd_simulate(args)` in `main()`; or run it alone:
`python -m kedascaler.cli.simulate --scenario overlapping-jobs --out /tmp/sim`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kedascaler.kits.argtypes import non_negative, positive
from kedascaler.sim.config import SLO, SimConfig, default_variants
from kedascaler.sim.policies import EXTRA_POLICY_NAMES, POLICY_NAMES, make_policies, workload_capacity
from kedascaler.sim.profile_data import SCORING_PROFILE, ProfileError, load_profile, profile_names
from kedascaler.sim.report import score, sizing_sections, table, write_report
from kedascaler.sim.simulator import simulate
from kedascaler.sim.workloads import SCENARIOS, load_file, rescale, scenario


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
    p.add_argument("--policy", action="append", choices=POLICY_NAMES + EXTRA_POLICY_NAMES, dest="policies",
                   help=f"a policy to run (repeat; default: {', '.join(POLICY_NAMES)})")
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
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_simulate)
    return p


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run the policies, print the table, write the report; 0 on success, 2 on bad input."""
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
                       scrape_interval=args.scrape_interval,
                       slo=SLO("Standard" if (args.slo_ttft, args.slo_itl) == (1000.0, 50.0) else "custom",
                               args.slo_ttft / 1000.0, args.slo_itl / 1000.0))
    names = list(dict.fromkeys(args.policies or POLICY_NAMES))
    if "oracle" not in names:
        names.append("oracle")  # the cost floor every ratio refers to
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
    oracle_cost = next(float(r.cost.sum()) for r in runs if r.policy == "oracle")
    scores = [score(r, workload, capacity, oracle_cost) for r in runs]
    print(f"{workload.name}: {len(workload)} requests over {workload.duration:.0f} s; SLO {config.slo.name} "
          f"TTFT ≤ {config.slo.ttft * 1000:.0f} ms, ITL ≤ {config.slo.itl * 1000:.0f} ms")
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
        files = write_report(args.out, workload, runs, scores, capacity, settings, runtime)
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


__all__ = ["add_simulate_parser", "cmd_simulate", "main"]
