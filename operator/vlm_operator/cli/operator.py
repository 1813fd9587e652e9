"""`vlmctl operator run`: the operator process (kopf), watching one namespace or the whole cluster."""

from __future__ import annotations

import argparse
import os
from typing import Any, cast


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["run"])
    parser.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch only these namespaces (repeatable)"
    )
    parser.add_argument("--peering", default="vlm-operator", help="kopf peering name (so two replicas never both act)")
    parser.add_argument("--standalone", action="store_true", help="no peering: for a single replica or a dev cluster")
    parser.add_argument(
        "--peering-priority",
        type=int,
        default=int(os.environ.get("VLM_OPERATOR_PEERING_PRIORITY", "0")),
        help="kopf peering priority: the live replica with the highest acts, the others stand by; equal priorities "
        "pause every replica, so give each its own (default 0)",
    )
    parser.add_argument(
        "--peering-lifetime",
        type=int,
        default=int(os.environ.get("VLM_OPERATOR_PEERING_LIFETIME", "15")),
        help="seconds a replica's keep-alive counts: a standby takes over at most this long after the active one "
        "dies without saying goodbye (SIGKILL, node loss). kopf's default is 60 (default 15)",
    )
    parser.add_argument(
        "--peering-check-interval",
        type=float,
        default=float(os.environ.get("VLM_OPERATOR_PEERING_CHECK_INTERVAL", "3")),
        help="how often the peering object is read for /readyz and the paused warning (default 3 s)",
    )
    parser.add_argument("--no-webhook", action="store_true", help="do not serve or register the admission webhook")
    parser.add_argument("--webhook-host", help="host the API server dials for admission (default 127.0.0.1)")
    parser.add_argument("--webhook-port", type=int, help="webhook port (default 9443)")
    parser.add_argument("--webhook-addr", help="address the webhook server binds (default 127.0.0.1)")
    parser.add_argument(
        "--liveness",
        default=None,
        help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz; readiness is /readyz on the same port (503 while "
        "kopf's peering pauses this replica)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("VLM_OPERATOR_METRICS_PORT", "8080")),
        help="serve the operator's Prometheus metrics on this port at /metrics (default 8080; 0 turns it off)",
    )
    parser.add_argument(
        "--metrics-addr",
        default=os.environ.get("VLM_OPERATOR_METRICS_ADDR", "127.0.0.1"),
        help="address the metrics server binds (default 127.0.0.1)",
    )
    parser.add_argument(
        "--hub",
        action="store_true",
        default=os.environ.get("VLM_OPERATOR_HUB", "0") == "1",
        help="resolve models outside the built-in catalog from the Hugging Face Hub ($HF_ENDPOINT, $HF_TOKEN; "
        "cached in $VLM_OPERATOR_HUB_CACHE). Off by default: air-gapped clusters get 'Unknown' instead of a wait",
    )
    parser.add_argument(
        "--hub-timeout",
        type=float,
        default=float(os.environ.get("VLM_OPERATOR_HUB_TIMEOUT", "5")),
        help="seconds per Hub request (default 5)",
    )
    parser.add_argument(
        "--hub-deadline",
        type=float,
        default=float(os.environ.get("VLM_OPERATOR_HUB_DEADLINE", "3")),
        help="the most a fit check waits on the Hub before reporting Unknown; the lookup finishes in the "
        "background and the next reconcile uses it (default 3, well inside the webhook's timeout)",
    )
    parser.add_argument("--verbose", action="store_true")


def run(args: argparse.Namespace) -> int:
    for flag, env in (
        ("webhook_host", "VLM_OPERATOR_WEBHOOK_HOST"),
        ("webhook_port", "VLM_OPERATOR_WEBHOOK_PORT"),
        ("webhook_addr", "VLM_OPERATOR_WEBHOOK_ADDR"),
    ):
        if getattr(args, flag) is not None:
            os.environ[env] = str(getattr(args, flag))
    if args.no_webhook:
        os.environ["VLM_OPERATOR_WEBHOOK"] = "0"

    import kopf

    from vlm_operator import operator_metrics

    operator_metrics.serve(args.metrics_port, args.metrics_addr)
    if args.hub:
        from vlm_operator.estimator import from_spec
        from vlm_operator.models.hub import HubResolver, HubSettings

        # The operator uses its own token (HF_TOKEN in its environment); it never reads the Secrets that
        # VLMDeployments name for their pods, so it needs no access to Secrets.
        from_spec.configure_hub(
            HubResolver(
                HubSettings(
                    token=os.environ.get("HF_TOKEN") or None,
                    timeout_s=args.hub_timeout,
                    deadline_s=args.hub_deadline,
                )
            )
        )

    import vlm_operator.handlers  # noqa: F401  (registers the handlers)

    identity = _peering_and_health(args)
    kopf.configure(verbose=args.verbose)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=args.standalone,
        peering_name=None if args.standalone else args.peering,  # a named peering is mandatory in kopf
        priority=args.peering_priority,
        identity=cast(Any, identity),  # kopf's Identity is a NewType of str
        # liveness and readiness are served by vlm_operator.health on the same URL (readiness: /readyz)
    )
    return 0


def _peering_and_health(args: argparse.Namespace) -> str:
    """Set up the peering monitor and the health server (started in kopf's loop); returns kopf's identity."""
    from vlm_operator import health, kube, peering

    identity = peering.own_identity()
    monitor = None
    if not args.standalone:
        monitor = peering.PeeringMonitor(
            get=peering.kube_getter(kube.Kube(kube.new_api_client()), args.peering),
            name=args.peering,
            identity=cast(Any, identity),  # kopf's Identity is a NewType of str
            priority=args.peering_priority,
            namespaces=args.namespace,
            interval=args.peering_check_interval,
        )
    server = None
    if args.liveness:
        webhook = None
        if os.environ.get("VLM_OPERATOR_WEBHOOK", "1") != "0":
            addr = os.environ.get("VLM_OPERATOR_WEBHOOK_ADDR", "127.0.0.1")
            webhook = (
                "127.0.0.1" if addr in ("0.0.0.0", "::", "") else addr,
                int(os.environ.get("VLM_OPERATOR_WEBHOOK_PORT", "9443")),
            )
        server = health.Health(args.liveness, monitor=monitor, webhook=webhook)
    health.install(health=server, monitor=monitor, lifetime=None if args.standalone else args.peering_lifetime)
    return identity
