"""The VLMDeployment spec maps onto the estimator request the same way the CLI flags do."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_operator.api import VLMDeployment
from vlm_operator.cli import main
from vlm_operator.estimator import from_spec
from vlm_operator.estimator.core import estimate

SPEC = {
    "model": {"name": "Qwen/Qwen2.5-VL-7B-Instruct"},
    "engine": {"version": "0.10.1", "maxModelLen": 32768, "tensorParallelSize": 2, "kvCacheDtype": "fp8"},
    "multimodal": {
        "limitPerPrompt": {"image": {"count": 3}, "video": {"count": 0}},
        "processorKwargs": {"max_pixels": 1003520},
        "encoderTPMode": "data",
    },
    "resources": {"gpu": {"product": "L40S"}},
}


def test_spec_fields_reach_the_request() -> None:
    spec = VLMDeployment.model_validate({"spec": SPEC}).spec
    req, alternatives = from_spec.request_from_spec(spec)
    assert req.engine.tensor_parallel_size == 2 and req.engine.max_model_len == 32768
    assert req.engine.kv_cache_dtype == "fp8"
    assert dict(req.multimodal.limit_per_prompt) == {"image": 3, "video": 0}
    assert req.multimodal.encoder_tp_mode == "data"
    assert req.gpu.name == "L40S" and req.vllm_version == "0.10.1"
    assert alternatives
    e = estimate(req)
    assert e.image_tokens_per_item["image"] == 1282


def test_every_engine_field_the_estimator_models_reaches_it_from_the_spec_and_the_cli() -> None:
    """``EngineSettings.taken_from``: the spec's engine fields and ``vlmctl estimate``'s flags map by name, so each
    field the estimator models arrives with its value, from either side."""
    import argparse
    import dataclasses

    from vlm_operator.cli import estimate as estimate_cli
    from vlm_operator.estimator.request import EngineSettings

    values = {
        "tensor_parallel_size": 2,
        "pipeline_parallel_size": 2,
        "data_parallel_size": 2,
        "max_model_len": 4096,
        "max_num_seqs": 7,
        "max_num_batched_tokens": 3000,
        "gpu_memory_utilization": 0.8,
        "dtype": "float16",
        "quantization": "fp8",
        "kv_cache_dtype": "fp8",
        "enforce_eager": True,
        "enable_expert_parallel": True,
        "block_size": 32,
        "kv_cache_memory_bytes": 2**30,
        "api_server_count": 2,
    }
    camel = {"".join(w.title() if i else w for i, w in enumerate(k.split("_"))): v for k, v in values.items()}
    spec = VLMDeployment.model_validate({"spec": {**SPEC, "engine": {"version": "0.11.0", **camel}}}).spec
    from_the_spec = from_spec.request_from_spec(spec)[0].engine
    assert {k: getattr(from_the_spec, k) for k in values} == values
    parser = argparse.ArgumentParser()
    estimate_cli.add_arguments(parser)
    args = parser.parse_args(["--model", "m"])
    for k, v in values.items():
        setattr(args, k, v)
    from_the_cli = EngineSettings.taken_from(args)
    assert {k: getattr(from_the_cli, k) for k in values} == values
    # the estimator's own knobs with no spec field keep their defaults
    untouched = {f.name for f in dataclasses.fields(EngineSettings)} - set(values) - {"engine"}
    assert all(getattr(from_the_spec, k) == getattr(EngineSettings(), k) for k in untouched)


def test_unknown_model_is_unresolved() -> None:
    spec = VLMDeployment.model_validate({"spec": {**SPEC, "model": {"name": "acme/secret-vlm"}}}).spec
    assert from_spec.model_facts_for(spec) is None
    with pytest.raises(from_spec.UnresolvedModel):
        from_spec.request_from_spec(spec)


def test_cli_reads_a_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    f = tmp_path / "vlmd.yaml"
    f.write_text(yaml.safe_dump({"apiVersion": "vlmops.io/v1alpha1", "kind": "VLMDeployment", "spec": SPEC}))
    rc = main(["estimate", "-f", str(f), "--output", "json"])
    assert rc in (0, 2)
    assert '"weights_gib"' in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: {model: {name: 7}, engine: {maxModelLen: -3}}")
    assert main(["estimate", "-f", str(bad)]) == 1
