#!/usr/bin/env bash
# The test command: installs what the tests need (uv, the locked deps, Debian's prometheus), then runs
# ruff, mypy and pytest; it fails when any of the three fails (pytest runs even when a linter failed).
# Usage: scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
if ! command -v prometheus >/dev/null 2>&1; then
  echo "test: installing Debian's prometheus (real server for the collector tests)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # On some hosts the package also starts a system service on :9090. It is left alone: a test command never
  # stops a process it did not start, and the tests start their own Prometheus instances on free ports.
fi
if ! command -v kubectl >/dev/null 2>&1; then
  # Real kubectl against the API server fixture (tests/deploy/test_kubectl.py): Debian's kubernetes-client.
  echo "test: installing Debian's kubernetes-client (kubectl, for the kubectl tests)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
fi
start=$(date +%s)
set +e
uv run --frozen ruff check .
ruff_rc=$?
[ $ruff_rc = 0 ] || echo "test: FAILED: ruff check found problems (above; rules in pyproject.toml [tool.ruff])" >&2
uv run --frozen mypy
mypy_rc=$?
[ $mypy_rc = 0 ] || echo "test: FAILED: mypy found type errors (above; settings in pyproject.toml [tool.mypy])" >&2
uv run --frozen pytest "$@"
pytest_rc=$?
set -e
rc=$pytest_rc
if [ $ruff_rc != 0 ] || [ $mypy_rc != 0 ]; then
  echo "test: FAILED: ruff exit $ruff_rc, mypy exit $mypy_rc (their findings are printed above pytest's output)" >&2
  [ $rc != 0 ] || rc=1
fi
echo "test command took $(( $(date +%s) - start )) s (ruff exit $ruff_rc, mypy exit $mypy_rc, pytest exit $pytest_rc)"
exit $rc
