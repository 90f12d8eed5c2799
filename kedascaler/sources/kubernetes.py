"""The Kubernetes inventory: VariantAutoscalings, their Deployments and pods, and the scaler's ConfigMaps.

Four reflectors (list-then-watch threads, see `kube_watch`) keep an in-memory copy of what the cluster
holds; `current()` turns it into an `InventoryState` with the same `build_inventory` as the file inventory,
and `status(spec)` answers the reconcile loop's "how many replicas, which pods to scrape" from memory.
A ConfigMap that does not parse keeps its last good version in force (logged, and reported as a problem so
the status writer records an Event). With `scaled_objects`, a fifth watches KEDA's ScaledObjects: a variant
described by one alone (CRD-free, `spec.variant.parse_scaled_object`) joins the inventory.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import kubernetes.client
import kubernetes.config

from kedascaler.engine.types import VariantKey, VariantSpec
from kedascaler.sources.base import ScrapeTarget, WorkloadStatus
from kedascaler.sources.kube_watch import Reflector, WatchedResource
from kedascaler.spec.config import (
    API_GROUP,
    API_VERSION,
    VA_KIND,
)
from kedascaler.spec.inventory import (
    SCALER_CONFIGMAPS,
    InventoryState,
    ParseMemo,
    build_inventory,
    configmap_or_last_good,
    without_static_targets,
)
from kedascaler.spec.problems import Problem
from kedascaler.spec.variant import SCALED_OBJECT_API_VERSION, SCALED_OBJECT_KIND

log = logging.getLogger("kedascaler.kubernetes")

VA_PLURAL = "variantautoscalings"
KEDA_GROUP, KEDA_VERSION = SCALED_OBJECT_API_VERSION.split("/")
SO_PLURAL = "scaledobjects"
VA_VERSION = API_VERSION.split("/", 1)[1]
PORT_ANNOTATION = "prometheus.io/port"
PORT_NAMES = ("http", "metrics")
DEFAULT_METRICS_PORT = 8000


def load_api_client(kubeconfig: str | None = None) -> kubernetes.client.ApiClient:
    """An ApiClient from the in-cluster service account, else from a kubeconfig (the given file or the default)."""
    configuration = kubernetes.client.Configuration()
    if kubeconfig is None:
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
            return kubernetes.client.ApiClient(configuration)
        except kubernetes.config.ConfigException:
            log.debug("not running in a cluster; trying kubeconfig")
    kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


# -- selectors and pods: pure helpers --

def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A Deployment's `spec.selector` (matchLabels and matchExpressions) against a pod's labels."""
    if not selector:
        return False  # a Deployment without a selector selects nothing (the API server forbids it anyway)
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    """Ready condition True, an IP, and not being deleted."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp") or not status.get("podIP"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def metrics_port(pod: Mapping[str, Any]) -> int:
    """The `prometheus.io/port` annotation, else the container port named http or metrics, else 8000."""
    annotation = ((pod.get("metadata") or {}).get("annotations") or {}).get(PORT_ANNOTATION)
    if annotation is not None and str(annotation).strip().isdigit():
        return int(str(annotation).strip())
    ports = [p for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []]
    for wanted in PORT_NAMES:
        for port in ports:
            if port.get("name") == wanted and isinstance(port.get("containerPort"), int):
                return port["containerPort"]
    return DEFAULT_METRICS_PORT


def metrics_url(pod: Mapping[str, Any]) -> str:
    ip = pod["status"]["podIP"]
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{metrics_port(pod)}/metrics"


def trim_pod(pod: Mapping[str, Any]) -> dict:
    """The part of a pod the scaler reads — name, namespace, labels, the port annotation, deletionTimestamp, podIP,
    the Ready condition, the containers' port names and numbers — kept in the pod cache instead of the whole
    object (a vLLM pod with its managedFields, env, volumes and statuses is tens of KiB; this, a few hundred bytes).
    `pod_is_ready`, `metrics_port` and `metrics_url` answer the same on it as on the whole pod."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    kept: dict[str, Any] = {k: meta[k] for k in ("name", "namespace", "labels", "uid", "resourceVersion",
                                                  "deletionTimestamp") if k in meta}
    annotations = meta.get("annotations") or {}
    if PORT_ANNOTATION in annotations:
        kept["annotations"] = {PORT_ANNOTATION: annotations[PORT_ANNOTATION]}
    ports = [{k: p[k] for k in ("name", "containerPort") if k in p}
             for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []]
    out: dict[str, Any] = {k: pod[k] for k in ("apiVersion", "kind") if k in pod}
    out["metadata"] = kept
    out["spec"] = {"containers": [{"ports": ports}]} if ports else {}
    out["status"] = {k: status[k] for k in ("podIP",) if k in status}
    ready = [{"type": c.get("type"), "status": c.get("status")} for c in status.get("conditions") or []
             if c.get("type") == "Ready"]
    if ready:
        out["status"]["conditions"] = ready
    return out


def trim_deployment(deploy: Mapping[str, Any]) -> dict:
    """The part of a Deployment the scaler reads: its name, spec.replicas and spec.selector, and its status (its
    pod template, often most of the object, is left out)."""
    meta, spec = deploy.get("metadata") or {}, deploy.get("spec") or {}
    out: dict[str, Any] = {k: deploy[k] for k in ("apiVersion", "kind") if k in deploy}
    out["metadata"] = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "generation") if k in meta}
    out["spec"] = {k: spec[k] for k in ("replicas", "selector") if k in spec}
    out["status"] = deploy.get("status") or {}
    return out


class KubernetesInventory:
    """Inventory and Workloads from the Kubernetes API, kept current by watches; `current()` never calls the API."""

    def __init__(self, api_client: kubernetes.client.ApiClient, *, namespace: str | None = None,
                 label_selector: str | None = None, controller_namespace: str = "kedascaler-system",
                 scaled_objects: bool = False, watch_timeout_s: int = 300, backoff_base_s: float = 0.5,
                 backoff_max_s: float = 30.0, metrics_endpoints_annotation: bool = False) -> None:
        """`scaled_objects`: also watch KEDA ScaledObjects (same namespace and label selector as the VAs), for
        CRD-free variants (`kedascaler.spec.variant.parse_scaled_object`). `metrics_endpoints_annotation`: honour
        the VAs' metrics-endpoints annotation (URLs to scrape); off by default, so that whoever may create a
        VariantAutoscaling cannot make the scaler fetch any URL."""
        self.api_client = api_client
        self.metrics_endpoints_annotation = metrics_endpoints_annotation
        self.namespace = namespace
        self.label_selector = label_selector
        self.controller_namespace = controller_namespace
        custom = kubernetes.client.CustomObjectsApi(api_client)
        apps = kubernetes.client.AppsV1Api(api_client)
        core = kubernetes.client.CoreV1Api(api_client)
        where = f"namespace {namespace}" if namespace else "all namespaces"
        va_list: Callable[..., Any]
        so_list: Callable[..., Any]
        deploy_list: Callable[..., Any]
        pod_list: Callable[..., Any]
        if namespace:
            va_list = functools.partial(custom.list_namespaced_custom_object, API_GROUP, VA_VERSION, namespace,
                                        VA_PLURAL, label_selector=label_selector)
            so_list = functools.partial(custom.list_namespaced_custom_object, KEDA_GROUP, KEDA_VERSION, namespace,
                                        SO_PLURAL, label_selector=label_selector)
            deploy_list = functools.partial(apps.list_namespaced_deployment, namespace)
            pod_list = functools.partial(core.list_namespaced_pod, namespace)
        else:
            va_list = functools.partial(custom.list_cluster_custom_object, API_GROUP, VA_VERSION, VA_PLURAL,
                                        label_selector=label_selector)
            so_list = functools.partial(custom.list_cluster_custom_object, KEDA_GROUP, KEDA_VERSION, SO_PLURAL,
                                        label_selector=label_selector)
            deploy_list = apps.list_deployment_for_all_namespaces
            pod_list = core.list_pod_for_all_namespaces
        def reflector(resource: WatchedResource, on_change: Callable[[], None] | None) -> Reflector:
            return Reflector(resource, on_change, watch_timeout_s=watch_timeout_s, backoff_base_s=backoff_base_s,
                             backoff_max_s=backoff_max_s)

        self.variantautoscalings = reflector(
            WatchedResource(VA_KIND, API_VERSION, va_list, f"VariantAutoscalings in {where}"), self._invalidate)
        self.deployments = reflector(WatchedResource("Deployment", "apps/v1", deploy_list, f"Deployments in {where}",
                                                     trim=trim_deployment), None)
        self.pods = reflector(WatchedResource("Pod", "v1", pod_list, f"Pods in {where}", trim=trim_pod),
                              self._pods_changed)
        self.configmaps = reflector(
            WatchedResource("ConfigMap", "v1", functools.partial(core.list_namespaced_config_map, controller_namespace),
                            f"ConfigMaps in {controller_namespace}"), self._invalidate)
        self._reflectors: tuple[Reflector, ...] = (self.variantautoscalings, self.deployments, self.pods,
                                                   self.configmaps)
        self.scaledobjects: Reflector | None = None
        if scaled_objects:
            self.scaledobjects = reflector(WatchedResource(SCALED_OBJECT_KIND, SCALED_OBJECT_API_VERSION, so_list,
                                                           f"ScaledObjects in {where}"), self._invalidate)
            self._reflectors += (self.scaledobjects,)
        self._lock = threading.Lock()
        self._dirty = True
        self._state = InventoryState()
        self._last_good: dict[str, Mapping[str, Any]] = {}  # ConfigMap name -> last version that parsed cleanly
        self._memo = ParseMemo()  # each object parsed once per resourceVersion (used under self._lock)
        self._reported_bad: set[tuple[str, str]] = set()  # (name, resourceVersion) already logged
        self._last_counts: tuple[int, int] = (-1, -1)
        self._pods_generation = 0
        self._pods_index: tuple[int, dict[str, list[dict]]] = (-1, {})

    # -- lifecycle --
    def start(self) -> KubernetesInventory:
        for reflector in self._reflectors:
            reflector.start()
        return self

    def stop(self) -> None:
        for reflector in self._reflectors:
            reflector._stop.set()
        for reflector in self._reflectors:
            reflector.stop()

    def wait_synced(self, timeout: float = 30.0) -> bool:
        """True once every watched resource has been listed once (call before the first cycle)."""
        return all(r.synced.wait(timeout) for r in self._reflectors)

    def _invalidate(self) -> None:
        self._dirty = True

    def _pods_changed(self) -> None:
        self._pods_generation += 1

    def _pods_in(self, namespace: str) -> list[dict]:
        """Ready pods of a namespace, from an index rebuilt only after a pod changed."""
        generation, index = self._pods_index
        if generation != self._pods_generation:
            generation = self._pods_generation  # read before listing: a change while listing rebuilds again
            index = {}
            for pod in self.pods.items():
                if pod_is_ready(pod):
                    index.setdefault((pod.get("metadata") or {}).get("namespace") or "", []).append(pod)
            self._pods_index = (generation, index)
        return index.get(namespace, [])

    # -- Inventory --
    @property
    def parses(self) -> int:
        """Objects parsed so far; an event re-parses the one object it changed (`ParseMemo`)."""
        return self._memo.parses

    def current(self) -> InventoryState:
        with self._lock:
            if self._dirty:
                self._dirty = False
                self._state = self._build()
            return self._state

    def _build(self) -> InventoryState:
        docs: list[tuple[str, Mapping[str, Any]]] = []
        problems: list[Problem] = []
        for cm in sorted(self.configmaps.items(), key=lambda o: o["metadata"]["name"]):
            name = cm["metadata"]["name"]
            if name not in SCALER_CONFIGMAPS:
                continue
            chosen, found = self._good_or_last_good(cm)
            problems += found
            docs.append((self._source(chosen), chosen))
        for va in self.variantautoscalings.items():
            docs.append((self._source(va), va))
        for so in self.scaledobjects.items() if self.scaledobjects is not None else ():
            docs.append((self._source(so), so))
        state = build_inventory(docs, self._memo)
        self._memo.finish()
        if not self.metrics_endpoints_annotation:  # whoever may create a VA must not choose what we fetch
            state = without_static_targets(state)
        state = replace(state, problems=tuple(problems) + state.problems)
        counts = (len(state.variants), len(state.problems))
        if counts != self._last_counts:
            log.info("inventory: %d variants, %d problems", *counts)
            self._last_counts = counts
        return state

    @staticmethod
    def _source(obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace', '')}/{obj.get('kind')}/{meta.get('name')}"

    def _good_or_last_good(self, cm: dict) -> tuple[Mapping[str, Any], list[Problem]]:
        """The ConfigMap if it parses cleanly; else its last good version (if any), with the problems."""
        name = cm["metadata"]["name"]
        chosen, found, last = configmap_or_last_good(name, cm, self._source(cm), self._last_good, self._memo)
        if not found:
            return cm, []
        rv = cm["metadata"].get("resourceVersion", "")
        keeping = (f"; keeping the last good version (resourceVersion {last['metadata'].get('resourceVersion')})"
                   if last is not None else "; no earlier good version: valid fields are used, the rest default")
        problems = [Problem(p.source, p.obj, p.field, p.message + keeping) for p in found]
        if (name, rv) not in self._reported_bad:
            self._reported_bad.add((name, rv))
            for problem in problems:
                log.warning("invalid ConfigMap: %s", problem)
        return chosen, problems

    # -- Workloads --
    def deployment(self, spec: VariantSpec) -> dict | None:
        return self.deployments.get(spec.key.namespace, spec.target_name)

    def status(self, spec: VariantSpec) -> WorkloadStatus | None:
        """The target Deployment's spec.replicas (current) and readyReplicas, and its ready pods' metrics URLs.

        A missing Deployment is 0 replicas (the status writer says the target is missing).
        """
        deploy = self.deployment(spec)
        if deploy is None:
            return WorkloadStatus(0, 0, ())
        dspec, dstatus = deploy.get("spec") or {}, deploy.get("status") or {}
        current = dspec.get("replicas")
        current = 1 if current is None else int(current)  # the API server defaults replicas to 1
        ready = int(dstatus.get("readyReplicas") or 0)
        selector = dspec.get("selector")
        targets = []
        for pod in self._pods_in(spec.key.namespace):
            meta = pod.get("metadata") or {}
            if selector_matches(selector, meta.get("labels") or {}):
                targets.append(ScrapeTarget(spec.key, meta["name"], metrics_url(pod)))
        return WorkloadStatus(current, ready, tuple(sorted(targets, key=lambda t: t.pod)))

    def va_status(self, key: VariantKey) -> dict | None:
        """A VariantAutoscaling's status as last seen by the watch."""
        obj = self.variantautoscalings.get(key.namespace, key.name)
        return (obj or {}).get("status")

    def va_uid(self, key: VariantKey) -> str | None:
        """A VariantAutoscaling's metadata.uid as last seen by the watch (Events name it)."""
        obj = self.variantautoscalings.get(key.namespace, key.name)
        return ((obj or {}).get("metadata") or {}).get("uid")

    def missing_targets(self, state: InventoryState | None = None) -> frozenset[VariantKey]:
        """Variants whose scaleTargetRef names a Deployment that does not exist."""
        state = state or self.current()
        return frozenset(s.key for s in state.specs if self.deployment(s) is None)
