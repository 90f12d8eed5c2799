"""The committed stubs are exactly what the generator makes from proto/externalscaler.proto today."""

from __future__ import annotations

from pathlib import Path

from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto.generate import OUTPUTS, PACKAGE_DIR, generate


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path):
    written = generate(tmp_path)
    assert sorted(p.name for p in written) == sorted(OUTPUTS)
    stale = [name for name in OUTPUTS if (tmp_path / name).read_bytes() != (PACKAGE_DIR / name).read_bytes()]
    assert not stale, f"stubs out of date: {stale}; run `uv run python -m kedascaler.proto.generate` and commit"


def test_wire_contract_matches_keda():
    """Field numbers and types are what KEDA's Go client sends and reads."""
    fields = {
        (m.name, f.name): (f.number, f.type)
        for m in pb.DESCRIPTOR.message_types_by_name.values()
        for f in m.fields
    }
    f = pb.DESCRIPTOR.message_types_by_name["MetricSpec"].fields_by_name["targetSize"]
    INT64, DOUBLE, STRING, BOOL, MESSAGE = f.TYPE_INT64, f.TYPE_DOUBLE, f.TYPE_STRING, f.TYPE_BOOL, f.TYPE_MESSAGE
    assert fields == {
        ("ScaledObjectRef", "name"): (1, STRING),
        ("ScaledObjectRef", "namespace"): (2, STRING),
        ("ScaledObjectRef", "scalerMetadata"): (3, MESSAGE),
        ("IsActiveResponse", "result"): (1, BOOL),
        ("GetMetricSpecResponse", "metricSpecs"): (1, MESSAGE),
        ("MetricSpec", "metricName"): (1, STRING),
        ("MetricSpec", "targetSize"): (2, INT64),
        ("MetricSpec", "targetSizeFloat"): (3, DOUBLE),
        ("GetMetricsRequest", "scaledObjectRef"): (1, MESSAGE),
        ("GetMetricsRequest", "metricName"): (2, STRING),
        ("GetMetricsResponse", "metricValues"): (1, MESSAGE),
        ("MetricValue", "metricName"): (1, STRING),
        ("MetricValue", "metricValue"): (2, INT64),
        ("MetricValue", "metricValueFloat"): (3, DOUBLE),
    }
    assert pb.DESCRIPTOR.package == "externalscaler"
    service = pb.DESCRIPTOR.services_by_name["ExternalScaler"]
    assert {(m.name, m.input_type.name, m.output_type.name, m.server_streaming) for m in service.methods} == {
        ("IsActive", "ScaledObjectRef", "IsActiveResponse", False),
        ("StreamIsActive", "ScaledObjectRef", "IsActiveResponse", True),
        ("GetMetricSpec", "ScaledObjectRef", "GetMetricSpecResponse", False),
        ("GetMetrics", "GetMetricsRequest", "GetMetricsResponse", False),
        ("StreamMetricSpec", "ScaledObjectRef", "GetMetricSpecResponse", True),
    }
    assert pb.DESCRIPTOR.GetOptions().go_package == ".;externalscaler"
