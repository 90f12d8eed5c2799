"""Server-side apply for the API server fixture: field ownership per manager, as the real API server keeps it.

Enough of structured-merge-diff for status writes: an object's fields are the paths to its leaves; a list
declared `x-kubernetes-list-type: map` (here: `conditions`, keyed by `type`) is merged item by item, each item
a path element `(key, value)`; any other list, and any scalar, is one leaf (atomic). The rules the fixture keeps:

- an apply by manager M sets every field it sends and owns them (with `force`, taken from other managers;
  without it, a field another manager owns with a different value is a 409 Conflict);
- a field M owned and no longer sends is removed, unless another manager owns it too; a map-list item left
  with no field is removed, and so is a map left empty;
- fields nobody owns (written by the fixture's own `put`) and fields set by other managers stay;
- an update (PUT, merge patch) takes the fields whose value it changed from every applier (they are then owned
  by that update, as the real server records an `Update` manager).
"""

from __future__ import annotations

import copy
from typing import Any

MAP_LISTS = {"conditions": "type"}  # list name -> its key field (x-kubernetes-list-map-keys)

Path = tuple[Any, ...]


def leaves(value: Any, path: Path = ()) -> dict[Path, Any]:
    """Every leaf of a value by its path (a map-list item is the element `(key field, key value)`)."""
    out: dict[Path, Any] = {}
    if isinstance(value, dict) and value:
        for k, v in value.items():
            out.update(leaves(v, path + (k,)))
    elif isinstance(value, list) and path and path[-1] in MAP_LISTS:
        key = MAP_LISTS[path[-1]]
        for item in value:
            if isinstance(item, dict) and key in item:
                out.update(leaves(item, path + ((key, item[key]),)))
    else:
        out[path] = value
    return out


def _is_item_key(path: Path) -> bool:
    """Whether a leaf is a map-list item's key field."""
    return len(path) >= 2 and isinstance(path[-2], tuple) and path[-1] == path[-2][0]


def _remove(target: Any, path: Path) -> Any:
    """`target` without the leaf at `path`, pruning a map-list item or a map that is left empty."""
    if not path:
        return None
    head, rest = path[0], path[1:]
    if isinstance(head, tuple) and isinstance(target, list):
        key, wanted = head
        out = []
        for item in target:
            if isinstance(item, dict) and item.get(key) == wanted:
                if rest == (key,) and set(item) != {key}:
                    out.append(item)  # the item's key stays while another manager's fields need it
                    continue
                item = _remove(item, rest)
                if not item:
                    continue
            out.append(item)
        return out
    if not isinstance(target, dict) or head not in target:
        return target
    result = dict(target)
    if rest:
        inner = _remove(result[head], rest)
        if inner in ({}, []):
            result.pop(head)
        else:
            result[head] = inner
    else:
        result.pop(head)
    return result


def _merge(target: Any, applied: Any, name: Any = None) -> Any:
    """`applied` merged into `target`: maps by key, map-lists by item key, anything else replaced."""
    if isinstance(applied, dict) and isinstance(target, dict):
        result = dict(target)
        for k, v in applied.items():
            result[k] = _merge(result.get(k), v, k)
        return result
    if isinstance(applied, list) and isinstance(target, list) and name in MAP_LISTS:
        key = MAP_LISTS[name]
        result = list(target)
        for item in applied:
            at = next((i for i, old in enumerate(result)
                       if isinstance(old, dict) and isinstance(item, dict) and old.get(key) == item.get(key)), None)
            if at is None:
                result.append(copy.deepcopy(item))
            else:
                result[at] = _merge(result[at], item)
        return result
    return copy.deepcopy(applied)


class Ownership:
    """Who owns which fields of one part (e.g. `status`) of one object: manager -> set of leaf paths."""

    def __init__(self) -> None:
        self.managers: dict[str, set[Path]] = {}

    def apply(self, manager: str, current: Any, applied: Any, force: bool) -> tuple[Any, list[str]]:
        """(the part after `manager` applied `applied`, conflicts); with conflicts nothing changes."""
        sent = leaves(applied)
        now = leaves(current)
        conflicts = [f"{'.'.join(map(str, p))} (owned by {m})" for m, owned in self.managers.items() if m != manager
                     for p in sorted(owned & sent.keys(), key=str) if now.get(p) != sent[p]]
        if conflicts and not force:
            return current, conflicts
        others = set().union(*(owned for m, owned in self.managers.items() if m != manager))
        result = current
        for path in sorted(self.managers.get(manager, set()) - sent.keys() - others, key=_is_item_key):
            result = _remove(result, path)  # an item's key last: it names the item
        result = _merge(result if result is not None else {}, applied)
        for m in list(self.managers):
            if m != manager:
                self.managers[m] -= sent.keys()
        self.managers[manager] = set(sent)
        return result, []

    def update(self, manager: str, before: Any, after: Any) -> None:
        """A non-apply write: the fields it changed are the updater's now (no applier owns them any more)."""
        old, new = leaves(before), leaves(after)
        changed = {p for p, v in new.items() if old.get(p, object()) != v}
        for m in self.managers:
            if m != manager:
                self.managers[m] -= changed
        if changed:
            self.managers.setdefault(manager, set()).update(changed)
        gone = old.keys() - new.keys()
        for owned in self.managers.values():
            owned -= gone

