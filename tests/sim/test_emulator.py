"""The emulated vLLM engine and pod: the performance model's numbers, saturation, and vLLM's metric names."""

from __future__ import annotations

import threading

import pytest
import requests
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kedascaler.sim.emulator import EmulatedPod
from kedascaler.sim.perf import PerfParams, perf_params_for
from kedascaler.sim.vllm_engine import Request, VLLMEngine
from kedascaler.sim.vllm_stats import E2E_BUCKETS, ITL_BUCKETS, TTFT_BUCKETS


def run(engine: VLLMEngine, seconds: float, dt: float = 0.05) -> list:
    done = []
    for _ in range(round(seconds / dt)):
        done += engine.step(dt)
    return done


def test_a_lone_request_takes_one_prefill_and_output_minus_one_decodes():
    p = perf_params_for("H100")
    engine = VLLMEngine(p)
    engine.add_request(Request(1, prompt_tokens=128, output_tokens=10, created=0.0))
    (done,) = run(engine, 1.0)
    ttft = (p.gamma + p.delta * 128) / 1000
    assert done.first_token_at == pytest.approx(ttft)
    assert done.finished_at == pytest.approx(ttft + 9 * (p.alpha + p.beta) / 1000)
    assert engine.state().kv_cache_usage == 0.0


def test_ttft_includes_queueing_behind_a_full_batch():
    engine = VLLMEngine(PerfParams(max_num_seqs=1))
    engine.add_request(Request(1, 100, 50, created=0.0))
    engine.add_request(Request(2, 100, 50, created=0.0))
    first, second = sorted(run(engine, 5.0), key=lambda f: f.id)
    assert second.first_token_at > first.finished_at  # waited for the only batch slot
    assert engine.stats.ttft.count == 2 and engine.stats.ttft.sum > second.first_token_at


def test_saturated_pod_serves_the_rate_the_performance_model_implies():
    """Full batches in lockstep: μ(n) = n / (γ + δ·n·P + (O − 1)(α + β·n)), WVA's closed form."""
    p = perf_params_for("H100", max_num_seqs=16)
    prompt, output = 200, 100
    mu = p.max_throughput(prompt, output)
    engine = VLLMEngine(p)
    rate = 2 * mu
    for i in range(round(rate * 70)):  # constant overload, with a backlog at t=0
        engine.add_request(Request(i, prompt, output, created=max(0.0, i / rate - 1.0)))
    done = run(engine, 60.0)
    served = [f for f in done if 10.0 <= f.finished_at < 60.0]
    assert len(served) / 50.0 == pytest.approx(mu, rel=0.03)
    assert engine.state().running == 16 and engine.state().waiting > 500


def test_below_capacity_throughput_follows_the_offered_rate_and_the_queue_stays_short():
    p = perf_params_for("A100")
    engine = VLLMEngine(p)
    rate = 10.0  # far below A100's μ for 230/203-token requests
    for i in range(round(rate * 60)):
        engine.add_request(Request(i, 230, 203, created=i / rate))
    waits = []
    done = []
    for _ in range(60 * 20):
        done += engine.step(0.05)
        waits.append(engine.state().waiting)
    finished = [f for f in done if 20.0 <= f.finished_at < 60.0]
    assert len(finished) / 40.0 == pytest.approx(rate, rel=0.05)
    assert max(waits) <= 2
    # Little's law: running ≈ rate × time in service, time in service ≈ TTFT + 202 ITL(batch)
    n = engine.state().running
    assert n == pytest.approx(rate * (p.gamma + 202 * p.itl_seconds(n) * 1000) / 1000, rel=0.15)


def test_overload_on_a_small_kv_cache_fills_the_cache_grows_the_queue_and_preempts():
    p = PerfParams(max_num_seqs=64, num_gpu_blocks=400)  # about ten 300+300-token requests fit
    engine = VLLMEngine(p)
    for i in range(3000):
        engine.add_request(Request(i, 300, 300, created=i * 0.02))  # 50 req/s, far beyond capacity
    run(engine, 20.0)
    early = engine.state()
    run(engine, 20.0)
    late = engine.state()
    assert late.waiting > early.waiting > 50
    assert early.kv_cache_usage > 0.8 and late.kv_cache_usage > 0.8
    assert late.running < 64  # the cache binds before the batch does
    assert engine.stats.preemptions > 0


def test_a_request_larger_than_the_cache_is_aborted_not_stuck():
    engine = VLLMEngine(PerfParams(num_gpu_blocks=4))
    done = engine.add_request(Request(1, 60, 10, created=0.0))
    assert done is not None and done.reason == "abort"
    assert engine.stats.finished["abort"] == 1 and engine.outstanding == 0


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_pod_exposes_vllms_exact_names_types_labels_and_buckets():
    pod = EmulatedPod("llama-h100-abcde", "meta/llama-3.1-8b", perf_params_for("H100"))
    for i in range(5):
        pod.add_request(Request(i, 100, 20, created=0.0))
    pod.step(0.2)  # some done, some running
    text = generate_latest(pod.registry).decode()
    samples = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    for name in ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "vllm:num_requests_running",
                 "vllm:num_requests_waiting", "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
                 "vllm:request_success_total", "vllm:num_preemptions_total", "vllm:cache_config_info"):
        assert name in samples, name
    for hist in ("vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds",
                 "vllm:time_per_output_token_seconds", "vllm:e2e_request_latency_seconds"):
        assert {f"{hist}_bucket", f"{hist}_sum", f"{hist}_count"} <= samples, hist
    assert not any(s.endswith("_total_total") for s in samples)
    assert "# TYPE vllm:kv_cache_usage_perc gauge" in text
    assert "# TYPE vllm:time_to_first_token_seconds histogram" in text

    fams = _families(text)
    assert fams["vllm:prompt_tokens"].type == "counter"
    assert fams["vllm:request_success"].type == "counter"

    def bounds(family: str) -> tuple[float, ...]:
        les = [float(s.labels["le"]) for s in fams[family].samples if s.name.endswith("_bucket")]
        return tuple(le for le in les if le != float("inf"))

    assert bounds("vllm:time_to_first_token_seconds") == TTFT_BUCKETS
    assert bounds("vllm:inter_token_latency_seconds") == ITL_BUCKETS
    assert bounds("vllm:time_per_output_token_seconds") == ITL_BUCKETS
    assert bounds("vllm:e2e_request_latency_seconds") == E2E_BUCKETS

    state = pod.state()
    (running,) = fams["vllm:num_requests_running"].samples
    assert running.labels == {"model_name": "meta/llama-3.1-8b", "engine": "0"}
    assert running.value == state.running
    assert fams["vllm:kv_cache_usage_perc"].samples[0].value == pytest.approx(state.kv_cache_usage)
    assert fams["vllm:generation_tokens"].samples[0].value == pod.engine.stats.generation_tokens
    stop = [s for s in fams["vllm:request_success"].samples if s.labels.get("finished_reason") == "stop"]
    assert stop[0].value == pod.engine.stats.finished["stop"]
    (info,) = fams["vllm:cache_config_info"].samples
    assert info.labels["num_gpu_blocks"] == "27000" and info.labels["block_size"] == "16"


def test_pod_serves_metrics_over_http_and_frees_its_port_and_thread_on_close():
    threads_before = threading.active_count()
    pod = EmulatedPod("p-1", "m")
    pod.start()
    url = pod.url
    assert url and url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    assert "vllm:num_requests_waiting" in response.text
    assert requests.get(url.replace("/metrics", "/health"), timeout=5).status_code == 200
    pod.close()
    assert pod.url is None
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)
    assert threading.active_count() == threads_before
    pod.close()  # idempotent
