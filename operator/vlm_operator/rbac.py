"""The operator's least privileges, as one table: every API call it makes, and every call kopf makes on its behalf.

``hack/gen_rbac.py`` renders the ClusterRole in ``deploy/operator.yaml`` and ``charts/vlm-operator/templates/`` from
this table, and a unit test fails when they drift or when code calls :class:`vlm_operator.kube.Kube` for a
(group, resource, verb) that no rule grants. ``tests/integration/test_rbac.py`` runs the operator with exactly these
rules, through a ServiceAccount token, against the real API server.

What is deliberately absent: Secrets (the HF token and API key reach pods through ``secretKeyRef``, which the kubelet
resolves; the operator never reads them), ConfigMaps (mounted by name only; a VLMBatchJob's input ConfigMap is
mounted optional, so a missing one is reported by the client as ``InputNotFound``), ``delete`` (children go through
owner references and the garbage collector), and listing namespaces cluster-wide (the webhook only ``get``s one
namespace for its labels; a namespaced install adds ``list``/``watch``, see :data:`NAMESPACE_WATCH`).
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
    #: The resource is cluster-scoped (nodes, CRDs, webhook configurations): a Role cannot grant it.
    cluster_scoped: bool = False

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
        "reconcile reads the object afresh; kopf watches it and patches its finalizer (timers, the autoscaler daemon) "
        "and, to retry a handler later, a touch annotation",
    ),
    Rule("vlmops.io", ("vlmdeployments/status",), ("patch",), "the one status writer (Kube.patch_status)"),
    Rule(
        "vlmops.io",
        ("vlmdeployments/scale",),
        ("get", "patch"),
        "the Internal-mode autoscaler reads and writes replicas through /scale (Kube.get_scale, Kube.scale)",
    ),
    Rule(
        "vlmops.io",
        ("vlmbatchjobs",),
        ("get", "list", "watch", "patch"),
        "VLMBatchJob: the handler reads the object afresh; kopf watches it and patches its annotations",
    ),
    Rule("vlmops.io", ("vlmbatchjobs/status",), ("patch",), "VLMBatchJob status (lines, tokens, conditions)"),
    Rule(
        "batch",
        ("jobs",),
        ("get", "list", "watch", "create", "patch"),
        "server-side apply of a VLMBatchJob's Indexed Job (suspend/resume patches it); kopf watches managed Jobs",
    ),
    Rule(
        "",
        ("persistentvolumeclaims",),
        ("get",),
        "a VLMBatchJob's input and output PVCs must exist: a missing one fails the job at once instead of leaving "
        "its pods Pending",
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
        ("list",),
        "a rollback lists the Deployment's ReplicaSets (the last good template)",
    ),
    Rule(
        "",
        ("services",),
        ("get", "list", "watch", "create", "patch"),
        "server-side apply of the child Service (a create-by-apply also needs create); kopf watches children",
    ),
    Rule(
        "policy",
        ("poddisruptionbudgets",),
        ("get", "list", "watch", "create", "patch"),
        "server-side apply of the child PodDisruptionBudget (a create-by-apply also needs create); kopf watches "
        "children",
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
        ("list", "watch"),
        "the webhook checks TP x PP against the largest node of the GPU product; the rollout counts free GPUs "
        "(nodes and pods listed once, then watched)",
        cluster_scoped=True,
    ),
    Rule("", ("events",), ("create",), "events on rollouts, Degraded/FitsGPU trouble, autoscaling; kopf warnings"),
    Rule(
        "",
        ("resourcequotas",),
        ("list", "watch"),
        "the webhook, the rollout and the autoscaler compare GPUs with what the namespace's ResourceQuota leaves "
        "(listed once, then watched)",
    ),
    Rule(
        "vlmops.io",
        ("vlmplatformprofiles",),
        ("list",),
        "the webhook reads the platform profiles (VLMPlatformProfile, cluster-scoped)",
        cluster_scoped=True,
    ),
    Rule(
        "",
        ("namespaces",),
        ("get",),
        "the webhook reads the labels of a VLMDeployment's namespace to select its platform profile",
        cluster_scoped=True,
    ),
    Rule(
        "apiextensions.k8s.io",
        ("customresourcedefinitions",),
        ("list", "watch"),
        "kopf discovers the VLMDeployment CRD and notices when it is (re)installed",
        cluster_scoped=True,
    ),
    Rule(
        "kopf.dev",
        ("clusterkopfpeerings",),
        ("get", "list", "watch", "patch"),
        "kopf peering: replicas announce themselves so that only one acts",
        cluster_scoped=True,
    ),
    Rule(
        "admissionregistration.k8s.io",
        ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"),
        ("create",),
        "kopf creates its managed webhook configurations when absent, a mutating one too even with no mutating "
        "handler (create cannot be limited to a name)",
        cluster_scoped=True,
    ),
    Rule(
        "admissionregistration.k8s.io",
        ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"),
        ("patch",),
        "kopf keeps its managed webhook configurations' client config and CA bundle current",
        resource_names=(WEBHOOK_CONFIGURATION,),
        cluster_scoped=True,
    ),
)

#: The chart owns the ValidatingWebhookConfiguration (``webhook_config`` mode ``chart``): the operator only patches the
#: CA bundle of that one configuration, and creates none. With cert-manager's CA injection (mode ``injected``) even
#: this rule is left out.
CHART_WEBHOOK_PATCH = Rule(
    "admissionregistration.k8s.io",
    ("validatingwebhookconfigurations",),
    ("patch",),
    "the chart owns the webhook configuration; the operator keeps its CA bundle current (not with cert-manager)",
    resource_names=(WEBHOOK_CONFIGURATION,),
    cluster_scoped=True,
)


#: ``spec.readiness.multimodalProbe``: the operator sets the readiness-gate condition on a pod's status
#: (:mod:`vlm_operator.readiness`). Granted only where an install enables it (chart value ``multimodalReadiness``), so
#: an operator without it cannot mark any pod Ready.
MULTIMODAL_READINESS = Rule(
    "",
    ("pods/status",),
    ("patch",),
    "spec.readiness.multimodalProbe: the operator sets the vlmops.io/multimodal-ready gate condition on pod status",
)
#: Rules an install adds only when it enables the feature that needs them.
OPTIONAL_RULES: tuple[Rule, ...] = (MULTIMODAL_READINESS,)


def chart_rules(rules: tuple[Rule, ...] = RULES, optional: bool = False) -> tuple[Rule, ...]:
    """The chart's table: no create on webhook configurations, only the CA-bundle patch by name. ``optional`` adds
    :data:`OPTIONAL_RULES` (``hack/gen_rbac.py`` renders each under its chart value; off by default)."""
    base = (*(r for r in rules if r.group != "admissionregistration.k8s.io"), CHART_WEBHOOK_PATCH)
    return (*base, *OPTIONAL_RULES) if optional else base


#: kopf's peering when it watches a list of namespaces: a ``KopfPeering`` in each of them instead of the
#: ``ClusterKopfPeering`` (kopf/_core/engines/peering.py, guess_selectors: namespaced mode selects kopfpeerings).
NAMESPACED_PEERING = Rule(
    "kopf.dev",
    ("kopfpeerings",),
    ("get", "list", "watch", "patch"),
    "kopf peering in each watched namespace: replicas announce themselves so that only one acts",
)
_CLUSTER_PEERING = "clusterkopfpeerings"

#: kopf's namespaced mode lists and watches namespaces, even for exact names (kopf/_core/reactor/observation.py);
#: without the right it retries nine times (about a minute in which nothing is reconciled) before falling back to the
#: names as given, and logs each refusal as an error. Namespace objects carry only names and labels.
NAMESPACE_WATCH = Rule(
    "",
    ("namespaces",),
    ("list", "watch"),
    "kopf watches the namespaces it was given (namespaced mode), and waits a minute without this",
    cluster_scoped=True,
)


def namespaced_install(rules: tuple[Rule, ...] | None = None) -> tuple[tuple[Rule, ...], tuple[Rule, ...]]:
    """The rules of an install that watches a list of namespaces: (a Role in each watched namespace, the ClusterRole).

    The Role gets every namespaced rule and the namespaced peering; the ClusterRole keeps only what has no namespace:
    nodes (the GPU inventory), the CRDs (kopf's discovery) and the webhook configurations. Pods are then listed in
    the watched namespaces only, so the rollout cannot count free GPUs cluster-wide and replaces pods in place
    (the reconciler catches the refusal and logs it).
    """
    rules = chart_rules() if rules is None else rules
    role = (*(r for r in rules if not r.cluster_scoped), NAMESPACED_PEERING)
    cluster = (*(r for r in rules if r.cluster_scoped and _CLUSTER_PEERING not in r.resources), NAMESPACE_WATCH)
    return role, cluster


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
