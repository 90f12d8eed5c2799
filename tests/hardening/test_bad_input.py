"""Bad input: fuzzed trigger metadata over real gRPC, fuzzed VariantAutoscalings and ConfigMaps, oversized and
malformed gRPC messages.

A seeded, derandomized small set runs in CI; the long variants (≥ 10,000 cases per target) run with
KEDASCALER_LONG=1 and print how many cases they tried.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kedascaler.engine.types import Decision, Reason, VariantKey, VariantSpec
from kedascaler.loop.board import DecisionBoard
from kedascaler.proto import externalscaler_pb2 as pb
from kedascaler.proto import externalscaler_pb2_grpc as pb_grpc
from kedascaler.spec.inventory import build_inventory
from kedascaler.spec.problems import Problem
from kedascaler.spec.variant import parse_variant_autoscaling

from .threaded_server import ThreadedServer

SMALL = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))
LONG = settings(max_examples=10_000, derandomize=False, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

NS = "llm"
H100 = VariantKey(NS, "llama-8b-h100")
A100 = VariantKey(NS, "llama-8b-a100")
OTHER = VariantKey("team-b", "mistral-l40s")  # another model's variant: no fuzzed call may change it
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}


def _decision(key: VariantKey, desired: int, active: bool, model: str) -> Decision:
    now = time.time() + 3600  # fresh for the whole run
    return Decision(key=key, model_id=model, desired_replicas=desired, active=active,
                    reason=Reason("hold", "test"), decided_at=now, data_at=now)


@pytest.fixture(scope="module")
def grpc_target():
    board = DecisionBoard()
    board.publish([_decision(H100, 3, True, "llama"), _decision(A100, 0, False, "llama"),
                   _decision(OTHER, 5, True, "mistral")],
                  [VariantSpec(key=k, model_id="m", target_name=k.name) for k in (H100, A100, OTHER)])
    server = ThreadedServer(board, stale_after=7200.0)
    channel = grpc.insecure_channel(server.target)
    yield board, channel
    channel.close()
    server.close()


# -- strategies --
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
names = st.one_of(st.sampled_from([H100.name, A100.name, OTHER.name, "", "LLAMA", "a" * 254, "x.y", "-bad", "a..b",
                                   "llama-8b-h100 ", "llama/8b", "\x00"]), text)
namespaces = st.one_of(st.sampled_from([NS, "team-b", "", "a" * 64, "Llm", "kube-system"]), text)
metadata = st.dictionaries(
    st.one_of(st.sampled_from(["variantAutoscaling", "namespace", "scalerAddress", "metricName"]), text),
    st.one_of(names, namespaces, text), max_size=5)
metric_names = st.one_of(st.sampled_from(["", "s0-kedascaler-llm-llama-8b-h100", "kedascaler-llm-llama-8b-h100"]), text)

CODES: Counter = Counter()


def _code(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def _check_metadata(grpc_target, name, namespace, meta, metric) -> None:
    board, channel = grpc_target
    stub = pb_grpc.ExternalScalerStub(channel)
    before = board.view
    ref = pb.ScaledObjectRef(name=name, namespace=namespace, scalerMetadata=meta)
    codes = [
        _code(lambda: stub.GetMetricSpec(ref, timeout=5)),
        _code(lambda: stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=metric), timeout=5)),
        _code(lambda: stub.IsActive(ref, timeout=5)),
    ]
    CODES.update(codes)
    assert set(codes) <= ALLOWED, (name, namespace, meta, metric, codes)
    assert board.view is before  # nothing a client sends changes the board
    other = pb.ScaledObjectRef(name=OTHER.name, namespace=OTHER.namespace)
    spec = stub.GetMetricSpec(other, timeout=5)
    reply = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=other, metricName=spec.metricSpecs[0].metricName),
                            timeout=5)
    assert reply.metricValues[0].metricValue == 5


def test_fuzzed_trigger_metadata_gives_only_ok_invalid_argument_or_not_found(grpc_target):
    @SMALL
    @given(names, namespaces, metadata, metric_names)
    def run(name, namespace, meta, metric):
        _check_metadata(grpc_target, name, namespace, meta, metric)
    run()
    assert CODES[grpc.StatusCode.OK] and CODES[grpc.StatusCode.INVALID_ARGUMENT] and CODES[grpc.StatusCode.NOT_FOUND]


@pytest.mark.slow
def test_fuzzed_trigger_metadata_long(grpc_target):
    count = Counter()

    @LONG
    @given(names, namespaces, metadata, metric_names)
    def run(name, namespace, meta, metric):
        count["cases"] += 1
        _check_metadata(grpc_target, name, namespace, meta, metric)
    run()
    print(f"\nLONG FUZZ trigger metadata over gRPC: {count['cases']} cases, codes {dict(CODES)}")
    assert count["cases"] >= 10_000


# -- VariantAutoscaling and ConfigMap documents --
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6)


def _maybe(valid: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(valid, json_values)


numbers = _maybe(st.one_of(st.integers(-3, 20), st.sampled_from(["1", "2.5", "-1", "1e400", "nan", "inf", "0x10",
                                                                  "", " 3 ", "1_000"])))
spec_fields = {
    "scaleTargetRef": _maybe(st.fixed_dictionaries({"kind": _maybe(st.sampled_from(["Deployment", "Pod"])),
                                                    "name": _maybe(names)})),
    "modelID": _maybe(st.sampled_from(["meta/llama", ""])),
    "accelerator": _maybe(st.sampled_from(["H100", "A100", ""])),
    "acceleratorCount": numbers, "minReplicas": numbers, "maxReplicas": numbers, "variantCost": numbers,
    "variantID": _maybe(text),
    "saturation": _maybe(st.dictionaries(st.sampled_from(["kvCacheThreshold", "queueLengthThreshold",
                                                          "kvSpareTrigger", "queueSpareTrigger", "x"]), numbers)),
    "variantProfile": _maybe(st.fixed_dictionaries({}, optional={
        "maxBatchSize": numbers,
        "perfParms": _maybe(st.fixed_dictionaries({}, optional={
            "decodeParms": _maybe(st.dictionaries(st.sampled_from(["alpha", "beta"]), numbers)),
            "prefillParms": _maybe(st.dictionaries(st.sampled_from(["gamma", "delta"]), numbers))}))})),
    "sloClassRef": _maybe(st.fixed_dictionaries({}, optional={"name": _maybe(text), "key": _maybe(text)})),
    "scaleToZero": _maybe(st.dictionaries(st.sampled_from(["enabled", "idleWindowSeconds", "activationQuery"]),
                                          json_values)),
    "maxBatchSize": numbers, "modelProfile": json_values,
}
metas = _maybe(st.fixed_dictionaries({}, optional={
    "name": _maybe(names), "namespace": _maybe(namespaces),
    "labels": _maybe(st.dictionaries(text, json_values, max_size=2)),
    "annotations": _maybe(st.dictionaries(st.sampled_from(["kedascaler.io/metrics-endpoints", "x"]),
                                          _maybe(st.sampled_from(["http://a:1/metrics", "ftp://x", "http://a, b"])),
                                          max_size=2))}))
va_docs = st.fixed_dictionaries({}, optional={
    "apiVersion": _maybe(st.just("llmd.ai/v1alpha1")), "kind": st.just("VariantAutoscaling"),
    "metadata": metas, "spec": _maybe(st.fixed_dictionaries({}, optional=spec_fields))})
yaml_strings = st.sampled_from([
    "kvCacheThreshold: 0.8\nqueueLengthThreshold: 5", "model_id: meta/llama\nkvCacheThreshold: 2",
    "{unclosed", "[1, 2", "- a\n- b", "cost: x", "cost: 12", "12", "-3", "null", "? a\n: b", "&a [*a]",
    "model_id: [1]\nnamespace: {a: b}", "!!python/object:os.system ls", "a: !!binary AAAA", "[" * 200,
    "costs: {H100: 40, A100: x}", "accelerators: [{name: H100, cost: 40}, 3, {cost: 1}]"])
cm_data = _maybe(st.dictionaries(
    st.one_of(st.sampled_from(["default", "costs", "accelerators", "llama", "H100"]), text, st.integers(0, 3)),
    st.one_of(yaml_strings, json_values, text), max_size=4))
cm_docs = st.fixed_dictionaries({"kind": st.just("ConfigMap")}, optional={
    "metadata": _maybe(st.fixed_dictionaries({"name": st.sampled_from(
        ["saturation-scaling-config", "wva-saturation-scaling-config", "accelerator-unit-costs", "other"])})),
    "data": cm_data})
document_sets = st.lists(st.one_of(va_docs, cm_docs), max_size=4)


def _assert_problems_name_fields(problems) -> None:
    for p in problems:
        assert isinstance(p, Problem)
        assert p.field and isinstance(p.field, str), p
        assert p.message and isinstance(p.message, str), p


def _check_va(doc: dict[str, Any]) -> None:
    parsed = parse_variant_autoscaling(doc, "fuzz.yaml", {"H100": 40.0})
    _assert_problems_name_fields(parsed.problems)
    fatal = [p for p in parsed.problems if not p.obj.endswith("(still used)")]
    assert (parsed.variant is None) == bool(fatal)  # a VA in use may carry only warnings (an unpriced accelerator)
    if parsed.variant is not None:
        spec = parsed.variant.spec
        assert spec.min_replicas >= 0 and spec.cost >= 0
        assert spec.max_replicas is None or spec.max_replicas >= spec.min_replicas


def _check_docs(docs: list[dict[str, Any]]) -> None:
    state = build_inventory([("fuzz.yaml", d) for d in docs])
    _assert_problems_name_fields(state.problems)
    assert len({v.key for v in state.variants}) == len(state.variants)  # one VariantAutoscaling per key


def test_fuzzed_variant_autoscalings_never_raise_and_problems_name_a_field():
    SMALL(given(va_docs)(_check_va))()


def test_fuzzed_configmaps_and_document_sets_never_raise():
    SMALL(given(document_sets)(_check_docs))()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["variant-autoscaling", "documents"])
def test_fuzzed_documents_long(target):
    count = Counter()
    strategy, check = (va_docs, _check_va) if target == "variant-autoscaling" else (document_sets, _check_docs)

    @LONG
    @given(strategy)
    def run(doc):
        count["cases"] += 1
        check(doc)
    run()
    print(f"\nLONG FUZZ {target}: {count['cases']} cases")
    assert count["cases"] >= 10_000


# -- oversized and malformed messages --
def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_a_10mb_metadata_value_is_resource_exhausted_with_bounded_memory(grpc_target):
    board, channel = grpc_target
    stub = pb_grpc.ExternalScalerStub(channel)
    huge = "a" * (10 * 1024 * 1024)
    start = _rss_mb()
    ref = pb.ScaledObjectRef(name=H100.name, namespace=NS, scalerMetadata={"variantAutoscaling": huge})
    for _ in range(5):
        code = _code(lambda r=ref: stub.IsActive(r, timeout=10))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    del huge, ref
    growth = _rss_mb() - start
    assert growth < 150, f"RSS grew {growth:.0f} MB over five 10 MB requests"
    assert stub.IsActive(pb.ScaledObjectRef(name=H100.name, namespace=NS), timeout=5).result is True


@pytest.mark.parametrize("payload", [b"\xff\xff\xff\xff", b"\x0a\x05ab", bytes(range(256)) * 4, b"\x12" * 1000],
                         ids=["bad-varint", "truncated", "random", "nested-tags"])
@pytest.mark.parametrize("method", ["GetMetrics", "IsActive", "GetMetricSpec"])
def test_garbage_bytes_on_the_method_path_are_rejected_not_a_crash(grpc_target, method, payload):
    board, channel = grpc_target
    call = channel.unary_unary(f"/externalscaler.ExternalScaler/{method}",
                               request_serializer=None, response_deserializer=None)
    code = _code(lambda: call(payload, timeout=5))
    # what is not a message is INVALID_ARGUMENT (kedascaler.server.malformed); bytes that happen to parse are answered
    assert code in {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.OK}, code
    stub = pb_grpc.ExternalScalerStub(channel)
    assert stub.IsActive(pb.ScaledObjectRef(name=H100.name, namespace=NS), timeout=5).result is True


def test_unknown_method_is_unimplemented(grpc_target):
    _, channel = grpc_target
    call = channel.unary_unary("/externalscaler.ExternalScaler/DropTables", request_serializer=None,
                               response_deserializer=None)
    assert _code(lambda: call(b"", timeout=5)) == grpc.StatusCode.UNIMPLEMENTED


