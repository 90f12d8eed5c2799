"""The name of one variant: its VariantAutoscaling's namespace and name (the key of every per-variant map)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VariantKey:
    """Identifies one variant: the VariantAutoscaling's namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


__all__ = ["VariantKey"]
