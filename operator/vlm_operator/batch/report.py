"""What ``vlmctl batch`` says about a batch file, pure: per line the images and prompt tokens, the lines the client
would refuse, the lines that may run past ``max_model_len``, and how many of the batch's sequences the KV cache holds.

Counting:

* image tokens: the estimator's formula for the model's family at each image's size (``estimator.tokens``), read
  from the ``data:`` URL's header. An http(s) image is not fetched: it counts as the family's worst case in the
  upper bound (``upper``), and as nothing in the lower bound (``images_tokens``, what the client refuses on).
* text tokens: about 4 characters a token (:data:`CHARS_PER_TOKEN`); the engine's tokenizer decides the exact count,
  so a line flagged only by this approximation is a warning ("may exceed"), not a refusal.
* a sequence's KV footprint: prompt + the line's ``max_tokens`` (or ``max_completion_tokens``, or the default given),
  capped at ``max_model_len``; without any, vLLM lets the answer run to ``max_model_len``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vlm_operator.batch import lines as L

#: a rough rule for BPE tokenizers on English text; only for estimates the engine's tokenizer will redo
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class LineStats:
    lineno: int
    custom_id: str
    images: int
    unsized_images: int
    videos: int
    #: prompt tokens of the sized images (the estimator's count; what the client refuses on)
    image_tokens: int
    #: text at ~4 characters a token
    text_tokens: int
    #: images (URL images at the family's worst case) + text: what the engine may count
    upper: int
    #: tokens the sequence may hold in the KV cache: ``upper`` + the answer, at most max_model_len
    sequence: int


@dataclass
class BatchReport:
    max_model_len: int
    image_limit: int | None
    video_limit: int | None
    worst_image_tokens: int
    lines: list[LineStats] = field(default_factory=list)
    errors: list[L.LineError] = field(default_factory=list)

    @property
    def may_exceed(self) -> list[LineStats]:
        return [s for s in self.lines if s.upper > self.max_model_len]

    def kv_headroom(self, kv_cache_tokens: int, max_num_seqs: int) -> dict[str, Any]:
        """How many of the batch's sequences the KV cache holds at once: the longest line's and the median's."""
        seqs = sorted(s.sequence for s in self.lines)
        if not seqs:
            return {"kv_cache_tokens": kv_cache_tokens, "max_num_seqs": max_num_seqs}
        longest, median = seqs[-1], seqs[len(seqs) // 2]
        fit_longest = kv_cache_tokens / longest if longest else 0.0
        fit_median = kv_cache_tokens / median if median else 0.0
        return {
            "kv_cache_tokens": kv_cache_tokens,
            "max_num_seqs": max_num_seqs,
            "longest_sequence_tokens": longest,
            "median_sequence_tokens": median,
            "sequences_of_longest": round(fit_longest, 2),
            "sequences_of_median": round(fit_median, 2),
            # the engine runs at most max_num_seqs at once; below that the KV cache is the limit
            "expected_concurrency": round(min(float(max_num_seqs), fit_median), 2),
            "kv_limited": fit_median < max_num_seqs,
        }

    def to_json(self) -> dict[str, Any]:
        def pct(values: list[int], q: float) -> int:
            return values[min(len(values) - 1, int(q * len(values)))] if values else 0

        prompts = sorted(s.upper for s in self.lines)
        return {
            "lines": len(self.lines) + len(self.errors),
            "valid": len(self.lines),
            "refused": len(self.errors),
            "images": sum(s.images for s in self.lines),
            "images_by_url": sum(s.unsized_images for s in self.lines),
            "videos": sum(s.videos for s in self.lines),
            "max_model_len": self.max_model_len,
            "image_limit": self.image_limit,
            "video_limit": self.video_limit,
            "worst_case_image_tokens": self.worst_image_tokens,
            "prompt_tokens": {
                "min": prompts[0] if prompts else 0,
                "median": pct(prompts, 0.5),
                "p95": pct(prompts, 0.95),
                "max": prompts[-1] if prompts else 0,
                "total": sum(prompts),
            },
            "errors": [
                {"line": e.lineno, "custom_id": e.custom_id, "code": e.code, "message": e.message} for e in self.errors
            ],
            "may_exceed": [
                {"line": s.lineno, "custom_id": s.custom_id, "prompt_tokens": s.upper} for s in self.may_exceed
            ],
            "per_line": [
                {
                    "line": s.lineno,
                    "custom_id": s.custom_id,
                    "images": s.images,
                    "images_by_url": s.unsized_images,
                    "image_tokens": s.image_tokens,
                    "text_tokens": s.text_tokens,
                    "prompt_tokens": s.upper,
                    "sequence_tokens": s.sequence,
                }
                for s in self.lines
            ],
        }


def _answer_tokens(body: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        v = body.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def analyze(
    lines: Iterable[L.InputLine],
    limits: L.Limits,
    counter: L.ImageTokenCounter | None,
    max_model_len: int,
    worst_image_tokens: int,
) -> BatchReport:
    """Validate every line as the client will (``limits.max_model_len`` set: the same refusal) and count it."""
    report = BatchReport(max_model_len, limits.image_limit, limits.video_limit, worst_image_tokens)
    first_seen: dict[str, int] = {}
    for line in lines:
        checked = L.validate(line, limits, counter, first_seen)
        cid = L.peek_custom_id(line.raw)
        if cid is not None:
            first_seen.setdefault(cid, line.index)
        if isinstance(checked, L.LineError):
            report.errors.append(checked)
            continue
        text = math.ceil(checked.text_chars / CHARS_PER_TOKEN)
        upper = checked.image_tokens + checked.unsized_images * worst_image_tokens + text
        answer = _answer_tokens(checked.body)
        sequence = max_model_len if answer is None else min(max_model_len, upper + answer)
        report.lines.append(
            LineStats(
                lineno=checked.lineno,
                custom_id=checked.custom_id,
                images=len(checked.images),
                unsized_images=checked.unsized_images,
                videos=checked.videos,
                image_tokens=checked.image_tokens,
                text_tokens=text,
                upper=upper,
                sequence=max(sequence, min(upper, max_model_len)),
            )
        )
    return report
