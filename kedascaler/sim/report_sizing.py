"""The report's sections on model-based sizing: how well its predictions held, and what it learned online.

`prediction_table` (predicted against observed ITL/TTFT over the next interval), `learning_table` (fitted
α, β, γ, δ against the true step-time coefficients) and `sizing_sections`, both under their titles with the
notes, as summary.md and the `simulate` printout show them. Empty for runs with no model-based policy.
"""

from __future__ import annotations

import numpy as np

from kedascaler.sim.simulator import RunResult


def _rel_errors(pred: np.ndarray, obs: np.ndarray) -> np.ndarray:
    ok = np.isfinite(pred) & np.isfinite(obs) & (obs > 0)
    return np.abs(pred[ok] - obs[ok]) / obs[ok]


def _med_p90(errors: np.ndarray) -> str:
    if not len(errors):
        return "–"
    return f"{100 * np.median(errors):.0f}% / {100 * np.percentile(errors, 90):.0f}% (n {len(errors)})"


def prediction_table(runs: list[RunResult]) -> str:
    """Per policy that predicts latencies: model-based cycles, and the median / p90 of |predicted − observed|
    ÷ observed for ITL and TTFT over the next interval: for the planned allocation (all rows, and rows where
    the fleet was settled: the variant ran the planned replicas, all ready, through the interval), and for
    the fleet that ran (the model at the load per pod observed). Empty when no policy predicts."""
    rows = []
    for run in runs:
        learning = run.learning or {}
        if not run.predictions and not learning:
            continue
        p = run.predictions
        itl_p = np.array([x.itl_pred_ms for x in p], dtype=float)
        itl_o = np.array([x.itl_obs_ms for x in p], dtype=float)
        ttft_p = np.array([x.ttft_pred_ms for x in p], dtype=float)
        ttft_o = np.array([x.ttft_obs_ms for x in p], dtype=float)
        settled = np.array([x.settled for x in p], dtype=bool)
        itl_r = np.array([x.itl_ran_ms for x in p], dtype=float)
        ttft_r = np.array([x.ttft_ran_ms for x in p], dtype=float)
        cycles = learning.get("cycles", "–")
        based = learning.get("model_based_cycles", "–")
        taken = learning.get("model_taken_cycles", "–")
        first = learning.get("first_model_based")
        rows.append(f"| {run.policy} | {cycles} | {based} | {taken} | "
                    f"{'never' if first is None else f'{first:.0f} s'} | "
                    f"{_med_p90(_rel_errors(itl_p, itl_o))} | {_med_p90(_rel_errors(ttft_p, ttft_o))} | "
                    f"{_med_p90(_rel_errors(itl_p[settled], itl_o[settled]))} | "
                    f"{_med_p90(_rel_errors(ttft_p[settled], ttft_o[settled]))} | "
                    f"{_med_p90(_rel_errors(itl_r, itl_o))} | {_med_p90(_rel_errors(ttft_r, ttft_o))} |")
    if not rows:
        return ""
    head = ("| policy | cycles | model-based | model plan taken | first model-based | ITL error median / p90 | "
            "TTFT error median / p90 | ITL error, settled | TTFT error, settled | ITL error, fleet that ran | "
            "TTFT error, fleet that ran |")
    return "\n".join([head, "|" + "---|" * 11] + rows)


def _coeffs(c) -> str:
    return "–" if c is None else f"{c[0]:.2f} / {c[1]:.3f} / {c[2]:.1f} / {c[3]:.5f}"


def learning_table(runs: list[RunResult]) -> str:
    """Per learning policy and variant: when its parameters first became usable, α / β / γ / δ fitted then and
    at the end of the run, against the true step-time coefficients. Empty when no policy learns."""
    rows = []
    for run in runs:
        for name, v in (run.learning or {}).get("variants", {}).items():
            at = v.get("usable_at")
            last = _coeffs(v.get("last")) + ("" if v.get("last_usable") or v.get("last") is None else " (not usable)")
            samples = v.get("samples", (0, 0))
            rows.append(f"| {run.policy} | {name} | {'never' if at is None else f'{at:.0f} s'} | "
                        f"{_coeffs(v.get('first'))} | {last} | {_coeffs(v.get('true'))} | "
                        f"{samples[0]} / {samples[1]} |")
    if not rows:
        return ""
    head = ("| policy | variant | usable from | α / β / γ / δ then | at the end | true | "
            "decode / prefill pairs |")
    return "\n".join([head, "|" + "---|" * 7] + rows)


def sizing_sections(runs: list[RunResult], predictions_title: str, learning_title: str) -> list[str]:
    """The prediction and learning tables under their titles, and the notes, as lines (none when no policy
    predicts or learns): for summary.md and the `simulate` printout alike."""
    predictions, learned = prediction_table(runs), learning_table(runs)
    lines: list[str] = []
    if predictions:
        lines += [predictions_title, "", predictions, ""]
    if learned:
        lines += [learning_title, "", learned, ""]
    if lines:
        lines += [learning_notes(), ""]
    return lines


def learning_notes() -> str:
    return ("Errors: |predicted − observed| ÷ observed, per model-based decision and variant, observed as the "
            "mean ITL (token-weighted) and mean TTFT (from the arrival at the pod) of its pods over the next "
            "reconcile interval; 'settled': the variant ran the planned replicas, all ready, through it; "
            "'fleet that ran': the same model and parameters evaluated at the load per pod actually observed. "
            "Learned decode coefficients are effective ones (prefill stalls included), so α̂, β̂ differ from "
            "the step times by design.")
