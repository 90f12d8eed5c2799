"""A pod as the API server returns a vLLM serving pod of llm-d: managedFields, a routing sidecar, env, probes,
volumes, statuses — the object the pod cache would hold whole (tens of KiB as Python dicts)."""

from __future__ import annotations

from typing import Any


def _container(name: str, image: str, env: int, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name, "image": image, "imagePullPolicy": "IfNotPresent",
        "args": ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--port", "8000", "--max-num-seqs", "256",
                 "--gpu-memory-utilization", "0.9", "--enable-prefix-caching", "--kv-transfer-config",
                 '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'],
        "env": [{"name": f"VLLM_SETTING_{i}", "value": f"value-{i}-" + "x" * 24} for i in range(env)]
        + [{"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}],
        "ports": ports,
        "resources": {"limits": {"nvidia.com/gpu": "1", "memory": "64Gi", "cpu": "8"},
                      "requests": {"nvidia.com/gpu": "1", "memory": "48Gi", "cpu": "4"}},
        "readinessProbe": {"httpGet": {"path": "/health", "port": 8000, "scheme": "HTTP"}, "periodSeconds": 5,
                           "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8000, "scheme": "HTTP"}, "periodSeconds": 10,
                          "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "volumeMounts": [{"name": f"vol-{i}", "mountPath": f"/mnt/vol-{i}"} for i in range(6)]
        + [{"name": "kube-api-access", "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
    }


def _managed(manager: str, fields: int) -> dict[str, Any]:
    return {"manager": manager, "operation": "Update", "apiVersion": "v1", "time": "2026-11-23T10:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {f"f:label-{i}": {} for i in range(8)}},
                         "f:spec": {f'k:{{"name":"c{i}"}}': {"f:env": {f'k:{{"name":"VLLM_SETTING_{j}"}}': {
                             ".": {}, "f:name": {}, "f:value": {}} for j in range(fields)}} for i in range(2)}}}


def vllm_pod(name: str, *, namespace: str = "llm", app: str = "llama-h100", ip: str = "10.0.0.1") -> dict[str, Any]:
    labels = {"app": app, "llm-d.ai/inferenceServing": "true", "llm-d.ai/model": "llama-3-1-8b",
              "pod-template-hash": "5d8f9c7b6", "app.kubernetes.io/part-of": "llm-d"}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": namespace, "uid": "0c5e8f1e-3a7b-4a55-9c1e-7d7b1f5e9a10",
            "resourceVersion": "123456789", "creationTimestamp": "2026-11-23T10:00:00Z",
            "generateName": f"{app}-5d8f9c7b6-", "labels": labels,
            "annotations": {"prometheus.io/port": "8000", "prometheus.io/scrape": "true",
                            "kubectl.kubernetes.io/last-applied-configuration": "{" + '"x":1,' * 400 + "}"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{app}-5d8f9c7b6",
                                 "uid": "9f0c7a7e-1d2b-4c3d-8e9f-0a1b2c3d4e5f", "controller": True,
                                 "blockOwnerDeletion": True}],
            "managedFields": [_managed("kube-controller-manager", 32), _managed("kubelet", 16)],
        },
        "spec": {
            "containers": [_container("vllm", "vllm/vllm-openai:v0.11.0", 32,
                                      [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]),
                           _container("routing-proxy", "ghcr.io/llm-d/llm-d-routing-sidecar:v0.3", 8,
                                      [{"name": "proxy", "containerPort": 8080, "protocol": "TCP"}])],
            "volumes": [{"name": f"vol-{i}", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} for i in range(6)]
            + [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
            "nodeName": "gpu-node-17", "serviceAccountName": "llm-d", "restartPolicy": "Always",
            "tolerations": [{"key": k, "operator": "Exists", "effect": "NoSchedule"}
                            for k in ("nvidia.com/gpu", "node.kubernetes.io/not-ready",
                                      "node.kubernetes.io/unreachable")],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                       "values": ["NVIDIA-H100-80GB-HBM3"]}]}]}}},
        },
        "status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.168.1.17",
            "startTime": "2026-11-23T10:00:01Z", "qosClass": "Burstable",
            "conditions": [{"type": t, "status": "True", "lastProbeTime": None,
                            "lastTransitionTime": "2026-11-23T10:02:00Z"}
                           for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                     "PodScheduled")],
            "containerStatuses": [{"name": c, "ready": True, "restartCount": 0, "started": True,
                                   "image": f"{c}:latest", "imageID": "docker.io/library/" + c + "@sha256:" + "a" * 64,
                                   "containerID": "containerd://" + "b" * 64,
                                   "state": {"running": {"startedAt": "2026-11-23T10:00:05Z"}},
                                   "lastState": {}} for c in ("vllm", "routing-proxy")],
        },
    }


__all__ = ["vllm_pod"]
