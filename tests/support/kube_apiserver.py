"""A small Kubernetes API server for tests: the real REST and watch wire format, in memory, on 127.0.0.1.

Speaks what kedascaler uses, for VariantAutoscalings, Deployments, Pods, ConfigMaps, Events and Leases:
list (with `metadata.resourceVersion`), get, create, update (PUT, 409 on a stale resourceVersion), delete,
merge-patch (also of the `/status` subresource), server-side apply of the `/status` subresource
(`application/apply-patch+yaml` with `fieldManager` and `force`: field ownership per manager, `kube_apply`),
and watch (`?watch=1`: chunked JSON lines of `{type, object}`, from a resourceVersion, BOOKMARK events when
asked for, and a 410 Gone `ERROR` event with a Status object when the resourceVersion is older than the last
compaction).

Tests drive it directly too: `put`/`delete` objects, `compact()` history, `drop_watches()` (cut every watch
connection mid-stream), `send_bookmarks()`, `stall()` (every request from then on waits, unanswered, until
`unstall()`; then its connection is closed), `hold_patches()` (status PATCHes wait until `release_patches()`),
`patch_delay_s` (every status PATCH takes that long: a slow API server), and read `requests` to count calls.

kubectl works against it too (`kube_discovery`): discovery (`/version`, `/api`, `/apis`, each group/version's
resources with short names), server-side tables for `kubectl get` (a custom resource's columns from its applied
CRD's `additionalPrinterColumns`), field selectors (the Events `kubectl describe` lists), Namespaces, CRDs and
KEDA's ScaledObjects and TriggerAuthentications (KEDA is "installed"), and strategic-merge patches (applied as
merge patches).
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes.client
import yaml

from tests.support import kube_apply, kube_discovery


@dataclass(frozen=True)
class Kind:
    prefix: str  # "/api/v1" or "/apis/<group>/<version>"
    plural: str
    kind: str
    namespaced: bool = True
    custom: bool = False  # CRs carry kind/apiVersion on list items; built-ins do not
    short_names: tuple[str, ...] = ()  # discovery's, unless an applied CRD names its own

    @property
    def api_version(self) -> str:
        return "v1" if self.prefix == "/api/v1" else self.prefix[len("/apis/"):]


KINDS = {
    k.plural: k
    for k in (
        Kind("/apis/llmd.ai/v1alpha1", "variantautoscalings", "VariantAutoscaling", custom=True, short_names=("va",)),
        Kind("/apis/apps/v1", "deployments", "Deployment", short_names=("deploy",)),
        Kind("/api/v1", "pods", "Pod", short_names=("po",)),
        Kind("/api/v1", "configmaps", "ConfigMap", short_names=("cm",)),
        Kind("/api/v1", "events", "Event", short_names=("ev",)),
        Kind("/api/v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",)),
        Kind("/apis/coordination.k8s.io/v1", "leases", "Lease"),
        Kind("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition",
             namespaced=False, short_names=("crd", "crds")),
        Kind("/apis/keda.sh/v1alpha1", "scaledobjects", "ScaledObject", custom=True, short_names=("so",)),
        Kind("/apis/keda.sh/v1alpha1", "triggerauthentications", "TriggerAuthentication", custom=True,
             short_names=("ta", "triggerauth")),
    )
}
PLURAL_OF = {k.kind: k.plural for k in KINDS.values()}

_PATH = re.compile(r"^(/api/v1|/apis/[^/]+/[^/]+)(?:/namespaces/([^/]+))?/([^/]+)(?:/([^/]+))?(?:/(status))?$")


def status_object(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated."""
    if not selector:
        return True
    for term in (t.strip() for t in selector.split(",") if t.strip()):
        if "!=" in term:
            k, v = (s.strip() for s in term.split("!=", 1))
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(k) != v:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class FakeApiServer:
    """The in-memory cluster state and its HTTP face; start() binds 127.0.0.1 on a free port."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rv = 100
        self.objects: dict[str, dict[tuple[str, str], dict]] = {p: {} for p in KINDS}
        self.history: dict[str, list[tuple[int, str, dict]]] = {p: [] for p in KINDS}
        self.compacted: dict[str, int] = {p: 0 for p in KINDS}
        self.requests: list[tuple[str, str]] = []
        self.drop_generation = 0
        self.open_watches: dict[str, int] = {p: 0 for p in KINDS}
        self.bookmark_generation = 0
        self.closed = False
        self.ownership: dict[tuple[str, str, str], dict[str, kube_apply.Ownership]] = {}  # (plural, ns, name)
        self.unstalled = threading.Event()
        self.unstalled.set()
        self.patches_released = threading.Event()
        self.patches_released.set()
        self.patch_delay_s = 0.0
        self.forbidden: set[str] = set()  # plurals answered 403, as for a ServiceAccount without the RBAC rule
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --
    def start(self) -> FakeApiServer:
        server = self

        class Handler(_Handler):
            api = server

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-apiserver",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.unstall()
        self.release_patches()
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- direct manipulation (tests) --
    def put(self, obj: dict) -> dict:
        """Create or replace an object (any resourceVersion in it is ignored); returns the stored copy."""
        kind = KINDS[PLURAL_OF[obj["kind"]]]
        meta = obj.setdefault("metadata", {})
        key = (meta.get("namespace", "default") if kind.namespaced else "", meta["name"])
        with self.cond:
            existing = self.objects[kind.plural].get(key)
            meta.pop("resourceVersion", None)
            if existing is None:
                return self._create(kind, key[0], obj)
            return self._replace(kind, key, existing, obj)

    def delete(self, kind_name: str, namespace: str, name: str) -> None:
        kind = KINDS[PLURAL_OF[kind_name]]
        with self.cond:
            self._delete(kind, (namespace, name))

    def get(self, kind_name: str, namespace: str, name: str) -> dict | None:
        with self.cond:
            obj = self.objects[PLURAL_OF[kind_name]].get((namespace, name))
            return copy.deepcopy(obj) if obj else None

    def list(self, kind_name: str, namespace: str | None = None) -> list[dict]:
        with self.cond:
            return [copy.deepcopy(o) for (ns, _), o in sorted(self.objects[PLURAL_OF[kind_name]].items())
                    if namespace is None or ns == namespace]

    def compact(self) -> None:
        """Forget all history: a watch from any earlier resourceVersion gets 410 Gone."""
        with self.cond:
            self.rv += 1
            for plural in KINDS:
                self.history[plural].clear()
                self.compacted[plural] = self.rv

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream (no terminating chunk)."""
        with self.cond:
            self.drop_generation += 1
            self.cond.notify_all()

    def send_bookmarks(self) -> None:
        with self.cond:
            self.bookmark_generation += 1
            self.cond.notify_all()

    def stall(self) -> None:
        """Stop answering: every request from now on waits (a black-holed API server) until `unstall()`."""
        self.unstalled.clear()

    def unstall(self) -> None:
        self.unstalled.set()

    def hold_patches(self) -> None:
        """Status PATCHes wait, unanswered, until `release_patches()` (a slow API server, on cue)."""
        self.patches_released.clear()

    def release_patches(self) -> None:
        self.patches_released.set()

    def owners(self, kind_name: str, namespace: str, name: str, part: str = "status") -> dict[str, set]:
        """The field managers of an object's `part` and the leaf paths each owns (server-side apply)."""
        with self.cond:
            own = self.ownership.get((PLURAL_OF[kind_name], namespace, name), {}).get(part)
            return {m: set(p) for m, p in own.managers.items()} if own else {}

    def count(self, method: str, path_part: str = "") -> int:
        return sum(1 for m, p in list(self.requests) if m == method and path_part in p)

    # -- what kubectl reads (call with self.cond held) --
    def crd_for(self, kind: Kind) -> dict | None:
        """The applied CustomResourceDefinition of a custom kind, if any."""
        group = kind.api_version.split("/", 1)[0]
        return self.objects["customresourcedefinitions"].get(("", f"{kind.plural}.{group}"))

    def discovered(self) -> list[dict[str, Any]]:
        """Every kind as discovery lists it; an applied CRD's short names and categories win."""
        out = []
        for kind in KINDS.values():
            names = ((self.crd_for(kind) or {}).get("spec") or {}).get("names") or {} if kind.custom else {}
            out.append({"prefix": kind.prefix, "plural": kind.plural, "kind": kind.kind,
                        "namespaced": kind.namespaced, "short_names": names.get("shortNames") or kind.short_names,
                        "categories": names.get("categories") or ()})
        return out

    def table_of(self, kind: Kind, objects: list[dict], rv: str) -> dict:
        """`kubectl get`'s server-side table: a custom kind's columns from its CRD, else Name and Age."""
        version = kind.api_version.split("/")[-1]
        columns = kube_discovery.printer_columns(self.crd_for(kind) if kind.custom else None, version)
        return kube_discovery.table(objects, columns, rv)

    # -- storage (call with self.cond held) --
    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _record(self, kind: Kind, event: str, obj: dict) -> None:
        self.history[kind.plural].append((self.rv, event, copy.deepcopy(obj)))
        self.cond.notify_all()

    def _create(self, kind: Kind, namespace: str, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if kind.namespaced:
            meta["namespace"] = namespace
        self.ownership.pop((kind.plural, namespace, meta["name"]), None)
        meta.update(uid=str(uuid.uuid4()), generation=1, resourceVersion=self._bump(),
                    creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self.objects[kind.plural][(namespace, meta["name"])] = obj
        self._record(kind, "ADDED", obj)
        return copy.deepcopy(obj)

    def _replace(self, kind: Kind, key: tuple[str, str], existing: dict, new: dict, *, status_only: bool = False,
                 keep_status: bool = False) -> dict:
        obj = copy.deepcopy(new)
        obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
        meta = obj.setdefault("metadata", {})
        old_meta = existing["metadata"]
        for field in ("uid", "creationTimestamp", "namespace", "name"):
            if field in old_meta:
                meta[field] = old_meta[field]
        if status_only:
            obj = copy.deepcopy(existing) | {"status": obj.get("status")}
            meta = obj["metadata"]
        elif keep_status and "status" in existing:
            obj["status"] = copy.deepcopy(existing["status"])
        generation = old_meta.get("generation", 1)
        if obj.get("spec") != existing.get("spec"):
            generation += 1
        meta["generation"] = generation
        meta["resourceVersion"] = self._bump()
        self.objects[kind.plural][key] = obj
        self._record(kind, "MODIFIED", obj)
        return copy.deepcopy(obj)

    def _delete(self, kind: Kind, key: tuple[str, str]) -> dict | None:
        obj = self.objects[kind.plural].pop(key, None)
        if obj is None:
            return None
        self.ownership.pop((kind.plural, *key), None)
        obj["metadata"]["resourceVersion"] = self._bump()
        self._record(kind, "DELETED", obj)
        return copy.deepcopy(obj)

    def _events_since(self, kind: Kind, rv: int, namespace: str | None,
                      selector: str | None) -> list[tuple[int, str, dict]]:
        return [(erv, t, o) for erv, t, o in self.history[kind.plural]
                if erv > rv and (namespace is None or o["metadata"].get("namespace") == namespace)
                and selector_matches(selector, o["metadata"].get("labels") or {})]


class _Handler(BaseHTTPRequestHandler):
    api: FakeApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    # -- plumbing --
    def _send_json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _fail(self, code: int, reason: str, message: str) -> None:
        self._send_json(code, status_object(code, reason, message))

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null") if length else None

    def _route(self) -> tuple[Kind, str | None, str | None, bool, dict[str, str]] | None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        m = _PATH.match(parts.path)
        if not m or m.group(3) not in KINDS or KINDS[m.group(3)].prefix != m.group(1):
            self._fail(404, "NotFound", f"the server could not find the requested resource ({parts.path})")
            return None
        if m.group(3) in self.api.forbidden:
            self._fail(403, "Forbidden", f"{m.group(3)} is forbidden: the ServiceAccount may not list it")
            return None
        return KINDS[m.group(3)], m.group(2), m.group(4), bool(m.group(5)), query

    def _refused(self, kind: Kind, query: dict[str, str], obj: dict) -> bool:
        """`?fieldValidation=Strict` (kubectl's default) on a custom resource whose CRD is applied: refuse what
        the CRD's schema does not declare or allow, as the API server does (the caller holds the lock)."""
        crd = self.api.crd_for(kind) if kind.custom and query.get("fieldValidation") == "Strict" else None
        found = kube_discovery.strict_errors({**obj, "apiVersion": kind.api_version, "kind": kind.kind}, crd) \
            if crd else None
        if found:
            self._fail(*found)
        return bool(found)

    def _log(self) -> None:
        with self.api.cond:
            self.api.requests.append((self.command, self.path))
        if not self.api.unstalled.is_set():  # black-holed: never answer this one
            self.api.unstalled.wait(timeout=60)
            self.close_connection = True
            raise _Stalled

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _Stalled:
            self.close_connection = True

    def _manager(self, query: dict[str, str]) -> str:
        return "update:" + (query.get("fieldManager") or self.headers.get("User-Agent", "unknown").split("/")[0])

    # -- verbs --
    def do_GET(self) -> None:  # noqa: N802
        self._log()
        with self.api.cond:
            path, resources = urlsplit(self.path).path, self.api.discovered()
            found = (kube_discovery.discovery(path, resources, f"127.0.0.1:{self.server.server_address[1]}")
                     or kube_discovery.openapi_v3(path, resources))
        if found is not None:
            self._send_json(200, found)
            return
        route = self._route()
        if route is None:
            return
        kind, ns, name, _, query = route
        api = self.api
        as_table = kube_discovery.wants_table(self.headers.get("Accept"))
        if name:
            with api.cond:
                obj = api.objects[kind.plural].get((ns or "", name))
                obj = copy.deepcopy(obj) if obj else None
                rv = str(api.rv)
            if obj is None:
                self._fail(404, "NotFound", f'{kind.plural} "{name}" not found')
            elif as_table:
                with api.cond:
                    self._send_json(200, api.table_of(kind, [obj], rv))
            else:
                self._send_json(200, obj)
            return
        selector = query.get("labelSelector")
        if query.get("watch") in ("1", "true", "True"):
            self._watch(kind, ns, selector, query)
            return
        fields = query.get("fieldSelector")
        with api.cond:
            items = [copy.deepcopy(o) for (ons, _), o in sorted(api.objects[kind.plural].items())
                     if (ns is None or ons == ns) and selector_matches(selector, o["metadata"].get("labels") or {})
                     and kube_discovery.field_selector_matches(fields, o)]
            rv = str(api.rv)
            if as_table:
                self._send_json(200, api.table_of(kind, items, rv))
                return
        if not kind.custom:
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
        self._send_json(200, {"kind": f"{kind.kind}List", "apiVersion": kind.api_version,
                              "metadata": {"resourceVersion": rv}, "items": items})

    def do_POST(self) -> None:  # noqa: N802
        self._log()
        route = self._route()
        if route is None:
            return
        kind, ns, name, _, query = route
        body = self._body()
        if name or not isinstance(body, dict):
            self._fail(405, "MethodNotAllowed", "POST to a collection with an object body")
            return
        with self.api.cond:
            if self._refused(kind, query, body):
                return
            meta = body.setdefault("metadata", {})
            if meta.get("name") and (ns or "", meta["name"]) in self.api.objects[kind.plural]:
                self._fail(409, "AlreadyExists", f'{kind.plural} "{meta["name"]}" already exists')
                return
            if not meta.get("name") and not meta.get("generateName"):
                self._fail(422, "Invalid", "metadata.name or metadata.generateName is required")
                return
            meta.pop("resourceVersion", None)
            created = self.api._create(kind, ns or "", body)
        self._send_json(201, created)

    def do_PUT(self) -> None:  # noqa: N802
        self._log()
        route = self._route()
        if route is None:
            return
        kind, ns, name, status_sub, query = route
        body = self._body()
        if not name or not isinstance(body, dict):
            self._fail(405, "MethodNotAllowed", "PUT needs a named object")
            return
        with self.api.cond:
            if self._refused(kind, query, body):
                return
            key = (ns or "", name)
            existing = self.api.objects[kind.plural].get(key)
            if existing is None:
                self._fail(404, "NotFound", f'{kind.plural} "{name}" not found')
                return
            sent_rv = (body.get("metadata") or {}).get("resourceVersion")
            if sent_rv and sent_rv != existing["metadata"]["resourceVersion"]:
                self._fail(409, "Conflict", f'Operation cannot be fulfilled on {kind.plural} "{name}": the object '
                           "has been modified; please apply your changes to the latest version and try again")
                return
            updated = self.api._replace(kind, key, existing, body, status_only=status_sub,
                                        keep_status=kind.custom and not status_sub)
            self._owned(kind, key).update(self._manager(query), existing.get("status"), updated.get("status"))
        self._send_json(200, updated)

    def _owned(self, kind: Kind, key: tuple[str, str], part: str = "status") -> kube_apply.Ownership:
        return self.api.ownership.setdefault((kind.plural, *key), {}).setdefault(part, kube_apply.Ownership())

    def do_PATCH(self) -> None:  # noqa: N802
        self._log()
        route = self._route()
        if route is None:
            return
        kind, ns, name, status_sub, query = route
        ctype = self.headers.get("Content-Type", "")
        if status_sub and not self.api.patches_released.is_set():
            self.api.patches_released.wait(timeout=60)
        if status_sub and self.api.patch_delay_s:
            time.sleep(self.api.patch_delay_s)
        if "apply-patch" in ctype:
            self._apply(kind, ns, name or "", status_sub, query)
            return
        body = self._body()
        if "merge-patch" not in ctype or not isinstance(body, dict):
            self._fail(415, "UnsupportedMediaType", f"only merge patches are supported here, got {ctype!r}")
            return
        if "strategic-merge-patch" in ctype:  # kubectl apply on built-ins: close enough as a merge patch
            body = {k: v for k, v in body.items() if not k.startswith("$")}
        with self.api.cond:
            key = (ns or "", name or "")
            existing = self.api.objects[kind.plural].get(key)
            if existing is None:
                self._fail(404, "NotFound", f'{kind.plural} "{name}" not found')
                return
            if status_sub:
                patched = merge_patch(existing, {"status": body.get("status")})
                self._owned(kind, key).update(self._manager(query), existing.get("status"), patched.get("status"))
            else:
                patched = merge_patch(existing, {k: v for k, v in body.items() if k != "status" or not kind.custom})
            if self._refused(kind, query, patched):
                return
            updated = self.api._replace(kind, key, existing, patched, status_only=status_sub)
        self._send_json(200, updated)

    def _apply(self, kind: Kind, ns: str | None, name: str, status_sub: bool, query: dict[str, str]) -> None:
        """Server-side apply of the /status subresource: kedascaler's status writes."""
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = yaml.safe_load(self.rfile.read(length)) if length else None
        except yaml.YAMLError as exc:
            self._fail(400, "BadRequest", f"error decoding YAML: {exc}")
            return
        manager = query.get("fieldManager")
        if not manager:
            self._fail(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: "
                       "is required for apply patch")
            return
        if not status_sub:
            self._fail(415, "UnsupportedMediaType", "this fixture applies the /status subresource only")
            return
        meta = (body or {}).get("metadata") or {} if isinstance(body, dict) else {}
        if not isinstance(body, dict) or body.get("apiVersion") != kind.api_version or body.get("kind") != kind.kind \
                or meta.get("name") != name:
            self._fail(400, "BadRequest", "an apply patch needs apiVersion, kind and metadata.name of the object")
            return
        with self.api.cond:
            key = (ns or "", name)
            existing = self.api.objects[kind.plural].get(key)
            if existing is None:
                self._fail(404, "NotFound", f'{kind.plural} "{name}" not found')
                return
            status, conflicts = self._owned(kind, key).apply(
                manager, existing.get("status"), body.get("status") or {}, query.get("force") in ("true", "True", "1"))
            if conflicts:
                self._fail(409, "Conflict", "Apply failed with conflicts: " + "; ".join(conflicts))
                return
            if status == existing.get("status"):  # a no-op apply: no new resourceVersion, no watch event
                self._send_json(200, copy.deepcopy(existing))
                return
            updated = self.api._replace(kind, key, existing, {**existing, "status": status}, status_only=True)
        self._send_json(200, updated)

    def do_DELETE(self) -> None:  # noqa: N802
        self._log()
        route = self._route()
        if route is None:
            return
        kind, ns, name, _, _ = route
        with self.api.cond:
            deleted = self.api._delete(kind, (ns or "", name or ""))
        if deleted is None:
            self._fail(404, "NotFound", f'{kind.plural} "{name}" not found')
        else:
            self._send_json(200, deleted)

    # -- watch --
    def _chunk(self, event: dict) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, kind: Kind, ns: str | None, selector: str | None, query: dict[str, str]) -> None:
        api = self.api
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1", "True")
        timeout = float(query.get("timeoutSeconds") or 3600)
        deadline = time.monotonic() + timeout
        raw_rv = query.get("resourceVersion") or "0"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with api.cond:
            api.open_watches[kind.plural] += 1
            drop_gen, book_gen = api.drop_generation, api.bookmark_generation
            if raw_rv == "0":  # "any": synthetic ADDED for what exists now
                rv = api.rv
                initial = [("ADDED", copy.deepcopy(o)) for (ons, _), o in sorted(api.objects[kind.plural].items())
                           if (ns is None or ons == ns)
                           and selector_matches(selector, o["metadata"].get("labels") or {})]
            else:
                rv, initial = int(raw_rv), []
                if rv < api.compacted[kind.plural]:
                    initial = None  # type: ignore[assignment]
        try:
            if initial is None:
                self._chunk({"type": "ERROR", "object": status_object(
                    410, "Expired", f"too old resource version: {rv} ({api.compacted[kind.plural]})")})
                self._end()
                return
            for event_type, obj in initial:
                self._chunk({"type": event_type, "object": obj})
            for event in self._events(kind, ns, selector, rv, deadline, drop_gen, book_gen, bookmarks):
                self._chunk(event)
            self._end()
        except _Dropped:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            with api.cond:
                api.open_watches[kind.plural] -= 1

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _events(self, kind: Kind, ns: str | None, selector: str | None, rv: int, deadline: float,
                drop_gen: int, book_gen: int, bookmarks: bool) -> Iterator[dict]:
        api = self.api
        while True:
            with api.cond:
                if api.drop_generation != drop_gen:
                    raise _Dropped
                pending = api._events_since(kind, rv, ns, selector)
                if not pending:
                    if api.closed or time.monotonic() >= deadline:
                        return
                    if api.bookmark_generation != book_gen:
                        book_gen = api.bookmark_generation
                        rv = api.rv
                        if bookmarks:
                            pending_bookmark = {"type": "BOOKMARK", "object": {
                                "kind": kind.kind, "apiVersion": kind.api_version,
                                "metadata": {"resourceVersion": str(rv)}}}
                        else:
                            pending_bookmark = None
                    else:
                        api.cond.wait(timeout=min(0.2, max(0.0, deadline - time.monotonic())))
                        continue
                else:
                    pending_bookmark = None
            if pending_bookmark is not None:
                yield pending_bookmark
            for erv, event_type, obj in pending:
                rv = erv
                yield {"type": event_type, "object": obj}


class _Dropped(Exception):
    pass


class _Stalled(Exception):
    """A request the stalled fixture never answers."""


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-watch is normal here


def api_client_for(server: FakeApiServer) -> kubernetes.client.ApiClient:
    """An official-client ApiClient talking to the fixture."""
    configuration = kubernetes.client.Configuration()
    configuration.host = server.url
    return kubernetes.client.ApiClient(configuration)


# -- builders of the objects tests need --

def va(name: str, model: str, *, namespace: str = "demo", accelerator: str = "H100", target: str | None = None,
       labels: dict[str, str] | None = None, **spec: Any) -> dict:
    return {"apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target or name},
                     "modelID": model, "accelerator": accelerator, **spec}}


def deployment(name: str, *, namespace: str = "demo", replicas: int = 1, ready: int | None = None,
               app: str | None = None) -> dict:
    labels = {"app": app or name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai"}]}}},
            "status": {"replicas": replicas, "readyReplicas": replicas if ready is None else ready}}


def pod(name: str, *, app: str, ip: str, namespace: str = "demo", ready: bool = True,
        port_annotation: str | None = None, port_name: str | None = None, port: int = 8000) -> dict:
    annotations = {"prometheus.io/port": port_annotation} if port_annotation else {}
    container: dict[str, Any] = {"name": "vllm", "image": "vllm/vllm-openai"}
    if port_name:
        container["ports"] = [{"name": port_name, "containerPort": port}]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}, "annotations": annotations},
            "spec": {"containers": [container]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def configmap(name: str, data: dict[str, str], namespace: str = "kedascaler-system") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}
