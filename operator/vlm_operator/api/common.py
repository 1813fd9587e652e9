"""Small Kubernetes-shaped types the spec sections share: Secret and ConfigMap references, env vars, tolerations.

They are typed subsets of the core/v1 types, not copies: only the parts a VLMDeployment needs, so that the CRD schema
stays small and every field has a description. Secrets appear only as references; no field takes a secret value.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from ._base import ApiModel, CelRule, MediumStr, Name, ShortStr


class SecretKeyRef(ApiModel):
    """A key of a Secret in the VLMDeployment's namespace. The value reaches the container only as an env var."""

    name: Name
    """Name of the Secret."""
    key: ShortStr = "token"
    """Key inside the Secret."""


class ConfigMapKeyRef(ApiModel):
    """A key of a ConfigMap in the VLMDeployment's namespace."""

    name: Name
    """Name of the ConfigMap."""
    key: ShortStr
    """Key inside the ConfigMap."""


class EnvSecretKeyRef(ApiModel):
    """Selects a key of a Secret (core/v1 SecretKeySelector)."""

    name: Name
    """Name of the Secret."""
    key: ShortStr
    """Key inside the Secret."""
    optional: bool = False
    """Whether the container may start without the Secret or key."""


class EnvConfigMapKeyRef(ApiModel):
    """Selects a key of a ConfigMap (core/v1 ConfigMapKeySelector)."""

    name: Name
    """Name of the ConfigMap."""
    key: ShortStr
    """Key inside the ConfigMap."""
    optional: bool = False
    """Whether the container may start without the ConfigMap or key."""


class EnvFieldRef(ApiModel):
    """Selects a field of the pod (core/v1 ObjectFieldSelector), e.g. ``status.podIP``."""

    field_path: ShortStr
    """Path of the field, e.g. ``metadata.name`` or ``status.podIP``."""


_ONE_SOURCE = CelRule(
    rule="(has(self.secretKeyRef) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0) + (has(self.fieldRef) ? 1 : 0) == 1",
    message="valueFrom must set exactly one of secretKeyRef, configMapKeyRef or fieldRef",
)


class EnvVarSource(ApiModel):
    """Where an env var's value comes from."""

    __cel__ = (_ONE_SOURCE,)

    secret_key_ref: EnvSecretKeyRef | None = None
    """A key of a Secret."""
    config_map_key_ref: EnvConfigMapKeyRef | None = None
    """A key of a ConfigMap."""
    field_ref: EnvFieldRef | None = None
    """A field of the pod."""

    @model_validator(mode="after")
    def _check(self) -> EnvVarSource:
        if sum(x is not None for x in (self.secret_key_ref, self.config_map_key_ref, self.field_ref)) != 1:
            raise _ONE_SOURCE.error()
        return self


#: Names that look like credentials: their value must come from a Secret, never inline. RE2 and Python agree on it.
SECRET_LIKE_ENV = r"(?i)(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY|ACCESS_KEY|PRIVATE_KEY)$"

_ENV_VALUE_XOR = CelRule(
    rule="has(self.value) != has(self.valueFrom)",
    message="an env var sets exactly one of value or valueFrom",
    value=("%s", "self.name"),
)
_ENV_NO_INLINE_SECRET = CelRule(
    rule=f"!has(self.value) || !self.name.matches('{SECRET_LIKE_ENV}')",
    message="an env var whose name looks like a credential (…_TOKEN, …_SECRET, …_PASSWORD, …_API_KEY) must take its "
    "value from valueFrom.secretKeyRef, not an inline value",
    value=("%s", "self.name"),  # the name only: never the value, which may be a credential
)


EnvName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")]


class EnvVar(ApiModel):
    """One environment variable for the vLLM container."""

    __cel__ = (_ENV_VALUE_XOR, _ENV_NO_INLINE_SECRET)

    name: EnvName
    """Name of the variable."""
    value: MediumStr | None = None
    """A literal value. Not allowed for names that look like credentials; use ``valueFrom.secretKeyRef``."""
    value_from: EnvVarSource | None = None
    """A value read from a Secret, a ConfigMap or the pod."""

    @model_validator(mode="after")
    def _check(self) -> EnvVar:
        if (self.value is None) == (self.value_from is None):
            raise _ENV_VALUE_XOR.error(self.name)
        if self.value is not None and re.search(SECRET_LIKE_ENV, self.name):
            raise _ENV_NO_INLINE_SECRET.error(self.name)
        return self


class LocalObjectReference(ApiModel):
    """A reference to an object by name in the same namespace (used for image pull Secrets)."""

    name: Name
    """Name of the object."""


class Toleration(ApiModel):
    """A pod toleration (core/v1 Toleration). The GPU taint ``nvidia.com/gpu`` is tolerated without one."""

    key: ShortStr | None = None
    """Taint key; empty with ``operator: Exists`` matches every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """``Equal`` matches key and value; ``Exists`` matches the key alone."""
    value: ShortStr | None = None
    """Taint value for ``operator: Equal``."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; unset matches every effect."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """For ``NoExecute``: how long the pod stays bound after the taint appears; unset means forever."""


__all__ = [
    "ConfigMapKeyRef",
    "EnvConfigMapKeyRef",
    "EnvFieldRef",
    "EnvSecretKeyRef",
    "EnvVar",
    "EnvVarSource",
    "LocalObjectReference",
    "SecretKeyRef",
    "Toleration",
]
