"""The operator's least privileges, as one table: every API call it makes, and every call kopf makes on its behalf.

``hack/gen_rbac.py`` renders the ClusterRole in ``deploy/operator.yaml`` and ``charts/vlm-operator/templates/`` from
this table, and a unit test fails when they drift or when code calls :class:`vlm_operator.kube.Kube` for a
(group, resource, verb) that no rule grants. ``tests/integration/test_rbac.py`` runs the operator with exactly these
rules, through a ServiceAccount token, against the real API server.

What is deliberately absent: Secrets (the HF token and API key reach pods through ``secretKeyRef``, which the kubelet
resolves; the operator never reads them), ConfigMaps (mounted by name only), ``delete`` (children go through owner
references and the garbage collector), and namespaces (kopf lists them only for ``--namespace`` globs; with exact
names or cluster-wide it does not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The ValidatingWebhookConfiguration kopf manages (``settings.admission.managed``, handlers.WEBHOOK_NAME).
WEBHOOK_CONFIGURATION = "vlm-operator.vlmops.io"


@dataclass(frozen=True)
class Rule:
    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    resource_names: tuple[str, ...] = ()

    def as_policy_rule(self) -> dict[str, Any]:
        out: dict[str, Any] = {"apiGroups": [self.group], "resources": list(self.resources)}
        if self.resource_names:
            out["resourceNames"] = list(self.resource_names)
        out["verbs"] = list(self.verbs)
        return out


RULES: tuple[Rule, ...] = (
    Rule(
        "vlmops.io",
        ("vlmdeployments",),
        ("get", "list", "watch", "patch"),
        "reconcile reads the object afresh; kopf watches it and patches its annotations (progress, last-handled) and "
        "the autoscaler daemon's finalizer",
    ),
    Rule("vlmops.io", ("vlmdeployments/status",), ("patch",), "the one status writer (Kube.patch_status)"),
    Rule(
        "vlmops.io",
        ("vlmdeployments/scale",),
        ("get", "patch"),
        "the Internal-mode autoscaler reads and writes replicas through /scale (Kube.get_scale, Kube.scale)",
    ),
    Rule(
        "apps",
        ("deployments",),
        ("get", "list", "watch", "create", "patch"),
        "server-side apply of the child Deployment (a create-by-apply also needs create); kopf watches children",
    ),
    Rule(
        "apps",
        ("replicasets",),
        ("list", "watch"),
        "the rollout reads the Deployment's ReplicaSets (the last good template) from a watch-fed index",
    ),
    Rule(
        "",
        ("services",),
        ("get", "create", "patch"),
        "server-side apply of the child Service (a create-by-apply also needs create)",
    ),
    Rule(
        "policy",
        ("poddisruptionbudgets",),
        ("get", "create", "patch"),
        "server-side apply of the child PodDisruptionBudget (a create-by-apply also needs create)",
    ),
    Rule(
        "",
        ("pods",),
        ("list", "watch"),
        "status reads pod problems (crash loops); the rollout counts GPUs bound by pods cluster-wide; kopf watches "
        "managed pods",
    ),
    Rule(
        "",
        ("nodes",),
        ("list",),
        "the webhook checks TP x PP against the largest node of the GPU product; the rollout counts free GPUs",
    ),
    Rule("", ("events",), ("create",), "events on condition transitions and autoscaling; kopf posts warnings"),
    Rule(
        "apiextensions.k8s.io",
        ("customresourcedefinitions",),
        ("list", "watch"),
        "kopf discovers the VLMDeployment CRD and notices when it is (re)installed",
    ),
    Rule(
        "kopf.dev",
        ("clusterkopfpeerings",),
        ("get", "list", "watch", "patch"),
        "kopf peering: replicas announce themselves so that only one acts",
    ),
    Rule(
        "admissionregistration.k8s.io",
        ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"),
        ("create",),
        "kopf creates its managed webhook configurations when absent, a mutating one too even with no mutating "
        "handler (create cannot be limited to a name)",
    ),
    Rule(
        "admissionregistration.k8s.io",
        ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"),
        ("patch",),
        "kopf keeps its managed webhook configurations' client config and CA bundle current",
        resource_names=(WEBHOOK_CONFIGURATION,),
    ),
)


def cluster_role_rules(rules: tuple[Rule, ...] = RULES) -> list[dict[str, Any]]:
    """The ``rules`` of the operator's ClusterRole."""
    return [r.as_policy_rule() for r in rules]


def granted(group: str, resource: str, verb: str, name: str | None = None, rules: tuple[Rule, ...] = RULES) -> bool:
    """Whether the table grants ``verb`` on ``group``/``resource`` (for the object ``name``, if given)."""
    return any(
        r.group == group
        and resource in r.resources
        and verb in r.verbs
        and (not r.resource_names or (name is not None and name in r.resource_names))
        for r in rules
    )
