"""The policies kedascaler is judged against, one module each, each following its upstream source at a named
commit and configured as its own docs recommend (docs/simulator.md, "Policies"):

* `wva` (`wva.py`): WVA's V1 saturation loop (llm-d/llm-d-workload-variant-autoscaler main, 2026-02);
* `wva-v2` (`wva_v2.py`, `wva_v2_capacity.py`): WVA v0.9's token-based analyzer and CostAwareOptimizer;
* `keda-queue` (`keda_queue.py`): KEDA's Prometheus scaler on `vllm:num_requests_waiting`, production-stack's setup;
* `hpa-kv` (`hpa_kv.py`): HPA on `vllm:kv_cache_usage_perc`, average 0.7, through KEDA;
* `static-peak` (`static.py`): the oracle's peak fleet, never changed.

The KEDA-actuated ones carry their own ScaledObject and HPA behaviour (`keda.py`) and state it, with the rest
of their configuration, in `settings()`. `cheapest` and `_Base` (`base.py`) are shared with kedascaler's and
the oracle's policies.
"""

from kedascaler.sim.baselines.base import _Base, cheapest
from kedascaler.sim.baselines.hpa_kv import HPAKVPolicy
from kedascaler.sim.baselines.keda import KedaBaseline, ScaledObject
from kedascaler.sim.baselines.keda_queue import KedaQueuePolicy
from kedascaler.sim.baselines.static import StaticPolicy
from kedascaler.sim.baselines.wva import WVAPolicy
from kedascaler.sim.baselines.wva_v2 import WVAV2Policy

__all__ = ["HPAKVPolicy", "KedaBaseline", "KedaQueuePolicy", "ScaledObject", "StaticPolicy", "WVAPolicy",
           "WVAV2Policy", "_Base", "cheapest"]
