"""`vlmctl estimate`: flags, JSON keys, exit codes and cold start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.manifests import sample_path
from vlm_operator.cli import main

KEYS = {
    "weights_gib",
    "activation_gib",
    "non_torch_gib",
    "cuda_graph_gib",
    "kv_cache_gib",
    "kv_cache_tokens",
    "max_concurrency",
    "image_tokens_per_item",
    "fits",
    "recommendations",
    "items",
    "gpu_assumed",
}


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    rc = main(["estimate", *args, "--output", "json"])
    return rc, json.loads(capsys.readouterr().out)


def test_fits_exit_0_and_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    rc, data = run_json(capsys, "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--gpu", "H100", "--max-model-len", "32k")
    assert rc == 0
    assert set(data) >= KEYS
    assert data["fits"] is True
    assert data["image_tokens_per_item"]["image"] > 0  # type: ignore[index]


def test_does_not_fit_exit_2_with_recommendations(capsys: pytest.CaptureFixture[str]) -> None:
    rc, data = run_json(
        capsys, "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--gpu", "L4", "--limit-mm-per-prompt", '{"image": 4}'
    )
    assert rc == 2
    assert data["fits"] is False
    assert data["recommendations"]


def test_flags_change_the_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    _, a = run_json(capsys, "--model", "Qwen2.5-VL-7B-Instruct", "--gpu-memory-gib", "80", "--max-model-len", "16384")
    _, b = run_json(
        capsys,
        "--model",
        "Qwen2.5-VL-7B-Instruct",
        "--gpu-memory-gib",
        "80",
        "--max-model-len",
        "16384",
        "--kv-cache-dtype",
        "fp8",
        "-tp",
        "2",
    )
    assert b["weights_gib"] < a["weights_gib"]  # type: ignore[operator]
    assert b["kv_cache_tokens"] > a["kv_cache_tokens"]  # type: ignore[operator]


@pytest.mark.parametrize(
    "args",
    [
        ["--model", "no/such-model", "--offline"],
        ["--model", "no-such-model"],
        ["--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--gpu", "TPUv9"],
        ["--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--gpu-memory-utilization", "2"],
        ["--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--mm-processor-kwargs", '{"max_pixels": "big"}'],
        ["--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--limit-mm-per-prompt", '{"image": -1}'],
        ["--model-dir", "/nonexistent"],
        [],
    ],
)
def test_bad_input_exit_1_without_traceback(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["estimate", *args])
    err = capsys.readouterr().err
    assert rc == 1
    assert "Traceback" not in err
    assert err.startswith("vlmctl estimate:")


def test_table_output_mentions_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["estimate", "--model", "google/gemma-3-4b-it", "--gpu", "L4", "--max-model-len", "8192"])
    out = capsys.readouterr().out
    assert rc in (0, 2)
    assert "verdict" in out and "KV cache" in out


def test_estimate_imports_no_heavy_module() -> None:
    # The cold-start time itself is a figure of benchmarks/estimator.py (speed is measured there, not asserted in a
    # test that a loaded machine can fail); what must hold everywhere is that the CLI never imports these.
    code = (
        "import sys; from vlm_operator.cli import main; "
        "rc=main(['estimate','--model','Qwen/Qwen2.5-VL-7B-Instruct','--gpu','H100','--max-model-len','32768',"
        "'--output','json']); "
        "print('HEAVY', [m for m in ('kopf','kubernetes','transformers','torch') if m in sys.modules], file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr


def test_mig_profile_sizes_the_slice(capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--model", "llava-hf/llava-1.5-7b-hf", "--gpu", "A100-80GB", "--max-model-len", "4096"]
    rc, whole = run_json(capsys, *common)
    rc_slice, sliced = run_json(capsys, *common, "--mig-profile", "2g.20gb")
    assert rc == rc_slice == 0
    assert sliced["kv_cache_gib"] < whole["kv_cache_gib"] / 4  # type: ignore[operator]
    assert main(["estimate", *common, "--mig-profile", "2g.20gb", "-tp", "2"]) == 1
    assert "vLLM cannot span MIG instances" in capsys.readouterr().err
    assert main(["estimate", *common[:2], "--gpu", "L4", "--mig-profile", "1g.5gb"]) == 1
    assert "not a MIG profile of NVIDIA-L4" in capsys.readouterr().err


# ---- the CLI contract: usage errors exit 1 (2 means "does not fit"), clear messages, stated assumptions ------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-model-len", "-5"], "--max-model-len: must be a positive integer"),
        (["--max-model-len", "0"], "--max-model-len: must be a positive integer"),
        (["--max-model-len", "1.5"], "--max-model-len: must be a positive integer"),
        (["--max-num-batched-tokens", "lots"], "--max-num-batched-tokens: must be a positive integer"),
        (["-tp", "0"], "--tensor-parallel-size: must be a positive integer"),
        (["--max-num-seqs", "-1"], "--max-num-seqs: must be a positive integer"),
        (["--gpu-memory-utilization", "2"], "--gpu-memory-utilization: must be a fraction in (0, 1]"),
        (["--engine", "v9"], "--engine: invalid choice"),
        (["--limit-mm-per-prompt", "{nope"], "--limit-mm-per-prompt: not JSON"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_usage_errors_exit_1_not_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["estimate", "--model", "Qwen/Qwen2.5-VL-7B-Instruct", *args])
    err = capsys.readouterr().err
    assert rc == 1
    assert message in err
    assert "Traceback" not in err and "usage:" not in err  # one line naming the flag, then where help is


def test_usage_error_exit_status_of_the_real_process() -> None:
    argv = [sys.executable, "-m", "vlm_operator", "estimate", "--model", "Qwen2.5-VL-7B-Instruct"]
    bad = subprocess.run([*argv, "--max-model-len", "-5"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1, bad.stderr
    assert "must be a positive integer" in bad.stderr
    does_not_fit = subprocess.run([*argv, "--gpu", "L4", "--output", "json"], capture_output=True, timeout=30)
    assert does_not_fit.returncode == 2
    helped = subprocess.run([*argv, "--help"], capture_output=True, timeout=30)
    assert helped.returncode == 0


def test_human_numbers_still_parse(capsys: pytest.CaptureFixture[str]) -> None:
    _, k = run_json(capsys, "--model", "Qwen2.5-VL-7B-Instruct", "--max-model-len", "32K", "--gpu", "H100")
    _, plain = run_json(capsys, "--model", "Qwen2.5-VL-7B-Instruct", "--max-model-len", "1.5k", "--gpu", "H100")
    assert k["details"]["max_model_len"] == 32768  # type: ignore[index]
    assert plain["details"]["max_model_len"] == 1500  # type: ignore[index]


def test_a_gpu_left_out_is_stated(capsys: pytest.CaptureFixture[str]) -> None:
    _, assumed = run_json(capsys, "--model", "Qwen2.5-VL-7B-Instruct", "--max-model-len", "8192")
    assert assumed["gpu_assumed"] == "H100-80GB" and assumed["gpu"] == "H100-80GB"
    _, named = run_json(capsys, "--model", "Qwen2.5-VL-7B-Instruct", "--max-model-len", "8192", "--gpu", "L40S")
    assert named["gpu_assumed"] is None
    _, sized = run_json(
        capsys, "--model", "Qwen2.5-VL-7B-Instruct", "--max-model-len", "8192", "--gpu-memory-gib", "40"
    )
    assert sized["gpu_assumed"] is None
    main(["estimate", "--model", "Qwen2.5-VL-7B-Instruct", "--max-model-len", "8192"])
    assert "GPU: assumed H100-80GB" in capsys.readouterr().out
    main(["estimate", "--model", "Qwen2.5-VL-7B-Instruct", "--max-model-len", "8192", "--gpu", "L40S"])
    assert "assumed" not in capsys.readouterr().out


def test_every_engine_and_multimodal_flag_has_help() -> None:
    import argparse

    from vlm_operator.cli import estimate

    parser = argparse.ArgumentParser()
    estimate.add_arguments(parser)
    checked = 0
    for group in parser._action_groups:  # argparse has no public accessor for groups
        for action in group._group_actions:
            if action.dest == "help":
                continue
            assert action.help and action.help != argparse.SUPPRESS and len(action.help) > 10, action.dest
            checked += 1
    assert checked >= 30


def test_model_facts_line_never_wraps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vlm_operator.models import catalog

    entry = next(e for e in catalog.raw_entries() if e["id"] == "llava-hf/llava-1.5-7b-hf")
    deep = tmp_path / ("a-rather-long-directory-name-" * 3) / "checkpoints" / "llava-1.5-7b-hf-snapshot"
    deep.mkdir(parents=True)
    (deep / "config.json").write_text(json.dumps(entry["config"]))
    monkeypatch.setenv("COLUMNS", "60")
    main(["estimate", "--model-dir", str(deep), "--gpu", "H100", "--max-model-len", "4096"])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("model facts:"))
    assert str(deep) in line and len(line) > 60


def test_a_manifest_without_a_gpu_is_stated_as_assumed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = sample_path("llava-1.5-7b-l4").read_text()
    named = tmp_path / "named.yaml"
    named.write_text(sample)
    unnamed = tmp_path / "unnamed.yaml"
    unnamed.write_text(sample.replace("    gpu:\n      product: L4\n", ""))
    main(["estimate", "-f", str(named), "--output", "json"])
    assert json.loads(capsys.readouterr().out)["gpu_assumed"] is None
    main(["estimate", "-f", str(unnamed), "--output", "json"])
    data = json.loads(capsys.readouterr().out)
    assert data["gpu_assumed"] == "H100-80GB" and data["gpu"] == "H100-80GB"
