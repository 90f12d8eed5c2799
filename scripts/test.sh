#!/usr/bin/env bash
# The test command: installs what the tests need (uv, the locked deps, Debian's prometheus), runs pytest.
# Usage: scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
if ! command -v prometheus >/dev/null 2>&1; then
  echo "test: installing Debian's prometheus (real server for the collector tests)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package starts a system service on :9090 on some hosts; the tests start their own instances.
  ($SUDO systemctl stop prometheus >/dev/null 2>&1 || $SUDO service prometheus stop >/dev/null 2>&1 || pkill -x prometheus) 2>/dev/null || true
fi
start=$(date +%s)
set +e
uv run --frozen pytest "$@"
rc=$?
set -e
echo "test command took $(( $(date +%s) - start )) s (pytest exit $rc)"
exit $rc
