"""Build a VLMBatchJob's Indexed Job. Pure.

One Job index per shard (``completionMode: Indexed``, ``completions = parallelism = spec.parallelism``), retried per
index (``backoffLimitPerIndex``). Each pod runs:

- the engine as a *native sidecar*: an init container with ``restartPolicy: Always`` (Kubernetes >= 1.29,
  KEP-753), so it starts first, the main container starts once its startup probe passes, and the kubelet stops it
  when the main container has ended. It is the same container a VLMDeployment's pod runs
  (:func:`vlm_operator.render.objects.pod_template` on :meth:`VLMBatchJobSpec.deployment_spec`): the same
  version-exact ``vllm serve`` command, env, volumes, GPU request and probes;
- the client as the main container (the operator image): ``python -m vlm_operator.batch.client`` with exactly the
  command line of the client contract (docs/batch.md), which reads its shard of the input, appends to the output
  files, writes a summary to ``/dev/termination-log`` and serves ``GET /progress``.

The Job itself is created once; after that only ``suspend`` and ``ttlSecondsAfterFinished`` change (a Job's pod
template and completions are immutable).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vlm_operator import __version__
from vlm_operator.api import VLMDeployment
from vlm_operator.api.batch import KUEUE_QUEUE_LABEL, VLMBatchJob
from vlm_operator.render import objects

CLIENT_CONTAINER = "client"
ENGINE_CONTAINER = objects.CONTAINER  # "vllm", as in a VLMDeployment's pod
PROGRESS_PORT = 8090
INPUT_DIR = "/var/run/vlmops/input"
OUTPUT_DIR = "/var/run/vlmops/output"
#: The file name a ConfigMap input is mounted as (the key's content, under INPUT_DIR).
CONFIGMAP_INPUT_FILE = "input.jsonl"
TERMINATION_LOG = "/dev/termination-log"
LABEL_BATCH = "vlmops.io/batchjob"
#: On the Job: a hash of the VLMBatchJob spec it was made from, less the fields that may change afterwards
#: (``suspend``, ``ttlSecondsAfterFinished``), so a later edit the Job cannot take is reported, not lost silently.
ANN_BATCH_SPEC_HASH = "vlmops.io/batch-spec-hash"
#: Spec fields a running Job follows (everything else is fixed when the Job is created).
MUTABLE_FIELDS = ("suspend", "ttl_seconds_after_finished")
#: the app.kubernetes.io/name of batch pods ("vllm" is a VLMDeployment's): a VLMDeployment and a VLMBatchJob of the
#: same name never select each other's pods.
APP_NAME = "vllm-batch"
#: The client image when the operator is not told its own (``VLM_OPERATOR_IMAGE``): the chart's default repository
#: at this package's version.
DEFAULT_CLIENT_IMAGE = f"vlm-operator:{__version__}"
#: When the model's context length is unknown (a model outside the catalog, not resolved), the client does not
#: check line length itself; the engine still refuses an over-long prompt, which becomes an error line.
UNKNOWN_MAX_MODEL_LEN = 16_777_216


@dataclass(frozen=True)
class ClientSettings:
    """What the client's command line needs besides the spec."""

    image: str = DEFAULT_CLIENT_IMAGE
    #: the context length the engine runs with (``engine.maxModelLen`` or the model's own)
    max_model_len: int = UNKNOWN_MAX_MODEL_LEN


def batch_labels(name: str) -> dict[str, str]:
    """Selector labels of one VLMBatchJob's pods."""
    return {objects.LABEL_NAME: APP_NAME, objects.LABEL_INSTANCE: name, LABEL_BATCH: name}


def batch_selector(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted({**batch_labels(name), **_managed()}.items()))


def _managed() -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": objects.MANAGED_BY}


def input_path(bj: VLMBatchJob) -> str:
    """What the client's ``--input`` gets: the mounted file, or the URL."""
    src = bj.spec.input
    if src.pvc is not None:
        return f"{INPUT_DIR}/{src.pvc.path}"
    if src.config_map is not None:
        return f"{INPUT_DIR}/{CONFIGMAP_INPUT_FILE}"
    assert src.url is not None
    return src.url


def output_dir(bj: VLMBatchJob) -> str:
    return f"{OUTPUT_DIR}/{bj.spec.output.pvc.path}"


def _count(item: Any) -> int:
    return int(item if isinstance(item, int) else item.count)


def _flag(argv: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(argv[:-1]):
        if arg == flag:
            return str(argv[i + 1])
    return None


def client_command(bj: VLMBatchJob, settings: ClientSettings, engine_argv: Sequence[str] = ()) -> list[str]:
    """The client's command line, flag for flag as the client contract (docs/batch.md, "How a shard runs") has it.
    ``--shard-index`` is left to ``JOB_COMPLETION_INDEX``, which the Job controller sets in each pod. The optional
    ``--model-id`` and ``--mm-processor-kwargs`` (the engine's own JSON, from ``engine_argv``) let the client count
    a line's image tokens as the engine will, and refuse a line whose images alone exceed ``maxModelLen``."""
    spec = bj.spec
    mm = spec.multimodal
    cmd = [
        "python",
        "-m",
        "vlm_operator.batch.client",
        "--input",
        input_path(bj),
        "--output-dir",
        output_dir(bj),
        "--shard-count",
        str(spec.parallelism),
        "--model",
        spec.model.name,
        "--engine-url",
        f"http://127.0.0.1:{objects.HTTP_PORT}",
        "--max-model-len",
        str(spec.engine.max_model_len or settings.max_model_len),
        "--image-limit",
        str(_count(mm.effective_limit("image", spec.version))),
        "--video-limit",
        str(_count(mm.effective_limit("video", spec.version))),
    ]
    cmd += ["--model-id", spec.model.name]
    kwargs = _flag(engine_argv, "--mm-processor-kwargs")
    if kwargs is not None:
        cmd += ["--mm-processor-kwargs", kwargs]
    if spec.sampling.temperature is not None:
        cmd += ["--temperature", objects_num(spec.sampling.temperature)]
    if spec.sampling.max_tokens is not None:
        cmd += ["--max-tokens", str(spec.sampling.max_tokens)]
    cmd += [
        "--summary-path",
        TERMINATION_LOG,
        "--progress-port",
        str(PROGRESS_PORT),
        "--concurrency",
        str(spec.concurrency),
    ]
    return cmd


def objects_num(value: float) -> str:
    """A float as the shortest text that reads back the same (``0.2``, ``1``)."""
    return f"{value:g}" if float(f"{value:g}") == value else repr(value)


def _io_volumes(bj: VLMBatchJob) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    src, out = bj.spec.input, bj.spec.output.pvc
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if src.pvc is not None:
        same = src.pvc.claim_name == out.claim_name
        if not same:
            volumes.append(
                {"name": "batch-input", "persistentVolumeClaim": {"claimName": src.pvc.claim_name, "readOnly": True}}
            )
            mounts.append({"name": "batch-input", "mountPath": INPUT_DIR, "readOnly": True})
        else:  # one claim for both: mount it once (a ReadWriteOnce claim cannot be attached twice)
            mounts.append({"name": "batch-output", "mountPath": INPUT_DIR, "readOnly": True})
    elif src.config_map is not None:
        cm = src.config_map
        # optional: a missing ConfigMap leaves the file absent, and the client reports InputNotFound at once (the
        # operator does not read ConfigMaps; a required one would leave the pod in ContainerCreating).
        volumes.append(
            {
                "name": "batch-input",
                "configMap": {
                    "name": cm.name,
                    "items": [{"key": cm.key, "path": CONFIGMAP_INPUT_FILE}],
                    "optional": True,
                },
            }
        )
        mounts.append({"name": "batch-input", "mountPath": INPUT_DIR, "readOnly": True})
    volumes.append({"name": "batch-output", "persistentVolumeClaim": {"claimName": out.claim_name}})
    mounts.append({"name": "batch-output", "mountPath": OUTPUT_DIR})
    return volumes, mounts


def pod_template(bj: VLMBatchJob, plan: objects.RenderPlan, settings: ClientSettings) -> dict[str, Any]:
    """The shard pod: the VLMDeployment's engine container as a native sidecar, and the client."""
    name = bj.metadata["name"]
    engine_view = VLMDeployment(metadata={"name": name}, spec=bj.spec.deployment_spec())
    base = objects.pod_template(engine_view, plan)
    pod_spec = json.loads(json.dumps(base["spec"]))
    (engine,) = pod_spec.pop("containers")
    engine["restartPolicy"] = "Always"  # a native sidecar: stopped by the kubelet once the client has ended
    engine.pop("lifecycle", None)  # no Service drains from it: nothing to wait for on stop
    pod_spec.pop("readinessGates", None)
    io_volumes, io_mounts = _io_volumes(bj)
    pod_spec["volumes"] = [*pod_spec["volumes"], *io_volumes]
    client: dict[str, Any] = {
        "name": CLIENT_CONTAINER,
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "command": client_command(bj, settings, plan.command),
        "ports": [{"name": "progress", "containerPort": PROGRESS_PORT, "protocol": "TCP"}],
        "volumeMounts": io_mounts,
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        # The client's summary JSON (under 4096 bytes) becomes state.terminated.message: status reads it there.
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod_spec["initContainers"] = [engine]
    pod_spec["containers"] = [client]
    pod_spec["restartPolicy"] = "Never"  # the Job retries a shard as a new pod (backoffLimitPerIndex needs Never)
    pt = bj.spec.pod_template
    labels = {**pt.labels, **batch_labels(name), **_managed()}
    annotations = {
        **pt.annotations,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(objects.HTTP_PORT),
        "prometheus.io/path": "/metrics",
    }
    template = {"metadata": {"labels": dict(sorted(labels.items())), "annotations": annotations}, "spec": pod_spec}
    template["metadata"]["annotations"][objects.ANN_SPEC_HASH] = objects._hash(template)
    template["metadata"]["annotations"] = dict(sorted(template["metadata"]["annotations"].items()))
    return template


def spec_hash(bj: VLMBatchJob) -> str:
    """:data:`ANN_BATCH_SPEC_HASH` of ``bj``'s spec."""
    return objects._hash(bj.spec.model_dump(mode="json", exclude=set(MUTABLE_FIELDS)))


def job(bj: VLMBatchJob, plan: objects.RenderPlan, settings: ClientSettings) -> dict[str, Any]:
    """The Indexed Job of ``bj`` (name: the object's), owned by it."""
    spec = bj.spec
    m = bj.metadata
    labels = {**batch_labels(m["name"]), **_managed()}
    if bj.queue_name:
        labels[KUEUE_QUEUE_LABEL] = bj.queue_name  # Kueue admits the Job by this label (it flips suspend itself)
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": spec.parallelism,
        "parallelism": spec.parallelism,
        "backoffLimitPerIndex": spec.backoff_limit_per_index,
        # A shard evicted or preempted (node drain, a higher-priority pod) is retried without counting against
        # backoffLimitPerIndex (Job podFailurePolicy, DisruptionTarget condition).
        "podFailurePolicy": {
            "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
        },
        "suspend": spec.suspend,
        "template": pod_template(bj, plan, settings),
    }
    if spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    obj: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": m["name"],
            "namespace": m["namespace"],
            "labels": dict(sorted(labels.items())),
            "annotations": {ANN_BATCH_SPEC_HASH: spec_hash(bj)},
            "ownerReferences": [
                {
                    "apiVersion": bj.api_version,
                    "kind": bj.kind,
                    "name": m["name"],
                    "uid": m["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }
    return obj
