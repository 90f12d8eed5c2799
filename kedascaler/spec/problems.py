"""What was wrong with the input, located precisely enough for a user to fix it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """An invalid input, located precisely enough for a user to fix it."""

    source: str  # file path, or "namespace/kind/name" in a cluster
    obj: str  # "VariantAutoscaling default/llama-h100" or "ConfigMap saturation-scaling-config"
    field: str  # "spec.maxReplicas"
    message: str  # what is wrong and what is expected

    def __str__(self) -> str:
        return f"{self.source}: {self.obj}: {self.field}: {self.message}"
