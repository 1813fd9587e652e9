"""Platform profiles as pure functions: which profile applies to a namespace, what it refuses, what it defaults.

Inputs are plain data (profile objects, a namespace's labels, the new and the old spec); nothing here talks to the
API server, so the webhook and the reconciler can call the same functions and give the same answer.

The rules:

- **Selection.** A profile applies to a namespace when its ``namespaceSelector`` matches the namespace's labels. Of
  several, the highest ``priority`` applies alone; on a tie the name that sorts first, and the others are named in
  :attr:`Selection.shadowed` so messages can say so. No match: no limits, no defaults.
- **Ratcheting.** A limit checks a field only when the change touches it: on CREATE everything, on UPDATE only the
  fields whose value differs from the stored object. ``/scale`` writes never reach these checks (they change only
  ``replicas`` through a subresource the webhook does not see), and an unchanged field is never refused by a newer,
  stricter profile. A deleted or missing profile simply selects nothing.
- **Defaults** fill only unset fields of the *effective* spec the operator renders; the stored object keeps what the
  user wrote, so a user's explicit image is never rewritten and GitOps diffs stay stable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from vlm_operator.api import VLMDeploymentSpec
from vlm_operator.api.profile import NamespaceSelector, VLMPlatformProfile
from vlm_operator.releases import DEFAULT_VLLM_VERSION


@dataclass(frozen=True)
class Refusal:
    """One broken rule: which profile, which rule, which field, and what to do."""

    profile: str
    rule: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message} (VLMPlatformProfile {self.profile}, rule {self.rule})"


@dataclass(frozen=True)
class Selection:
    profile: VLMPlatformProfile | None
    shadowed: tuple[str, ...] = ()
    #: Profiles that could not be parsed (name, error); they select nothing.
    invalid: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Verdict:
    refusals: tuple[Refusal, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)
    #: The profile that applied, if any.
    selected: VLMPlatformProfile | None = None

    @property
    def allowed(self) -> bool:
        return not self.refusals


def selector_matches(sel: NamespaceSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics over a namespace's labels."""
    if any(labels.get(k) != v for k, v in sel.match_labels.items()):
        return False
    for req in sel.match_expressions:
        present, value = req.key in labels, labels.get(req.key)
        ok = {
            "In": present and value in req.values,
            "NotIn": not present or value not in req.values,
            "Exists": present,
            "DoesNotExist": not present,
        }[req.operator]
        if not ok:
            return False
    return True


def parse_profiles(raw: Iterable[Mapping[str, Any]]) -> tuple[list[VLMPlatformProfile], list[tuple[str, str]]]:
    """Profiles from API objects; one that does not parse is set aside with its error (it selects nothing)."""
    good: list[VLMPlatformProfile] = []
    bad: list[tuple[str, str]] = []
    for obj in raw:
        name = str((obj.get("metadata") or {}).get("name", "?"))
        try:
            good.append(VLMPlatformProfile.model_validate({k: obj[k] for k in ("metadata", "spec") if k in obj}))
        except ValidationError as exc:
            bad.append((name, str(exc.errors()[0].get("msg", exc))))
    return good, bad


def select(profiles: Iterable[VLMPlatformProfile], namespace_labels: Mapping[str, str]) -> Selection:
    matching = [p for p in profiles if selector_matches(p.spec.namespace_selector, namespace_labels)]
    if not matching:
        return Selection(None)
    matching.sort(key=lambda p: (-p.spec.priority, p.name))
    return Selection(matching[0], tuple(p.name for p in matching[1:]))


def _gpus_per_replica(spec: VLMDeploymentSpec) -> int:
    return 1 if spec.resources.gpu.mig_profile else spec.gpus_per_replica


def _most_replicas(spec: VLMDeploymentSpec) -> int:
    s = spec.scaling
    if s.mode != "Manual" and s.max_replicas is not None:
        return max(s.max_replicas, s.replicas)
    return s.replicas


def check(
    profile: VLMPlatformProfile, new: VLMDeploymentSpec, old: VLMDeploymentSpec | None = None
) -> tuple[Refusal, ...]:
    """What ``profile`` refuses in ``new`` (``old``: the stored spec on UPDATE; only changed values are checked).

    The GPU ceiling of a deployment is checked only when a change raises it. ``/scale`` writes (an autoscaler, an
    HPA, ``kubectl scale``) go through a subresource the admission webhook does not match, so they never get here.
    """
    p, name = profile.spec, profile.name
    out: list[Refusal] = []
    per_replica = _gpus_per_replica(new)
    changed_shape = old is None or (
        _gpus_per_replica(old) != per_replica or old.resources.gpu.mig_profile != new.resources.gpu.mig_profile
    )
    if p.max_gpus_per_replica is not None and changed_shape and per_replica > p.max_gpus_per_replica:
        out.append(
            Refusal(
                name,
                "maxGPUsPerReplica",
                "spec.engine (TP x PP x DP)",
                f"{per_replica} GPUs per replica exceed the {p.max_gpus_per_replica} allowed; lower "
                "tensorParallelSize/pipelineParallelSize/dataParallelSize or use a larger GPU",
            )
        )
    if p.max_gpus_per_deployment is not None:
        most = _most_replicas(new)
        total = per_replica * most
        old_total = _gpus_per_replica(old) * _most_replicas(old) if old is not None else None
        # ratchet: only a change that raises the ceiling is checked; replicas moved by /scale in Manual mode are not
        bounds_changed = old is None or changed_shape or _most_replicas(old) != most
        if bounds_changed and total > p.max_gpus_per_deployment and (old_total is None or total > old_total):
            what = (
                "maxReplicas" if new.scaling.mode != "Manual" and new.scaling.max_replicas is not None else "replicas"
            )
            out.append(
                Refusal(
                    name,
                    "maxGPUsPerDeployment",
                    f"spec.scaling.{what}",
                    f"{per_replica} GPUs x {most} replicas = {total} GPUs exceed the {p.max_gpus_per_deployment} "
                    f"allowed per VLMDeployment; lower {what} to {max(p.max_gpus_per_deployment // per_replica, 0)}",
                )
            )
    mig = new.resources.gpu.mig_profile
    if (
        p.allowed_mig_profiles is not None
        and mig is not None
        and (old is None or old.resources.gpu.mig_profile != mig)
        and mig not in p.allowed_mig_profiles
    ):
        allowed = ", ".join(p.allowed_mig_profiles) or "none"
        out.append(
            Refusal(name, "allowedMIGProfiles", "spec.resources.gpu.migProfile", f"{mig} is not allowed ({allowed})")
        )
    if (
        p.required_fit_check is not None
        and new.fit_check != p.required_fit_check
        and (old is None or old.fit_check != new.fit_check)
    ):
        out.append(
            Refusal(
                name,
                "requiredFitCheck",
                "spec.fitCheck",
                f"{new.fit_check} is not allowed here; set fitCheck: {p.required_fit_check}",
            )
        )
    return tuple(out)


def evaluate(
    raw_profiles: Iterable[Mapping[str, Any]],
    namespace_labels: Mapping[str, str],
    new: VLMDeploymentSpec,
    old: VLMDeploymentSpec | None = None,
) -> Verdict:
    """Select, then check; warnings name profiles that were shadowed or could not be parsed."""
    profiles, invalid = parse_profiles(raw_profiles)
    sel = select(profiles, namespace_labels)
    warnings = [f"VLMPlatformProfile {n} is invalid and ignored: {err}" for n, err in invalid]
    if sel.profile is None:
        return Verdict((), tuple(warnings))
    if sel.shadowed:
        warnings.append(
            f"VLMPlatformProfile {sel.profile.name} applies (priority {sel.profile.spec.priority}); "
            f"also matching, not applied: {', '.join(sel.shadowed)}"
        )
    return Verdict(check(sel.profile, new, old), tuple(warnings), sel.profile)


def quota_verdict(
    verdict: Verdict, message: str | None, new: VLMDeploymentSpec, old: VLMDeploymentSpec | None
) -> Verdict:
    """Add the quota check's ``message`` (:func:`vlm_operator.quota.check`) to ``verdict``: a warning, or a refusal
    when the selected profile says ``quotaCheck: Enforce``. An update that changes neither the replicas it must have
    nor the GPUs per replica is never refused (ratcheting)."""
    from vlm_operator import quota

    if message is None:
        return verdict
    if old is not None and (
        quota.min_replicas(old) >= quota.min_replicas(new)
        and quota.gpus_per_replica(old) >= quota.gpus_per_replica(new)
        and quota.quota_resource(old) == quota.quota_resource(new)
    ):
        return verdict
    p = verdict.selected
    if p is not None and p.spec.quota_check == "Enforce":
        refusal = Refusal(p.name, "quotaCheck", "spec.scaling", message.removeprefix("spec.scaling: "))
        return Verdict((*verdict.refusals, refusal), verdict.warnings, p)
    return Verdict(verdict.refusals, (*verdict.warnings, message), p)


def effective_spec(raw_spec: Mapping[str, Any], profile: VLMPlatformProfile | None) -> dict[str, Any]:
    """``raw_spec`` (camelCase, as stored) with the profile's defaults in the fields the user left unset.

    Never changes a field the user wrote: an explicit ``engine.image`` or ``engine.version`` stays, and the image
    mirror applies only when no image is set.
    """
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw_spec.items()}
    if profile is None:
        return out
    d = profile.spec.defaults
    engine = out.setdefault("engine", {})
    model = out.setdefault("model", {})
    if d.engine_version is not None and "version" not in engine and "image" not in engine:
        engine["version"] = d.engine_version
    if d.image_mirror is not None and "image" not in engine:
        # a custom image must state its version (the version decides the flags), so the effective spec names both
        engine.setdefault("version", DEFAULT_VLLM_VERSION)
        engine["image"] = f"{d.image_mirror}:v{engine['version']}"
    if d.hf_endpoint is not None and "hfEndpoint" not in model and not model.get("offline"):
        model["hfEndpoint"] = d.hf_endpoint
    if not engine:
        out.pop("engine")
    return out
