"""VLMPlatformProfile rules (operator/vlm_operator/profiles.py): selection, refusals, ratcheting and defaults."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.manifests import parsed_spec
from vlm_operator import profiles
from vlm_operator.api import VLMDeploymentSpec
from vlm_operator.api.profile import VLMPlatformProfile, VLMPlatformProfileSpec
from vlm_operator.releases import DEFAULT_VLLM_VERSION


def profile(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "vlmops.io/v1alpha1", "kind": "VLMPlatformProfile", "metadata": {"name": name}, "spec": spec}


def parsed(name: str, **spec: Any) -> VLMPlatformProfile:
    return VLMPlatformProfile.model_validate(profile(name, **spec))


def vspec(**over: Any) -> VLMDeploymentSpec:
    raw: dict[str, Any] = {
        "model": {"name": "llava-hf/llava-1.5-7b-hf"},
        "engine": {"version": "0.11.0"},
        "resources": {"gpu": {"product": "L4"}},
    }
    return parsed_spec(raw, **over)


TEAM = {"vlmops.io/tier": "team", "kubernetes.io/metadata.name": "team-a"}


def test_selection_by_labels_and_expressions() -> None:
    sel = {"matchLabels": {"vlmops.io/tier": "team"}}
    assert profiles.select([parsed("p", namespaceSelector=sel)], TEAM).profile is not None
    assert profiles.select([parsed("p", namespaceSelector=sel)], {"vlmops.io/tier": "prod"}).profile is None
    expr = {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a"]}]}
    assert profiles.select([parsed("p", namespaceSelector=expr)], TEAM).profile is not None
    gone = {"matchExpressions": [{"key": "vlmops.io/tier", "operator": "DoesNotExist"}]}
    assert profiles.select([parsed("p", namespaceSelector=gone)], TEAM).profile is None
    assert profiles.select([parsed("everyone")], {}).profile is not None  # an empty selector selects all


def test_two_matching_profiles_highest_priority_then_name_and_the_other_is_named() -> None:
    a, b, c = parsed("b-strict", priority=10), parsed("a-loose", priority=0), parsed("a-tie", priority=10)
    sel = profiles.select([b, a, c], TEAM)
    assert sel.profile is not None and sel.profile.name == "a-tie" and sel.shadowed == ("b-strict", "a-loose")
    verdict = profiles.evaluate([profile("x", priority=1), profile("y", priority=2)], TEAM, vspec())
    assert verdict.allowed
    assert verdict.warnings == ("VLMPlatformProfile y applies (priority 2); also matching, not applied: x",)


def test_each_refusal_names_the_profile_the_rule_and_the_field() -> None:
    p = parsed(
        "team-limits",
        maxGPUsPerReplica=2,
        maxGPUsPerDeployment=4,
        allowedMIGProfiles=["1g.10gb"],
        requiredFitCheck="Enforce",
    )
    wide = vspec(**{"engine.tensorParallelSize": 4})
    (r,) = profiles.check(p, wide)
    assert str(r) == (
        "spec.engine (TP x PP x DP): 4 GPUs per replica exceed the 2 allowed; lower tensorParallelSize/"
        "pipelineParallelSize/dataParallelSize or use a larger GPU (VLMPlatformProfile team-limits, rule "
        "maxGPUsPerReplica)"
    )
    many = vspec(**{"scaling.replicas": 5})
    (r,) = profiles.check(p, many)
    assert (r.rule, r.field) == ("maxGPUsPerDeployment", "spec.scaling.replicas")
    assert "1 GPUs x 5 replicas = 5 GPUs exceed the 4 allowed" in r.message and "lower replicas to 4" in r.message
    auto = vspec(**{"scaling.mode": "Internal", "scaling.maxReplicas": 8})
    (r,) = profiles.check(p, auto)
    assert (r.rule, r.field) == ("maxGPUsPerDeployment", "spec.scaling.maxReplicas")
    mig = vspec(**{"resources.gpu.product": "A100-80GB", "resources.gpu.migProfile": "3g.40gb"})
    (r,) = profiles.check(p, mig)
    assert (r.rule, r.field, r.message) == (
        "allowedMIGProfiles",
        "spec.resources.gpu.migProfile",
        "3g.40gb is not allowed (1g.10gb)",
    )
    off = vspec(fitCheck="Off")
    (r,) = profiles.check(p, off)
    assert (r.rule, r.message) == ("requiredFitCheck", "Off is not allowed here; set fitCheck: Enforce")
    assert profiles.check(p, vspec()) == ()


def test_ratcheting_unchanged_fields_and_scale_are_never_refused() -> None:
    strict = parsed("newer-stricter", maxGPUsPerReplica=1, maxGPUsPerDeployment=2, requiredFitCheck="Enforce")
    old = vspec(**{"engine.tensorParallelSize": 2, "scaling.replicas": 3, "fitCheck": "Warn"})
    # an update that changes something else (maxModelLen) passes although three rules now fail for the stored spec
    new = vspec(
        **{"engine.tensorParallelSize": 2, "scaling.replicas": 3, "fitCheck": "Warn", "engine.maxModelLen": 2048}
    )
    assert profiles.check(strict, new, old) == ()
    # fewer replicas (a /scale-like change written into the spec) passes; more is refused
    assert (
        profiles.check(
            strict, vspec(**{"engine.tensorParallelSize": 2, "scaling.replicas": 2, "fitCheck": "Warn"}), old
        )
        == ()
    )
    more = vspec(**{"engine.tensorParallelSize": 2, "scaling.replicas": 4, "fitCheck": "Warn"})
    assert [r.rule for r in profiles.check(strict, more, old)] == ["maxGPUsPerDeployment"]
    # changing a policed field to a value the profile refuses is refused
    assert [
        r.rule
        for r in profiles.check(
            strict, vspec(**{"engine.tensorParallelSize": 2, "scaling.replicas": 3, "fitCheck": "Off"}), old
        )
    ] == ["requiredFitCheck"]


def test_a_missing_or_invalid_profile_never_blocks() -> None:
    spec = vspec(**{"engine.tensorParallelSize": 4, "fitCheck": "Off"})
    assert profiles.evaluate([], TEAM, spec).allowed
    broken = profile("broken", maxGPUsPerReplica="many")
    verdict = profiles.evaluate([broken], TEAM, spec)
    assert verdict.allowed and verdict.warnings[0].startswith("VLMPlatformProfile broken is invalid and ignored")


def test_a_profile_that_cannot_be_parsed_is_refused_by_its_own_rules() -> None:
    with pytest.raises(ValidationError, match="maxGPUsPerReplica cannot exceed maxGPUsPerDeployment"):
        VLMPlatformProfileSpec.model_validate({"maxGPUsPerReplica": 8, "maxGPUsPerDeployment": 4})
    with pytest.raises(ValidationError):
        VLMPlatformProfileSpec.model_validate({"requiredFitCheck": "Sometimes"})


def test_defaults_fill_only_unset_fields() -> None:
    p = parsed(
        "mirror",
        defaults={
            "engineVersion": "0.10.2",
            "imageMirror": "registry.example.com/vllm/vllm-openai",
            "hfEndpoint": "https://hf-mirror.example.com",
        },
    )
    bare = {"model": {"name": "llava-hf/llava-1.5-7b-hf"}}
    eff = profiles.effective_spec(bare, p)
    assert eff["engine"] == {"version": "0.10.2", "image": "registry.example.com/vllm/vllm-openai:v0.10.2"}
    assert eff["model"]["hfEndpoint"] == "https://hf-mirror.example.com"
    assert bare == {"model": {"name": "llava-hf/llava-1.5-7b-hf"}}  # the stored spec is not touched
    VLMDeploymentSpec.model_validate(eff)  # the effective spec is a valid spec (a custom image states its version)
    # a user's explicit image and version are never rewritten
    mine = {"model": {"name": "x/y"}, "engine": {"version": "0.11.0", "image": "quay.io/me/vllm:v0.11.0"}}
    assert profiles.effective_spec(mine, p)["engine"] == mine["engine"]
    # an explicit version keeps the user's version, and the mirror names it
    versioned = profiles.effective_spec({"model": {"name": "x/y"}, "engine": {"version": "0.11.0"}}, p)
    assert versioned["engine"] == {"version": "0.11.0", "image": "registry.example.com/vllm/vllm-openai:v0.11.0"}
    # offline: no Hub endpoint; no profile: no change
    offline = profiles.effective_spec({"model": {"name": "x/y", "offline": True}}, p)
    assert "hfEndpoint" not in offline["model"]
    assert profiles.effective_spec(bare, None) == bare
    only_mirror = parsed("m", defaults={"imageMirror": "registry.example.com/vllm/vllm-openai"})
    assert profiles.effective_spec(bare, only_mirror)["engine"]["version"] == DEFAULT_VLLM_VERSION


def test_profile_refusals_join_the_one_refusal_policy() -> None:
    from vlm_operator import admission

    base = admission.Decision((), ("a fit warning",))
    p = parsed("team-limits", maxGPUsPerReplica=1)
    verdict = profiles.evaluate(
        [profile("team-limits", maxGPUsPerReplica=1)], {}, vspec(**{"engine.tensorParallelSize": 2})
    )
    assert [r.rule for r in verdict.refusals] == ["maxGPUsPerReplica"] and p.name == "team-limits"
    merged = admission.with_policy(base, (str(r) for r in verdict.refusals), verdict.warnings, admission.REASON_PROFILE)
    assert not merged.allowed and merged.reason == admission.REASON_PROFILE
    assert merged.message.endswith("(VLMPlatformProfile team-limits, rule maxGPUsPerReplica)")
    assert merged.warnings == ("a fit warning",)
    assert admission.with_policy(base, (), (), admission.REASON_PROFILE) is base


class _Lister:
    """Stands in for the API server: one profile and one namespace's labels."""

    def __init__(self, profile_obj: dict[str, Any], labels: dict[str, str]) -> None:
        self.profile_obj, self.labels = profile_obj, labels

    def list(self, api_version: str, kind: str, namespace: str | None, *_: Any) -> list[dict[str, Any]]:
        return [self.profile_obj] if kind == "VLMPlatformProfile" else []

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": self.labels}}


def test_defaults_keep_a_release_already_recorded_in_status() -> None:
    from vlm_operator import profile_admission

    p = profile("d", defaults={"engineVersion": "0.10.2", "imageMirror": "registry.example.com/vllm/vllm-openai"})
    kube = _Lister(p, TEAM)
    body = {"metadata": {"name": "x", "namespace": "team-a"}, "spec": {"model": {"name": "x/y"}}}
    fresh = profile_admission.with_defaults(kube, body, profile_admission._Cache())
    assert fresh["spec"]["engine"] == {"version": "0.10.2", "image": "registry.example.com/vllm/vllm-openai:v0.10.2"}
    running = {**body, "status": {"engineVersion": "0.11.0"}}
    kept = profile_admission.with_defaults(kube, running, profile_admission._Cache())
    assert kept["spec"]["engine"] == {"version": "0.11.0", "image": "registry.example.com/vllm/vllm-openai:v0.11.0"}
    assert body["spec"] == {"model": {"name": "x/y"}}  # the object as read is not modified
    nothing = profile("n")
    assert profile_admission.with_defaults(_Lister(nothing, TEAM), body, profile_admission._Cache()) is body
