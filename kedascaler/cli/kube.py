"""The Kubernetes side of `serve --kubernetes`, composed: the inventory (a source), the status writer and the
leader elector (actuators), sharing one API client."""

from __future__ import annotations

import os
import socket

from kedascaler.actuate.leader import LeaderElector
from kedascaler.actuate.status import StatusWriter
from kedascaler.sources.kubernetes import KubernetesInventory, load_api_client


def kubernetes_sources(kubeconfig: str | None, namespace: str | None, label_selector: str | None,
                       controller_namespace: str, identity: str | None = None, *, scaled_objects: bool = False,
                       metrics_endpoints_annotation: bool = False,
                       ) -> tuple[KubernetesInventory, StatusWriter, LeaderElector]:
    """Everything `serve --kubernetes` needs: (KubernetesInventory, StatusWriter, LeaderElector), not started.

    Before the first cycle: `inventory.start()`, `elector.start()` (renews the Lease in its own thread), and
    the gRPC server bound with readiness off until `inventory.wait_synced(0)` (a non-blocking check) is true.
    After each cycle: `if elector.is_leader: writer.submit(report.decisions, inventory.current(),
    inventory.missing_targets())` (written in the writer's thread, only while the elector leads). On shutdown:
    `writer.close()`, `elector.stop()` (releases the Lease) and `inventory.stop()`. The inventory is both the
    Reconciler's `inventory` and its `workloads`.
    """
    api_client = load_api_client(kubeconfig)
    inventory = KubernetesInventory(api_client, namespace=namespace or None, label_selector=label_selector or None,
                                    controller_namespace=controller_namespace, scaled_objects=scaled_objects,
                                    metrics_endpoints_annotation=metrics_endpoints_annotation)
    identity = identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    elector = LeaderElector(api_client, controller_namespace, "kedascaler-leader", identity)
    writer = StatusWriter(api_client, existing=inventory.va_status, uid_of=inventory.va_uid,
                          leading=lambda: elector.is_leader)
    return inventory, writer, elector
