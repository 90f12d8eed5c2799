"""A tiny renderer for the Helm templates of charts/kedascaler: exactly the constructs the chart uses.

`{{ .Values.a.b }}`, `{{ .Release.Name }}`, `{{ .Release.Namespace }}`, `{{ .Values.x | nindent N }}`,
`{{ .Files.Get "path" | indent N }}` (a file of the chart, never itself a template),
`{{- if .Values.x }} ... {{- end }}` (nestable), and Go's `{{-` / `-}}` whitespace trimming. Anything else
is an error, so the chart stays renderable by this and by Helm alike. A missing values key is an error too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)
_REF = re.compile(r"^\.(Values|Release)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)$")


class TemplateError(Exception):
    pass


@dataclass
class Renderer:
    values: Mapping[str, Any]
    release_name: str = "kedascaler"
    namespace: str = "kedascaler-system"
    used: set[str] = field(default_factory=set)  # dotted values keys read
    chart_dir: Path | None = None  # for .Files.Get

    def lookup(self, ref: str) -> Any:
        m = _REF.match(ref)
        if not m:
            raise TemplateError(f"unsupported reference {ref!r}")
        root, path = m.group(1), m.group(2)[1:].split(".")
        if root == "Release":
            release = {"Name": self.release_name, "Namespace": self.namespace}
            if path[0] not in release or len(path) != 1:
                raise TemplateError(f"unsupported .Release field {ref!r}")
            return release[path[0]]
        node: Any = self.values
        for i, key in enumerate(path):
            if not isinstance(node, Mapping) or key not in node:
                raise TemplateError(f"values key {'.'.join(path[:i + 1])!r} is not defined in values.yaml")
            node = node[key]
        self.used.add(".".join(path))
        return node

    def evaluate(self, expr: str) -> str:
        parts = [p.strip() for p in expr.split("|")]
        files = re.fullmatch(r'\.Files\.Get "([^"]+)"', parts[0])
        if files:
            if self.chart_dir is None or not (self.chart_dir / files.group(1)).is_file():
                raise TemplateError(f"chart file {files.group(1)!r} does not exist")
            value: Any = (self.chart_dir / files.group(1)).read_text()
        else:
            value = self.lookup(parts[0])
        for fn in parts[1:]:
            m = re.fullmatch(r"(n?)indent (\d+)", fn)
            if not m:
                raise TemplateError(f"unsupported function {fn!r}")
            pad = " " * int(m.group(2))
            value = ("\n" if m.group(1) else "") + pad + str(value).replace("\n", "\n" + pad)
        return format_value(value)

    def render(self, text: str) -> str:
        pieces: list[tuple[str, str]] = []  # ("text", s) or ("action", expr)
        pos = 0
        trim_next = False
        for m in _ACTION.finditer(text):
            chunk = text[pos:m.start()]
            if trim_next:
                chunk = chunk.lstrip()
            if m.group(1):
                chunk = chunk.rstrip()
            pieces.append(("text", chunk))
            pieces.append(("action", m.group(2)))
            trim_next = bool(m.group(3))
            pos = m.end()
        tail = text[pos:]
        pieces.append(("text", tail.lstrip() if trim_next else tail))
        out: list[str] = []
        stack: list[bool] = []
        for kind, item in pieces:
            emitting = all(stack)
            if kind == "text":
                if emitting:
                    out.append(item)
            elif item.startswith("if "):
                stack.append(truthy(self.lookup(item[3:].strip())) if emitting else False)
            elif item == "end":
                if not stack:
                    raise TemplateError("{{ end }} without {{ if }}")
                stack.pop()
            elif item.startswith("/*") and item.endswith("*/"):
                continue
            elif emitting:
                out.append(self.evaluate(item))
            else:
                self.evaluate(item)  # still check references in skipped branches
        if stack:
            raise TemplateError("{{ if }} without {{ end }}")
        return "".join(out)


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", {}, [])


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise TemplateError("a map or list needs toYaml, which this chart does not use")
    return str(value)


def render_chart(chart: Path, overrides: Mapping[str, Any] | None = None, *, release_name: str = "kedascaler",
                 namespace: str = "kedascaler-system") -> tuple[list[tuple[str, dict]], Renderer]:
    """Every object of the chart (crds/ as is, templates/ rendered), with the file it came from."""
    values = yaml.safe_load((chart / "values.yaml").read_text())
    for dotted, value in (overrides or {}).items():
        node = values
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        if last not in node:
            raise TemplateError(f"override {dotted!r} is not a values key")
        node[last] = value
    renderer = Renderer(values, release_name, namespace, chart_dir=chart)
    objects: list[tuple[str, dict]] = []
    for path in sorted((chart / "crds").glob("*.yaml")):
        objects += [(str(path), d) for d in yaml.safe_load_all(path.read_text()) if d]
    for path in sorted((chart / "templates").glob("*.yaml")):
        rendered = renderer.render(path.read_text())
        objects += [(str(path), d) for d in yaml.safe_load_all(rendered) if d]
    return objects, renderer


def leaf_keys(values: Mapping[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            keys |= leaf_keys(value, dotted + ".")
        else:
            keys.add(dotted)
    return keys
