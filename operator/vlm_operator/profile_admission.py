"""The VLMPlatformProfile rules (:mod:`vlm_operator.profiles`, pure) fed from the API server, for the webhook."""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException

from vlm_operator import profiles, quota
from vlm_operator.api import VLMDeploymentSpec
from vlm_operator.render import objects


def admission_verdict(
    kube: Any, namespace: str, new: VLMDeploymentSpec, old: VLMDeploymentSpec | None, name: str = ""
) -> profiles.Verdict:
    """The profiles' verdict, then the namespace's GPU quota (a warning, or a refusal under ``quotaCheck: Enforce``)."""
    verdict = _profile_verdict(kube, namespace, new, old)
    try:
        quotas = kube.list("v1", "ResourceQuota", namespace)
        if not quotas:
            return verdict
        own = kube.list("v1", "Pod", namespace, objects.selector_string(name)) if name else []
    except Exception as exc:  # an unreadable quota is reported, never fatal
        return profiles.Verdict(
            verdict.refusals,
            (*verdict.warnings, f"ResourceQuotas could not be read ({str(exc).splitlines()[0][:200]})"),
            verdict.selected,
        )
    return profiles.quota_verdict(verdict, quota.check(new, quotas, own), new, old)


def _profile_verdict(
    kube: Any, namespace: str, new: VLMDeploymentSpec, old: VLMDeploymentSpec | None
) -> profiles.Verdict:
    """The profiles' verdict for a VLMDeployment in ``namespace``, read from the API server (the webhook's hook).

    A profile list or namespace read that fails (the CRD not installed, no rights) never blocks: the verdict then
    allows and warns, since a missing profile must not stop existing deployments.
    """
    try:
        raw = kube.list("vlmops.io/v1alpha1", "VLMPlatformProfile", None)
        if not raw:
            return profiles.Verdict()
        ns = kube.get("v1", "Namespace", None, namespace) or {}
        labels = (ns.get("metadata") or {}).get("labels") or {}
    except ApiException as exc:
        if exc.status == 404:  # the VLMPlatformProfile CRD is not installed: no profiles
            return profiles.Verdict()
        return profiles.Verdict(
            (), (f"VLMPlatformProfiles could not be read ({exc.status} {exc.reason}); not applied",)
        )
    except Exception as exc:  # an unreadable profile set is reported, never fatal
        return profiles.Verdict(
            (), (f"VLMPlatformProfiles could not be read ({str(exc).splitlines()[0][:200]}); not applied",)
        )
    return profiles.evaluate(raw, labels, new, old)
