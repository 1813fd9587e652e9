"""Image headers and data URLs (stdlib only): what the simulator and the batch client need to size an image
without decoding it.

:func:`image_size` reads ``(width, height)`` from a PNG, JPEG, GIF or WebP header; the estimator turns that size into
prompt tokens per model family (``estimator.tokens.image_tokens``).
"""

from __future__ import annotations

import base64
import binascii
import struct


class UnsupportedImageFormat(ValueError):
    """Bytes that are none of the formats :func:`image_size` reads (they may still be an image vLLM can open)."""


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from a PNG, JPEG, GIF or WebP header. Raises :class:`UnsupportedImageFormat` for another
    format and ``ValueError`` for a truncated or corrupt header."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ValueError("truncated PNG header")
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        if len(data) < 10:
            raise ValueError("truncated GIF header")
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    raise UnsupportedImageFormat("unsupported image format (PNG, JPEG, GIF and WebP headers are read)")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError("corrupt JPEG: expected a marker")
        while i < len(data) and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= len(data):
            break
        marker = data[i]
        i += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            continue
        if marker == 0xD9:
            break
        if i + 2 > len(data):
            break
        (seglen,) = struct.unpack(">H", data[i : i + 2])
        if marker in _JPEG_SOF:
            if i + 7 > len(data):
                break
            h, w = struct.unpack(">HH", data[i + 3 : i + 7])
            return int(w), int(h)
        i += seglen
    raise ValueError("JPEG without a frame header")


def _webp_size(data: bytes) -> tuple[int, int]:
    """The three WebP chunk layouts (https://developers.google.com/speed/webp/docs/riff_container)."""
    kind = data[12:16]
    if kind == b"VP8 " and len(data) >= 30:  # lossy: 14-bit sides after the 3-byte start code
        w, h = struct.unpack("<HH", data[26:30])
        return int(w & 0x3FFF), int(h & 0x3FFF)
    if kind == b"VP8L" and len(data) >= 25:  # lossless: 14-bit (side - 1) packed after the 0x2f signature
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X" and len(data) >= 30:  # extended: 24-bit (side - 1)
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise ValueError("truncated WebP header")


class DataURLError(ValueError):
    """A ``data:`` URL that does not hold base64 data."""


def decode_data_url(url: str) -> tuple[str, bytes]:
    """``(media type, bytes)`` of a ``data:<mime>;base64,<payload>`` URL. Raises :class:`DataURLError`."""
    if not url.startswith("data:"):
        raise DataURLError("not a data: URL")
    header, sep, payload = url.partition(",")
    if not sep or ";base64" not in header:
        raise DataURLError("a data URL must be base64-encoded (data:<type>;base64,<payload>)")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DataURLError(f"invalid base64 payload: {exc}") from None
    if not data:
        raise DataURLError("empty payload")
    return header[5:].split(";", 1)[0], data
