"""The VLMDeployment specs the CEL tests share: a base spec, one bad case per CEL rule (``CEL_CASES``), the cases whose
message names the value (``NAMED_CASES``) and object names at the Kubernetes limits (``NAME_CASES``).

The unit tests check the pydantic mirror refuses each case with the message (``tests/unit/test_api_models.py``,
``tests/unit/test_cel_messages.py``); the integration tests send the same objects to a real API server
(``tests/integration/test_crd_cel.py``, ``test_generated_specs.py``).
"""

from __future__ import annotations

import copy
from typing import Any

BASE: dict[str, Any] = {"model": {"name": "llava-hf/llava-1.5-7b-hf"}}
PVC = {"persistentVolumeClaim": {"claimName": "weights"}}
LEGACY_OK = {
    "imageInputType": "pixel_values",
    "imageTokenId": 32000,
    "imageInputShape": [1, 3, 336, 336],
    "imageFeatureSize": 576,
}


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def spec(**patch: Any) -> dict[str, Any]:
    return merge(BASE, patch)


#: (id, spec dict, message): one bad case per CEL rule in the CRD.
CEL_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "env-valuefrom-one-source",
        spec(engine={"env": [{"name": "X", "valueFrom": {}}]}),
        "valueFrom must set exactly one of secretKeyRef, configMapKeyRef or fieldRef",
    ),
    ("env-value-xor", spec(engine={"env": [{"name": "FOO"}]}), "an env var sets exactly one of value or valueFrom"),
    (
        "env-inline-credential",
        spec(engine={"env": [{"name": "OPENAI_API_KEY", "value": "sk-123"}]}),
        "must take its value from valueFrom.secretKeyRef",
    ),
    (
        "cache-both-sources",
        spec(model={"cache": {**PVC, "emptyDir": {}}}),
        "cache sets persistentVolumeClaim or emptyDir, not both",
    ),
    (
        "local-path-without-pvc",
        spec(model={"name": "/var/cache/huggingface/llava"}),
        "a local model path must lie on cache.persistentVolumeClaim, under cache.mountPath",
    ),
    (
        "offline-without-pvc",
        spec(model={"offline": True}),
        "offline mode needs a pre-filled cache.persistentVolumeClaim",
    ),
    (
        "offline-with-endpoint",
        spec(model={"offline": True, "hfEndpoint": "https://hf-mirror.example", "cache": PVC}),
        "hfEndpoint has no effect with offline: true",
    ),
    (
        "image-without-version",
        spec(engine={"image": "registry.example/vllm:custom"}),
        "a custom engine.image must come with an explicit engine.version",
    ),
    (
        "extra-args-shadow",
        spec(engine={"extraArgs": ["--max-model-len=4096"]}),
        "extraArgs must not repeat a flag that a typed field renders or the operator owns",
    ),
    (
        "env-operator-owned",
        spec(engine={"env": [{"name": "HF_HOME", "value": "/tmp"}]}),
        "env must not set HF_TOKEN",
    ),
    (
        "batched-tokens-below-seqs",
        spec(engine={"maxNumBatchedTokens": 8, "maxNumSeqs": 16}),
        "maxNumBatchedTokens must be at least maxNumSeqs",
    ),
    (
        "shm-object-size-without-shm",
        spec(multimodal={"processorCache": {"shmMaxObjectSizeMiB": 64}}),
        "processorCache.shmMaxObjectSizeMiB applies only with type: shm",
    ),
    (
        "legacy-inputs-apart",
        spec(engine={"version": "0.5.0"}, multimodal={"legacy": {"imageInputType": "pixel_values"}}),
        "legacy imageInputType, imageTokenId, imageInputShape and imageFeatureSize are set together",
    ),
    (
        "legacy-pixel-shape-rank",
        spec(
            engine={"version": "0.5.0"},
            multimodal={"legacy": {**LEGACY_OK, "imageInputShape": [1, 3, 336]}},
        ),
        "legacy imageInputShape for pixel_values has four dimensions",
    ),
    (
        "legacy-feature-size",
        spec(engine={"version": "0.5.0"}, multimodal={"legacy": {**LEGACY_OK, "imageFeatureSize": 577}}),
        "legacy imageFeatureSize must equal (H/14)² for a square imageInputShape",
    ),
    (
        "legacy-embed-shape",
        spec(
            engine={"version": "0.4.2"},
            multimodal={
                "legacy": {
                    "imageInputType": "image_features",
                    "imageTokenId": 32000,
                    "imageInputShape": [1, 576, 1024],
                    "imageFeatureSize": 575,
                }
            },
        ),
        "legacy imageInputShape for image_features is batch, imageFeatureSize, hidden size",
    ),
    (
        "legacy-with-modern",
        spec(engine={"version": "0.5.0"}, multimodal={"legacy": LEGACY_OK, "limitPerPrompt": {"image": {"count": 1}}}),
        "multimodal.legacy (vLLM 0.4.0–0.5.0) cannot be combined with",
    ),
    (
        "gpu-product-and-memory",
        spec(resources={"gpu": {"product": "L4", "minMemoryGiB": 20}}),
        "resources.gpu sets product or minMemoryGiB, not both",
    ),
    (
        "reserved-pod-label",
        spec(podTemplate={"labels": {"vlmops.io/owner": "me"}}),
        "podTemplate.labels must not set vlmops.io/",
    ),
    (
        "non-root-without-user",
        spec(podTemplate={"securityContext": {"runAsNonRoot": True}}),
        "podTemplate.securityContext.runAsNonRoot: true needs runAsUser",
    ),
    (
        "non-root-as-uid-0",
        spec(podTemplate={"securityContext": {"runAsNonRoot": True, "runAsUser": 0}}),
        "podTemplate.securityContext.runAsUser 0 is root",
    ),
    (
        "prometheus-without-url",
        spec(scaling={"metrics": {"type": "Prometheus"}}),
        "metrics.type Prometheus needs metrics.prometheusURL",
    ),
    (
        "min-above-max",
        spec(scaling={"minReplicas": 3, "maxReplicas": 2}),
        "scaling.minReplicas must not exceed scaling.maxReplicas",
    ),
    ("internal-without-max", spec(scaling={"mode": "Internal"}), "scaling.mode Internal needs scaling.maxReplicas"),
    (
        "always-surge-zero",
        spec(rollout={"surgePolicy": "Always", "maxSurge": 0}),
        "rollout.surgePolicy Always needs maxSurge >= 1",
    ),
    (
        "never-surge-zero-unavailable",
        spec(rollout={"surgePolicy": "Never", "maxUnavailable": 0}),
        "rollout.surgePolicy Never needs maxUnavailable >= 1",
    ),
    (
        "interleave-without-string-format",
        spec(multimodal={"interleaveStrings": True}),
        "multimodal.interleaveStrings needs engine.chatTemplateContentFormat: string",
    ),
    (
        "gpu-count-mismatch",
        spec(engine={"tensorParallelSize": 2}, resources={"gpu": {"count": 4}}),
        "resources.gpu.count must equal engine.tensorParallelSize x pipelineParallelSize x dataParallelSize",
    ),
    (
        "mig-needs-product",
        spec(resources={"gpu": {"migProfile": "3g.40gb"}}),
        "resources.gpu.migProfile needs resources.gpu.product",
    ),
    (
        "mig-is-one-gpu",
        spec(engine={"tensorParallelSize": 2}, resources={"gpu": {"product": "A100-80GB", "migProfile": "3g.40gb"}}),
        "resources.gpu.migProfile serves from one MIG slice",
    ),
]


#: (id, spec, the words both the API server and the Python model must say)
NAMED_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "extra-args-names-the-flag",
        spec(engine={"extraArgs": ["--max-model-len", "4096"]}),
        "set the typed field instead: '--max-model-len'",
    ),
    (
        "extra-args-names-the-flag-with-value",
        spec(engine={"extraArgs": ["--max-model-len=4096"]}),
        "set the typed field instead: '--max-model-len'",
    ),
    (
        "extra-args-api-key-names-the-flag-not-the-key",
        spec(engine={"extraArgs": ["--api-key=sk-secret-123"]}),
        "set the typed field instead: '--api-key'",
    ),
    (
        "env-owned-names-the-var",
        spec(engine={"env": [{"name": "HF_HOME", "value": "/x"}]}),
        "(see docs/api.md): HF_HOME",
    ),
    ("env-xor-names-the-var", spec(engine={"env": [{"name": "FOO"}]}), "one of value or valueFrom: FOO"),
    (
        "env-inline-credential-names-the-var-not-the-value",
        spec(engine={"env": [{"name": "OPENAI_API_KEY", "value": "sk-secret-123"}]}),
        "not an inline value: OPENAI_API_KEY",
    ),
    (
        "batched-tokens-values",
        spec(engine={"maxNumBatchedTokens": 8, "maxNumSeqs": 16}),
        "(vLLM refuses to start otherwise): 8 < 16",
    ),
    (
        "local-path-names-the-path",
        spec(model={"name": "/var/cache/huggingface/llava"}),
        "under cache.mountPath: /var/cache/huggingface/llava",
    ),
    (
        "gpu-count-values",
        spec(engine={"tensorParallelSize": 2}, resources={"gpu": {"count": 4}}),
        "dataParallelSize: count 4, engine needs 2",
    ),
    (
        "mig-gpus",
        spec(engine={"tensorParallelSize": 2}, resources={"gpu": {"product": "A100-80GB", "migProfile": "3g.40gb"}}),
        "use whole GPUs for parallelism: engine needs 2 GPUs",
    ),
    (
        "reserved-label-names-the-key",
        spec(podTemplate={"labels": {"team": "a", "vlmops.io/owner": "me"}}),
        "(the operator's selector labels): vlmops.io/owner",
    ),
    ("min-above-max-values", spec(scaling={"minReplicas": 3, "maxReplicas": 2}), "scaling.maxReplicas: 3 > 2"),
    ("always-surge-value", spec(rollout={"surgePolicy": "Always", "maxSurge": 0}), "maxSurge >= 1: got 0"),
    (
        "never-unavailable-value",
        spec(rollout={"surgePolicy": "Never", "maxUnavailable": 0}),
        "maxUnavailable >= 1: got 0",
    ),
    (
        "legacy-pixel-shape-rank",
        spec(engine={"version": "0.5.0"}, multimodal={"legacy": {**LEGACY_OK, "imageInputShape": [1, 3, 336]}}),
        "batch, channels, height, width: got 3",
    ),
    (
        "legacy-feature-size-value",
        spec(engine={"version": "0.5.0"}, multimodal={"legacy": {**LEGACY_OK, "imageFeatureSize": 577}}),
        "(576 for 1,3,336,336): got 577 for H 336",
    ),
    (
        "legacy-with-modern-names-the-field",
        spec(engine={"version": "0.5.0"}, multimodal={"legacy": LEGACY_OK, "processorKwargs": {"num_crops": 4}}),
        "enableEmbeds: set: processorKwargs",
    ),
]

#: (name, refused with these words, or None when it must be admitted)
NAME_CASES: list[tuple[str, str | None]] = [
    ("a" * 63, None),
    ("x" + "-0" * 31, None),  # 63 characters, ending in a digit
    ("a" * 64, "metadata.name must be at most 63 characters"),
    ("b" * 253, "metadata.name must be at most 63 characters"),
    ("with.dots", "metadata.name must be a DNS-1035 label"),
    ("9starts-with-a-digit", "metadata.name must be a DNS-1035 label"),
]
