"""build_inventory with a ParseMemo: an edit re-parses the object it changed, and the result is the same."""

from __future__ import annotations

import copy

from kedascaler.spec.inventory import ParseMemo, build_inventory


def va(i: int, version: str, accelerator: str = "H100") -> tuple[str, dict]:
    return (f"demo/VariantAutoscaling/llama-{i}", {
        "apiVersion": "llmd.ai/v1alpha1", "kind": "VariantAutoscaling",
        "metadata": {"name": f"llama-{i}", "namespace": "demo", "resourceVersion": version},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": f"llama-{i}"}, "modelID": f"org/m-{i // 2}",
                 "accelerator": accelerator, "maxReplicas": 4}})


def costs(h100: float, version: str) -> tuple[str, dict]:
    return ("kedascaler-system/ConfigMap/accelerator-unitcost", {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "accelerator-unitcost", "namespace": "kedascaler-system", "resourceVersion": version},
        "data": {"costs": f"H100: {h100}\nA100: 20\n"}})


def fleet(n: int) -> list[tuple[str, dict]]:
    return [costs(40.0, "1"), *(va(i, "1", "A100" if i % 2 else "H100") for i in range(n))]


def build(memo: ParseMemo, docs):
    state = build_inventory(docs, memo)
    memo.finish()
    return state


def test_an_edited_va_is_the_only_object_parsed_again_and_the_inventory_is_what_a_full_parse_gives():
    memo = ParseMemo()
    docs = fleet(200)
    build(memo, docs)
    assert memo.parses == 201
    edited = copy.deepcopy(docs)
    edited[5][1]["metadata"]["resourceVersion"] = "2"
    edited[5][1]["spec"]["maxReplicas"] = 9
    state = build(memo, edited)
    assert memo.parses == 202  # the one VA
    assert state == build_inventory(edited)
    assert {v.key.name: v.spec.max_replicas for v in state.variants}["llama-4"] == 9


def test_a_new_price_list_parses_every_va_again_so_their_costs_follow_it():
    memo = ParseMemo()
    docs = fleet(20)
    build(memo, docs)
    repriced = [costs(55.0, "2"), *docs[1:]]
    state = build(memo, repriced)
    assert memo.parses == 21 + 21
    assert state == build_inventory(repriced)
    assert {v.key.name: v.spec.cost for v in state.variants}["llama-0"] == 55.0


def test_objects_without_a_resource_version_are_parsed_every_time_and_removed_ones_are_forgotten():
    memo = ParseMemo()
    plain = [(s, {**d, "metadata": {k: v for k, v in d["metadata"].items() if k != "resourceVersion"}})
             for s, d in fleet(3)]
    build(memo, plain)
    build(memo, plain)
    assert memo.parses == 8
    docs = fleet(10)
    build(memo, docs)
    fewer = docs[:3]
    state = build(memo, fewer)
    assert [v.key.name for v in state.variants] == ["llama-0", "llama-1"]
    assert len(memo) == 3  # what the last build used, nothing more
