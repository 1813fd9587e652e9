"""The one vLLM release-number parser, and the default release.

Every layer (API validation, renderer, estimator, simulator, autoscaler) parses ``engine.version`` here, so ``0.10``,
``v0.10.0`` and ``0.10.0+cu128`` are the same release everywhere and pre/post releases order the same way.
"""

from __future__ import annotations

import re
from functools import total_ordering
from typing import Final, TypeAlias

#: The release the operator runs when ``spec.engine.version`` is unset (the admission webhook writes it into the
#: stored spec, so a later operator with a newer default never re-renders an existing object). Why this release:
#: docs/vllm-releases.md ("The default release"). In short: the newest release whose flag table, served-architecture
#: table and defaults were extracted from its PyPI sdist and whose argument parser the opt-in real-parser tier
#: (``hack/vllm_venv.sh``) installs; 0.33.0 needs ``certifi>=2026.10.19``, which the package index CI reaches lacks.
DEFAULT_VLLM_VERSION: Final = "0.32.0"
#: The oldest release with vision-language models (LLaVA-1.5 with the ``--image-*`` flags, v0.4.0, vLLM #3042).
MIN_VLLM_VERSION: Final = "0.4.0"
#: The official OpenAI-server image; tags are ``v<version>``.
DEFAULT_IMAGE_REPOSITORY: Final = "vllm/vllm-openai"

#: ``engine.version`` schema pattern (the CRD is strict: ``0.11.0``, ``0.5.3.post1``, ``0.10.1.1``, ``0.12.0rc1``).
VERSION_PATTERN: Final = r"^[0-9]+\.[0-9]+\.[0-9]+(\.[0-9]+)?((\.post|rc|\.dev)[0-9]+)?$"

# The parser is lenient where tools write versions differently: a ``v`` prefix (image tags), two parts (``0.10``),
# PEP 440 pre-release letters, and a local ``+cu128`` suffix (wheel builds).
_VERSION_RE = re.compile(
    r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[.-]?(post|rc|a|b|dev)\.?(\d+))?(?:\+[\w.]+)?$", re.IGNORECASE
)
# PEP 440 order: dev < a < b < rc < final < post.
_STAGE: Final = {"dev": -4, "a": -3, "b": -2, "rc": -1, None: 0, "post": 1}


class UnsupportedVersion(ValueError):
    """Not a vLLM release number, or a release no table of this package covers."""


@total_ordering
class VllmVersion:
    """A parsed vLLM release, ordered like the releases (``0.5.0 < 0.5.3.post1 < 0.10.0 < 0.10.1.1``).

    Compares with another ``VllmVersion``, a version string, or a release tuple such as ``(0, 8, 4)``.
    """

    __slots__ = ("_key", "text")

    def __init__(self, text: str) -> None:
        m = _VERSION_RE.match(str(text).strip())
        if not m:
            raise UnsupportedVersion(f"{text!r} is not a vLLM release number such as {DEFAULT_VLLM_VERSION}")
        major, minor, patch, extra, tag, tagnum = m.groups()
        stage = _STAGE[tag.lower() if tag else None]
        self._key: tuple[int, int, int, int, int, int] = (
            int(major),
            int(minor),
            int(patch or 0),
            int(extra or 0),
            stage,
            int(tagnum or 0),
        )
        self.text = str(text).strip().removeprefix("v")

    @classmethod
    def of(cls, value: VllmVersion | str | tuple[int, ...]) -> VllmVersion:
        """Coerce a version string, a ``VllmVersion`` or a release tuple ``(0, 8, 4)``."""
        if isinstance(value, VllmVersion):
            return value
        if isinstance(value, tuple):
            return cls(".".join(str(x) for x in value))
        return cls(value)

    @property
    def key(self) -> tuple[int, int, int, int, int, int]:
        """(major, minor, patch, 4th part, stage, stage number): the sort key."""
        return self._key

    @property
    def release(self) -> tuple[int, int, int]:
        return (self._key[0], self._key[1], self._key[2])

    def _other(self, other: object) -> VllmVersion | None:
        if isinstance(other, VllmVersion):
            return other
        if isinstance(other, str | tuple):
            return VllmVersion.of(other)
        return None

    def __eq__(self, other: object) -> bool:
        o = self._other(other)
        return o is not None and self._key == o._key

    def __lt__(self, other: VllmVersion | str | tuple[int, ...]) -> bool:
        o = self._other(other)
        if o is None:
            return NotImplemented
        return self._key < o._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"VllmVersion({self.text!r})"


#: What the release facts accept: a ``VllmVersion``, a version string or a release tuple.
VersionLike: TypeAlias = VllmVersion | str | tuple[int, ...]


def parse_version(text: VersionLike) -> VllmVersion:
    """Parse ``0.8.5``, ``v0.10.1.1``, ``0.12.0rc1``, ``0.11.0+cu128``; raises :class:`UnsupportedVersion`."""
    return VllmVersion.of(text)


def default_image(version: str) -> str:
    """The image used when ``engine.image`` is unset: ``vllm/vllm-openai:v<version>``."""
    return f"{DEFAULT_IMAGE_REPOSITORY}:v{version}"
