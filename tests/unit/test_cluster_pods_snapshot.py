"""The cluster snapshot a surge decision reads (reconcile.ClusterPods): one LIST pair per TTL, shared."""

from __future__ import annotations

from typing import Any

from vlm_operator.reconcile import ClusterPods


class CountingKube:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, str | None]] = []

    def list(self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
        self.calls.append((kind, namespace, field_selector))
        return [{"metadata": {"name": f"{kind.lower()}-{len(self.calls)}"}}]


def test_reconciles_within_the_ttl_share_one_list_of_nodes_and_pods() -> None:
    now = [100.0]
    snap = ClusterPods(ttl_s=1.0, clock=lambda: now[0])
    kube = CountingKube()
    first = snap.get(kube)  # type: ignore[arg-type]
    now[0] += 0.5
    assert snap.get(kube) is first  # type: ignore[arg-type]
    assert kube.calls == [("Node", None, None), ("Pod", None, "status.phase!=Succeeded,status.phase!=Failed")]
    now[0] += 0.6  # past the TTL: listed again
    second = snap.get(kube)  # type: ignore[arg-type]
    assert second is not first and len(kube.calls) == 4
