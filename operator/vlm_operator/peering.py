"""Peering made visible: a loud warning while kopf is paused, readiness that says so, and the takeover figures.

kopf's peering (kopf docs, "Peering") keeps two replicas from acting at once: each replica writes a keep-alive into
a ``ClusterKopfPeering`` (cluster-wide) or ``KopfPeering`` (per watched namespace) object, and pauses while a live peer
with a higher priority exists, or any live peer with the same priority. With a named peering, kopf also pauses while
that object does not exist, and it says so only at DEBUG (``Keep-alive in 'vlm-operator' cluster-wide: not found``,
kopf 1.45.2 ``kopf/_core/engines/peering.py``, ``touch``). An operator started before the object is created serves
its webhook and reconciles nothing, silently.

:class:`PeeringMonitor` reads the peering object every few seconds and mirrors kopf's decision
(:func:`evaluate`, the same rules as ``process_peering_event`` there):

* ``missing-crd`` / ``missing-object``: kopf is paused. One WARNING says what to create, or that ``--standalone``
  exists; readiness reports 503. kopf resumes by itself once the object appears (its peering watcher sees the
  ADDED event); the monitor logs that and readiness turns 200.
* ``conflict``: a live peer with the same priority: kopf pauses every replica. WARNING, readiness 503.
* ``standby``: a live peer with a higher priority acts; this replica still answers the webhook. Ready.
* ``active``: this replica acts. Ready.

:mod:`vlm_operator.health` serves the result at ``/readyz`` next to the liveness path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

GROUP_VERSION = "kopf.dev/v1"
CLUSTER_KIND, CLUSTER_PLURAL = "ClusterKopfPeering", "clusterkopfpeerings"
NAMESPACED_KIND, NAMESPACED_PLURAL = "KopfPeering", "kopfpeerings"
#: kopf's default peer lifetime (kopf 1.45.2 ``kopf/_cogs/configs/configuration.py``, ``PeeringSettings.lifetime``).
KOPF_DEFAULT_LIFETIME = 60

Phase = Literal["standalone", "active", "standby", "conflict", "missing-object", "missing-crd", "unknown"]
READY_PHASES: frozenset[str] = frozenset({"standalone", "active", "standby"})

log = logging.getLogger("vlm_operator.peering")


@dataclass(frozen=True)
class PeeringState:
    phase: Phase
    message: str
    peers: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return self.phase in READY_PHASES

    @property
    def paused(self) -> bool:
        """Whether kopf reconciles nothing in this replica right now."""
        return self.phase not in ("standalone", "active")


def own_identity() -> str:
    """This replica's peer id, in kopf's form: ``$POD_ID``, else ``user@host/started/random``."""
    pod = os.environ.get("POD_ID")
    if pod:
        return pod
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    return f"{getpass.getuser()}@{socket.gethostname()}/{now}/{secrets.token_hex(2)}"


def _parse_time(text: str) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def evaluate(
    body: Mapping[str, Any] | None, *, identity: str, priority: int, now: dt.datetime, what: str = "peering"
) -> PeeringState:
    """kopf's verdict for this replica from the peering object ``body`` (``None``: it does not exist). Pure."""
    if body is None:
        return PeeringState("missing-object", f"{what} does not exist")
    status = body.get("status") or {}
    higher: list[str] = []
    same: list[str] = []
    for peer_id, info in status.items() if isinstance(status, Mapping) else ():
        if peer_id == identity or not isinstance(info, Mapping):
            continue
        lifetime = dt.timedelta(seconds=int(info.get("lifetime", KOPF_DEFAULT_LIFETIME)))
        seen = _parse_time(str(info.get("lastseen", ""))) if info.get("lastseen") else now
        if seen is None or seen + lifetime <= now:
            continue  # dead: kopf ignores it (and cleans it up)
        prio = int(info.get("priority", 0))
        if prio > priority:
            higher.append(f"{peer_id} (priority {prio})")
        elif prio == priority:
            same.append(f"{peer_id} (priority {prio})")
    if higher:
        return PeeringState("standby", f"standby: {', '.join(higher)} acts", tuple(higher))
    if same:
        return PeeringState(
            "conflict",
            f"paused: live peers with the same priority {priority}: {', '.join(same)}; kopf pauses all of them. "
            "Give each replica its own --peering-priority",
            tuple(same),
        )
    return PeeringState("active", "active")


#: ``get(namespace) -> (crd_installed, body or None)``; raises on API errors.
Getter = Callable[[str | None], tuple[bool, dict[str, Any] | None]]


def kube_getter(kube: Any, name: str) -> Getter:
    """A :data:`Getter` over :class:`vlm_operator.kube.Kube` for the peering object ``name``."""

    def get(namespace: str | None) -> tuple[bool, dict[str, Any] | None]:
        kind = NAMESPACED_KIND if namespace else CLUSTER_KIND
        plural = NAMESPACED_PLURAL if namespace else CLUSTER_PLURAL
        body = kube.get(GROUP_VERSION, kind, namespace, name)
        if body is not None:
            return True, body
        return plural in kube.api_resources(GROUP_VERSION), None

    return get


def create_hint(name: str, namespace: str | None) -> str:
    kind = NAMESPACED_KIND if namespace else CLUSTER_KIND
    meta = f'"name": "{name}"' + (f', "namespace": "{namespace}"' if namespace else "")
    return f'kubectl apply -f - <<<\'{{"apiVersion": "kopf.dev/v1", "kind": "{kind}", "metadata": {{{meta}}}}}\''


@dataclass
class PeeringMonitor:
    """Polls the peering object(s) and keeps :attr:`state` in step with kopf's pause."""

    get: Getter
    name: str
    identity: str
    priority: int = 0
    namespaces: Sequence[str] = ()  # empty: cluster-wide (ClusterKopfPeering)
    interval: float = 3.0
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    logger: logging.Logger = field(default=log)
    state: PeeringState = field(default_factory=lambda: PeeringState("unknown", "peering not checked yet"))
    #: (phase, monotonic time) of every transition; the two-replica test reads takeover times from the log instead.
    transitions: list[tuple[str, float]] = field(default_factory=list)

    def check(self) -> PeeringState:
        scopes: Sequence[str | None] = list(self.namespaces) or [None]
        states: list[PeeringState] = []
        for ns in scopes:
            kind = NAMESPACED_KIND if ns else CLUSTER_KIND
            what = f"{kind} {self.name!r}" + (f" in namespace {ns!r}" if ns else "")
            crd, body = self.get(ns)
            if not crd:
                states.append(
                    PeeringState(
                        "missing-crd",
                        f"the {kind} CRD (kopf.dev/v1) is not installed: "
                        "kubectl apply --server-side -f crds/kopf-peering.yaml, "
                        f"then {create_hint(self.name, ns)}",
                    )
                )
                continue
            st = evaluate(body, identity=self.identity, priority=self.priority, now=self.clock(), what=what)
            if st.phase == "missing-object":
                st = PeeringState("missing-object", f"{what} does not exist: {create_hint(self.name, ns)}")
            states.append(st)
        order: list[Phase] = ["missing-crd", "missing-object", "conflict", "standby", "active"]
        return min(states, key=lambda s: order.index(s.phase) if s.phase in order else len(order))

    def update(self, new: PeeringState, monotonic: float) -> None:
        old = self.state
        self.state = new
        if new.phase == old.phase:
            return
        self.transitions.append((new.phase, monotonic))
        if new.phase in ("missing-crd", "missing-object", "conflict"):
            self.logger.warning(
                "\n%s\nPAUSED: this operator reconciles nothing (kopf peering %r): %s.\n"
                "Or run a single replica without peering: vlmctl operator run --standalone.\n"
                "It resumes by itself once that is fixed; readiness (/readyz) reports 503 until then.\n%s",
                "=" * 100,
                self.name,
                new.message,
                "=" * 100,
            )
        elif old.phase in ("missing-crd", "missing-object", "conflict"):
            self.logger.warning("peering %r: %s; resuming (was: %s)", self.name, new.phase, old.phase)
        else:
            self.logger.info("peering %r: %s (was: %s)", self.name, new.message, old.phase)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                new = await asyncio.to_thread(self.check)
            except Exception as exc:  # the API server is unreachable: keep the last verdict
                self.logger.debug("peering %r: cannot read it: %s", self.name, exc)
            else:
                self.update(new, loop.time())
            await asyncio.sleep(self.interval)
