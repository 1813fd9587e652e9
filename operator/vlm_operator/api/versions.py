"""vLLM release numbers: parsing, ordering, the default release, and the engine defaults that change by release.

``engine.version`` is the single source of truth for how the operator talks to vLLM: the renderer picks flag names
from it, the estimator picks the memory formula, and the image tag defaults from it. The helpers here answer the
questions every layer asks about a version (V0 or V1 defaults, what an unset limit means) so they answer them the
same way. Facts cite ``shared/design/vllm-facts.md``; versions after 0.6.1 are the first release after the merge.
"""

from __future__ import annotations

import re
from functools import total_ordering

#: The newest vLLM release this package models, and the default ``engine.version``.
DEFAULT_VLLM_VERSION = "0.11.0"
#: The oldest release with vision-language models (LLaVA-1.5 with the ``--image-*`` flags, v0.4.0, #3042).
MIN_VLLM_VERSION = "0.4.0"
#: The official OpenAI-server image; tags are ``v<version>``.
DEFAULT_IMAGE_REPOSITORY = "vllm/vllm-openai"

#: ``engine.version`` pattern: ``0.11.0``, ``0.5.3.post1``, ``0.10.1.1``, ``0.12.0rc1``.
VERSION_PATTERN = r"^[0-9]+\.[0-9]+\.[0-9]+(\.[0-9]+)?((\.post|rc|\.dev)[0-9]+)?$"
_VERSION_RE = re.compile(r"^([0-9]+)\.([0-9]+)\.([0-9]+)(?:\.([0-9]+))?(?:(\.post|rc|\.dev)([0-9]+))?$")


@total_ordering
class VllmVersion:
    """A parsed vLLM release, ordered like the releases (``0.5.0 < 0.5.3.post1 < 0.10.0``).

    Pre-releases (``rc``/``dev``) sort before the release they precede and are treated as that release's flags by
    the ``>=`` checks only when the feature landed before them; callers compare against final releases.
    """

    __slots__ = ("_key", "text")

    def __init__(self, text: str) -> None:
        m = _VERSION_RE.match(text.strip())
        if not m:
            raise ValueError(f"{text!r} is not a vLLM release number such as {DEFAULT_VLLM_VERSION}")
        major, minor, patch, extra, tag, tagnum = m.groups()
        # A pre-release (rc, dev) sorts before the final release; a post release after it.
        stage = 0 if tag is None else (1 if tag == ".post" else -1)
        self._key: tuple[int, ...] = (int(major), int(minor), int(patch), int(extra or 0), stage, int(tagnum or 0))
        self.text = text.strip()

    @property
    def release(self) -> tuple[int, int, int]:
        return (self._key[0], self._key[1], self._key[2])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = VllmVersion(other)
        return isinstance(other, VllmVersion) and self._key == other._key

    def __lt__(self, other: VllmVersion | str) -> bool:
        if isinstance(other, str):
            other = VllmVersion(other)
        return self._key < other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"VllmVersion({self.text!r})"


def default_image(version: str) -> str:
    """The image used when ``engine.image`` is unset: ``vllm/vllm-openai:v<version>``."""
    return f"{DEFAULT_IMAGE_REPOSITORY}:v{version}"


def is_v1_default(version: VllmVersion | str) -> bool:
    """Whether the V1 engine is vLLM's default at this release (v0.8.0 onward)."""
    return VllmVersion(str(version)) >= "0.8.0"


def default_limit_per_prompt(version: VllmVersion | str) -> int:
    """What vLLM allows per prompt for a modality that ``--limit-mm-per-prompt`` does not name.

    1 in V0 and in V1 before d9fc8cd9d (#15799, "[V1] Enable multi-input by default", ~v0.8.4); 999 from then on
    (``get_limit_per_prompt()`` in vllm/config/multimodal.py). Before v0.5.5 there is no flag and the limit is 1.
    """
    return 999 if VllmVersion(str(version)) >= "0.8.4" else 1


def default_gpu_memory_utilization(version: VllmVersion | str) -> float:
    """vLLM's ``--gpu-memory-utilization`` default: 0.90, and 0.92 from v0.21.0 (96a85c575, #38284)."""
    return 0.92 if VllmVersion(str(version)) >= "0.21.0" else 0.90


def default_processor_cache_gib(version: VllmVersion | str) -> float:
    """Host RAM vLLM gives the multimodal processor cache by default: 4 GiB (``VLLM_MM_INPUT_CACHE_GIB`` from
    #14805, then ``--mm-processor-cache-gb``); before v0.8.0 there was no such cache worth counting."""
    return 4.0 if VllmVersion(str(version)) >= "0.8.0" else 0.0


def default_api_server_count(version: VllmVersion | str, data_parallel_size: int) -> int:
    """``--api-server-count`` default: 1, and ``data_parallel_size`` from 803e3f3f6 (#32525, ~v0.15)."""
    return data_parallel_size if VllmVersion(str(version)) >= "0.15.0" else 1
