"""The CPU priority of the calling thread: background work yields the CPU to what answers calls.

On Linux a thread has a nice value of its own (`setpriority(PRIO_PROCESS, tid)`): serve's cycle thread runs
niced, so on a busy node the process answering KEDA wins the CPU whenever both want it, and the cycle takes
what is left (Linux's scheduler gives a nice-10 thread about a tenth of a contended core). Raising a priority
needs a privilege a pod lacks; lowering one needs none.
"""

from __future__ import annotations

import os
import threading

_niced: dict[int, int] = {}


def lower_this_thread(nice: int) -> bool:
    """Nice the calling thread by `nice` (once per thread); False where the platform has no per-thread nice."""
    ident = threading.get_native_id()
    if _niced.get(ident) == nice:
        return True
    setpriority = getattr(os, "setpriority", None)
    if setpriority is None or not os.uname().sysname == "Linux":
        return False
    try:
        setpriority(os.PRIO_PROCESS, ident, min(19, os.getpriority(os.PRIO_PROCESS, ident) + nice))
    except OSError:
        return False
    _niced[ident] = nice
    return True
