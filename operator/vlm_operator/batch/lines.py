"""The batch input and output files, pure: line numbering, sharding, validation, output lines and the resume scan.

Input is the OpenAI batch file format (https://platform.openai.com/docs/api-reference/batch/request-input): one JSON
object per line, ``{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}``, where the
body's messages may carry ``image_url`` parts (``data:`` URLs or http(s) URLs). vLLM's ``run_batch`` reads the same
format (``BatchRequestInput`` in vllm/entrypoints/openai/protocol.py, v0.32.0).

* Non-empty lines are numbered 0..L-1 in file order (:class:`InputLine`.index); a message names the 1-based line of
  the file (:class:`InputLine`.lineno), as an editor shows it. Line ``i`` belongs to shard ``i % shard_count``.
* :func:`validate` turns one line into a :class:`Request` for the engine or a :class:`LineError` that becomes an
  error line: nothing a line holds raises.
* :func:`result_line` and :func:`error_line` are the OpenAI batch output format. Every output line's ``id`` is
  ``vlmbatch-line-<index>``, so a line without a usable ``custom_id`` is still found again on resume.
* :func:`scan_output` is the resume scan: what an earlier run of the shard already wrote, with a torn last line
  (no trailing newline) cut away first.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlm_operator import media

#: the one endpoint a line may name (``vlmctl batch`` and the client refuse others before the engine sees them)
CHAT_URL = "/v1/chat/completions"

#: prefix of every output line's ``id``; the rest is the input line's index among non-empty lines
LINE_ID_PREFIX = "vlmbatch-line-"


@dataclass(frozen=True)
class InputLine:
    #: position among the non-empty lines (what sharding and ``id`` use)
    index: int
    #: 1-based line number in the file (what messages name)
    lineno: int
    raw: bytes
    #: byte offset of the line in the input
    offset: int = 0


@dataclass(frozen=True)
class Limits:
    """What a line is checked against before it reaches the engine. ``None``: not checked."""

    max_model_len: int | None = None
    image_limit: int | None = None
    video_limit: int | None = None
    #: the served model name; a line whose body names another model is refused (the engine would answer 404)
    model: str | None = None
    #: defaults applied where a line's body has none
    temperature: float | None = None
    max_tokens: int | None = None


class ImageTokenCounter:
    """Prompt tokens of one image of a given size, by the estimator's formula for the model's family
    (``estimator.tokens.image_tokens``) under the deployment's ``--mm-processor-kwargs``."""

    def __init__(self, facts: Any, processor_kwargs: Mapping[str, Any] | None = None) -> None:
        self.facts = facts
        self.kwargs = dict(processor_kwargs or {})
        self.model_id: str = facts.model_id

    def __call__(self, width: int, height: int) -> int:
        from vlm_operator.estimator import tokens

        return tokens.image_tokens(self.facts, width, height, self.kwargs).prompt

    @classmethod
    def for_model(cls, model_id: str, processor_kwargs: Mapping[str, Any] | None = None) -> ImageTokenCounter | None:
        """The counter for a catalog model (or a derivative it resolves offline); ``None`` when the catalog does not
        know the model or the model takes no images."""
        from vlm_operator.models import catalog

        try:
            facts = catalog.lookup(model_id)
        except (catalog.UnknownModelError, ValueError):
            return None
        return cls(facts, processor_kwargs) if facts.vision is not None else None


@dataclass(frozen=True)
class ImageRef:
    """One ``image_url`` part: where it points and, for a readable ``data:`` URL, its size and prompt tokens."""

    kind: str  # "data", "http", "file"
    width: int = 0
    height: int = 0
    #: prompt tokens by the estimator (``None``: not counted: an http(s)/file URL, an unknown format, no counter)
    tokens: int | None = None


@dataclass(frozen=True)
class Request:
    """A line that passed validation: what the client sends."""

    index: int
    lineno: int
    custom_id: str
    url: str
    body: dict[str, Any]
    images: tuple[ImageRef, ...] = ()
    videos: int = 0
    #: characters of text across the messages (``vlmctl batch`` turns this into an approximate token count)
    text_chars: int = 0

    @property
    def line_id(self) -> str:
        return line_id(self.index)

    @property
    def image_tokens(self) -> int:
        """Prompt tokens of the images the estimator could size (a lower bound when some could not be)."""
        return sum(i.tokens or 0 for i in self.images)

    @property
    def unsized_images(self) -> int:
        return sum(1 for i in self.images if i.tokens is None)


@dataclass(frozen=True)
class LineError:
    """A line the engine never sees. ``message`` starts with the line number and says what to fix."""

    index: int
    lineno: int
    custom_id: str | None
    code: str
    message: str

    @property
    def line_id(self) -> str:
        return line_id(self.index)


def line_id(index: int) -> str:
    return f"{LINE_ID_PREFIX}{index}"


# ------------------------------------------------------------------------------------------------- reading and shards
def iter_lines(chunks: Iterable[bytes]) -> Iterator[InputLine]:
    """Split a byte stream into lines and number the non-empty ones (whitespace-only lines are empty). ``chunks``
    may cut lines anywhere (a file read in blocks, an HTTP body)."""
    index, lineno = 0, 0
    pending: list[bytes] = []  # a line longer than a chunk, kept in pieces (joining each time would be quadratic)
    tail, tail_offset = b"", 0
    for chunk in chunks:
        if not chunk:
            continue
        if b"\n" not in chunk:
            pending.append(chunk)
            continue
        buf, pos = b"".join([tail, *pending, chunk]), tail_offset
        pending.clear()
        parts = buf.split(b"\n")
        tail = parts.pop()
        for part in parts:
            lineno += 1
            if part.strip():
                yield InputLine(index, lineno, part, pos)
                index += 1
            pos += len(part) + 1
        tail_offset = pos
    tail = b"".join([tail, *pending])
    if tail.strip():
        yield InputLine(index, lineno + 1, tail, tail_offset)


def read_blocks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(size):
            yield block


def shard_of(index: int, shard_count: int) -> int:
    return index % shard_count


def peek_custom_id(raw: bytes) -> str | None:
    """The line's ``custom_id`` when the line is a JSON object with a non-empty string one, else ``None``."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    cid = obj.get("custom_id") if isinstance(obj, dict) else None
    return cid if isinstance(cid, str) and cid else None


def count_images(raw: bytes) -> int:
    """The ``image_url`` parts of a line, without checking them (0 for a line that is not a request)."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return 0
    body = obj.get("body") if isinstance(obj, dict) else None
    messages = body.get("messages") if isinstance(body, dict) else None
    n = 0
    for msg in messages if isinstance(messages, list) else ():
        content = msg.get("content") if isinstance(msg, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and (part.get("type") == "image_url" or "image_url" in part):
                n += 1
    return n


# ------------------------------------------------------------------------------------------------------- validation
def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _image_url(part: Mapping[str, Any]) -> Any:
    """``{"type": "image_url", "image_url": {"url": ...}}``, or vLLM's ``{"image_url": "..."}`` shorthand."""
    ref = part.get("image_url")
    return ref.get("url") if isinstance(ref, Mapping) else ref


def check_image_url(url: Any, counter: ImageTokenCounter | None) -> ImageRef:
    """Raises ``ValueError`` with the reason when the URL cannot be an image the engine can open."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"image_url.url must be a data: or http(s) URL, got {_short(url)}")
    if url.startswith("data:"):
        try:
            _mime, data = media.decode_data_url(url)
        except media.DataURLError as exc:
            raise ValueError(f"image data URL {_short(url, 40)}: {exc}") from None
        try:
            width, height = media.image_size(data)
        except media.UnsupportedImageFormat:
            return ImageRef("data")  # vLLM opens more formats than the header reader knows: the engine decides
        except ValueError as exc:
            raise ValueError(f"image data URL {_short(url, 40)}: {exc}") from None
        if width < 1 or height < 1:
            raise ValueError(f"image data URL {_short(url, 40)}: the image is {width}x{height} pixels")
        tokens = None
        if counter is not None:
            from vlm_operator.estimator.tokens import TokenError

            try:
                tokens = counter(width, height)
            except TokenError as exc:
                raise ValueError(
                    f"a {width}x{height} image: {exc} ({counter.model_id}'s processor refuses it)"
                ) from None
        return ImageRef("data", width, height, tokens)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme in ("http", "https"):
        if not parsed.netloc or any(c.isspace() for c in url):
            raise ValueError(f"image URL {_short(url)} has no host or contains whitespace")
        return ImageRef("http")
    if parsed.scheme == "file":
        # the engine opens it only under --allowed-local-media-path (vllm/entrypoints/chat_utils.py, MediaConnector)
        return ImageRef("file")
    raise ValueError(f"image URL {_short(url)} is neither a data: URL nor http(s) (nor file: under the allowed path)")


def validate(
    line: InputLine,
    limits: Limits,
    counter: ImageTokenCounter | None = None,
    first_seen: Mapping[str, int] | None = None,
) -> Request | LineError:
    """One input line -> a :class:`Request` (with the defaults applied) or the :class:`LineError` that says why not.

    ``first_seen`` maps each custom_id to the index of its first line in the whole input: a later line with the
    same custom_id is an error (the first one wins, whichever shard holds it)."""
    where = f"line {line.lineno}"

    def err(code: str, msg: str, cid: str | None = None) -> LineError:
        return LineError(line.index, line.lineno, cid, code, f"{where}: {msg}")

    try:
        obj = json.loads(line.raw.decode("utf-8"))  # bytes would let json guess UTF-16/32 from the first bytes
    except UnicodeDecodeError:
        return err("invalid_json", "not UTF-8 text; write the file as UTF-8 JSON Lines")
    except ValueError as exc:
        return err("invalid_json", f"not valid JSON ({exc}); each line must be one JSON object")
    if not isinstance(obj, dict):
        return err("invalid_json", f"expected a JSON object, got {type(obj).__name__}")
    cid = obj.get("custom_id")
    if not isinstance(cid, str) or not cid:
        return err("missing_custom_id", f"custom_id must be a non-empty string, got {_short(cid)}")
    if first_seen is not None and first_seen.get(cid, line.index) < line.index:
        # the error line carries no custom_id: the first line owns it, so no custom_id appears twice in the output
        return err("duplicate_custom_id", f"custom_id {cid!r} repeats an earlier line; give each line its own id")
    method = obj.get("method", "POST")
    if method != "POST":
        return err("invalid_method", f"method must be POST, got {_short(method)}", cid)
    url = obj.get("url")
    if url != CHAT_URL:
        return err("invalid_url", f"url must be {CHAT_URL}, got {_short(url)}", cid)
    body = obj.get("body")
    if not isinstance(body, dict):
        return err("invalid_body", f"body must be a JSON object (a chat completions request), got {_short(body)}", cid)
    model = body.get("model")
    if model is not None and limits.model is not None and model != limits.model:
        return err(
            "model_mismatch",
            f"body.model is {_short(model)} but the engine serves {limits.model!r}; "
            "set body.model to it or leave it out",
            cid,
        )
    if body.get("stream"):
        return err("invalid_body", "body.stream is true; a batch line needs one whole answer: drop stream", cid)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return err("invalid_body", f"body.messages must be a non-empty list, got {_short(messages)}", cid)
    images: list[ImageRef] = []
    videos = 0
    chars = 0
    for m, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            return err("invalid_body", f"body.messages[{m}] must be an object with a role", cid)
        content = msg.get("content")
        if isinstance(content, str):
            chars += len(content)
            continue
        if content is None:
            continue
        if not isinstance(content, list):
            return err("invalid_body", f"body.messages[{m}].content must be a string or a list of parts", cid)
        for p, part in enumerate(content):
            if not isinstance(part, dict):
                return err("invalid_body", f"body.messages[{m}].content[{p}] must be an object", cid)
            kind = part.get("type")
            if kind == "text":
                chars += len(str(part.get("text", "")))
            elif kind == "image_url" or (kind is None and "image_url" in part):
                try:
                    images.append(check_image_url(_image_url(part), counter))
                except ValueError as exc:
                    return err("invalid_image_url", f"body.messages[{m}].content[{p}]: {exc}", cid)
            elif kind == "video_url" or (kind is None and "video_url" in part):
                videos += 1
    if limits.image_limit is not None and len(images) > limits.image_limit:
        return err(
            "too_many_images",
            f"{len(images)} images, more than the limit of {limits.image_limit} per prompt "
            "(multimodal.limitPerPrompt.image); split the line or raise the limit",
            cid,
        )
    if limits.video_limit is not None and videos > limits.video_limit:
        return err(
            "too_many_videos",
            f"{videos} videos, more than the limit of {limits.video_limit} per prompt "
            "(multimodal.limitPerPrompt.video); split the line or raise the limit",
            cid,
        )
    img_tokens = sum(i.tokens or 0 for i in images)
    if limits.max_model_len is not None and counter is not None and img_tokens > limits.max_model_len:
        return err(
            "prompt_too_long",
            f"its images alone take {img_tokens:,} prompt tokens ({counter.model_id}, counted by the estimator), "
            f"more than maxModelLen {limits.max_model_len:,}; use fewer or smaller images, a smaller max_pixels, "
            "or a larger maxModelLen",
            cid,
        )
    if limits.temperature is not None and "temperature" not in body:
        body["temperature"] = limits.temperature
    if limits.max_tokens is not None and "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = limits.max_tokens
    if limits.model is not None:
        body.setdefault("model", limits.model)
    return Request(line.index, line.lineno, cid, url, body, tuple(images), videos, chars)


# --------------------------------------------------------------------------------------------------- output lines
def result_line(req: Request, response: Any, request_id: str, status_code: int = 200) -> dict[str, Any]:
    """The OpenAI batch output line of an answered request (``BatchRequestOutput`` in vLLM's protocol.py)."""
    return {
        "id": req.line_id,
        "custom_id": req.custom_id,
        "response": {"status_code": status_code, "request_id": request_id, "body": response},
        "error": None,
    }


def error_line(index: int, custom_id: str | None, code: str, message: str) -> dict[str, Any]:
    return {
        "id": line_id(index),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }


def encode(line: Mapping[str, Any]) -> bytes:
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def append_line(fd: int, data: bytes) -> None:
    """Append one whole line and fsync it: after a crash the line is either all there or cut short (a torn last
    line, which :func:`scan_output` removes)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    os.fsync(fd)


@dataclass
class OutputScan:
    """What one output file already holds."""

    custom_ids: set[str] = field(default_factory=set)
    line_ids: set[str] = field(default_factory=set)
    #: custom_ids of lines another tool wrote (an ``id`` that is not ``vlmbatch-line-<index>``, e.g. run_batch's)
    foreign_custom_ids: set[str] = field(default_factory=set)
    lines: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: bytes of a torn last line that were cut away
    truncated: int = 0
    #: complete lines that are not JSON (never written by the client; counted, then ignored)
    unreadable: int = 0


def truncate_torn_tail(path: Path) -> int:
    """Cut a last line without its newline (a write the kill interrupted). Returns the bytes removed."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with path.open("r+b") as f:
        pos = size
        block = 1 << 16
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        if keep == size:
            return 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return size - keep


def scan_output(path: Path) -> OutputScan:
    """The resume scan of one output file: truncate a torn last line, then collect the custom_ids and line ids it
    holds and the token usage of its answers."""
    scan = OutputScan()
    scan.truncated = truncate_torn_tail(path)
    if not path.exists():
        return scan
    for line in iter_lines(read_blocks(path)):
        try:
            obj = json.loads(line.raw)
        except ValueError:
            scan.unreadable += 1
            continue
        if not isinstance(obj, dict):
            scan.unreadable += 1
            continue
        scan.lines += 1
        cid, lid = obj.get("custom_id"), obj.get("id")
        ours = isinstance(lid, str) and lid.startswith(LINE_ID_PREFIX)
        if isinstance(cid, str):
            scan.custom_ids.add(cid)
            if not ours:
                scan.foreign_custom_ids.add(cid)
        if ours:
            scan.line_ids.add(str(lid))
        p, c = usage_of(obj.get("response"))
        scan.prompt_tokens += p
        scan.completion_tokens += c
    return scan


def usage_of(response: Any) -> tuple[int, int]:
    """``(prompt_tokens, completion_tokens)`` of an output line's ``response`` (0, 0 when it has no usage)."""
    body = response.get("body") if isinstance(response, dict) else None
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    p, c = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (p if isinstance(p, int) else 0), (c if isinstance(c, int) else 0)
