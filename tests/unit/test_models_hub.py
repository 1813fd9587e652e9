"""The Hub resolver, through the real ``huggingface_hub`` client, against a fake Hub server on loopback.

What is checked: facts equal the local directory reader's for the same files; exact parameter counts from the
safetensors headers of single-file and sharded checkpoints (read with ranged GETs, never the weights); tokens for
gated repos; errors that name the model, the endpoint and a fix; the disk and memory caches (TTL, commits that never
expire, offline mode, a stale record when the Hub is down, failures remembered briefly); and the two callers, the
``vlmctl estimate`` CLI and the operator's fit check.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakehub import FakeHub, safetensors_blob
from vlm_operator import fitcheck
from vlm_operator.api import VLMDeployment
from vlm_operator.cli import main
from vlm_operator.estimator import from_spec
from vlm_operator.models import catalog
from vlm_operator.models.hub import HubError, HubResolver, HubSettings
from vlm_operator.models.local import read_model_dir

pytest.importorskip("huggingface_hub")  # a dev dependency; CI always has it, so this tier never skips there

QWEN = next(e for e in catalog.raw_entries() if e["id"] == "Qwen/Qwen2.5-VL-7B-Instruct")
PRE = {"min_pixels": 3136, "max_pixels": 1003520, "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2}
TENSORS = {
    "model.embed_tokens.weight": ("BF16", [1000, 64]),
    "visual.patch_embed.proj.weight": ("BF16", [64, 3, 2, 14, 14]),
    "lm_head.weight": ("BF16", [1000, 64]),
}
N_PARAMS = 1000 * 64 * 2 + 64 * 3 * 2 * 14 * 14


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _isolated_hf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no saved token from the user's machine
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as h:
        h.add(
            "acme/vlm-7b",
            {
                "config.json": QWEN["config"],
                "preprocessor_config.json": PRE,
                "model.safetensors": safetensors_blob(TENSORS),
            },
        )
        yield h


def resolver(hub: FakeHub, tmp_path: Path, clock: Clock | None = None, **kw: Any) -> HubResolver:
    settings = HubSettings(endpoint=hub.endpoint, cache_dir=tmp_path / "cache", **kw)
    return HubResolver(settings, clock=clock or Clock())


def test_resolves_config_preprocessor_and_exact_params(hub: FakeHub, tmp_path: Path) -> None:
    facts = resolver(hub, tmp_path).resolve("acme/vlm-7b")
    assert facts.total_params == N_PARAMS
    assert facts.family == "qwen2_5_vl" and facts.is_multimodal
    assert facts.processor["max_pixels"] == 1003520
    assert facts.source == f"{hub.endpoint}/acme/vlm-7b@{hub.repos['acme/vlm-7b'].commit}"
    # the weights were never downloaded: the safetensors file was read with one ranged GET of its header
    st = [r for r in hub.requests if r.path.endswith("model.safetensors") and r.method == "GET"]
    assert len(st) == 1 and st[0].range is not None and st[0].range.startswith("bytes=0-")
    # the same files read from a directory give the same facts
    d = tmp_path / "dir"
    d.mkdir()
    for name, data in hub.repos["acme/vlm-7b"].files.items():
        (d / name).write_bytes(data)
    local = read_model_dir(d, "acme/vlm-7b")
    assert local.total_params == facts.total_params
    assert (local.text, local.vision, dict(local.processor)) == (facts.text, facts.vision, dict(facts.processor))


def test_sharded_checkpoint_counts_every_shard(hub: FakeHub, tmp_path: Path) -> None:
    a = {"model.embed_tokens.weight": ("BF16", [1000, 64])}
    b = {"lm_head.weight": ("BF16", [1000, 64]), "model.norm.weight": ("F32", [64])}
    index = {
        "metadata": {"total_size": 4 * 64000 + 4 * 64},
        "weight_map": {
            **dict.fromkeys(a, "model-00001-of-00002.safetensors"),
            **dict.fromkeys(b, "model-00002-of-00002.safetensors"),
        },
    }
    hub.add(
        "acme/sharded",
        {
            "config.json": QWEN["config"],
            "model.safetensors.index.json": index,
            "model-00001-of-00002.safetensors": safetensors_blob(a),
            "model-00002-of-00002.safetensors": safetensors_blob(b),
        },
    )
    facts = resolver(hub, tmp_path).resolve("acme/sharded")
    assert facts.total_params == 2 * 64000 + 64
    assert facts.processor  # no preprocessor_config.json: the family's defaults apply


def test_quantized_and_bin_only_checkpoints_use_the_architecture_count(hub: FakeHub, tmp_path: Path) -> None:
    """A quantized checkpoint's stored elements are not its parameters: it takes the exact count of the catalog model
    with its architecture (here Qwen2.5-VL-7B); a .bin-only one has no headers and keeps the computed count."""
    awq = {**QWEN["config"], "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128}}
    hub.add("acme/vlm-awq", {"config.json": awq, "model.safetensors": safetensors_blob({"w": ("I32", [10, 10])})})
    hub.add("acme/vlm-bin", {"config.json": QWEN["config"], "pytorch_model.bin": b"\0" * 16})
    r = resolver(hub, tmp_path)
    q = r.resolve("acme/vlm-awq")
    assert q.total_params == catalog.lookup("Qwen/Qwen2.5-VL-7B-Instruct").total_params
    assert q.quantization is not None and q.quantization.method == "awq"
    b = r.resolve("acme/vlm-bin")
    assert b.total_params is None
    assert b.computed_params() == catalog.lookup("Qwen/Qwen2.5-VL-7B-Instruct").computed_params()


def test_gated_repo_needs_the_token_and_gets_it(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("meta/gated", {"config.json": QWEN["config"]}, token="hf_secret")
    with pytest.raises(HubError, match=r"meta/gated@main on http://127\.0\.0\.1:\d+ is gated.*token"):
        resolver(hub, tmp_path).resolve("meta/gated")
    facts = resolver(hub, tmp_path, token="hf_secret").resolve("meta/gated")
    assert facts.family == "qwen2_5_vl"
    assert all(r.authorization == "Bearer hf_secret" for r in hub.requests[-3:])


@pytest.mark.parametrize(
    ("model", "revision", "message"),
    [
        ("acme/nope", None, r"acme/nope@main on .*: no such model \(or it is private\); fix: check model\.name"),
        ("acme/vlm-7b", "v9", r"revision 'v9' does not exist; fix: check model\.revision"),
        ("acme/no-config", None, r"has no config\.json; fix"),
        ("not a repo id", None, r"is not a Hugging Face repo id; use 'org/name'"),
        ("acme/bad-config", None, r"acme/bad-config on .*"),
    ],
)
def test_errors_name_the_model_the_endpoint_and_a_fix(
    hub: FakeHub, tmp_path: Path, model: str, revision: str | None, message: str
) -> None:
    hub.add("acme/no-config", {"README.md": b"hi"})
    hub.add("acme/bad-config", {"config.json": {"architectures": ["X"], "model_type": "x"}})
    with pytest.raises(HubError, match=message):
        resolver(hub, tmp_path).resolve(model, revision)


def test_a_failing_hub_is_a_clear_error_and_is_remembered(hub: FakeHub, tmp_path: Path) -> None:
    hub.fail_status = 403  # not retried by the client, so the error comes back at once
    clock = Clock()
    r = resolver(hub, tmp_path, clock)
    with pytest.raises(HubError, match=r"acme/vlm-7b@main on http://127\.0\.0\.1:\d+: the Hub answered .*403"):
        r.resolve("acme/vlm-7b")
    sent = len(hub.requests)
    with pytest.raises(HubError):
        r.resolve("acme/vlm-7b")
    assert len(hub.requests) == sent  # remembered: no new request within negative_ttl_s
    clock.now += 61
    hub.fail_status = None
    assert r.resolve("acme/vlm-7b").total_params == N_PARAMS


def test_deadline_bounds_the_wait_and_the_answer_arrives_later(hub: FakeHub, tmp_path: Path) -> None:
    hub.delay = 0.5
    r = resolver(hub, tmp_path, deadline_s=0.2)
    t0 = time.monotonic()
    with pytest.raises(HubError, match=r"no answer within 0\.2s; the lookup goes on in the background"):
        r.resolve("acme/vlm-7b")
    assert time.monotonic() - t0 < 0.45
    assert r.lookups_in_flight() == 1  # the operator re-checks soon while this is non-zero
    deadline = time.monotonic() + 30
    while True:  # the background lookup fills the cache; poll without a deadline of our own beyond 30 s
        try:
            facts = r.resolve("acme/vlm-7b")
            break
        except HubError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert facts.total_params == N_PARAMS
    settle = time.monotonic() + 5  # the background thread clears its entry just after it hands over the answer
    while r.lookups_in_flight() and time.monotonic() < settle:
        time.sleep(0.05)
    assert r.lookups_in_flight() == 0


def test_disk_cache_ttl_commits_and_offline(hub: FakeHub, tmp_path: Path) -> None:
    clock = Clock()
    resolver(hub, tmp_path, clock).resolve("acme/vlm-7b")
    n = len(hub.requests)
    # a new process (new resolver) within the TTL reads the disk cache: no request
    resolver(hub, tmp_path, clock).resolve("acme/vlm-7b")
    assert len(hub.requests) == n
    # after the TTL a branch is re-read ...
    clock.now += 24 * 3600 + 1
    resolver(hub, tmp_path, clock).resolve("acme/vlm-7b")
    assert len(hub.requests) > n
    # ... but a commit never expires
    commit = hub.repos["acme/vlm-7b"].commit
    resolver(hub, tmp_path, clock).resolve("acme/vlm-7b", commit)
    n = len(hub.requests)
    clock.now += 365 * 24 * 3600
    assert resolver(hub, tmp_path, clock).resolve("acme/vlm-7b", commit).total_params == N_PARAMS
    assert len(hub.requests) == n
    # offline: the cache answers however old it is, and nothing is sent even to a Hub that is down
    hub.fail_status = 503
    assert resolver(hub, tmp_path, clock, offline=True).resolve("acme/vlm-7b").total_params == N_PARAMS
    assert len(hub.requests) == n
    with pytest.raises(HubError, match=r"not in the Hub cache .* offline mode is on; fix"):
        resolver(hub, tmp_path, clock, offline=True).resolve("acme/other")
    assert len(hub.requests) == n


def test_a_stale_record_beats_no_answer_when_the_hub_is_down(hub: FakeHub, tmp_path: Path) -> None:
    clock = Clock()
    resolver(hub, tmp_path, clock).resolve("acme/vlm-7b")
    clock.now += 48 * 3600
    hub.fail_status = 503  # the client retries 503s for ~20 s; the deadline serves the stale record meanwhile
    facts = resolver(hub, tmp_path, clock, deadline_s=0.2).resolve("acme/vlm-7b")
    assert facts.total_params == N_PARAMS
    hub.fail_status = 403
    facts = resolver(hub, tmp_path, clock).resolve("acme/vlm-7b")  # a definite failure also falls back
    assert facts.total_params == N_PARAMS


def test_memory_cache_serves_repeat_calls(hub: FakeHub, tmp_path: Path) -> None:
    r = resolver(hub, tmp_path)
    first = r.resolve("acme/vlm-7b")
    n = len(hub.requests)
    assert r.resolve("acme/vlm-7b") is first
    assert len(hub.requests) == n


# -- callers ---------------------------------------------------------------------------------------------------------


def test_cli_estimates_a_hub_model(hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--gpu", "H100", "--max-model-len", "16384", "--output", "json"]
    rc = main(["estimate", "--model", "acme/vlm-7b", "--hf-endpoint", hub.endpoint, *common])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["fits"] is True
    assert data["weights_gib"] > 0 and data["image_tokens_per_item"]["image"] > 0
    # the same model offline comes from the cache the first call filled (HF_HOME is per test)
    hub.fail_status = 503
    rc = main(["estimate", "--model", "acme/vlm-7b", "--hf-endpoint", hub.endpoint, "--offline", *common])
    assert rc == 0 and json.loads(capsys.readouterr().out)["weights_gib"] == data["weights_gib"]


def test_cli_manifest_with_a_hub_model(hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    manifest = tmp_path / "vlmd.yaml"
    spec = {
        "model": {"name": "acme/vlm-7b", "hfEndpoint": hub.endpoint},
        "engine": {"maxModelLen": 16384},
        "resources": {"gpu": {"product": "H100"}},
    }
    manifest.write_text(yaml.safe_dump({"apiVersion": "vlmops.io/v1alpha1", "kind": "VLMDeployment", "spec": spec}))
    rc = main(["estimate", "-f", str(manifest), "--output", "json"])
    assert from_spec.model_facts_for(VLMDeployment.model_validate({"spec": spec}).spec) is None  # not left on
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["model"] == "acme/vlm-7b" and data["details"]["model_source"].startswith(hub.endpoint)


def test_cli_hub_errors_exit_1_without_a_traceback(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["estimate", "--model", "acme/nope", "--hf-endpoint", hub.endpoint, "--output", "json"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "acme/nope@main" in captured.err and "no such model" in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_fit_check_uses_the_hub_only_when_the_operator_enables_it(hub: FakeHub, tmp_path: Path) -> None:
    spec = VLMDeployment.model_validate(
        {
            "spec": {
                "model": {"name": "acme/vlm-7b", "hfEndpoint": hub.endpoint},
                "engine": {"maxModelLen": 16384},
                "resources": {"gpu": {"product": "H100"}},
            }
        }
    ).spec
    assert fitcheck.check(spec).verdict == "Unknown"
    from_spec.configure_hub(HubResolver(HubSettings(cache_dir=tmp_path, deadline_s=1.0)))
    try:
        outcome = fitcheck.check(spec)
        assert outcome.verdict in ("Fits", "Tight"), outcome.message
        assert outcome.summary["tokensPerImage"] > 0
        hub.fail_status = 503
        gone = spec.model_copy(update={"model": spec.model.model_copy(update={"name": "acme/other"})})
        bad = fitcheck.check(gone)
        assert bad.verdict == "Unknown" and "acme/other@main" in bad.message and "no answer within 1s" in bad.message
    finally:
        from_spec.configure_hub(None)


def test_an_unreachable_hub_gets_the_same_bounded_answer(tmp_path: Path) -> None:
    # Last in the file on purpose: the client goes on retrying "connection refused" in the background for ~20 s.
    with FakeHub() as gone:
        endpoint = gone.endpoint  # nothing listens there any more
    far = HubResolver(HubSettings(endpoint=endpoint, cache_dir=tmp_path, deadline_s=0.2))
    with pytest.raises(HubError, match=r"acme/vlm-7b@main on http://127\.0\.0\.1:\d+: no answer within 0\.2s"):
        far.resolve("acme/vlm-7b")
