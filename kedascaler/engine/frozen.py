"""`evolve`: `dataclasses.replace` for the engine's plain frozen records, without the cost of `__init__`;
`quick`, a frozen dataclass whose `__init__` fills the record's `__dict__` directly; and `read_only`, the numpy
arrays such records hold made read-only (a record that shares one cannot see it change).

`dataclasses.replace` reads every field and calls `__init__`, which for a frozen dataclass sets each field
through `object.__setattr__`: 50 µs for a `DecisionSteps` (36 fields), several per decision, 10,000 decisions
a cycle. A record whose class has no `__post_init__`, no `init=False` field and no cached property holds its
fields in `__dict__` and nothing else, so a copy of that dict with the changes is the very value `replace`
builds (equal, same hash, same fields), in a tenth of the time. Other classes go through `replace` itself.
"""

from __future__ import annotations

import dataclasses
from functools import cache, cached_property
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


@cache  # a property of the class (a memo of its definition, the same answer every time)
def _plain_fields(cls: type) -> frozenset[str] | None:
    """The class's field names when a record of it can be copied through its `__dict__`, else None."""
    fields = dataclasses.fields(cls)
    plain = (not hasattr(cls, "__slots__") and not hasattr(cls, "__post_init__") and all(f.init for f in fields)
             and not any(isinstance(v, cached_property) for k in cls.__mro__ for v in vars(k).values()))
    return frozenset(f.name for f in fields) if plain else None


def evolve(record: T, **changes: Any) -> T:
    """`dataclasses.replace(record, **changes)`, faster for plain frozen records (see the module docstring)."""
    cls: type = type(record)
    names = _plain_fields(cls)
    if names is None or not names.issuperset(changes):
        return dataclasses.replace(record, **changes)  # type: ignore[type-var]  # its checks and errors
    out: T = object.__new__(cls)
    state = out.__dict__
    state.update(record.__dict__)
    state.update(changes)
    return out


_FACTORY = object()  # the default of a field with a default_factory (the factory is called when it is passed)


def quick(cls: type[T]) -> type[T]:
    """The frozen dataclass `cls` with an `__init__` that sets each field through `object.__setattr__` bound once,
    not looked up for every field as the generated one does (half the cost; the cycle builds some 100,000 records
    at 10,000 VAs). Not through the record's `__dict__`: a record whose dict is made holds its fields there, 64
    bytes more, and reads them five times slower than from the values CPython keeps inline. The same parameters,
    defaults, factories and `__post_init__` call, so the same record; `__eq__`, `__hash__`, `__repr__` and the
    frozen `__setattr__` are the dataclass's own. A class it cannot do that for (slots, keyword-only or init-less
    fields, init variables, no fields) is left as it is."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or not params.init or "__slots__" in cls.__dict__:
        return cls
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # a dataclass: its params were found above
    if any(not f.init or f.kw_only for f in fields) or any(
            isinstance(v, dataclasses.InitVar) or "InitVar" in str(v)
            for v in getattr(cls, "__annotations__", {}).values()):
        return cls
    names = {f.name for f in fields}
    if not names or "self" in names or any(n.startswith("_q_") for n in names):
        return cls
    scope: dict[str, Any] = {"_q_factory": _FACTORY, "_q_set": object.__setattr__}
    args, body = [], []
    for f in fields:
        if f.default is not dataclasses.MISSING:
            scope[f"_q_default_{f.name}"] = f.default
            args.append(f"{f.name}=_q_default_{f.name}")
            body.append(f"    _q_set(self, {f.name!r}, {f.name})")
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_q_make_{f.name}"] = f.default_factory
            args.append(f"{f.name}=_q_factory")
            body.append(f"    _q_set(self, {f.name!r}, _q_make_{f.name}() if {f.name} is _q_factory else {f.name})")
        else:
            args.append(f.name)
            body.append(f"    _q_set(self, {f.name!r}, {f.name})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(args)}, *, _q_set=_q_set):\n" + "\n".join(body) + "\n"
    exec(source, scope)  # noqa: S102 - the dataclass module builds its __init__ the same way
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


def read_only(values: np.ndarray) -> np.ndarray:
    """`values`, no longer writeable (the same array)."""
    values.flags.writeable = False
    return values


__all__ = ["evolve", "quick", "read_only"]
