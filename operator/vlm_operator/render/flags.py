"""Moved to :mod:`vlm_operator.releases.flags` (the one model of each vLLM release); this path stays for callers
that still import it."""

from vlm_operator.releases.flags import *  # noqa: F403
from vlm_operator.releases.flags import __all__ as __all__
