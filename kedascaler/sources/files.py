"""The file-backed inventory: a folder of the YAML a user would `kubectl apply`, for running with no cluster.

Re-read whenever a file changes (cheap mtime check), so editing a ConfigMap file is a hot reload. Invalid
documents are reported with file, object and field and never stop the valid ones.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from kedascaler.spec.inventory import InventoryState, build_inventory
from kedascaler.spec.problems import Problem

log = logging.getLogger("kedascaler.inventory")


def read_documents(folder: Path) -> tuple[list[tuple[str, Mapping[str, Any]]], list[Problem]]:
    """Every YAML document in the folder (recursively, sorted), with the file it came from."""
    docs: list[tuple[str, Mapping[str, Any]]] = []
    problems: list[Problem] = []
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    for path in files:
        try:
            loaded = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problems.append(Problem(str(path), "file", "-", f"cannot be read as YAML: {str(exc).splitlines()[0]}"))
            continue
        for i, doc in enumerate(loaded):
            if doc is None:
                continue
            if not isinstance(doc, Mapping):
                problems.append(Problem(str(path), f"document {i + 1}", "-",
                                        "expected a Kubernetes object (a mapping)"))
                continue
            if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
                docs += [(str(path), item) for item in doc["items"] if isinstance(item, Mapping)]
            else:
                docs.append((str(path), doc))
    return docs, problems


class FileInventory:
    """Inventory from a folder; reloads when any file's mtime or the set of files changes."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"inventory folder {self.folder} does not exist")
        self._lock = threading.Lock()
        self._fingerprint: tuple = ()
        self._state = InventoryState()

    def _fingerprint_now(self) -> tuple:
        return tuple(sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size)
                            for p in self.folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()))

    def current(self) -> InventoryState:
        with self._lock:
            try:
                fingerprint = self._fingerprint_now()
            except OSError:
                return self._state  # a file vanished mid-scan: keep the last good view
            if fingerprint != self._fingerprint:
                docs, problems = read_documents(self.folder)
                state = build_inventory(docs)
                all_problems = tuple(problems) + state.problems
                self._state = replace(state, problems=all_problems)
                self._fingerprint = fingerprint
                for problem in all_problems:
                    log.warning("invalid inventory input: %s", problem)
                log.info("inventory loaded from %s: %d variants, %d problems",
                         self.folder, len(state.variants), len(all_problems))
            return self._state


class StaticInventory:
    """An inventory that never changes: embedded objects (the demo's), or a test's."""

    def __init__(self, state: InventoryState) -> None:
        self._state = state

    @classmethod
    def from_documents(cls, docs: Iterable[tuple[str, Mapping[str, Any]]]) -> StaticInventory:
        return cls(build_inventory(docs))

    def current(self) -> InventoryState:
        return self._state
