"""``spec.readiness``: extra checks a pod passes before it counts as Ready.

``/health`` answering does not prove a pod can serve images (a processor kwarg the processor rejects, a chat
template without image support). With ``multimodalProbe`` the pod template carries a readiness gate
(``vlmops.io/multimodal-ready``); the operator sends one tiny image request to each new pod and sets the gate's
condition, so the Service sends a pod no traffic until an image request has succeeded on it.
"""

from __future__ import annotations

from ._base import ApiModel

#: The pod condition type the readiness gate names (Kubernetes: pod.spec.readinessGates[].conditionType).
MULTIMODAL_READY_CONDITION = "vlmops.io/multimodal-ready"


class ReadinessSpec(ApiModel):
    """Extra readiness checks beyond vLLM's ``/health``."""

    multimodal_probe: bool = False
    """Gate each pod's readiness on one chat request with a 2x2 PNG (``max_tokens`` 1). A pod whose image request
    fails stays not Ready and status says why. Needs the operator's ``pods/status`` permission (chart value
    ``multimodalReadiness``)."""
