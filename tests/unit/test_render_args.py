"""The vLLM command renderer (vlm_operator.render.args) and `vlmctl render`.

Three layers:
- golden files: every sample in crds/samples renders to tests/golden/args/<sample>.txt, one argument per line
  (regenerate with ``VLM_REGENERATE_GOLDEN=1``);
- one test per version rule (entry point, legacy flags, limit formats, cache renames, encoder TP mode, ...);
- for every release in the flag table, a spec with every field that release supports, whose rendered flags and
  value formats are checked against the table by a checker independent of the renderer.
"""

from __future__ import annotations

import io
import json
import os
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests import SAMPLES, sample_path
from vlm_operator.api import VllmVersion, VLMDeployment, VLMDeploymentSpec
from vlm_operator.api.field_mappings import FIELD_MAPPINGS
from vlm_operator.cli import main as vlmctl
from vlm_operator.releases import flags as F
from vlm_operator.render.args import RenderError, effective_limits, render_command

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "args"
REGENERATE = os.environ.get("VLM_REGENERATE_GOLDEN") == "1"
QWEN = "Qwen/Qwen2.5-VL-7B-Instruct"  # catalog: image + video
LLAVA = "llava-hf/llava-1.5-7b-hf"  # catalog: image


def spec(version: str, model: str = QWEN, **sections: Any) -> VLMDeploymentSpec:
    engine = {"version": version, **sections.pop("engine", {})}
    return VLMDeploymentSpec.model_validate({"model": {"name": model}, "engine": engine, **sections})


def argv(s: VLMDeploymentSpec) -> list[str]:
    return list(render_command(s).argv)


def value_of(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]


# ---- golden files -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_sample_matches_golden(sample: Path) -> None:
    vlmd = VLMDeployment.model_validate(yaml.safe_load(sample.read_text()))
    text = "\n".join(render_command(vlmd.spec).argv) + "\n"
    golden = GOLDEN / f"{sample.stem}.txt"
    if REGENERATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden}; run with VLM_REGENERATE_GOLDEN=1"
    assert text == golden.read_text(), f"{sample.name} renders differently from {golden} (VLM_REGENERATE_GOLDEN=1)"


def test_every_golden_file_has_a_sample() -> None:
    assert {p.stem for p in GOLDEN.glob("*.txt")} == {p.stem for p in SAMPLES}


# ---- version rules ------------------------------------------------------------------------------------------------


def test_legacy_entrypoint_before_052_and_vllm_serve_after() -> None:
    old = argv(spec("0.4.3", LLAVA))
    assert old[:5] == ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", LLAVA]
    assert F.flags_for("0.4.3").entrypoint.endswith("vllm.entrypoints.openai.api_server")
    for v in ("0.5.1", "0.5.2"):
        s = spec(v, LLAVA)
        a = argv(s)
        if VllmVersion(v) < "0.5.2":
            assert a[:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
        else:
            assert a[:3] == ["vllm", "serve", LLAVA]
            assert "--model" not in a
            assert F.flags_for(v).positionals == ("model_tag",)


def test_host_and_port_always() -> None:
    for v in ("0.4.0", "0.5.2", "0.8.5", F.supported_versions()[-1]):
        a = argv(spec(v, LLAVA))
        assert value_of(a, "--host") == "0.0.0.0"
        assert value_of(a, "--port") == "8000"


def test_legacy_image_flags_043() -> None:
    legacy = {"imageInputType": "pixel_values", "imageTokenId": 32000, "imageInputShape": [1, 3, 336, 336]}
    legacy["imageFeatureSize"] = 576
    a = argv(spec("0.4.3", LLAVA, multimodal={"legacy": legacy}))
    assert a[-8:] == [
        "--image-input-type",
        "pixel_values",
        "--image-token-id",
        "32000",
        "--image-input-shape",
        "1,3,336,336",
        "--image-feature-size",
        "576",
    ]
    # 0.4.x has no --image-processor (#4197 landed in 0.5.0). The API refuses this spec too; the renderer is the
    # second guard, so bypass the API check by changing the version of a valid 0.5.0 spec.
    s050 = spec("0.5.0", LLAVA, multimodal={"legacy": {**legacy, "imageProcessor": "x/y"}})
    s043 = s050.model_copy(update={"engine": s050.engine.model_copy(update={"version": "0.4.3"})})
    with pytest.raises(RenderError, match=r"legacy\.imageProcessor.*0\.4\.3.*--image-processor.*0\.5\.0 only"):
        render_command(s043)


def test_legacy_050_image_processor_flags() -> None:
    legacy = {
        "imageInputType": "pixel_values",
        "imageTokenId": 32000,
        "imageInputShape": [1, 3, 336, 336],
        "imageFeatureSize": 576,
        "imageProcessor": "llava-hf/llava-1.5-7b-hf",
        "imageProcessorRevision": "main",
        "disableImageProcessor": True,
    }
    a = argv(spec("0.5.0", LLAVA, multimodal={"legacy": legacy}))
    assert value_of(a, "--image-processor") == "llava-hf/llava-1.5-7b-hf"
    assert value_of(a, "--image-processor-revision") == "main"
    assert "--disable-image-processor" in a  # the real 0.5.0 flag, not the docs' --no-image-processor
    assert "--no-image-processor" not in a
    # before 0.5.5 there is no --limit-mm-per-prompt, even for a catalog model
    assert "--limit-mm-per-prompt" not in a


def test_limit_kv_pairs_055_and_084() -> None:
    a = argv(spec("0.5.5", QWEN, multimodal={"limitPerPrompt": {"image": {"count": 4}}}))
    # video unset on a model that takes video: vLLM's default at 0.5.5 (1), explicit
    assert value_of(a, "--limit-mm-per-prompt") == "image=4,video=1"
    a = argv(spec("0.8.4", QWEN, multimodal={"limitPerPrompt": {"image": {"count": 4}}}))
    assert value_of(a, "--limit-mm-per-prompt") == "image=4,video=999"  # #15799: 999 from 0.8.4
    assert F.flag_kind("0.8.4", "--limit-mm-per-prompt") == "kv-pairs"


def test_limit_json_from_085() -> None:
    s = spec("0.8.5", QWEN, multimodal={"limitPerPrompt": {"image": {"count": 4}, "video": {"count": 0}}})
    assert value_of(argv(s), "--limit-mm-per-prompt") == '{"image":4,"video":0}'
    assert F.flag_kind("0.8.5", "--limit-mm-per-prompt") == "json-dict"


def test_limit_defaults_follow_the_catalog_and_the_estimator() -> None:
    # nothing set, catalog model: every modality it takes, at vLLM's default
    a = argv(spec("0.11.0", QWEN))
    assert value_of(a, "--limit-mm-per-prompt") == '{"image":999,"video":999}'
    a = argv(spec("0.11.0", LLAVA))
    assert value_of(a, "--limit-mm-per-prompt") == '{"image":999}'
    # text-only catalog model: nothing to make explicit
    assert "--limit-mm-per-prompt" not in argv(spec("0.11.0", "Qwen/Qwen2.5-7B-Instruct"))
    # unknown model: only what the user set
    unknown = spec("0.11.0", "acme/secret-vlm", multimodal={"limitPerPrompt": {"image": {"count": 2}}})
    assert value_of(argv(unknown), "--limit-mm-per-prompt") == '{"image":2}'
    assert "--limit-mm-per-prompt" not in argv(spec("0.11.0", "acme/secret-vlm"))
    # explicit modalities override the catalog
    s = spec("0.11.0", "acme/secret-vlm")
    assert value_of(list(render_command(s, ("image", "audio")).argv), "--limit-mm-per-prompt") == (
        '{"audio":999,"image":999}'
    )
    assert "--limit-mm-per-prompt" not in render_command(spec("0.11.0", QWEN), None).argv
    # the same numbers the API (and so the estimator) uses
    s = spec("0.8.3", QWEN, multimodal={"limitPerPrompt": {"video": {"count": 0}}})
    assert effective_limits(s, ("image", "video")) == {"image": 1, "video": s.multimodal.limit_per_prompt.video}  # type: ignore[union-attr]


def test_limit_rich_form_only_from_0111() -> None:
    lpp = {
        "image": {"count": 2, "width": 1024, "height": 768},
        "video": {"count": 1, "numFrames": 32},
        "audio": {"count": 1, "length": 16000},
    }
    a = argv(spec("0.11.1", QWEN, multimodal={"limitPerPrompt": lpp}))
    assert json.loads(value_of(a, "--limit-mm-per-prompt")) == {
        "image": {"count": 2, "width": 1024, "height": 768},
        "video": {"count": 1, "num_frames": 32},  # vLLM's snake_case key
        "audio": {"count": 1, "length": 16000},
    }
    assert value_of(a, "--limit-mm-per-prompt").startswith('{"audio":{"count":1,"length":16000},"image":{"count":2,')
    # counts only: plain ints even where the rich form exists
    a = argv(spec("0.11.1", QWEN, multimodal={"limitPerPrompt": {"image": {"count": 2}}}))
    assert value_of(a, "--limit-mm-per-prompt") == '{"image":2,"video":999}'


def test_processor_cache_renames() -> None:
    def mm(**cache: Any) -> dict[str, Any]:
        return {"multimodal": {"processorCache": cache}}

    # 0.8.x-0.10.0: env var; 0 as the disable flag
    r = render_command(spec("0.8.5", **mm(sizeGiB=8)))
    assert ("VLLM_MM_INPUT_CACHE_GIB", "8") in r.env
    assert not any(a.startswith("--mm-processor-cache") for a in r.argv)
    r = render_command(spec("0.9.2", **mm(sizeGiB=0)))
    assert "--disable-mm-preprocessor-cache" in r.argv and r.env == ()
    with pytest.raises(RenderError, match=r"sizeGiB.*VLLM_MM_INPUT_CACHE_GIB.*whole GiB"):
        render_command(spec("0.9.2", **mm(sizeGiB=2.5)))
    # 0.10.1: the flag exists but parses an int
    assert value_of(argv(spec("0.10.1", **mm(sizeGiB=6))), "--mm-processor-cache-gb") == "6"
    with pytest.raises(RenderError, match=r"0\.10\.1 parses --mm-processor-cache-gb as a whole number"):
        render_command(spec("0.10.1", **mm(sizeGiB=0.5)))
    # 0.10.2: float, 0 through the new flag
    a = argv(spec("0.10.2", **mm(sizeGiB=0)))
    assert value_of(a, "--mm-processor-cache-gb") == "0"
    assert "--disable-mm-preprocessor-cache" not in a
    assert value_of(argv(spec("0.10.2", **mm(sizeGiB=2.5))), "--mm-processor-cache-gb") == "2.5"


def test_cache_type_and_shm_from_0110() -> None:
    a = argv(spec("0.11.0", multimodal={"processorCache": {"sizeGiB": 4, "type": "shm", "shmMaxObjectSizeMiB": 256}}))
    assert value_of(a, "--mm-processor-cache-gb") == "4"
    assert value_of(a, "--mm-processor-cache-type") == "shm"
    assert value_of(a, "--mm-shm-cache-max-object-size-mb") == "256"


def test_encoder_tp_mode() -> None:
    def mode(v: str, m: str) -> list[str]:
        return argv(spec(v, engine={"tensorParallelSize": 2}, multimodal={"encoderTPMode": m}))

    assert "--enable-multimodal-encoder-data-parallel" in mode("0.9.1", "data")
    assert "--mm-encoder-tp-mode" not in mode("0.9.1", "data")
    a = mode("0.10.2", "data")
    assert value_of(a, "--mm-encoder-tp-mode") == "data"
    assert "--enable-multimodal-encoder-data-parallel" not in a
    assert value_of(mode(F.supported_versions()[-1], "data"), "--mm-encoder-tp-mode") == "data"
    for v in ("0.9.1", "0.10.2"):
        b = mode(v, "weights")
        assert "--mm-encoder-tp-mode" not in b and "--enable-multimodal-encoder-data-parallel" not in b


def test_newest_release_rich_multimodal() -> None:
    newest = F.supported_versions()[-1]
    s = spec(
        newest,
        engine={"chatTemplateContentFormat": "string", "enablePrefixCaching": False},
        multimodal={
            "interleaveStrings": True,
            "skipProfiling": True,
            "videoPruningRate": 0.25,
            "enableEmbeds": True,
            "mediaIoKwargs": {"video": {"num_frames": 40}},
            "mediaFetch": {
                "allowedDomains": ["a.example", "b.example"],
                "allowedLocalMediaPath": "/data",
                "timeoutSeconds": 20,
            },
        },
    )
    r = render_command(s)
    a = list(r.argv)
    for flag in ("--interleave-mm-strings", "--skip-mm-profiling", "--enable-mm-embeds", "--no-enable-prefix-caching"):
        assert flag in a
    assert value_of(a, "--video-pruning-rate") == "0.25"
    assert value_of(a, "--media-io-kwargs") == '{"video":{"num_frames":40}}'
    i = a.index("--allowed-media-domains")
    assert a[i + 1 : i + 3] == ["a.example", "b.example"]
    assert value_of(a, "--allowed-local-media-path") == "/data"
    assert dict(r.env) == {
        "VLLM_AUDIO_FETCH_TIMEOUT": "20",
        "VLLM_IMAGE_FETCH_TIMEOUT": "20",
        "VLLM_VIDEO_FETCH_TIMEOUT": "20",
    }
    assert r.flag_table_version == newest and r.warnings == ()


def test_prefix_caching_store_true_vs_boolean_optional() -> None:
    assert "--enable-prefix-caching" in argv(spec("0.4.3", LLAVA, engine={"enablePrefixCaching": True}))
    old = argv(spec("0.6.4", LLAVA, engine={"enablePrefixCaching": False}))
    assert not any("prefix-caching" in x for x in old)  # off is V0's default; no --no- flag before 0.6.5
    assert "--no-enable-prefix-caching" in argv(spec("0.6.5", LLAVA, engine={"enablePrefixCaching": False}))


def test_engine_values_and_generation_config() -> None:
    s = spec(
        "0.11.0",
        engine={
            "dtype": "bfloat16",
            "quantization": "fp8",
            "kvCacheDtype": "fp8",
            "maxNumBatchedTokens": 8192,
            "gpuMemoryUtilization": 0.95,
            "kvCacheMemoryBytes": 8 * 1024**3,
            "blockSize": 32,
            "tensorParallelSize": 2,
            "dataParallelSize": 2,
            "apiServerCount": 3,
            "enforceEager": True,
            "generationConfig": "vllm",
            "overrideGenerationConfig": {"temperature": 0.2, "maxNewTokens": 512},
            "chatTemplate": {"name": "tpl", "key": "chat.jinja"},
            "extraArgs": ["--seed", "7"],
        },
    )
    a = argv(s)
    assert value_of(a, "--gpu-memory-utilization") == "0.95"
    assert value_of(a, "--kv-cache-memory-bytes") == str(8 * 1024**3)
    assert value_of(a, "--override-generation-config") == '{"max_new_tokens":512,"temperature":0.2}'
    assert value_of(a, "--chat-template") == "/etc/vlmops/chat-template/chat.jinja"
    assert a[-2:] == ["--seed", "7"]  # extraArgs last
    assert "--enforce-eager" in a and value_of(a, "--api-server-count") == "3"


def test_defaults_and_false_booleans_are_not_rendered() -> None:
    a = argv(spec("0.11.0", engine={"dtype": "auto", "tensorParallelSize": 1, "enforceEager": False}))
    assert a == [
        "vllm",
        "serve",
        QWEN,
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--limit-mm-per-prompt",
        '{"image":999,"video":999}',
    ]


def test_secrets_never_in_argv() -> None:
    s = spec(
        "0.11.0",
        model=QWEN,
        engine={"apiKeySecret": {"name": "api-key-secret", "key": "apikey"}},
    )
    s = VLMDeploymentSpec.model_validate(
        {**s.to_k8s(), "model": {"name": QWEN, "hfTokenSecret": {"name": "hf-secret", "key": "hftoken"}}}
    )
    r = render_command(s)
    text = " ".join(r.argv) + " " + " ".join(f"{k}={v}" for k, v in r.env)
    for needle in ("hf-secret", "hftoken", "api-key-secret", "apikey", "--api-key", "--hf-token", "HF_TOKEN"):
        assert needle not in text


def test_missing_flag_errors_name_field_version_and_first_release() -> None:
    # the API refuses allowedDomains before 0.11.0 already; the renderer's own guard still holds for a spec that
    # skipped validation (model_copy does not validate)
    ok_spec = spec("0.11.0", multimodal={"mediaFetch": {"allowedDomains": ["a.example"]}})
    s = ok_spec.model_copy(update={"engine": ok_spec.engine.model_copy(update={"version": "0.10.2"})})
    with pytest.raises(RenderError) as err:
        render_command(s)
    msg = str(err.value)
    assert "spec.multimodal.mediaFetch.allowedDomains" in msg and "0.10.2" in msg and "vLLM >= 0.11.0" in msg
    # a choice the release does not have
    with pytest.raises(RenderError, match=r"engine\.blockSize: --block-size 64 is not accepted by vLLM 0\.4\.3"):
        render_command(spec("0.4.3", LLAVA, engine={"blockSize": 64}))
    # several served names before nargs="+"
    with pytest.raises(RenderError, match=r"servedModelName.*one value.*several from vLLM 0\.4\.1"):
        render_command(_served("0.4.0", ["a", "b"]))
    assert value_of(argv(_served("0.4.0", ["a"])), "--served-model-name") == "a"
    # a typo in extraArgs would crash-loop the pod
    with pytest.raises(RenderError, match=r"extraArgs: '--max-logprob' is not a flag of vLLM 0\.11\.0"):
        render_command(spec("0.11.0", engine={"extraArgs": ["--max-logprob", "5"]}))
    ok = argv(spec("0.11.0", engine={"extraArgs": ["--max_logprobs=5", "--seed", "-1"]}))
    assert ok[-3:] == ["--max_logprobs=5", "--seed", "-1"]


def _served(version: str, names: list[str]) -> VLMDeploymentSpec:
    return VLMDeploymentSpec.model_validate(
        {"model": {"name": LLAVA, "servedModelName": names}, "engine": {"version": version}}
    )


def test_version_above_the_table_warns_and_uses_the_newest() -> None:
    r = render_command(spec("9.0.0"))
    assert r.flag_table_version == F.supported_versions()[-1]
    assert r.warnings and "newer than the flag table" in r.warnings[0]
    # a patch release between covered ones maps down quietly
    r = render_command(spec("0.10.1.1"))
    assert r.flag_table_version == "0.10.1" and r.warnings == ()


def test_args_property_is_argv_without_entrypoint() -> None:
    r = render_command(spec("0.11.0"))
    assert r.args[0] == QWEN and r.argv[: len(r.entrypoint)] == ("vllm", "serve")
    r = render_command(spec("0.5.0", LLAVA))
    assert r.args[:2] == ("--model", LLAVA)


# ---- every release: a rich spec, checked against the table --------------------------------------------------------


_API_SINCE = {m.path: (m.since, m.until) for m in FIELD_MAPPINGS}


def api_allows(path: str, v: str) -> bool:
    since, until = _API_SINCE[path]
    return (since is None or VllmVersion(v) >= since) and (until is None or VllmVersion(v) < until)


def pick(v: str, flag: str, preferred: tuple[str, ...]) -> str | None:
    info = F.flags_for(v).lookup(flag)
    assert info is not None
    if info.choices is None:
        return preferred[0]
    return next((p for p in preferred if p in {str(c) for c in info.choices}), None)


def rich_spec(v: str) -> tuple[VLMDeploymentSpec, set[str]]:
    """A spec setting every field release ``v`` supports, and the flags it must render."""
    has = F.flags_for(v).lookup
    ver = VllmVersion(v)
    expect = {"--host", "--port", "--revision", "--tokenizer", "--trust-remote-code", "--served-model-name"}
    legacy = ver < "0.5.1"
    model: dict[str, Any] = {
        "name": LLAVA if legacy else QWEN,
        "revision": "main",
        "tokenizer": "acme/tokenizer",
        "trustRemoteCode": True,
        "servedModelName": ["m1", "m2"] if has("--served-model-name").nargs == "+" else ["m1"],  # type: ignore[union-attr]
    }
    engine: dict[str, Any] = {
        "version": v,
        "dtype": "bfloat16",
        "quantization": pick(v, "--quantization", ("fp8", "awq")),
        "kvCacheDtype": pick(v, "--kv-cache-dtype", ("fp8", "fp8_e5m2")),
        "maxModelLen": 32768,
        "maxNumSeqs": 64,
        "maxNumBatchedTokens": 8192,
        "gpuMemoryUtilization": 0.85,
        "blockSize": 32,
        "tensorParallelSize": 2,
        "pipelineParallelSize": 2,
        "enforceEager": True,
        "chatTemplate": {"name": "tpl", "key": "t.jinja"},
        "extraArgs": ["--seed", "7"],
    }
    expect |= {"--dtype", "--quantization", "--kv-cache-dtype", "--max-model-len", "--max-num-seqs"}
    expect |= {"--max-num-batched-tokens", "--gpu-memory-utilization", "--block-size", "--tensor-parallel-size"}
    expect |= {"--pipeline-parallel-size", "--enforce-eager", "--chat-template", "--seed"}
    prefix_bool = has("--enable-prefix-caching").kind == "boolean-optional"  # type: ignore[union-attr]
    engine["enablePrefixCaching"] = not prefix_bool  # False (--no-...) where it exists, True before
    expect.add("--no-enable-prefix-caching" if prefix_bool else "--enable-prefix-caching")
    optional_engine: tuple[tuple[str, str, Any, str], ...] = (
        ("engine.kvCacheMemoryBytes", "kvCacheMemoryBytes", 4 * 1024**3, "--kv-cache-memory-bytes"),
        ("engine.dataParallelSize", "dataParallelSize", 2, "--data-parallel-size"),
        ("engine.apiServerCount", "apiServerCount", 2, "--api-server-count"),
        ("engine.chatTemplateContentFormat", "chatTemplateContentFormat", "string", "--chat-template-content-format"),
        ("engine.generationConfig", "generationConfig", "vllm", "--generation-config"),
        (
            "engine.overrideGenerationConfig",
            "overrideGenerationConfig",
            {"maxNewTokens": 256},
            "--override-generation-config",
        ),
    )
    for path, key, value, flag in optional_engine:
        if has(flag) and api_allows(path, v):
            engine[key] = value
            expect.add(flag)
    mm: dict[str, Any] = {"mediaFetch": {"timeoutSeconds": 30}}
    if legacy:
        mm["legacy"] = {
            "imageInputType": "pixel_values",
            "imageTokenId": 32000,
            "imageInputShape": [1, 3, 336, 336],
            "imageFeatureSize": 576,
        }
        expect |= {"--image-input-type", "--image-token-id", "--image-input-shape", "--image-feature-size"}
        if has("--image-processor"):
            mm["legacy"] |= {"imageProcessor": LLAVA, "imageProcessorRevision": "main", "disableImageProcessor": True}
            expect |= {"--image-processor", "--image-processor-revision", "--disable-image-processor"}
    else:
        if has("--limit-mm-per-prompt"):
            image: dict[str, Any] = {"count": 2}
            if ver >= "0.11.1":
                image |= {"width": 1024, "height": 1024}
            mm["limitPerPrompt"] = {"image": image, "video": {"count": 0}}
            expect.add("--limit-mm-per-prompt")
        if has("--mm-processor-kwargs"):
            mm["processorKwargs"] = {"max_pixels": 1003520}
            expect.add("--mm-processor-kwargs")
        if has("--media-io-kwargs") and api_allows("multimodal.mediaIoKwargs", v):
            mm["mediaIoKwargs"] = {"video": {"num_frames": 16}}
            expect.add("--media-io-kwargs")
        if ver >= "0.8.0":
            cache: dict[str, Any] = {"sizeGiB": 2}
            if has("--mm-processor-cache-gb"):
                expect.add("--mm-processor-cache-gb")
            if has("--mm-processor-cache-type"):
                cache |= {"type": "shm", "shmMaxObjectSizeMiB": 64}
                expect |= {"--mm-processor-cache-type", "--mm-shm-cache-max-object-size-mb"}
            mm["processorCache"] = cache
        if ver >= "0.9.1":
            mm["encoderTPMode"] = "data"
            expect.add(
                "--mm-encoder-tp-mode" if has("--mm-encoder-tp-mode") else "--enable-multimodal-encoder-data-parallel"
            )
        optional_mm: tuple[tuple[str, str, Any, str], ...] = (
            ("multimodal.interleaveStrings", "interleaveStrings", True, "--interleave-mm-strings"),
            ("multimodal.skipProfiling", "skipProfiling", True, "--skip-mm-profiling"),
            ("multimodal.videoPruningRate", "videoPruningRate", 0.5, "--video-pruning-rate"),
            ("multimodal.enableEmbeds", "enableEmbeds", True, "--enable-mm-embeds"),
        )
        for path, key, value, flag in optional_mm:
            if has(flag) and api_allows(path, v):
                mm[key] = value
                expect.add(flag)
    if has("--allowed-local-media-path"):
        mm["mediaFetch"]["allowedLocalMediaPath"] = "/data/media"
        expect.add("--allowed-local-media-path")
    if has("--allowed-media-domains"):
        mm["mediaFetch"]["allowedDomains"] = ["a.example", "b.example"]
        expect.add("--allowed-media-domains")
    if engine.get("quantization") is None:
        engine.pop("quantization")
        expect.discard("--quantization")
    s = VLMDeploymentSpec.model_validate({"model": model, "engine": engine, "multimodal": mm})
    return s, expect


_KV_RE = re.compile(r"^[a-z]+=\d+(,[a-z]+=\d+)*$")


def check_against_table(v: str, args: tuple[str, ...]) -> set[str]:
    """Walk ``args`` (after the entry point) as argparse would, checking every option and value against the
    table; return the canonical names of the options seen."""
    fs = F.flags_for(v)
    seen: set[str] = set()
    i = 0
    if fs.positionals:
        assert not args[0].startswith("-"), "vllm serve takes the model first"
        i = 1
    while i < len(args):
        tok = args[i]
        name = tok.split("=", 1)[0].replace("_", "-")
        info = fs.lookup(name)
        assert info is not None, f"{tok} is not a flag of vLLM {v}"
        seen.add(tok if tok.startswith("--no-") else info.name)
        i += 1
        if "=" in tok:
            continue
        if info.kind in ("store_true", "store_false", "boolean-optional"):
            assert i >= len(args) or args[i].startswith("--"), f"{tok} takes no value in {v}, got {args[i]!r}"
            continue
        vals: list[str] = []
        while i < len(args) and not args[i].startswith("--"):
            vals.append(args[i])
            i += 1
        if info.nargs in ("+", "*"):
            assert vals, f"{tok} needs values"
        else:
            assert len(vals) == 1, f"{tok} takes one value in {v}, got {vals}"
        for val in vals:
            if info.kind == "json-dict":
                assert isinstance(json.loads(val), dict), f"{tok} {val} is not a JSON object"
                assert val == json.dumps(json.loads(val), sort_keys=True, separators=(",", ":"))
            elif info.kind == "kv-pairs":
                assert _KV_RE.match(val), f"{tok} {val} is not key=value pairs"
            if info.choices is not None:
                assert val in {str(c) for c in info.choices}, f"{tok} {val} not in {info.choices}"
            if info.value_type in ("int", "human_readable_int"):
                int(val)
            elif info.value_type == "float":
                float(val)
    return seen


@pytest.mark.parametrize("version", F.supported_versions())
def test_every_release_rich_spec_checked_against_the_table(version: str) -> None:
    s, expect = rich_spec(version)
    r = render_command(s)
    seen = check_against_table(version, r.args)
    assert expect <= seen, f"not rendered for {version}: {sorted(expect - seen)}"
    assert r.argv[: len(r.entrypoint)] == (
        ("vllm", "serve")
        if VllmVersion(version) >= "0.5.2"
        else ("python3", "-m", "vllm.entrypoints.openai.api_server")
    )
    env = dict(r.env)
    assert env["VLLM_IMAGE_FETCH_TIMEOUT"] == "30"
    if VllmVersion(version) >= "0.8.0" and not F.has_flag(version, "--mm-processor-cache-gb"):
        assert env["VLLM_MM_INPUT_CACHE_GIB"] == "2"
    else:
        assert "VLLM_MM_INPUT_CACHE_GIB" not in env
    # deterministic
    assert render_command(s) == r


# ---- vlmctl render ------------------------------------------------------------------------------------------------


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = vlmctl(["render", *args])
    return rc, out.getvalue(), err.getvalue()


def test_cli_renders_a_sample() -> None:
    rc, out, _ = run_cli("-f", str(sample_path("qwen2.5-vl-7b-pixels")))
    assert rc == 0
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "PodDisruptionBudget"]
    dep = docs[0]
    assert dep["metadata"]["namespace"] == "default"
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "00000000-0000-0000-0000-000000000000"
    command = dep["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["vllm", "serve", QWEN]


def test_cli_version_override_and_missing_metadata(tmp_path: Path) -> None:
    f = tmp_path / "My_VLMD.yaml"
    f.write_text(yaml.safe_dump({"spec": {"model": {"name": QWEN}, "engine": {"version": "0.11.0"}}}))
    rc, out, _ = run_cli("-f", str(f), "--vllm-version", "0.8.4")
    assert rc == 0
    dep = next(yaml.safe_load_all(out))
    assert dep["metadata"]["name"] == "my-vlmd"
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "vllm/vllm-openai:v0.8.4"
    assert "image=999,video=999" in c["command"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("spec: [", "not valid YAML"),
        ("- a\n- b\n", "not a YAML mapping"),
        (
            "spec:\n  model: {name: Qwen/Qwen2.5-VL-7B-Instruct}\n  engine: {version: '0.5.0'}\n  multimodal:\n"
            "    limitPerPrompt: {image: {count: 2}}\n",
            "limitPerPrompt needs vLLM >= 0.5.5",
        ),
        (
            "spec:\n  model: {name: Qwen/Qwen2.5-VL-7B-Instruct}\n  engine: {version: '0.10.2'}\n  multimodal:\n"
            "    mediaFetch: {allowedDomains: [a.example]}\n",
            "allowedDomains needs vLLM >= 0.11.0",
        ),
    ],
)
def test_cli_bad_input_exits_1_without_traceback(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    rc, out, err = run_cli("-f", str(f))
    assert rc == 1 and out == ""
    assert message in err and "Traceback" not in err
    assert err.startswith("vlmctl render: ")


def test_cli_missing_file() -> None:
    rc, _, err = run_cli("-f", "/nonexistent/vlmd.yaml")
    assert rc == 1 and "cannot read /nonexistent/vlmd.yaml" in err
