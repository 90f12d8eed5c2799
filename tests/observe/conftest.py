"""An emulated two-variant fleet under load, and a real Reconciler over it, for the observability tests."""

from __future__ import annotations

import pytest

from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.reconcile import Reconciler
from kedascaler.sim.fleet import EmulatedFleet
from kedascaler.sim.load import OfferedLoad
from kedascaler.sim.perf import perf_params_for
from kedascaler.sources.files import StaticInventory
from kedascaler.sources.scrape import DirectScrapeSource

MODEL = "meta/llama-3.1-8b"
NS = "llm"


def va(name: str, accelerator: str, cost: float, max_replicas: int, model: str = MODEL) -> tuple[str, dict]:
    return ("test", {
        "apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": name}, "modelID": model,
                 "accelerator": accelerator, "variantCost": str(cost), "minReplicas": 1, "maxReplicas": max_replicas},
    })


def documents() -> list[tuple[str, dict]]:
    return [va("llama-h100", "H100", 40, 10), va("llama-a100", "A100", 20, 3)]


@pytest.fixture
def fleet():
    """One ready replica per variant, small servers, offered more than two replicas can take."""
    fleet = EmulatedFleet(seed=3, tick=0.05)
    for name, acc in (("llama-h100", "H100"), ("llama-a100", "A100")):
        fleet.add_deployment(name, MODEL, acc, params=perf_params_for(acc, max_num_seqs=16, num_gpu_blocks=600),
                             startup_delay=5.0, replicas=1, namespace=NS)
    fleet.advance(5.0)
    fleet.set_load(MODEL, OfferedLoad(rate=40.0))
    fleet.advance(20.0)
    fleet.start()
    yield fleet
    fleet.close()


@pytest.fixture
def scraper():
    source = DirectScrapeSource(timeout=2.0)
    yield source
    source.close()


def make_reconciler(fleet, source, docs=None) -> Reconciler:
    inventory = StaticInventory.from_documents(documents() if docs is None else docs)
    return Reconciler(inventory, source, DecisionBoard(), workloads=fleet)
