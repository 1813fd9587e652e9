"""Which model architectures each vLLM release serves, from ``data/vllm_architectures.json``.

The table is extracted by ``hack/vllm_flags.py`` from the model registry of each release's PyPI sdist
(``vllm/model_executor/models/registry.py``: the keys of ``_VLLM_MODELS``; ``models/__init__.py`` ``_MODELS`` before
0.6.3), together with vLLM's own ``_PREVIOUSLY_SUPPORTED_MODELS`` note. A release may still run an architecture it
does not register through its Transformers backend (``--model-impl transformers``: ``TransformersForCausalLM`` from
0.8.3, ``TransformersForMultimodalLM`` / ``TransformersMultiModalForCausalLM`` from 0.10.0), so only three cases are
refused: vLLM itself lists the architecture as removed (``_PREVIOUSLY_SUPPORTED_MODELS``), the model is
encoder-decoder (cross-attention layers: the Transformers backend is decoder-only, and vLLM dropped encoder-decoder
models other than Whisper with the V0 engine after 0.10.2), or the release has no Transformers backend for the
model's kind. Everything else not registered is a warning.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

from .version import VllmVersion, parse_version

#: Registry names of the Transformers backend, by the kind of model they run.
_BACKEND_TEXT = ("TransformersForCausalLM", "TransformersModel")
_BACKEND_MULTIMODAL = ("TransformersForMultimodalLM", "TransformersMultiModalForCausalLM")


@functools.cache
def _table() -> dict[str, Any]:
    text = resources.files("vlm_operator.releases").joinpath("data/vllm_architectures.json").read_text("utf-8")
    return cast(dict[str, Any], json.loads(text))


def _spans(architecture: str) -> list[tuple[str, str]]:
    rec = _table()["architectures"].get(architecture)
    return [(a, b) for a, b in rec["served"]] if rec else []


def known_architectures() -> frozenset[str]:
    """Every architecture some covered release registers."""
    return frozenset(_table()["architectures"])


def serving_spans(architecture: str) -> tuple[tuple[str, str], ...]:
    """The spans of covered releases that register ``architecture``, oldest first: ``(("0.6.2", "0.10.2"),)``."""
    return tuple(_spans(architecture))


@functools.cache
def _releases() -> tuple[VllmVersion, ...]:
    return tuple(parse_version(v) for v in _table()["releases"])


def _covered(version: str) -> VllmVersion:
    """The covered release whose registry answers for ``version``: itself, else the nearest covered one below it
    (the newest for a release newer than the table). Reads only this table, not the 1 MB flag table."""
    want = parse_version(version)
    below = [v for v in _releases() if v <= want]
    return below[-1] if below else _releases()[0]


def serves(version: str, architecture: str) -> bool:
    """Whether vLLM ``version`` registers ``architecture`` (natively or as a Transformers-only architecture)."""
    v = _covered(version)
    return any(parse_version(a) <= v <= parse_version(b) for a, b in _spans(architecture))


def last_release(architecture: str) -> str | None:
    """vLLM's own note of the last release that served a removed architecture (``_PREVIOUSLY_SUPPORTED_MODELS``)."""
    rec = _table()["architectures"].get(architecture)
    return str(rec["last_release"]) if rec and "last_release" in rec else None


def has_transformers_backend(version: str, multimodal: bool) -> bool:
    """Whether ``--model-impl transformers`` can run a model of this kind in ``version``."""
    return any(serves(version, name) for name in (_BACKEND_MULTIMODAL if multimodal else _BACKEND_TEXT))


def _spans_text(spans: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(a if a == b else f"{a}-{b}" for a, b in spans)


@dataclass(frozen=True)
class Support:
    """Whether a release can serve a model architecture, in the words admission and the CLI use."""

    architecture: str
    version: str
    served: bool
    #: True: the release cannot serve it (refuse); False with a message: it may, through the Transformers backend.
    refused: bool = False
    message: str | None = None
    #: The newest covered release that registers the architecture, for the fix.
    suggested_version: str | None = None


def support(version: str, architecture: str, *, multimodal: bool, encoder_decoder: bool, model: str = "") -> Support:
    """Whether vLLM ``version`` serves ``architecture`` (``model`` only names it in the message)."""
    if serves(version, architecture):
        return Support(architecture, version, True)
    spans = serving_spans(architecture)
    last = last_release(architecture)
    # the smallest step: the first release that serves it when asked for an older one, else the newest that does
    older = bool(spans) and parse_version(version) < parse_version(spans[0][0])
    suggested = (spans[0][0] if older else spans[-1][1]) if spans else None
    who = f"{architecture} ({model})" if model else architecture
    where = f"; vLLM {_spans_text(spans)} serve it" if spans else "; no release in the table registers it"
    if last:
        where += f", the last is {last}"
    backend = has_transformers_backend(version, multimodal)
    if last is not None or encoder_decoder or not backend:
        why = (
            "vLLM removed it"
            if last is not None
            else "it is an encoder-decoder model, which the Transformers backend cannot run"
            if encoder_decoder
            else f"this release has no Transformers backend for {'multimodal' if multimodal else 'text'} models"
        )
        target = last or suggested
        fix = f"use vLLM {target} (spec.engine.version, vlmctl --vllm-version)" if target else "pick another model"
        return Support(
            architecture,
            version,
            False,
            refused=True,
            message=f"vLLM {version} does not serve {who}: {why}{where}; fix: {fix}",
            suggested_version=last or suggested,
        )
    return Support(
        architecture,
        version,
        False,
        message=(
            f"vLLM {version} has no native implementation of {who}{where}; it may still run through the "
            "Transformers backend (--model-impl transformers) if the model's Transformers code supports it"
        ),
        suggested_version=suggested,
    )
