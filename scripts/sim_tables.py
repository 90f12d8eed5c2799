"""Rewrite the suite's tables in README.md and docs/simulator.md from a `suite.json`.

Usage: `uv run python scripts/sim_tables.py SUITE_JSON [FILE ...]` (default files: README.md and
docs/simulator.md). Every block between `<!-- suite:NAME -->` and `<!-- /suite:NAME -->` is replaced by the
table NAME of `kedascaler.sim.leaderboard.BLOCKS` (leaderboard, matrix, full, scenarios), rendered from the
JSON alone; the prose around the markers is left as it is. Running it twice changes nothing the second time.
Produce the JSON with `uv run kedascaler simulate --suite --out DIR` (DIR/suite.json).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kedascaler.sim.leaderboard import BLOCKS  # noqa: E402

BLOCK = re.compile(r"(<!-- suite:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /suite:(?P=name) -->)", re.DOTALL)
DEFAULT_FILES = (ROOT / "README.md", ROOT / "docs" / "simulator.md")


def rewrite(text: str, data: Mapping[str, Any]) -> tuple[str, list[str]]:
    """`text` with every suite block re-rendered from `data`; and the names of the blocks found."""
    found: list[str] = []

    def render(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in BLOCKS:
            raise KeyError(f"unknown suite block {name!r}; known: {', '.join(BLOCKS)}")
        found.append(name)
        return m.group(1) + BLOCKS[name](data).rstrip("\n") + "\n" + m.group(4)

    return BLOCK.sub(render, text), found


def rewrite_file(path: Path, data: Mapping[str, Any]) -> list[str]:
    """Rewrite the blocks of one file in place (only when something changed); the names of its blocks."""
    text = path.read_text()
    new, found = rewrite(text, data)
    if new != text:
        path.write_text(new)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite_json", type=Path, help="suite.json written by `kedascaler simulate --suite --out DIR`")
    parser.add_argument("files", type=Path, nargs="*", help="files to rewrite (default: README.md, docs/simulator.md)")
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.suite_json.read_text())
        for path in args.files or DEFAULT_FILES:
            found = rewrite_file(path, data)
            print(f"{path}: {', '.join(found) if found else 'no suite blocks'}")
    except (OSError, KeyError, ValueError) as exc:
        print(f"sim_tables: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
