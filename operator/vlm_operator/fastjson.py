"""JSON decoding for the API server's responses and watch streams: orjson where it is installed, else the stdlib.

Decoding watch events was the largest single cost of the operator's Python time in the scale benchmark (about a fifth
of it at 100 objects: every event of every kind the operator watches, through kopf's stream and through the
operator's own cluster watch; docs/performance.md). orjson decodes the same objects 2.3-2.5x faster (a Deployment's
watch event, 7.6 kB: 51 µs with ``json``, 21 µs with orjson, on the 2-core benchmark VM).

What the API server sends decodes the same either way. The one difference is an integer beyond 64 bits, which
orjson reads as a float; the API server never writes one (it decodes JSON numbers into int64 or float64, and writes
those back: k8s.io/apimachinery ``pkg/util/json/json.go``, ``convertNumber``). An invalid document raises
``json.JSONDecodeError`` either way (orjson's error is a subclass of it; :func:`loads` retries such a document with
``json``, so the error and its message are ``json``'s).

kopf decodes its watch streams with the ``json`` module it imported (kopf 1.45.2, ``kopf/_cogs/clients/api.py``,
``stream``: ``json.loads(line.decode('utf-8'))``); :func:`install_in_kopf` gives that module reference a ``loads``
of this module's and leaves everything else of ``json`` in place. A kopf without that reference is left alone.
"""

from __future__ import annotations

import json
import logging
import types
from collections.abc import Callable
from typing import Any

_log = logging.getLogger(__name__)

_fast: Callable[[bytes | bytearray | memoryview | str], Any] | None
try:
    import orjson

    _fast = orjson.loads
except ImportError:  # pragma: no cover - orjson is a dependency; a build without it still decodes
    _fast = None


def loads(data: bytes | bytearray | str) -> Any:
    """Decode one JSON document (``bytes`` or ``str``), as ``json.loads`` would."""
    if _fast is not None:
        try:
            return _fast(data)
        except json.JSONDecodeError:
            pass  # invalid: json raises its own error, with its message
    return json.loads(data)


def accelerated() -> bool:
    """Whether :func:`loads` uses orjson."""
    return _fast is not None


class _JsonWithFastLoads(types.ModuleType):
    """The ``json`` module as kopf sees it after :func:`install_in_kopf`: ``loads`` is :func:`loads`."""

    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)


def install_in_kopf() -> bool:
    """Decode kopf's watch streams with :func:`loads`; True when installed (or already), False when this kopf has no
    ``json`` reference to replace."""
    try:
        from kopf._cogs.clients import api
    except ImportError:
        return False
    current = getattr(api, "json", None)
    if isinstance(current, _JsonWithFastLoads):
        return True
    if current is not json:
        _log.info("kopf's API client has no json module reference; its watch streams decode with the stdlib")
        return False
    shim = _JsonWithFastLoads("json")
    shim.loads = loads  # type: ignore[attr-defined]
    api.json = shim  # type: ignore[attr-defined]
    return True
