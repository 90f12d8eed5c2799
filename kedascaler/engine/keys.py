"""The name of one variant: its VariantAutoscaling's namespace and name (the key of every per-variant map)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VariantKey:
    """Identifies one variant: the VariantAutoscaling's namespace and name.

    Its hash is the tuple's, worked out once: a cycle looks a variant up about a hundred times (half the cost of
    a lookup was hashing the key again). A pickle carries the two names only, so a process with another hash
    seed works the hash out for itself."""

    namespace: str
    name: str
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.namespace, self.name)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[VariantKey], tuple[str, str]]:
        return VariantKey, (self.namespace, self.name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


__all__ = ["VariantKey"]
