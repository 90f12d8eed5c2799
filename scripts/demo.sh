#!/usr/bin/env bash
# The main job: an emulated vLLM fleet, the real gRPC server and a KEDA+HPA stand-in, on this machine.
# Usage: scripts/demo.sh [--port 9090] [--duration SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
exec uv run --frozen kedascaler demo "$@"
