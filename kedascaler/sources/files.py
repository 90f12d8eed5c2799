"""The file-backed inventory: a folder of the YAML a user would `kubectl apply`, for running with no cluster.

Re-read whenever a file changes (cheap mtime check), so editing a ConfigMap file is a hot reload. Invalid
documents are reported with file, object and field (a YAML error with its line and column) and never stop
the valid ones; a file or ConfigMap that breaks keeps its last good version in force.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from kedascaler.spec.config import SAFE_LOADER
from kedascaler.spec.inventory import SCALER_CONFIGMAPS, InventoryState, build_inventory, configmap_or_last_good
from kedascaler.spec.problems import Problem

log = logging.getLogger("kedascaler.inventory")


_YAML_SUFFIXES = (".yaml", ".yml")
Documents = list[tuple[str, Mapping[str, Any]]]


def yaml_files(folder: Path) -> list[Path]:
    """The YAML files of a folder, recursively, sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix in _YAML_SUFFIXES and p.is_file())


def yaml_error(exc: BaseException) -> str:
    """What is wrong with a YAML text, with the line and column of the mark when the parser gives one."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}{context}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def read_file(path: Path) -> tuple[Documents, list[Problem]] | str:
    """Every Kubernetes object of one YAML file (with its problems), or why the file cannot be read at all."""
    try:
        loaded = list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER))  # noqa: S506
    except Exception as exc:  # noqa: BLE001 - YAMLError, OSError, UnicodeDecodeError, RecursionError: one answer
        return yaml_error(exc)
    docs: Documents = []
    problems: list[Problem] = []
    for i, doc in enumerate(loaded):
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            problems.append(Problem(str(path), f"document {i + 1}", "-", "expected a Kubernetes object (a mapping)"))
            continue
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            docs += [(str(path), item) for item in doc["items"] if isinstance(item, Mapping)]
        else:
            docs.append((str(path), doc))
    return docs, problems


def read_documents(folder: Path) -> tuple[Documents, list[Problem]]:
    """Every YAML document in the folder (recursively, sorted), with the file it came from."""
    docs: Documents = []
    problems: list[Problem] = []
    for path in yaml_files(folder):
        read = read_file(path)
        if isinstance(read, str):
            problems.append(Problem(str(path), "file", "-", f"cannot be read as YAML: {read}"))
            continue
        docs += read[0]
        problems += read[1]
    return docs, problems


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


class FileInventory:
    """Inventory from a folder; reloads when any file's mtime or the set of files changes.

    A file that stops parsing keeps its last good documents in force, and a saturation, cost or service-class
    ConfigMap that stops validating keeps its last good version, as the Kubernetes inventory does: one broken
    edit never drops the VariantAutoscalings of a file or reverts thresholds and costs to their defaults. Both
    are reported as problems (logged, and printed by `validate`) until fixed."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"inventory folder {self.folder} does not exist")
        self._lock = threading.Lock()
        self._fingerprint: tuple = ()
        self._state = InventoryState()
        self._files: dict[Path, tuple[Documents, list[Problem]]] = {}  # the last good read of each file
        self._last_good_cm: dict[str, Mapping[str, Any]] = {}  # ConfigMap name -> last version without problems

    def _fingerprint_now(self) -> tuple:
        return tuple(sorted((str(p), *_stamp(p)) for p in yaml_files(self.folder)))

    def current(self) -> InventoryState:
        with self._lock:
            try:
                fingerprint = self._fingerprint_now()
            except OSError:
                return self._state  # a file vanished mid-scan: keep the last good view
            if fingerprint != self._fingerprint:
                try:
                    self._state = self._load()
                except Exception:  # noqa: BLE001 - a bug on odd input must not stop every cycle: keep the last view
                    log.exception("inventory: reading %s failed; keeping the last good view", self.folder)
                    return self._state
                self._fingerprint = fingerprint
                for problem in self._state.problems:
                    log.warning("invalid inventory input: %s", problem)
                log.info("inventory loaded from %s: %d variants, %d problems",
                         self.folder, len(self._state.variants), len(self._state.problems))
            return self._state

    def _load(self) -> InventoryState:
        docs: Documents = []
        problems: list[Problem] = []
        files = yaml_files(self.folder)
        self._files = {p: v for p, v in self._files.items() if p in files}  # a deleted file is forgotten
        for path in files:
            read = read_file(path)
            if isinstance(read, str):
                kept = self._files.get(path)
                keeping = ("; keeping the last good version of the file until it is fixed" if kept is not None
                           else "; nothing from this file is used until it is fixed")
                problems.append(Problem(str(path), "file", "-", f"cannot be read as YAML: {read}{keeping}"))
                read = kept if kept is not None else ([], [])
            else:
                self._files[path] = read
            docs += read[0]
            problems += read[1]
        docs, cm_problems = self._good_or_last_good(docs)
        state = build_inventory(docs)
        return replace(state, problems=tuple(problems) + tuple(cm_problems) + state.problems)

    def _good_or_last_good(self, docs: Documents) -> tuple[Documents, list[Problem]]:
        """Each scaler ConfigMap as read if it validates, else its last good version (problems said here)."""
        out: Documents = []
        problems: list[Problem] = []
        for source, doc in docs:
            meta = doc.get("metadata")
            name = meta.get("name") if isinstance(meta, Mapping) else None
            if doc.get("kind") != "ConfigMap" or not isinstance(name, str) or name not in SCALER_CONFIGMAPS:
                out.append((source, doc))
                continue
            chosen, found, last = configmap_or_last_good(name, doc, source, self._last_good_cm)
            keeping = ("; keeping the last good version until it is fixed" if last is not None
                       else "; no earlier good version: valid fields are used, the rest default")
            problems += [replace(p, message=p.message + keeping) for p in found]
            out.append((source, chosen))
        return out, problems


class StaticInventory:
    """An inventory that never changes: embedded objects (the demo's), or a test's."""

    def __init__(self, state: InventoryState) -> None:
        self._state = state

    @classmethod
    def from_documents(cls, docs: Iterable[tuple[str, Mapping[str, Any]]]) -> StaticInventory:
        return cls(build_inventory(docs))

    def current(self) -> InventoryState:
        return self._state
