"""The VLMPlatformProfile rules (:mod:`vlm_operator.profiles`, pure) fed from the API server: the webhook's checks,
and the defaults the webhook and the reconciler both apply to what they render (never to the stored object)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from vlm_operator import profiles, quota, quotastore
from vlm_operator.api import VLMDeploymentSpec
from vlm_operator.render import objects


def admission_verdict(
    kube: Any, namespace: str, new: VLMDeploymentSpec, old: VLMDeploymentSpec | None, name: str = ""
) -> profiles.Verdict:
    """The profiles' verdict, then the namespace's GPU quota (a warning, or a refusal under ``quotaCheck: Enforce``)."""
    verdict = _profile_verdict(kube, namespace, new, old)
    try:
        quotas = quotastore.SHARED.list(kube, namespace)  # watch-fed, shared with the rollout
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


class _Cache:
    """Profiles and namespace labels for ``ttl_s`` (the reconciler asks on every reconcile)."""

    def __init__(self, ttl_s: float = 30.0) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._profiles: tuple[float, list[Any]] | None = None
        self._labels: dict[str, tuple[float, dict[str, str]]] = {}

    def profiles(self, kube: Any) -> list[Any]:
        with self._lock:
            if self._profiles is not None and time.monotonic() - self._profiles[0] < self.ttl_s:
                return self._profiles[1]
        try:
            raw = list(kube.list("vlmops.io/v1alpha1", "VLMPlatformProfile", None))
        except Exception:  # no CRD, no rights: no defaults (never a failure)
            raw = []
        with self._lock:
            self._profiles = (time.monotonic(), raw)
        return raw

    def labels(self, kube: Any, namespace: str) -> dict[str, str]:
        with self._lock:
            hit = self._labels.get(namespace)
            if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
                return hit[1]
        try:
            ns = kube.get("v1", "Namespace", None, namespace) or {}
            labels = dict((ns.get("metadata") or {}).get("labels") or {})
        except Exception:
            labels = {}
        with self._lock:
            self._labels[namespace] = (time.monotonic(), labels)
        return labels


SHARED = _Cache()


def with_defaults(kube: Any, body: Mapping[str, Any], cache: _Cache = SHARED) -> Mapping[str, Any]:
    """``body`` with the selected profile's defaults in the spec fields the user left unset
    (:func:`vlm_operator.profiles.effective_spec`); ``body`` itself when no profile with defaults applies.

    A release already recorded in ``status.engineVersion`` counts as set, so a changed ``defaults.engineVersion``
    never re-renders a running deployment (as with the operator's own default, ``admission.parse``).
    """
    raw = cache.profiles(kube)
    if not raw:
        return body
    parsed, _ = profiles.parse_profiles(raw)
    namespace = str((body.get("metadata") or {}).get("namespace") or "")
    profile = profiles.select(parsed, cache.labels(kube, namespace)).profile
    if profile is None or profile.spec.defaults == profile.spec.defaults.__class__():
        return body
    spec = dict(body.get("spec") or {})
    recorded = (body.get("status") or {}).get("engineVersion")
    engine = dict(spec.get("engine") or {})
    if recorded and "version" not in engine:
        engine["version"] = recorded
        spec["engine"] = engine
    return {**body, "spec": profiles.effective_spec(spec, profile)}
