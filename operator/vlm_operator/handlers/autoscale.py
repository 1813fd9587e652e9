"""The kopf daemon of the built-in autoscaler (``scaling.mode: Internal``): one per VLMDeployment in that mode, kopf
starts it when the mode becomes ``Internal`` and stops it when it changes or the object goes. The loop itself is
:class:`vlm_operator.autoscale.loop.Autoscaler`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import kopf

from vlm_operator import kube as kube_client
from vlm_operator import operator_metrics as op_metrics
from vlm_operator import reconcile
from vlm_operator.autoscale import report as reports
from vlm_operator.autoscale.loop import Autoscaler, Logger, aiohttp_fetch

GROUP, VERSION, PLURAL = "vlmops.io", "v1alpha1", "vlmdeployments"


def _internal(spec: kopf.Spec, **_: Any) -> bool:
    scaling = spec.get("scaling") or {}
    return bool(scaling.get("mode") == "Internal")


@kopf.daemon(GROUP, VERSION, PLURAL, id="autoscaler", when=_internal, cancellation_timeout=10.0)
async def autoscaler_daemon(
    namespace: str | None, name: str | None, memo: kopf.Memo, stopped: kopf.DaemonStopped, logger: Logger, **_: Any
) -> None:
    if not namespace or not name:
        return
    kube = kube_client.shared()

    async def reconcile_now() -> None:
        await asyncio.to_thread(reconcile.reconcile, kube, namespace, name, logger)

    # trust_env=False (the default): pod IPs are dialled directly, never through a proxy.
    async with aiohttp.ClientSession() as session:
        scaler: Autoscaler | None = memo.get("autoscaler")
        if scaler is None:
            scaler = Autoscaler(kube, namespace, name, aiohttp_fetch(session), log=logger)
            memo["autoscaler"] = scaler  # the policy's state survives a daemon restart
        scaler.fetch, scaler.on_change, scaler.log = aiohttp_fetch(session), reconcile_now, logger
        logger.info("autoscaler started")
        try:
            while not stopped:
                started = time.monotonic()
                interval = await scaler.poll_once()
                await stopped.wait(max(0.0, interval - (time.monotonic() - started)))
        finally:
            reports.clear(namespace, name)
            op_metrics.forget_autoscaler(namespace, name)
            logger.info("autoscaler stopped")
