"""What kubectl needs from the API server fixture beyond REST: discovery, server-side tables, field selectors.

- **Discovery** (the legacy, unaggregated form, which kubectl falls back to when the answer is plain JSON):
  `/version`, `/api` (APIVersions), `/api/v1` and `/apis/<group>/<version>` (APIResourceList: every
  resource with its kind, scope, verbs, short names and `/status`), `/apis` (APIGroupList) and
  `/apis/<group>` (APIGroup).
- **Tables** (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`, what `kubectl get` asks for): a
  custom resource's columns are its CRD's `additionalPrinterColumns`, evaluated as the API server does
  (`Name` first; a simple JSONPath each; `date` columns as an age such as `5m`; a missing value is an empty
  cell); a kind without a CRD gets Name and Age.
- **Field selectors** (`kubectl describe` lists a resource's Events with
  `fieldSelector=involvedObject.name=…,involvedObject.kind=…`): equality terms on dotted paths.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_MISSING = object()
_FILTER = re.compile(r"""^\?\(@\.([A-Za-z0-9_.]+)\s*==\s*["']([^"']*)["']\)$""")
_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[([^\]]+)\]")
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
SERVER_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-kedascaler-fixture", "platform": "linux/amd64",
                  "goVersion": "go1.23", "compiler": "gc", "buildDate": "2026-01-01T00:00:00Z",
                  "gitCommit": "0" * 40, "gitTreeState": "clean"}


def json_path(obj: Any, path: str) -> Any:
    """A printer column's simple JSONPath (`.a.b`, `.a[0]`, `.a[?(@.type=="X")].b`) on an object; _MISSING when
    a step finds nothing (the API server's "no result")."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    node = obj
    for name, index in _STEP.findall(path):
        if name:
            if not isinstance(node, Mapping) or name not in node:
                return _MISSING
            node = node[name]
            continue
        match = _FILTER.match(index.strip())
        if match:
            field, wanted = match.groups()
            found = [item for item in node or [] if isinstance(item, Mapping)
                     and str(json_path(item, "." + field)) == wanted] if isinstance(node, list) else []
            if not found:
                return _MISSING
            node = found[0]
        elif index.strip().lstrip("-").isdigit() and isinstance(node, list):
            i = int(index)
            if not -len(node) <= i < len(node):
                return _MISSING
            node = node[i]
        else:
            return _MISSING
    return node


def human_age(timestamp: str, now: float | None = None) -> str:
    """An RFC 3339 time as the API server prints a `date` column: the age, `45s`, `5m`, `3h`, `2d`."""
    try:
        then = calendar.timegm(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return "<invalid>"
    seconds = max(0, int((time.time() if now is None else now) - then))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600 * 3:
        return f"{seconds // 60}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def cell(column_type: str, value: Any) -> Any:
    """One table cell from a column's value (the API server's conversion: typed, or None when it does not fit)."""
    if value is _MISSING or value is None:
        return None
    if column_type == "date":
        return human_age(value) if isinstance(value, str) else None
    if column_type == "integer":
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if column_type == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def printer_columns(crd: Mapping[str, Any] | None, version: str) -> list[dict[str, Any]]:
    """A CRD version's additionalPrinterColumns; with none (or no CRD), the API server's default: Age."""
    for v in ((crd or {}).get("spec") or {}).get("versions") or []:
        if v.get("name") == version and v.get("additionalPrinterColumns"):
            return list(v["additionalPrinterColumns"])
    return [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]


def table(objects: Sequence[Mapping[str, Any]], columns: Sequence[Mapping[str, Any]],
          resource_version: str) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of the objects: Name, then one cell per column, and each row's metadata."""
    definitions = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                    "description": "Name must be unique within a namespace."}]
    definitions += [{"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                     "description": c.get("description", ""), "priority": int(c.get("priority", 0))}
                    for c in columns]
    rows = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        cells = [meta.get("name")] + [cell(c.get("type", "string"), json_path(obj, c["jsonPath"])) for c in columns]
        rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                                "metadata": meta}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": definitions, "rows": rows}


def pruning(schema: dict) -> dict:
    """The schema as the API server applies it to a structural CRD: a field it does not declare is pruned
    (dropped silently), so here it is an error (additionalProperties: false wherever properties are listed)."""
    out = dict(schema)
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["properties"] = {k: pruning(v) for k, v in out["properties"].items()}
        out["additionalProperties"] = False
    if isinstance(out.get("items"), dict):
        out["items"] = pruning(out["items"])
    return out


def strict_errors(obj: Mapping[str, Any], crd: Mapping[str, Any]) -> tuple[int, str, str] | None:
    """`?fieldValidation=Strict` on a custom resource, as the API server does it: (400, BadRequest, …) for a
    field its CRD does not declare, (422, Invalid, …) for one that breaks the schema; None when it fits."""
    import jsonschema

    version = (obj.get("apiVersion") or "").rpartition("/")[2]
    schemas = [v["schema"]["openAPIV3Schema"] for v in (crd.get("spec") or {}).get("versions") or []
               if v.get("name") == version and v.get("schema")]
    if not schemas:
        return None
    unknown, invalid = [], []
    for error in jsonschema.Draft4Validator(pruning(schemas[0])).iter_errors(obj):
        where = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "additionalProperties":
            extra = re.findall(r"'([^']+)' was unexpected", error.message) or [error.message]
            unknown += [f'unknown field "{where + "." if where else ""}{name}"' for name in extra]
        else:
            invalid.append(f"{where or '<root>'}: Invalid value: {error.message}")
    kind, name = obj.get("kind"), (obj.get("metadata") or {}).get("name")
    if unknown:
        return 400, "BadRequest", f"{kind} in version \"{version}\" cannot be handled as a {kind}: strict " \
                                  f"decoding error: {', '.join(unknown)}"
    if invalid:
        return 422, "Invalid", f'{kind}.{crd["spec"]["group"]} "{name}" is invalid: ' + "; ".join(invalid)
    return None


def wants_table(accept: str | None) -> bool:
    return bool(accept) and "as=Table" in accept


def field_selector_matches(selector: str | None, obj: Mapping[str, Any]) -> bool:
    """Equality field selectors (`a.b=c`, `a.b==c`, `a.b!=c`, comma-separated) on an object's dotted paths."""
    for term in (t.strip() for t in (selector or "").split(",") if t.strip()):
        negate = "!=" in term
        path, _, wanted = term.replace("!=", "=").replace("==", "=").partition("=")
        value = json_path(obj, "." + path.strip())
        found = "" if value is _MISSING or value is None else str(value)
        if (found == wanted.strip()) == negate:
            return False
    return True


# -- discovery ---------------------------------------------------------------------------------------------------

def _group_version(prefix: str) -> str:
    return "v1" if prefix == "/api/v1" else prefix[len("/apis/"):]


def resource_list(group_version: str, resources: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """APIResourceList for one group/version: `resources` are dicts with plural, kind, namespaced, short_names."""
    items = []
    for r in resources:
        items.append({"name": r["plural"], "singularName": r["kind"].lower(), "namespaced": r["namespaced"],
                      "kind": r["kind"], "verbs": VERBS, "shortNames": list(r.get("short_names") or []),
                      "categories": list(r.get("categories") or [])})
        items.append({"name": f"{r['plural']}/status", "singularName": "", "namespaced": r["namespaced"],
                      "kind": r["kind"], "verbs": ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": items}


def api_group(name: str, versions: Sequence[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": listed, "preferredVersion": listed[0]}


def discovery(path: str, resources: Iterable[Mapping[str, Any]], server_address: str) -> dict[str, Any] | None:
    """The discovery document at `path` (None: not a discovery path). `resources` carry their `prefix`."""
    by_prefix: dict[str, list[Mapping[str, Any]]] = {}
    for r in resources:
        by_prefix.setdefault(r["prefix"], []).append(r)
    groups: dict[str, list[str]] = {}
    for prefix in by_prefix:
        if prefix != "/api/v1":
            group, version = _group_version(prefix).split("/", 1)
            groups.setdefault(group, []).append(version)
    path = path.rstrip("/") or "/"
    if path == "/version":
        return dict(SERVER_VERSION)
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [api_group(g, vs) for g, vs in sorted(groups.items())]}
    if path in by_prefix:
        return resource_list(_group_version(path), by_prefix[path])
    parts = path.split("/")
    if len(parts) == 3 and parts[1] == "apis" and parts[2] in groups:
        return api_group(parts[2], groups[parts[2]])
    return None


# -- OpenAPI v3: just enough for kubectl to know that the server validates fields itself ------------------------
# kubectl apply/create (--validate=strict, the default) reads /openapi/v3: when the PATCH operation of a kind
# takes the `fieldValidation` query parameter, it leaves validation to the server (`?fieldValidation=Strict`).

def openapi_v3(path: str, resources: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The OpenAPI v3 index at /openapi/v3, or one group/version's document (None: not an OpenAPI path)."""
    by_prefix: dict[str, list[Mapping[str, Any]]] = {}
    for r in resources:
        by_prefix.setdefault(r["prefix"], []).append(r)
    path = path.rstrip("/")
    if path == "/openapi/v3":
        return {"paths": {prefix[1:]: {"serverRelativeURL": f"/openapi/v3{prefix}?hash=fixture"}
                          for prefix in sorted(by_prefix)}}
    prefix = path[len("/openapi/v3"):] if path.startswith("/openapi/v3/") else None
    if prefix not in by_prefix:
        return None
    group_version = _group_version(prefix)
    group, _, version = group_version.rpartition("/")
    paths = {}
    for r in by_prefix[prefix]:
        scope = f"{prefix}/namespaces/{{namespace}}" if r["namespaced"] else prefix
        gvk = {"group": group, "version": version, "kind": r["kind"]}
        validation = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        paths[f"{scope}/{r['plural']}/{{name}}"] = {
            "patch": {"operationId": f"patch{r['kind']}", "x-kubernetes-group-version-kind": gvk,
                      "x-kubernetes-action": "patch", "parameters": [validation],
                      "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": {}}}
