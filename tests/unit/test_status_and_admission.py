"""compute_status (pure) and the admission decision (pure), without a cluster."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from tests.manifests import sample
from vlm_operator import admission, conditions, inventory
from vlm_operator.api import VLMDeployment

ROOT = Path(__file__).resolve().parents[2]
NOW = "2026-11-23T10:00:00Z"
LATER = "2026-11-23T10:05:00Z"
FITS = conditions.FitResult("Fits", "fits: ...", {"weightsGiB": 13.2})


GPU = "nvidia.com/gpu"


def conds(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in st["conditions"]}


def dep_status(replicas: int, ready: int, updated: int, gen: int = 1) -> dict[str, Any]:
    return {
        "observedGeneration": gen,
        "replicas": replicas,
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "availableReplicas": ready,
    }


def test_all_ready_is_ready_not_progressing_and_kstatus_current() -> None:
    obs = conditions.Observed(3, 2, FITS, dep_status(2, 2, 2), deployment_generation=1)
    c = conds(conditions.compute_status(obs, NOW))
    assert c["Ready"]["status"] == "True" and c["Progressing"]["status"] == "False"
    assert c["Reconciling"]["status"] == "False" and c["Stalled"]["status"] == "False"
    assert all(x["observedGeneration"] == 3 for x in c.values())


def test_rolling_out_is_progressing_and_reconciling() -> None:
    obs = conditions.Observed(2, 2, FITS, dep_status(3, 2, 1), deployment_generation=1)
    st = conditions.compute_status(obs, NOW)
    c = conds(st)
    assert c["Ready"]["status"] == "False" and c["Progressing"]["status"] == "True"
    assert c["Reconciling"]["status"] == "True"
    assert st["readyReplicas"] == 2 and st["updatedReplicas"] == 1


def test_a_deployment_not_yet_observed_is_not_ready() -> None:
    obs = conditions.Observed(1, 1, FITS, dep_status(1, 1, 1, gen=1), deployment_generation=2)
    st = conditions.compute_status(obs, NOW)
    assert conds(st)["Ready"]["status"] == "False"
    # its updatedReplicas counts the previous template's pods: none runs the new one yet
    assert st["updatedReplicas"] == 0 and st["readyReplicas"] == 1
    assert conds(st)["Ready"]["message"] == "1/1 replicas ready, 0 updated"
    # the status once the controller has seen it, before its new pod starts: the same, so nothing is written
    seen = conditions.compute_status(
        conditions.Observed(1, 1, FITS, dep_status(1, 1, 0, gen=2), deployment_generation=2), NOW
    )
    assert seen == st


def test_transition_time_moves_only_when_status_changes() -> None:
    first = conditions.compute_status(
        conditions.Observed(1, 1, FITS, dep_status(1, 0, 1), deployment_generation=1), NOW
    )
    prev = tuple(first["conditions"])
    same = conditions.compute_status(
        conditions.Observed(1, 1, FITS, dep_status(1, 0, 1), deployment_generation=1, previous_conditions=prev), LATER
    )
    assert conds(same)["Ready"]["lastTransitionTime"] == NOW
    ready = conditions.compute_status(
        conditions.Observed(1, 1, FITS, dep_status(1, 1, 1), deployment_generation=1, previous_conditions=prev), LATER
    )
    assert conds(ready)["Ready"]["lastTransitionTime"] == LATER
    assert conds(ready)["FitsGPU"]["lastTransitionTime"] == NOW
    changed = conditions.transitions(list(prev), ready["conditions"])
    assert ("Ready", "True", "AllReplicasReady", "1/1 replicas ready") in changed
    assert all(t[0] not in ("Reconciling", "Stalled") for t in changed)


def test_events_only_for_trouble_and_its_end_not_for_a_routine_create() -> None:
    creating = conditions.compute_status(
        conditions.Observed(1, 1, FITS, dep_status(1, 0, 1), deployment_generation=1), NOW
    )
    assert conditions.notable_transitions([], creating["conditions"]) == []  # FitsGPU True, Ready False, ...
    ready = conditions.compute_status(
        conditions.Observed(
            1, 1, FITS, dep_status(1, 1, 1), deployment_generation=1, previous_conditions=tuple(creating["conditions"])
        ),
        LATER,
    )
    assert conditions.notable_transitions(creating["conditions"], ready["conditions"]) == []
    crash = conditions.PodProblem("p-0", "CrashLoopBackOff", "exit code 1", 3)
    failing = conditions.compute_status(
        conditions.Observed(
            1,
            1,
            FITS,
            dep_status(1, 0, 1),
            deployment_generation=1,
            problems=(crash,),
            previous_conditions=tuple(ready["conditions"]),
        ),
        LATER,
    )
    assert conditions.notable_transitions(ready["conditions"], failing["conditions"]) == [
        ("Warning", "Degraded", "True", "PodsFailing", "pod p-0: CrashLoopBackOff (exit code 1), 3 restarts")
    ]
    healed = conditions.compute_status(
        conditions.Observed(
            1, 1, FITS, dep_status(1, 1, 1), deployment_generation=1, previous_conditions=tuple(failing["conditions"])
        ),
        LATER,
    )
    assert conditions.notable_transitions(failing["conditions"], healed["conditions"]) == [
        ("Normal", "Degraded", "False", "AsExpected", "")
    ]
    refused = conditions.compute_status(
        conditions.Observed(1, 1, conditions.FitResult("DoesNotFit", "does not fit: ..."), refused="not rolled out"),
        NOW,
    )
    kinds = {(t[0], t[1], t[2]) for t in conditions.notable_transitions([], refused["conditions"])}
    assert kinds == {("Warning", "FitsGPU", "False"), ("Warning", "Degraded", "True")}
    # the autoscaler stops for want of metrics: a Warning with the condition's reason; resuming: Normal
    stopped = [{"type": "ScalingActive", "status": "False", "reason": "MissingMetrics", "message": "no readings"}]
    active = [{"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound", "message": ""}]
    assert conditions.notable_transitions(active, stopped) == [
        ("Warning", "ScalingActive", "False", "MissingMetrics", "no readings")
    ]
    assert conditions.notable_transitions(stopped, active)[0][:3] == ("Normal", "ScalingActive", "True")


def test_refused_spec_is_degraded_and_stalled_with_the_reason() -> None:
    fit = conditions.FitResult("DoesNotFit", "does not fit: ...")
    st = conditions.compute_status(conditions.Observed(1, 1, fit, refused="not rolled out: does not fit"), NOW)
    c = conds(st)
    assert c["FitsGPU"]["status"] == "False" and c["Ready"]["status"] == "False"
    assert c["Degraded"]["status"] == "True" and c["Stalled"]["status"] == "True"
    assert st["estimate"]["verdict"] == "DoesNotFit"


def test_crashing_pods_make_it_degraded_with_the_kubelet_reason() -> None:
    problem = conditions.PodProblem("p-1", "OOMKilled", "exit code 137", restarts=4)
    obs = conditions.Observed(1, 1, FITS, dep_status(1, 0, 1), deployment_generation=1, problems=(problem,))
    c = conds(conditions.compute_status(obs, NOW))
    assert c["Degraded"]["reason"] == "PodsFailing"
    assert "OOMKilled" in c["Degraded"]["message"] and "4 restarts" in c["Degraded"]["message"]


def test_unknown_fit_is_unknown_not_false() -> None:
    obs = conditions.Observed(1, 1, conditions.FitResult("Unknown", "not in catalog"), dep_status(1, 1, 1), 1)
    assert conds(conditions.compute_status(obs, NOW))["FitsGPU"]["status"] == "Unknown"


def spec(stem: str, **overrides: Any) -> Any:
    """The sample's spec with ``overrides`` by dotted path below ``spec``."""
    doc = sample(stem, **{f"spec.{k}": v for k, v in overrides.items()})
    return VLMDeployment.model_validate(doc).spec


def test_admission_allows_a_fitting_sample() -> None:
    d = admission.decide(spec("llava-1.5-7b-l4"), {"NVIDIA-L4": 4})
    assert d.allowed, d.errors
    assert d.fit is not None and d.fit.verdict in ("Fits", "Tight")


def test_admission_refuses_what_does_not_fit_with_figures_and_a_fix() -> None:
    d = admission.decide(spec("does-not-fit-qwen2.5-vl-72b-l4"), {"NVIDIA-L4": 8})
    assert not d.allowed
    assert "does not fit" in d.errors[0] and "GiB" in d.errors[0] and "Fix:" in d.errors[0]


def test_the_suggested_fix_is_one_the_cluster_can_schedule() -> None:
    # 8 L4s per node: TP 8 is the fix; 4 per node: not TP 8, and with H100 nodes the fix moves there
    roomy = admission.decide(spec("does-not-fit-qwen2.5-vl-72b-l4"), {"NVIDIA-L4": 8})
    assert "Fix: tensorParallelSize 8" in roomy.errors[0]
    small = admission.decide(spec("does-not-fit-qwen2.5-vl-72b-l4"), {"NVIDIA-L4": 4})
    assert "tensorParallelSize 8" not in small.errors[0] and "No change or pair of changes found" in small.errors[0]
    mixed = admission.decide(spec("does-not-fit-qwen2.5-vl-72b-l4"), {"NVIDIA-L4": 4, "NVIDIA-H100-80GB-HBM3": 8})
    assert "Fix: a larger GPU with more TP: H100-80GB, tensorParallelSize 4" in mixed.errors[0]


def test_gpu_inventory_is_the_largest_node_per_product_and_cached() -> None:
    from vlm_operator import inventory

    def node(product: str | None, gpus: str) -> dict[str, Any]:
        labels = {"nvidia.com/gpu.product": product} if product else {}
        return {"metadata": {"labels": labels}, "status": {"allocatable": {"nvidia.com/gpu": gpus}}}

    nodes = [node("NVIDIA-L4", "2"), node("NVIDIA-L4", "4"), node("NVIDIA-L40S", "bad"), node(None, "8")]
    assert inventory.max_gpus_per_node(nodes) == {"NVIDIA-L4": 4, "NVIDIA-L40S": 0}

    class Lister:  # stands in for the API client: the cache logic is what is under test
        calls = 0
        fail = False

        def list(self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None) -> Any:
            self.calls += 1
            if self.fail:
                raise OSError("apiserver down")
            return nodes

    now = [0.0]
    inv = inventory.GPUInventory(ttl_s=30, clock=lambda: now[0])
    lister = Lister()
    assert inv.get(lister) == {"NVIDIA-L4": 4, "NVIDIA-L40S": 0}
    inv.get(lister)
    assert lister.calls == 1
    now[0] = 31
    lister.fail = True
    assert inv.get(lister) == {"NVIDIA-L4": 4, "NVIDIA-L40S": 0}  # a failed list keeps the last answer
    assert lister.calls == 2


def test_fitcheck_warn_turns_the_refusal_into_a_warning() -> None:
    d = admission.decide(spec("does-not-fit-qwen2.5-vl-72b-l4", fitCheck="Warn"), {})
    assert d.allowed and any("does not fit" in w for w in d.warnings)


def test_tp_must_divide_the_attention_heads() -> None:
    # Qwen2.5-VL-7B has 28 attention heads
    d = admission.decide(spec("qwen2.5-vl-7b-pixels", **{"engine.tensorParallelSize": 3}), {})
    assert any("does not divide" in e and "28" in e for e in d.errors), d.errors


def test_tp_times_pp_above_the_largest_node_is_refused() -> None:
    d = admission.decide(spec("gemma-3-27b-tp2"), {"NVIDIA-L40S": 1})
    assert any("largest NVIDIA-L40S node has 1" in e for e in d.errors), d.errors


def test_processor_kwargs_unknown_to_the_family_are_refused() -> None:
    d = admission.decide(spec("qwen2.5-vl-7b-pixels", **{"multimodal.processorKwargs": {"num_crops": 4}}), {})
    assert any("num_crops" in e and "max_pixels" in e for e in d.errors), d.errors


def test_unresolvable_model_is_a_warning_unless_enforce_is_explicit() -> None:
    lenient = admission.decide(spec("llava-1.5-7b-l4", **{"model.name": "acme/private-vlm"}), {})
    assert lenient.allowed and any("Unknown" in w for w in lenient.warnings)
    strict = admission.decide(spec("llava-1.5-7b-l4", **{"model.name": "acme/private-vlm", "fitCheck": "Enforce"}), {})
    assert not strict.allowed


def test_expert_parallel_renders_the_flag_widens_moe_activations_and_warns_on_dense_models() -> None:
    from vlm_operator.estimator.core import estimate
    from vlm_operator.estimator.from_spec import request_from_spec
    from vlm_operator.render.args import render_command

    moe = {"model.name": "Qwen/Qwen3-VL-30B-A3B-Instruct", "engine.tensorParallelSize": 4}
    plain = spec("qwen2.5-vl-7b-pixels", **moe)
    ep = spec("qwen2.5-vl-7b-pixels", **moe, **{"engine.enableExpertParallel": True})
    assert "--enable-expert-parallel" in render_command(ep).argv
    assert "--enable-expert-parallel" not in render_command(plain).argv
    lm = [estimate(request_from_spec(v)[0]).lm_activation_bytes for v in (plain, ep)]
    assert lm[1] > lm[0]  # whole experts per rank: the fused-MoE caches are not split by TP
    d = admission.decide(spec("qwen2.5-vl-7b-pixels", **{"engine.enableExpertParallel": True}), {})
    assert any("enableExpertParallel has no effect" in w for w in d.warnings)


def test_the_inventory_reads_the_node_watch_and_lists_only_when_it_cannot_answer() -> None:
    class Lister:
        calls = 0

        def list(self, *a: Any, **kw: Any) -> list[dict[str, Any]]:
            self.calls += 1
            return [
                {"metadata": {"labels": {inventory.PRODUCT_LABEL: "NVIDIA-L4"}}, "status": {"allocatable": {GPU: "2"}}}
            ]

    answers: list[Any] = [{"NVIDIA-L4": 8}, None, RuntimeError("watch refused")]

    def watched() -> dict[str, int] | None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    inv = inventory.GPUInventory(ttl_s=30, clock=lambda: 0.0, watched=watched)
    lister = Lister()
    assert inv.get(lister) == {"NVIDIA-L4": 8} and lister.calls == 0  # the watch answered: no request
    assert inv.get(lister) == {"NVIDIA-L4": 2} and lister.calls == 1  # not synced yet: listed
    assert inv.get(lister) == {"NVIDIA-L4": 2} and lister.calls == 1  # a broken watch: the listed answer, still fresh


def test_an_expired_inventory_is_listed_by_one_thread_while_the_others_use_the_last_answer() -> None:
    release = threading.Event()

    class SlowLister:
        calls = 0

        def list(self, *a: Any, **kw: Any) -> list[dict[str, Any]]:
            self.calls += 1
            if self.calls > 1:
                assert release.wait(5)
            n = str(self.calls * 2)
            return [
                {"metadata": {"labels": {inventory.PRODUCT_LABEL: "NVIDIA-L4"}}, "status": {"allocatable": {GPU: n}}}
            ]

    now = [0.0]
    inv = inventory.GPUInventory(ttl_s=30, clock=lambda: now[0])
    lister = SlowLister()
    assert inv.get(lister) == {"NVIDIA-L4": 2}
    now[0] = 31
    slow = threading.Thread(target=inv.get, args=(lister,))
    slow.start()
    deadline = time.monotonic() + 5
    while lister.calls < 2:  # the first thread is in its LIST
        assert time.monotonic() < deadline
        time.sleep(0.01)
    answers = [inv.get(lister) for _ in range(5)]  # meanwhile: the last answer, no LIST of their own
    release.set()
    slow.join(5)
    assert answers == [{"NVIDIA-L4": 2}] * 5 and lister.calls == 2
    assert inv.get(lister) == {"NVIDIA-L4": 4}
