"""What the user declared, typed: the variants, the configuration, and what was wrong with the input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kedascaler.engine.types import SaturationConfig, VariantKey, VariantSpec
from kedascaler.spec.problems import Problem

if TYPE_CHECKING:
    from kedascaler.spec.serviceclass import ServiceClasses


@dataclass(frozen=True)
class SaturationSettings:
    """The saturation ConfigMap: a global default plus per-model (namespace, model) overrides."""

    default: SaturationConfig = field(default_factory=SaturationConfig)
    overrides: tuple[tuple[str, str, SaturationConfig], ...] = ()  # (namespace or "", model_id, config)

    def for_model(self, namespace: str, model_id: str) -> SaturationConfig:
        """The override for this model in this namespace, else one for the model anywhere, else the default."""
        anywhere = None
        for ns, model, cfg in self.overrides:
            if model == model_id:
                if ns == namespace:
                    return cfg
                if ns == "":
                    anywhere = cfg
        return anywhere or self.default


@dataclass(frozen=True)
class InventoryState:
    """What the inventory knows now: the variants, the configuration, and what was wrong with the input."""

    variants: tuple[VariantSpec, ...] = ()
    saturation: SaturationSettings = field(default_factory=SaturationSettings)
    accelerator_costs: tuple[tuple[str, float], ...] = ()  # accelerator name -> unit cost
    problems: tuple[Problem, ...] = ()
    static_targets: tuple[tuple[VariantKey, tuple[str, ...]], ...] = ()  # local mode: metrics URLs per VA
    service_classes: ServiceClasses | None = None  # the `serviceclass` ConfigMap (SLO sizing); None: absent
