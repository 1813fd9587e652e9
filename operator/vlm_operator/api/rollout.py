"""``spec.rollout``: how a spec change replaces pods when GPUs are scarce, and when to roll back.

A surge pod needs a free GPU of the right product; if none is free it waits forever while the old pod holds its GPU.
``surgePolicy: Auto`` therefore surges only when the cluster has a spare GPU and otherwise replaces pods in place.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ._base import ApiModel, CelRule

_ALWAYS_NEEDS_SURGE = CelRule(
    rule="!has(self.surgePolicy) || self.surgePolicy != 'Always' || !has(self.maxSurge) || self.maxSurge >= 1",
    message="rollout.surgePolicy Always needs maxSurge >= 1",
    field_path=".maxSurge",
    value=("got %d", "self.maxSurge"),
)
_NEVER_NEEDS_UNAVAILABLE = CelRule(
    rule="!has(self.surgePolicy) || self.surgePolicy != 'Never' || !has(self.maxUnavailable) || "
    "self.maxUnavailable >= 1",
    message="rollout.surgePolicy Never needs maxUnavailable >= 1",
    field_path=".maxUnavailable",
    value=("got %d", "self.maxUnavailable"),
)


class RolloutSpec(ApiModel):
    """Rollout strategy and automatic rollback."""

    __cel__ = (_ALWAYS_NEEDS_SURGE, _NEVER_NEEDS_UNAVAILABLE)

    surge_policy: Literal["Auto", "Always", "Never"] = "Auto"
    """``Auto``: surge (up to ``maxSurge``, none unavailable) when free GPUs of the right kind exist, otherwise
    replace in place (up to ``maxUnavailable`` at a time), re-deciding as the rollout runs. ``Always``: always
    surge. ``Never``: always replace in place."""
    max_surge: int = Field(default=1, ge=0, le=1000)
    """Extra pods a surging rollout may create (a count; percentages are not accepted)."""
    max_unavailable: int = Field(default=1, ge=0, le=1000)
    """Pods an in-place rollout may take down at once."""
    auto_rollback: bool = True
    """Return to the last good pod template when the new one crash-loops or fails its startup probe past
    ``failureThreshold``; the spec is left as written and the next change retries."""
    failure_threshold: int = Field(default=3, ge=1, le=100)
    """Restarts (or startup-probe failures) of a new pod that count as a failed rollout."""
    progress_deadline_seconds: int | None = Field(default=None, ge=60, le=86_400)
    """How long a rollout may take before it is reported as failed; unset means a deadline derived from the model
    size and download path."""

    @model_validator(mode="after")
    def _check(self) -> RolloutSpec:
        if self.surge_policy == "Always" and self.max_surge < 1:
            raise _ALWAYS_NEEDS_SURGE.error(f"got {self.max_surge}")
        if self.surge_policy == "Never" and self.max_unavailable < 1:
            raise _NEVER_NEEDS_UNAVAILABLE.error(f"got {self.max_unavailable}")
        return self
