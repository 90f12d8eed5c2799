"""The CPU priority of the calling thread: background work yields the CPU to what answers calls.

On Linux a thread has a nice value of its own (`setpriority(PRIO_PROCESS, tid)`): serve's cycle thread runs
niced, so on a busy node the process answering KEDA wins the CPU whenever both want it, and the cycle takes
what is left (Linux's scheduler gives a nice-10 thread about a tenth of a contended core). Raising a priority
needs a privilege a pod lacks; lowering one needs none.
"""

from __future__ import annotations

import os
import sys
import threading

_this = threading.local()  # .nice: what the calling thread was niced by (a thread id may be reused, this is not)


def lower_this_thread(nice: int) -> bool:
    """Nice the calling thread by `nice` (once per thread); False where the platform has no per-thread nice."""
    if getattr(_this, "nice", None) == nice:
        return True
    if sys.platform != "linux":
        return False
    ident = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, ident, min(19, os.getpriority(os.PRIO_PROCESS, ident) + nice))
    except OSError:
        return False
    _this.nice = nice
    return True
