"""Wall-clock jumps (an NTP step, `date -s`, a VM resumed) move no timer: `serve` runs every age and timer on
one `SteadyClock` (wall time at start + monotonic time since). Idle windows count real seconds."""

from __future__ import annotations

from collections.abc import Sequence

from kedascaler.engine.types import VariantKey, VariantSpec
from kedascaler.kits.clock import SteadyClock
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.inbox import ActivationInbox
from kedascaler.loop.reconcile import Reconciler
from kedascaler.sources.base import CollectResult, PodSample, ScrapeTarget, WorkloadStatus
from kedascaler.sources.files import StaticInventory
from kedascaler.spec.inventory import build_inventory

NS = "llm"
KEY = VariantKey(NS, "llama-h100")
WINDOW = 300.0


def documents():
    return [("test", {
        "apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
        "metadata": {"name": KEY.name, "namespace": NS},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": KEY.name}, "modelID": "meta/llama",
                 "accelerator": "H100", "variantCost": "40", "minReplicas": 0, "maxReplicas": 4,
                 "scaleToZero": {"idleWindowSeconds": WINDOW}},
    })]


class Machine:
    """The host's two clocks, moved by the test: `wall` may jump, `mono` only runs forward."""

    def __init__(self) -> None:
        self.wall = 1_700_000_000.0
        self.mono = 5_000.0

    def run(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


class Pod:
    """One replica whose running requests the test sets; samples stamped with the scaler's clock."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.running = 0.0

    def status(self, spec: VariantSpec) -> WorkloadStatus:
        return WorkloadStatus(1, 1, (ScrapeTarget(spec.key, "llama-h100-0", "http://unused"),))

    def collect(self, targets: Sequence[ScrapeTarget]) -> CollectResult:
        return CollectResult(tuple(PodSample(NS, t.pod, "meta/llama", 0.1 if self.running else 0.0, 0.0,
                                             self.running, self.clock(), variant=t.variant) for t in targets))

    def close(self) -> None:
        pass


def scaler(machine: Machine) -> tuple[Reconciler, Pod, ActivationInbox]:
    """As `kedascaler serve` wires it: one SteadyClock for the cycle, the samples and the push inbox."""
    clock = SteadyClock(wall=lambda: machine.wall, monotonic=lambda: machine.mono)
    pod = Pod(clock)
    inbox = ActivationInbox(clock=clock)
    reconciler = Reconciler(StaticInventory(build_inventory(documents())), pod, DecisionBoard(), pod, clock,
                            idle_window=WINDOW, inbox=inbox)
    return reconciler, pod, inbox


def active(reconciler: Reconciler) -> bool:
    (d,) = reconciler.run_once().decisions
    return d.active


def test_a_wall_clock_step_forward_does_not_end_the_idle_window_early():
    machine = Machine()
    reconciler, pod, _ = scaler(machine)
    pod.running = 3.0
    assert active(reconciler)
    pod.running = 0.0  # the last request finished: the idle window starts
    machine.run(15.0)
    machine.wall += 3600.0  # NTP steps the wall clock an hour forward
    assert active(reconciler)  # 30 s idle, not an hour: still active
    machine.run(WINDOW - 60.0)
    assert active(reconciler)
    machine.run(60.0)
    assert not active(reconciler)  # the window, in real seconds


def test_a_wall_clock_step_back_does_not_hold_the_idle_timer():
    machine = Machine()
    reconciler, pod, inbox = scaler(machine)
    pod.running = 3.0
    assert active(reconciler)
    pod.running = 0.0
    machine.wall -= 3600.0  # the wall clock goes an hour back
    machine.run(WINDOW + 15.0)
    assert not active(reconciler)  # idle for the window in real seconds: inactive, not an hour late
    inbox.record(NS, "meta/llama")  # a request pushed after the step is a request now
    assert active(reconciler)
