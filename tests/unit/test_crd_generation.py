"""Tests of the generated CRD: structural, documented, bounded for CEL cost, in sync with the committed files, and
consistent with the samples."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cel_cases import CEL_CASES
from tests.manifests import SAMPLES
from vlm_operator.api import VLMDeployment
from vlm_operator.api.crd import CRD_FILE, crd, crd_yaml
from vlm_operator.cli import crds as crds_cli

ROOT = Path(__file__).resolve().parents[2]


def version() -> dict[str, Any]:
    [v] = crd()["spec"]["versions"]
    assert isinstance(v, dict)
    return v


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def test_committed_crd_matches_a_fresh_generation() -> None:
    fresh = crd_yaml()
    for rel in (Path("crds") / CRD_FILE, Path("charts/vlm-operator/crds") / CRD_FILE):
        path = ROOT / rel
        assert path.exists(), f"{rel} missing: run `vlmctl crds --write`"
        assert path.read_text() == fresh, f"{rel} is stale: run `vlmctl crds --write`"


def test_crds_check_mode_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(write=False, check=True, root=tmp_path)
    assert crds_cli.run(args) == 1
    assert "out of date" in capsys.readouterr().err
    assert crds_cli.run(argparse.Namespace(write=True, check=False, root=tmp_path)) == 0
    assert crds_cli.run(args) == 0
    assert yaml.safe_load_all((tmp_path / "crds" / CRD_FILE).read_text())


def test_names_scope_and_subresources() -> None:
    doc = crd()
    names = doc["spec"]["names"]
    assert doc["metadata"]["name"] == "vlmdeployments.vlmops.io"
    assert (doc["spec"]["group"], doc["spec"]["scope"]) == ("vlmops.io", "Namespaced")
    assert names["kind"] == "VLMDeployment" and names["shortNames"] == ["vlmd"] and "all" in names["categories"]
    v = version()
    assert v["name"] == "v1alpha1" and v["served"] and v["storage"]
    assert v["subresources"]["status"] == {}
    assert v["subresources"]["scale"] == {
        "specReplicasPath": ".spec.scaling.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert [c["name"] for c in v["additionalPrinterColumns"]] == ["Model", "GPU", "Replicas", "Ready", "Fits", "Age"]


def test_scale_paths_and_printer_columns_point_at_schema_fields() -> None:
    root = version()["schema"]["openAPIV3Schema"]

    def resolve(json_path: str) -> dict[str, Any]:
        node = root
        for part in re.sub(r"\[.*\]", "", json_path).strip(".").split("."):
            node = node["properties"][part]
            node = node.get("items", node)
        return node

    scale = version()["subresources"]["scale"]
    assert resolve(scale["specReplicasPath"])["type"] == "integer"
    assert resolve(scale["statusReplicasPath"])["type"] == "integer"
    assert resolve(scale["labelSelectorPath"])["type"] == "string"
    for col in version()["additionalPrinterColumns"]:
        if not col["jsonPath"].startswith(".metadata"):
            resolve(col["jsonPath"])


def test_schema_is_structural() -> None:
    for path, node in walk(version()["schema"]["openAPIV3Schema"]):
        for banned in (
            "$ref",
            "anyOf",
            "oneOf",
            "allOf",
            "not",
            "title",
            "x-kubernetes-int-or-string",
            "nullable",
            "propertyNames",
        ):
            assert banned not in node, f"{path}: {banned}"
        preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
        assert "type" in node or preserve, f"{path}: no type"
        if node.get("type") == "object" and path not in (".metadata",):
            assert node.get("properties") or node.get("additionalProperties") or preserve, f"{path}: empty object"
        if "properties" in node:
            assert "additionalProperties" not in node, f"{path}: properties and additionalProperties"
        if node.get("exclusiveMaximum") is not None:
            assert node["exclusiveMaximum"] is True and "maximum" in node, f"{path}: draft-2020 exclusiveMaximum"
        if "default" in node:
            assert path in (".spec.scaling", ".spec.scaling.replicas"), f"{path}: unexpected server-side default"


def test_every_field_is_documented() -> None:
    for path, node in walk(spec_schema(), ".spec"):
        if path.endswith(("[]", "{}")):
            continue
        assert node.get("description"), f"{path} has no description"
    status = version()["schema"]["openAPIV3Schema"]["properties"]["status"]
    for path, node in walk(status, ".status"):
        if not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{path} has no description"


def test_nested_descriptions_come_from_docstrings() -> None:
    lpp = spec_schema()["properties"]["multimodal"]["properties"]["limitPerPrompt"]
    assert "999" in lpp["description"]
    assert "999" in lpp["properties"]["image"]["description"]
    count = lpp["properties"]["image"]["properties"]["count"]
    assert "Most images in one prompt" in count["description"] and "Default: `1`" in count["description"]
    assert "``" not in str(spec_schema())


def test_bounded_for_cel_cost() -> None:
    """Every string, list and map has a bound, so the API server's CEL cost estimate stays finite."""
    for path, node in walk(spec_schema(), ".spec"):
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node, f"{path}: string without maxLength"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path}: list without maxItems"
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{path}: map without maxProperties"


def test_open_objects_and_no_unions() -> None:
    mm = spec_schema()["properties"]["multimodal"]["properties"]
    for name in ("processorKwargs", "mediaIoKwargs"):
        assert mm[name]["type"] == "object" and mm[name]["x-kubernetes-preserve-unknown-fields"] is True
        assert "properties" not in mm[name]
    image = mm["limitPerPrompt"]["properties"]["image"]
    assert image["type"] == "object" and set(image["properties"]) == {"count", "width", "height"}
    assert set(mm["limitPerPrompt"]["properties"]["video"]["properties"]) == {"count", "numFrames", "width", "height"}
    assert set(mm["limitPerPrompt"]["properties"]["audio"]["properties"]) == {"count", "length"}
    rate = mm["videoPruningRate"]
    assert (rate["minimum"], rate["maximum"], rate["exclusiveMaximum"]) == (0, 1, True)
    status = version()["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True and "conditions" in status["properties"]
    assert status["properties"]["conditions"]["x-kubernetes-list-type"] == "map"


def test_no_inline_secret_fields() -> None:
    for path, node in walk(spec_schema(), ".spec"):
        leaf = path.rsplit(".", 1)[-1].lower()
        if re.search(r"(token|apikey|password|secret)$", leaf) and node.get("type") == "string":
            pytest.fail(f"{path} takes a secret value inline")


def all_rules() -> list[dict[str, str]]:
    return [
        r for _, node in walk(version()["schema"]["openAPIV3Schema"]) for r in node.get("x-kubernetes-validations", [])
    ]


def test_every_cel_rule_has_a_bad_case_and_a_readable_message() -> None:
    # rules on metadata.name are exercised by NAME_CASES in tests/unit/test_cel_messages.py
    rules = [r for r in all_rules() if not r["message"].startswith("metadata.name")]
    assert len(rules) >= 20
    for rule in rules:
        assert rule["message"] and len(rule["message"]) < 300
        assert any(msg in rule["message"] or rule["message"].startswith(msg) for _, _, msg in CEL_CASES), (
            f"no CEL_CASES entry exercises: {rule['message']}"
        )
    for case_id, _, msg in CEL_CASES:
        assert any(msg in r["message"] for r in rules), f"{case_id}: no CEL rule carries {msg!r}"


def test_cel_rules_use_only_portable_functions() -> None:
    for rule in all_rules():
        text = rule["rule"]
        assert text.count("(") == text.count(")"), text
        for unsupported in ("optional", ".?", "?.", "oldSelf"):
            assert unsupported not in text, text


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_parses_and_documents_its_sources(sample: Path) -> None:
    text = sample.read_text()
    assert text.startswith("#") and "Sources:" in text, "a sample says where its values come from"
    obj = yaml.safe_load(text)
    d = VLMDeployment.from_k8s(obj)
    assert d.name and "namespace" not in obj["metadata"]


def test_sample_set_covers_the_issue() -> None:
    parsed = {p.name: VLMDeployment.from_k8s(yaml.safe_load(p.read_text())).spec for p in SAMPLES}
    assert len(parsed) == 7
    models = {s.model.name for s in parsed.values()}
    assert {
        "llava-hf/llava-1.5-7b-hf",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "microsoft/Phi-3.5-vision-instruct",
        "meta-llama/Llama-3.2-11B-Vision-Instruct",
        "google/gemma-3-27b-it",
    } <= models
    assert any(s.multimodal.legacy is not None and s.engine.version == "0.5.0" for s in parsed.values())
    assert any(s.engine.tensor_parallel_size == 2 for s in parsed.values())
    assert any(s.engine.max_num_seqs == 4 for s in parsed.values())
    assert any({"min_pixels", "max_pixels"} <= set(s.multimodal.processor_kwargs) for s in parsed.values())
    assert any("num_crops" in s.multimodal.processor_kwargs for s in parsed.values())


def test_docs_list_every_field_with_its_mapping() -> None:
    from vlm_operator.api.docs import api_markdown

    text = api_markdown()
    assert (ROOT / "docs" / "api.md").read_text() == text, "docs/api.md is stale: run `vlmctl crds --write`"
    for path, _ in walk(spec_schema()):
        if path and not path.endswith(("[]", "{}")):
            assert f"| `{path.lstrip('.').replace('[]', '')}` |" in text, path
    for flag in ("--limit-mm-per-prompt", "--mm-processor-kwargs", "--mm-encoder-tp-mode", "--disable-image-processor"):
        assert flag in text
