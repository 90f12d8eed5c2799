"""Same inputs, same decisions: random fleets decided as they were before the cycle was made fast (issue 16).

`fleet_decisions.json` holds, for 25 seeded fleets (`tests/support/fleets.py`: 2-40 models of 1-4 variants, every
scaling mode and none, service classes, saturated and silent pods, start-ups, failures, scale to zero) over six
cycles each, every variant's target, its active and stale flags, and a digest of every reason with its numbers,
as the cycle decided them before the batching, caching and vectorising of issue 16. Any change to what a user sees
— a replica count, a flag, a reason's wording or number — fails here, naming the fleet and the cycle.

Regenerate only for an intended change of decisions:
    uv run python -c "import json; from tests.support.fleets import fleet_decisions; \
json.dump([fleet_decisions(s) for s in range(25)], open('tests/loop/fleet_decisions.json', 'w'), separators=(',', ':'))"
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.fleets import fleet_decisions

RECORDED = json.loads((Path(__file__).parent / "fleet_decisions.json").read_text())


@pytest.mark.parametrize("recorded", RECORDED, ids=[f"seed{r['seed']}-{r['mode']}" for r in RECORDED])
def test_fleet_decides_as_recorded(recorded):
    now = fleet_decisions(recorded["seed"], cycles=len(recorded["cycles"]))
    assert now["variants"] == recorded["variants"]
    for i, (was, got) in enumerate(zip(recorded["cycles"], now["cycles"], strict=True)):
        assert got["keys"] == was["keys"], f"cycle {i}: other variants decided"
        changed = [k for k, (a, b) in enumerate(zip(was["targets"], got["targets"], strict=True)) if a != b]
        assert not changed, f"cycle {i}: targets differ at rows {changed[:10]}"
        assert got["flags"] == was["flags"], f"cycle {i}: active/stale flags differ"
        assert got["reasons"] == was["reasons"], f"cycle {i}: a reason's wording or numbers differ"


def test_the_recorded_fleets_cover_every_mode_and_real_changes():
    """The pinned outputs are not trivial: every mode, scaling in both directions, held and stale decisions."""
    assert {r["mode"] for r in RECORDED} == {"capacity", "saturation", "hybrid", "model", "off"}
    targets = [t for r in RECORDED for c in r["cycles"] for t in c["targets"]]
    flags = [f for r in RECORDED for c in r["cycles"] for f in c["flags"]]
    assert len(set(targets)) > 5 and "S" in "".join(flags) and "-" in flags
    moved = sum(a != b for r in RECORDED for c, d in zip(r["cycles"], r["cycles"][1:], strict=False)
                for a, b in zip(c["targets"], d["targets"], strict=True))
    assert moved > 100
