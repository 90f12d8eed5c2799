#!/usr/bin/env bash
# Shared set-up for the README's two commands: uv, the locked virtualenv, and (for tests) Prometheus.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
  echo "bootstrap: installing uv with pip" >&2
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages uv  # a Debian-managed Python (PEP 668)
fi
uv sync --frozen --quiet
