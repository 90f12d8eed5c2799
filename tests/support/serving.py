"""`kedascaler serve` as the CLI tests run it: the command line, and a one-VA inventory scraping one pod."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from kedascaler.sim.emulator import EmulatedPod

ROOT = Path(__file__).resolve().parents[2]
KEDASCALER = [sys.executable, "-m", "kedascaler.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_va_inventory(folder: Path, pod: EmulatedPod) -> Path:
    """llm/llama-a100 (meta/llama-3.1-8b, minReplicas 2), its metrics read from `pod`: an idle variant held at 2."""
    folder.mkdir()
    (folder / "va.yaml").write_text(f"""
apiVersion: llmd.ai/v1alpha1
kind: VariantAutoscaling
metadata:
  name: llama-a100
  namespace: llm
  annotations: {{kedascaler.llmd.ai/metrics-endpoints: "{pod.url}"}}
spec:
  scaleTargetRef: {{kind: Deployment, name: llama-a100}}
  modelID: meta/llama-3.1-8b
  minReplicas: 2
""")
    return folder
