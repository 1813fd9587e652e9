"""`vlmctl operator run`: the operator process (kopf), watching one namespace or the whole cluster."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from vlm_operator.settings import Settings, SettingsError

if TYPE_CHECKING:
    from vlm_operator.peering import PeeringMonitor


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
        default=None,
        help="kopf peering priority: the live replica with the highest acts, the others stand by; equal priorities "
        "pause every replica, so give each its own (default 0)",
    )
    parser.add_argument(
        "--peering-lifetime",
        type=int,
        default=None,
        help="seconds a replica's keep-alive counts: a standby takes over at most this long after the active one "
        "dies without saying goodbye (SIGKILL, node loss). kopf's default is 60 (default 15)",
    )
    parser.add_argument(
        "--peering-check-interval",
        type=float,
        default=None,
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
        default=None,
        help="serve the operator's Prometheus metrics on this port at /metrics (default 8080; 0 turns it off)",
    )
    parser.add_argument(
        "--metrics-addr",
        default=None,
        help="address the metrics server binds (default 127.0.0.1)",
    )
    parser.add_argument(
        "--hub",
        action="store_true",
        default=None,
        help="resolve models outside the built-in catalog from the Hugging Face Hub ($HF_ENDPOINT, $HF_TOKEN; "
        "cached in $VLM_OPERATOR_HUB_CACHE). Off by default: air-gapped clusters get 'Unknown' instead of a wait",
    )
    parser.add_argument(
        "--hub-timeout",
        type=float,
        default=None,
        help="seconds per Hub request (default 5)",
    )
    parser.add_argument(
        "--hub-deadline",
        type=float,
        default=None,
        help="the most a fit check waits on the Hub before reporting Unknown; the lookup finishes in the "
        "background and the next reconcile uses it (default 3, well inside the webhook's timeout)",
    )
    parser.add_argument("--verbose", action="store_true")


def settings_from(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """The operator's settings: the ``VLM_OPERATOR_*`` environment (read now, at start-up), overridden by the flags
    given on the command line."""
    return Settings.from_env(env).with_overrides(
        webhook=False if args.no_webhook else None,
        webhook_host=args.webhook_host,
        webhook_port=args.webhook_port,
        webhook_addr=args.webhook_addr,
        hub=True if args.hub else None,
        hub_timeout=args.hub_timeout,
        hub_deadline=args.hub_deadline,
        peering_priority=args.peering_priority,
        peering_lifetime=args.peering_lifetime,
        peering_check_interval=args.peering_check_interval,
        metrics_port=args.metrics_port,
        metrics_addr=args.metrics_addr,
    )


def run(args: argparse.Namespace) -> int:
    from vlm_operator import memdiag

    memdiag.limit_malloc_arenas()  # before any thread starts (see memdiag; VLM_OPERATOR_MALLOC_ARENAS=0: glibc's own)
    memdiag.start_trimmer()  # off unless VLM_OPERATOR_MALLOC_TRIM_S is set
    try:
        settings = settings_from(args)
    except SettingsError as exc:
        print(f"vlmctl operator run: {exc}", file=sys.stderr)
        return 1

    import kopf

    from vlm_operator import operator_metrics

    memdiag.install()  # off unless VLM_OPERATOR_MEMDUMP is set
    operator_metrics.serve(settings.metrics_port, settings.metrics_addr)
    if settings.hub:
        from vlm_operator.estimator import from_spec
        from vlm_operator.models.hub import HubResolver, HubSettings

        # The operator uses its own token (HF_TOKEN in its environment); it never reads the Secrets that
        # VLMDeployments name for their pods, so it needs no access to Secrets.
        from_spec.configure_hub(
            HubResolver(
                HubSettings(
                    token=os.environ.get("HF_TOKEN") or None,
                    cache_dir=settings.hub_cache_dir(),
                    timeout_s=settings.hub_timeout,
                    deadline_s=settings.hub_deadline,
                )
            )
        )

    from vlm_operator import fastjson, handlers

    fastjson.install_in_kopf()  # kopf's watch streams decode with orjson (see fastjson)
    # No log line of the operator's shows where it was logged from (kopf's format: time, logger, level, message), so
    # no record looks for its caller's frame: the switch the logging HOWTO's "Optimization" section names. kopf logs a
    # line per handler run on every watch event (most of them dropped by a filter, after the record is made).
    logging._srcfile = None
    handlers.register(settings, namespaces=args.namespace)

    identity = _peering_and_health(args, settings)
    kopf.configure(verbose=args.verbose)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=args.standalone,
        peering_name=None if args.standalone else args.peering,  # a named peering is mandatory in kopf
        priority=settings.peering_priority,
        identity=cast(Any, identity),  # kopf's Identity is a NewType of str
        # liveness and readiness are served by vlm_operator.health on the same URL (readiness: /readyz)
    )
    return 0


def peering_monitor(
    args: argparse.Namespace, settings: Settings, identity: str, get: Any = None
) -> PeeringMonitor | None:
    """The peering monitor of a replica that runs with peering (None with ``--standalone``); ``get`` reads the peering
    object (the API server's, by default)."""
    from vlm_operator import kube, peering

    if args.standalone:
        return None
    return peering.PeeringMonitor(
        get=get or peering.kube_getter(kube.Kube(kube.new_api_client()), args.peering),
        name=args.peering,
        identity=identity,
        priority=settings.peering_priority,
        namespaces=args.namespace or (),
        # from the settings, which the flag overrides: ``args.peering_check_interval`` is None when the flag is not
        # given (a None interval stopped the monitor after its first check)
        interval=settings.peering_check_interval,
    )


def _peering_and_health(args: argparse.Namespace, settings: Settings) -> str:
    """Set up the peering monitor and the health server (started in kopf's loop); returns kopf's identity."""
    from vlm_operator import handlers, health, peering

    identity = peering.own_identity()
    monitor = peering_monitor(args, settings, identity)
    if monitor is not None:  # the drift resync stops while kopf's peering pauses this replica
        handlers.RESYNC.paused = lambda: monitor.state.paused
    server = None
    if args.liveness:
        server = health.Health(args.liveness, monitor=monitor, webhook=settings.webhook_dial())
    health.install(health=server, monitor=monitor, lifetime=None if args.standalone else settings.peering_lifetime)
    return identity
