"""Opt-in tier: the flag table against vLLM's own parser (a real vLLM install, cached outside the repository).

    VLM_TEST_VLLM=1 .venv/bin/pytest -m vllm tests/vllm

``hack/vllm_venv.sh`` installs the pinned default vLLM (``DEFAULT_VLLM_VERSION``; override with
``VLM_TEST_VLLM_VERSION``) into ``~/.cache/vlm-operator/vllm-venv-<ver>`` on first use (about 8 GB, a few minutes),
then ``probe_parser.py`` runs inside that venv and dumps the ``vllm serve`` parser. The option strings the table has
for that version must equal the parser's, and the kinds and choices must agree.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.manifests import SAMPLES
from vlm_operator.releases import flags as F

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(os.environ.get("VLM_TEST_VLLM") != "1", reason="opt-in: set VLM_TEST_VLLM=1"),
]

REPO = Path(__file__).resolve().parents[2]
VERSION = os.environ.get("VLM_TEST_VLLM_VERSION", F.DEFAULT_VLLM_VERSION)

# argparse action class -> table kind
ACTION_KINDS = {
    "BooleanOptionalAction": {"boolean-optional"},
    "_StoreTrueAction": {"store_true"},
    "_StoreFalseAction": {"store_false"},
    "_HelpAction": {"help"},
    "_StoreAction": {"value", "json-dict", "kv-pairs", "optional-value"},
    "_AppendAction": {"value"},
}


@cache
def venv_python() -> str:
    res = subprocess.run(
        ["bash", str(REPO / "hack" / "vllm_venv.sh"), VERSION], capture_output=True, text=True, timeout=3600
    )
    if res.returncode != 0:
        pytest.fail(f"hack/vllm_venv.sh {VERSION} failed:\n{res.stderr[-4000:]}")
    return res.stdout.strip().splitlines()[-1]


def probe(*argv: str) -> dict[str, Any]:
    res = subprocess.run(
        [venv_python(), str(REPO / "tests" / "vllm" / "probe_parser.py"), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        cwd="/",  # never import the repository's packages by accident
    )
    assert res.returncode == 0, res.stderr[-4000:]
    # older releases log to stdout before the probe prints; the JSON is the last line
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


@cache
def real_parser() -> dict[str, Any]:
    return probe()


def test_installed_version_is_covered_exactly() -> None:
    assert real_parser()["version"] == VERSION
    assert F.flags_for(VERSION).exact


def test_option_strings_equal_the_table() -> None:
    real = {s for a in real_parser()["actions"] for s in a["option_strings"]}
    ours = set(F.flags_for(VERSION).option_strings())
    assert sorted(real - ours) == [], "flags vLLM has that the table lacks"
    assert sorted(ours - real) == [], "flags the table has that vLLM lacks"
    positionals = [a["dest"] for a in real_parser()["actions"] if not a["option_strings"]]
    assert tuple(positionals) == F.flags_for(VERSION).positionals


def test_kinds_and_choices_agree() -> None:
    fs = F.flags_for(VERSION)
    problems = []
    for a in real_parser()["actions"]:
        if not a["option_strings"]:
            continue
        info = fs.lookup(a["option_strings"][0])
        assert info is not None
        allowed = ACTION_KINDS.get(a["action"], {"value"})  # custom Action classes take a value
        if info.kind not in allowed:
            problems.append(f"{info.name}: table {info.kind}, vLLM {a['action']}")
        if info.kind == "optional-value" and a["nargs"] != "?":
            problems.append(f"{info.name}: nargs {a['nargs']}")
        if info.nargs is not None and info.nargs != a["nargs"]:
            problems.append(f"{info.name}: nargs table {info.nargs}, vLLM {a['nargs']}")
        if info.choices is not None:
            real_choices = {c for c in a["choices"] or () if c is not None and c != "None"}
            if set(info.choices) != real_choices:
                problems.append(f"{info.name}: choices table {sorted(map(str, info.choices))}, vLLM {real_choices}")
    assert problems == []


def test_vllm_parses_typical_vlm_args() -> None:
    out = probe(
        "Qwen/Qwen2.5-VL-3B-Instruct",
        "--limit-mm-per-prompt",
        '{"image": 3}',
        "--mm-processor-kwargs",
        '{"max_pixels": 1003520}',
        "--enforce-eager",
        "-tp",
        "2",
        "--mm-processor-cache-gb",
        "0",
        "--max-model-len",
        "32k",
    )
    assert "error" not in out, out.get("error")
    parsed = out["parsed"]
    assert parsed["model_tag"] == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert parsed["limit_mm_per_prompt"] == {"image": 3}
    assert parsed["mm_processor_kwargs"] == {"max_pixels": 1003520}
    assert parsed["enforce_eager"] is True
    assert parsed["tensor_parallel_size"] == 2
    assert parsed["max_model_len"] == 32000  # decimal k (``human_readable_int``, vllm/engine/arg_utils.py)


def test_vllm_rejects_flags_the_table_does_not_have() -> None:
    # --swap-space was removed ≈v0.18 (#36216); on older releases use a flag no release has
    flag = "--swap-space" if not F.has_flag(VERSION, "--swap-space") else "--vlmops-no-such-flag"
    assert not F.has_flag(VERSION, flag)
    out = probe("m", flag, "4")
    assert out.get("error", {}).get("code") == 2


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_vllm_parses_the_rendered_args_of_every_sample(path: Path) -> None:
    """The operator's own output, not a hand-written line: each sample rendered for the pinned release."""
    import yaml

    from vlm_operator.api import VLMDeployment
    from vlm_operator.render.args import render_command

    doc = yaml.safe_load(path.read_text())
    if doc["spec"].get("multimodal", {}).get("legacy"):
        pytest.skip("legacy --image-* fields exist only for vLLM 0.4.0-0.5.0")
    doc["spec"].setdefault("engine", {})["version"] = VERSION
    doc["spec"]["engine"].pop("image", None)
    spec = VLMDeployment.model_validate(doc).spec
    rendered = render_command(spec)
    assert rendered.argv[:2] == ("vllm", "serve")
    out = probe(*rendered.argv[2:])
    assert "error" not in out, (rendered.argv, out.get("error"))
    parsed = out["parsed"]
    assert parsed["model_tag"] == spec.model.name
    if spec.engine.max_model_len is not None:
        assert parsed["max_model_len"] == spec.engine.max_model_len
    if "--limit-mm-per-prompt" in rendered.argv:
        sent = json.loads(rendered.argv[rendered.argv.index("--limit-mm-per-prompt") + 1])
        assert parsed["limit_mm_per_prompt"] == sent
    assert parsed["tensor_parallel_size"] == spec.engine.tensor_parallel_size
