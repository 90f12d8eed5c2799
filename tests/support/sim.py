"""Invariant checks on the simulator's internals, for tests (moved out of the package: no user calls them)."""

from __future__ import annotations

from kedascaler.sim.replica import DECODE, FastReplica


def blocks_held(replica: FastReplica) -> int:
    """Σ KV blocks held, recomputed from the running requests: must equal `replica.used_blocks`."""
    bs, d = replica.params.block_size, replica.decode_steps
    return sum(-(-(r.offset + d) // bs) if r.phase == DECODE else r.blocks for r in replica.running.values())
