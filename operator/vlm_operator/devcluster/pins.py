"""The one place that pins the versions of the local control plane's components.

Every binary of the dev cluster is compiled from the Go module proxy at these versions. The cache directory is keyed
on all of them, so changing a pin triggers a rebuild of exactly what changed.
"""

from __future__ import annotations

#: k8s.io/kubernetes release for kube-apiserver, kube-controller-manager, kube-scheduler and kubectl.
KUBERNETES = "v1.36.1"
#: go.etcd.io/etcd/server/v3 release. kwokctl pairs k8s 1.34-1.36 with etcd 3.6.x
#: (kwok@HEAD:pkg/kwokctl/components/etcd_version.go); 3.6.16 is the newest 3.6 the proxy serves here.
ETCD = "v3.6.16"
#: sigs.k8s.io/kwok release; v0.8.0 is built on k8s.io/* v0.36.1 (kwok@v0.8.0:go.mod).
KWOK = "v0.8.0"
#: helm.sh/helm/v4 release for the chart tests (lint, template, install). Its go.mod has no replace directives
#: (helm@v4.3.2:go.mod), so a plain `go install` builds it. Cached apart from the kube binaries: a kube pin change
#: does not rebuild Helm.
HELM = "v4.3.2"


def staging_version(kubernetes: str = KUBERNETES) -> str:
    """k8s staging modules (k8s.io/api, ...) are tagged v0.<minor>.<patch> for kubernetes v1.<minor>.<patch>."""
    return "v0." + kubernetes.removeprefix("v1.")


def cache_key() -> str:
    return f"k8s-{KUBERNETES}-etcd-{ETCD}-kwok-{KWOK}"
