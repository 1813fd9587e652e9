"""Build the child objects of a VLMDeployment: Deployment, Service and PodDisruptionBudget. Pure.

Inputs are the parsed spec, the object's name/namespace/uid, and a :class:`RenderPlan` (the vLLM command line and
the estimator's figures). Output is plain dicts ready for server-side apply, in a deterministic order, with a hash
of the pod template in an annotation so that the reconciler can tell without a write whether anything changed.

Pod shape choices, and the user complaints they answer:
- a startup probe whose budget grows with the weights and whether they are downloaded (kubeai#172, kserve#5062:
  probes killed slow model loads);
- ``/dev/shm`` as a memory emptyDir sized by the estimator (production-stack#276: too small for TP > 1);
- secrets only as ``valueFrom.secretKeyRef`` env, never in args or annotations.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from vlm_operator import gpus
from vlm_operator.api import MULTIMODAL_READY_CONDITION, VLMDeployment, VLMDeploymentSpec
from vlm_operator.releases import default_image

HTTP_PORT = 8000
CONTAINER = "vllm"
MANAGED_BY = "vlm-operator"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_OWNER = "vlmops.io/deployment"
ANN_SPEC_HASH = "vlmops.io/spec-hash"
ANN_OBJECT_HASH = "vlmops.io/object-hash"
GIB = 1024**3
MIB = 1024**2

#: /dev/shm floor: NCCL and vLLM's shared-memory broadcast between TP workers need more than Docker's 64 MiB.
SHM_FLOOR_BYTES = 2 * GIB
#: Startup budget: fixed start (CUDA init, profiling, CUDA graphs) plus load time per GiB of weights. Downloads are
#: budgeted at 40 MB/s, local/pre-filled volumes at 500 MB/s; both deliberately pessimistic.
STARTUP_BASE_SECONDS = 300
DOWNLOAD_SECONDS_PER_GIB = 27
LOAD_SECONDS_PER_GIB = 2
STARTUP_PERIOD_SECONDS = 10


@dataclass(frozen=True)
class RenderPlan:
    """Everything the objects depend on besides the spec: the command, and the estimator's figures."""

    command: tuple[str, ...]
    #: Weights per replica in GiB (all GPUs), for the startup budget; None when the model could not be resolved.
    weights_gib: float | None = None
    #: Host memory the container needs (processor caches and a loading copy), bytes; None if unknown.
    host_memory_bytes: int | None = None
    #: /dev/shm the pod needs, bytes.
    shm_bytes: int = SHM_FLOOR_BYTES
    #: Extra env (name -> value) the renderer of the args decided on, e.g. a fetch timeout.
    env: tuple[tuple[str, str], ...] = ()


def labels_for(name: str) -> dict[str, str]:
    """Selector labels of one VLMDeployment's pods (stable for the object's life)."""
    return {LABEL_NAME: "vllm", LABEL_INSTANCE: name, LABEL_OWNER: name}


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels_for(name).items()))


def gpus_per_replica(spec: VLMDeploymentSpec) -> int:
    """GPUs one pod requests: ``spec.engine.gpus_per_pod`` (TP x PP x DP; ``resources.gpu.count`` must equal it)."""
    return spec.engine.gpus_per_pod


def startup_budget_seconds(spec: VLMDeploymentSpec, weights_gib: float | None) -> int:
    """How long the startup probe lets vLLM load before the kubelet restarts it."""
    size = weights_gib if weights_gib is not None else 100.0  # unknown model: assume a large one
    downloads = not (spec.model.offline or spec.model.is_local_path)
    per_gib = DOWNLOAD_SECONDS_PER_GIB if downloads else LOAD_SECONDS_PER_GIB
    return int(STARTUP_BASE_SECONDS + math.ceil(size * per_gib))


def _quantity_gib(nbytes: int) -> str:
    return f"{max(1, math.ceil(nbytes / GIB))}Gi"


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _node_affinity(spec: VLMDeploymentSpec, plan: RenderPlan) -> dict[str, Any] | None:
    req = spec.resources.gpu
    if req.product:
        products = [gpus.lookup(req.product).product]
    else:
        if not req.min_memory_gib:
            return None
        floor = req.min_memory_gib * 1024
        products = [p.product for p in gpus.products_with_memory_at_least(int(floor))]
        if not products:
            # No product in the table is large enough; the fit check refuses such a spec, so this is a fallback.
            return {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": [str(int(floor) - 1)]}
    return {"key": "nvidia.com/gpu.product", "operator": "In", "values": sorted(products)}


def _env(spec: VLMDeploymentSpec, plan: RenderPlan) -> list[dict[str, Any]]:
    m = spec.model
    env: dict[str, dict[str, Any]] = {}
    env["HF_HOME"] = {"value": m.cache.mount_path}
    if m.hf_endpoint:
        env["HF_ENDPOINT"] = {"value": m.hf_endpoint}
    if m.offline:
        env["HF_HUB_OFFLINE"] = {"value": "1"}
        env["TRANSFORMERS_OFFLINE"] = {"value": "1"}
    if m.hf_token_secret:
        env["HF_TOKEN"] = {
            "valueFrom": {"secretKeyRef": {"name": m.hf_token_secret.name, "key": m.hf_token_secret.key}}
        }
    if spec.engine.api_key_secret:
        s = spec.engine.api_key_secret
        # vLLM's OpenAI server reads VLLM_API_KEY when --api-key is not given (vllm/entrypoints/openai/api_server.py).
        env["VLLM_API_KEY"] = {"valueFrom": {"secretKeyRef": {"name": s.name, "key": s.key}}}
    if spec.pod_template.security_context.non_root:
        # The image's HOME is /root, which another user cannot write; vLLM keeps its caches under ~/.cache/vllm and
        # its usage-stats file under ~/.config/vllm (get_default_cache_root/get_default_config_root: $XDG_CACHE_HOME
        # or ~/.cache, $XDG_CONFIG_HOME or ~/.config; vllm-0.11.0 vllm/envs.py:210-220), and Triton writes under ~.
        env["HOME"] = {"value": HOME_DIR}
    for k, v in plan.env:
        env[k] = {"value": v}
    for e in spec.engine.env:
        env[e.name] = e.model_dump(by_alias=True, exclude_none=True, exclude={"name"})
    return [{"name": k, **env[k]} for k in sorted(env)]


def _volumes(spec: VLMDeploymentSpec, plan: RenderPlan) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    cache = spec.model.cache
    shm = max(plan.shm_bytes, SHM_FLOOR_BYTES)
    if spec.resources.shm_size:
        from vlm_operator.api import parse_quantity

        shm = max(shm, int(parse_quantity(spec.resources.shm_size)))
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": _quantity_gib(shm)}}
    ]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if cache.persistent_volume_claim:
        pvc = cache.persistent_volume_claim
        volumes.append(
            {"name": "model-cache", "persistentVolumeClaim": {"claimName": pvc.claim_name, "readOnly": pvc.read_only}}
        )
        mount: dict[str, Any] = {"name": "model-cache", "mountPath": cache.mount_path, "readOnly": pvc.read_only}
        if pvc.sub_path:
            mount["subPath"] = pvc.sub_path
        mounts.append(mount)
    else:
        ed: dict[str, Any] = {}
        if cache.empty_dir and cache.empty_dir.size_limit:
            ed["sizeLimit"] = cache.empty_dir.size_limit
        volumes.append({"name": "model-cache", "emptyDir": ed})
        mounts.append({"name": "model-cache", "mountPath": cache.mount_path})
    if spec.pod_template.security_context.non_root and cache.mount_path != HOME_DIR:  # one mount per path
        volumes.append({"name": "home", "emptyDir": {}})
        mounts.append({"name": "home", "mountPath": HOME_DIR})
    if spec.engine.chat_template:
        ct = spec.engine.chat_template
        volumes.append(
            {"name": "chat-template", "configMap": {"name": ct.name, "items": [{"key": ct.key, "path": ct.key}]}}
        )
        mounts.append({"name": "chat-template", "mountPath": CHAT_TEMPLATE_DIR, "readOnly": True})
    return volumes, mounts


CHAT_TEMPLATE_DIR = "/etc/vlmops/chat-template"
#: The writable home folder (an emptyDir) of a pod that runs as non-root (``podTemplate.securityContext``).
HOME_DIR = "/home/vllm"


def _resources(spec: VLMDeploymentSpec, plan: RenderPlan) -> dict[str, Any]:
    n = gpus_per_replica(spec)
    gpu = spec.resources.gpu.resource_name()  # nvidia.com/gpu, or nvidia.com/mig-<profile> for a MIG slice
    limits: dict[str, str] = {gpu: str(n)}
    requests: dict[str, str] = {gpu: str(n)}
    if spec.resources.cpu:
        requests["cpu"] = spec.resources.cpu
    mem_bytes = plan.host_memory_bytes or 0
    if spec.resources.memory:
        from vlm_operator.api import parse_quantity

        mem_bytes = max(mem_bytes, int(parse_quantity(spec.resources.memory)))
    if mem_bytes:
        requests["memory"] = limits["memory"] = _quantity_gib(mem_bytes)
    return {"limits": dict(sorted(limits.items())), "requests": dict(sorted(requests.items()))}


def pod_template(vlmd: VLMDeployment, plan: RenderPlan) -> dict[str, Any]:
    spec = vlmd.spec
    name = vlmd.metadata["name"]
    pt = spec.pod_template
    volumes, mounts = _volumes(spec, plan)
    budget = startup_budget_seconds(spec, plan.weights_gib)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.engine.image or default_image(spec.engine.version),
        "imagePullPolicy": spec.engine.image_pull_policy,
        "command": list(plan.command),
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": _env(spec, plan),
        "resources": _resources(spec, plan),
        "volumeMounts": mounts,
        "startupProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": STARTUP_PERIOD_SECONDS,
            "failureThreshold": math.ceil(budget / STARTUP_PERIOD_SECONDS),
            "timeoutSeconds": 5,
        },
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
            "timeoutSeconds": 5,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 15,
            "failureThreshold": 4,
            "timeoutSeconds": 10,
        },
        # A crashed container's last log lines become its termination message, which status and the rollback
        # reason quote (the pod's own words: a CUDA OOM, a bad flag) without reading logs.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # Let the Service drop the pod before vLLM stops taking requests; vLLM drains on SIGTERM.
        "lifecycle": {"preStop": {"sleep": {"seconds": 10}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    tolerations += [t.model_dump(by_alias=True, exclude_none=True) for t in pt.tolerations]
    affinity: dict[str, Any] = json.loads(json.dumps(pt.affinity)) if pt.affinity else {}
    term = _node_affinity(spec, plan)
    if term is not None:
        na = affinity.setdefault("nodeAffinity", {})
        req = na.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {"nodeSelectorTerms": [{}]})
        terms = req.setdefault("nodeSelectorTerms", [{}]) or [{}]
        # every OR-ed term must also satisfy the GPU requirement
        for t in terms:
            t.setdefault("matchExpressions", []).append(term)
        req["nodeSelectorTerms"] = terms
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "tolerations": tolerations,
        "terminationGracePeriodSeconds": 60,
        "enableServiceLinks": False,
    }
    if affinity:
        pod_spec["affinity"] = affinity
    if pt.node_selector:
        pod_spec["nodeSelector"] = dict(sorted(pt.node_selector.items()))
    if pt.priority_class_name:
        pod_spec["priorityClassName"] = pt.priority_class_name
    if pt.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [s.model_dump(by_alias=True) for s in pt.image_pull_secrets]
    if pt.service_account_name:
        pod_spec["serviceAccountName"] = pt.service_account_name
    if pt.runtime_class_name:
        pod_spec["runtimeClassName"] = pt.runtime_class_name
    security = pt.security_context.to_k8s()
    if security:  # unset renders nothing, so pods of specs without it keep their template hash
        pod_spec["securityContext"] = dict(sorted(security.items()))
    if pt.topology_spread_constraints:
        pod_spec["topologySpreadConstraints"] = pt.topology_spread_constraints
    if spec.readiness.multimodal_probe:
        # The operator sets this condition after one image request succeeded on the pod (readiness.py).
        pod_spec["readinessGates"] = [{"conditionType": MULTIMODAL_READY_CONDITION}]
    labels = {**pt.labels, **labels_for(name), "app.kubernetes.io/managed-by": MANAGED_BY}
    annotations = {
        **pt.annotations,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(HTTP_PORT),
        "prometheus.io/path": "/metrics",
    }
    template = {"metadata": {"labels": dict(sorted(labels.items())), "annotations": annotations}, "spec": pod_spec}
    template["metadata"]["annotations"][ANN_SPEC_HASH] = _hash(template)
    template["metadata"]["annotations"] = dict(sorted(template["metadata"]["annotations"].items()))
    return template


def _meta(vlmd: VLMDeployment, name: str) -> dict[str, Any]:
    m = vlmd.metadata
    return {
        "name": name,
        "namespace": m["namespace"],
        "labels": {**labels_for(m["name"]), "app.kubernetes.io/managed-by": MANAGED_BY},
        "ownerReferences": [
            {
                "apiVersion": vlmd.api_version,
                "kind": vlmd.kind,
                "name": m["name"],
                "uid": m["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def _stamp(obj: dict[str, Any]) -> dict[str, Any]:
    """Put a hash of the whole desired object in an annotation, so an unchanged object needs no write."""
    obj["metadata"].setdefault("annotations", {})[ANN_OBJECT_HASH] = _hash(obj)
    return obj


#: What a Deployment is created with: no old pods yet, so surging or not makes no difference. The rollout
#: controller (vlm_operator.rollout) picks surge or in-place for each later rollout from the free GPUs.
DEFAULT_STRATEGY: dict[str, Any] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
#: ReplicaSets kept per Deployment. A rollback goes back to the pod template of the last good one, so it must
#: outlive a few failed attempts.
REVISION_HISTORY = 5


def progress_deadline_seconds(spec: VLMDeploymentSpec, weights_gib: float | None) -> int:
    """The Deployment's progress deadline: ``rollout.progressDeadlineSeconds``, else twice the startup budget (so a
    slow but healthy load of a large model never counts as stuck), at least 10 minutes."""
    return spec.rollout.progress_deadline_seconds or max(600, 2 * startup_budget_seconds(spec, weights_gib))


def deployment(
    vlmd: VLMDeployment,
    plan: RenderPlan,
    strategy: dict[str, Any] | None = None,
    template: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Deployment. ``strategy`` is the rollout controller's choice; ``template`` replaces the rendered pod
    template (a rollback to the last good one); ``annotations`` go on the Deployment (the rollback record)."""
    spec = vlmd.spec
    name = vlmd.metadata["name"]
    meta = _meta(vlmd, name)
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": spec.scaling.replicas,
            "selector": {"matchLabels": labels_for(name)},
            "strategy": json.loads(json.dumps(strategy or DEFAULT_STRATEGY)),
            "progressDeadlineSeconds": progress_deadline_seconds(spec, plan.weights_gib),
            "revisionHistoryLimit": REVISION_HISTORY,
            "template": template if template is not None else pod_template(vlmd, plan),
        },
    }
    return _stamp(obj)


def service(vlmd: VLMDeployment) -> dict[str, Any]:
    name = vlmd.metadata["name"]
    obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(vlmd, name),
        "spec": {
            "type": "ClusterIP",
            "selector": labels_for(name),
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return _stamp(obj)


def pod_disruption_budget(vlmd: VLMDeployment) -> dict[str, Any]:
    name = vlmd.metadata["name"]
    obj = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(vlmd, name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels_for(name)}},
    }
    return _stamp(obj)


def url(vlmd: VLMDeployment) -> str:
    m = vlmd.metadata
    return f"http://{m['name']}.{m['namespace']}.svc:{HTTP_PORT}/v1"


def render_all(vlmd: VLMDeployment, plan: RenderPlan) -> list[dict[str, Any]]:
    """Deployment, Service and PodDisruptionBudget, in apply order."""
    return [deployment(vlmd, plan), service(vlmd), pod_disruption_budget(vlmd)]
