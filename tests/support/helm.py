"""The chart as real Helm renders and lints it: Helm v4's engine, in process, from the `helm-python-sdk` wheel.

No helm binary and no cluster: `render_chart` coalesces the values as `helm template` does, renders every
template and returns each object with the file it came from, the CRDs of `crds/` first (Helm installs those
as they are). `lint_chart` is `helm lint --strict`. When the SDK cannot be loaded the tests that need it are
skipped, except under `CI=true`, where a missing part is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

RELEASE = "kedascaler"
NAMESPACE = "kedascaler-system"


def helm_sdk() -> Any:
    """The `helm_python` module; skips (fails under CI=true) when it cannot be imported or loaded."""
    try:
        import helm_python
    except Exception as exc:  # noqa: BLE001 - an ImportError or the native library failing to load
        message = f"helm-python-sdk is not usable here ({type(exc).__name__}: {exc}); `uv sync` installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return helm_python


def nested(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Dotted overrides (`{"tls.enabled": True}`) as the nested values Helm takes (`--set tls.enabled=true`)."""
    out: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        node = out
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return out


def render_chart(chart: Path, overrides: Mapping[str, Any] | None = None, *, release_name: str = RELEASE,
                 namespace: str = NAMESPACE) -> tuple[list[tuple[str, dict]], dict[str, Any]]:
    """Every object of the chart (crds/ as they are, templates/ rendered by Helm) with its file, and the values
    Helm used (the chart's defaults coalesced with the overrides)."""
    helm = helm_sdk()
    values = nested(overrides)
    objects: list[tuple[str, dict]] = []
    with helm.Chart.load(str(chart)) as loaded:
        used = loaded.merge_values(values)
        for crd in loaded.crds:
            objects += [(crd["filename"], d) for d in yaml.safe_load_all(crd["data"]) if d]
        manifests = loaded.render(values, name=release_name, namespace=namespace, is_install=True)
    for source in sorted(manifests):
        if source.endswith(("NOTES.txt", ".tpl")):
            continue
        objects += [(source, d) for d in yaml.safe_load_all(manifests[source]) if d]
    return objects, used


def lint_chart(chart: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`helm lint --strict` of the chart with these values: {"messages": [{severity, path, error}], "errors"}."""
    helm = helm_sdk()
    report: dict[str, Any] = helm.lint(str(chart), nested(overrides), strict=True, namespace=NAMESPACE,
                                       kube_version="v1.30.0")
    return report


def leaf_keys(values: Mapping[str, Any], prefix: str = "") -> set[str]:
    """The dotted keys of every leaf of a values tree (an empty map is a leaf)."""
    keys: set[str] = set()
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            keys |= leaf_keys(value, dotted + ".")
        else:
            keys.add(dotted)
    return keys
