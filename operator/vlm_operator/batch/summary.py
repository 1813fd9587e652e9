"""One shard's outcome: the JSON the client writes to its termination message and serves on ``GET /progress``.

The operator reads it from ``state.terminated.message`` of the client container (Kubernetes keeps at most 4096 bytes
of ``/dev/termination-log``: ``terminationMessagePath`` in the Pod API), so :meth:`Summary.to_json` always fits in
:data:`MAX_BYTES`, cutting the reason when it must.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the kubelet reads at most this many bytes of a termination message
MAX_BYTES = 4096

#: the reasons a shard stops before every line is written (the text after ``<Reason>: `` says why)
INPUT_NOT_FOUND = "InputNotFound"
INPUT_UNREADABLE = "InputUnreadable"
OUTPUT_UNWRITABLE = "OutputUnwritable"
ENGINE_UNAVAILABLE = "EngineUnavailable"
TERMINATED = "Terminated"

#: exit status per reason (0: every line of the shard is in results or errors; 1: a usage error)
EXIT_CODES = {INPUT_NOT_FOUND: 2, INPUT_UNREADABLE: 2, OUTPUT_UNWRITABLE: 4, ENGINE_UNAVAILABLE: 3, TERMINATED: 143}


@dataclass
class Summary:
    shard: int
    lines_total: int = 0
    lines_done: int = 0
    lines_failed: int = 0
    images: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    reason: str | None = None

    def fail(self, reason: str, detail: str) -> None:
        self.reason = f"{reason}: {detail}"

    @property
    def exit_code(self) -> int:
        if self.reason is None:
            return 0
        return EXIT_CODES.get(self.reason.split(":", 1)[0], 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "linesTotal": self.lines_total,
            "linesDone": self.lines_done,
            "linesFailed": self.lines_failed,
            "images": self.images,
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
            "reason": self.reason,
        }

    def to_json(self) -> str:
        """One line, at most :data:`MAX_BYTES` bytes in UTF-8."""
        data = self.to_dict()
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        if len(text.encode("utf-8")) <= MAX_BYTES or self.reason is None:
            return text
        data["reason"] = ""
        room = MAX_BYTES - len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        # the reason as JSON may grow (escapes), so cut its bytes until the whole line fits
        cut = self.reason.encode("utf-8")[: max(0, room - 3)]
        while True:
            data["reason"] = cut.decode("utf-8", errors="ignore") + "..."
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
            if len(text.encode("utf-8")) <= MAX_BYTES:
                break
            cut = cut[: len(cut) - max(1, len(text.encode("utf-8")) - MAX_BYTES)]
        return text

    @classmethod
    def from_json(cls, text: str) -> Summary:
        """Parse a termination message (raises ``ValueError`` when it is not a summary)."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("shard"), int):
            raise ValueError(f"not a batch shard summary: {text[:200]!r}")
        return cls(
            shard=data["shard"],
            lines_total=int(data.get("linesTotal") or 0),
            lines_done=int(data.get("linesDone") or 0),
            lines_failed=int(data.get("linesFailed") or 0),
            images=int(data.get("images") or 0),
            prompt_tokens=int(data.get("promptTokens") or 0),
            completion_tokens=int(data.get("completionTokens") or 0),
            seconds=float(data.get("seconds") or 0.0),
            reason=data.get("reason") if isinstance(data.get("reason"), str) else None,
        )

    def write(self, path: Path) -> str | None:
        """Write the summary (replacing what is there). Returns why it could not be written, or ``None``."""
        try:
            with path.open("w", encoding="utf-8") as f:
                f.write(self.to_json())
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            return f"cannot write the summary to {path}: {exc}"
        return None
