"""How many LLM positions one image (or video) costs, per model family.

Each function re-implements the arithmetic of the family's processor: the transformers image processor / processor
where one exists, else vLLM's in-tree formula (``get_num_image_tokens`` / ``get_image_size_with_most_features`` in
``vllm/model_executor/models/<file>.py``). Worst cases are the sizes vLLM profiles.

``ItemTokens.prompt`` is what counts against ``max_model_len`` and the KV cache (placeholders plus the markers the
processor inserts), ``embeds`` is what the encoder produces (what the encoder cache stores), ``patches`` the ViT input
length that drives encoder activation memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vlm_operator.models.facts import ModelFacts


class TokenError(ValueError):
    """Processor kwargs or an image size the family's processor would reject."""


@dataclass(frozen=True)
class ItemTokens:
    prompt: int
    embeds: int
    patches: int
    width: int = 0
    height: int = 0


def _kw_int(kw: Mapping[str, Any], key: str, default: int) -> int:
    v = kw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TokenError(f"mm processor kwarg {key!r} must be a number, not {v!r}")
    return int(v)


# --------------------------------------------------------------------------------------------------- LLaVA family
def select_best_resolution(size: tuple[int, int], candidates: Sequence[Sequence[int]]) -> tuple[int, int]:
    """transformers ``image_processing_utils.select_best_resolution``: (height, width) of the best candidate."""
    oh, ow = size
    best = (int(candidates[0][0]), int(candidates[0][1]))
    best_eff, best_waste = -1, math.inf
    for cand in candidates:
        h, w = int(cand[0]), int(cand[1])
        scale = min(w / ow, h / oh)
        dw, dh = int(ow * scale), int(oh * scale)
        eff = min(dw * dh, ow * oh)
        waste = w * h - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (h, w), eff, waste
    return best


def _unpadded(oh: int, ow: int, cur_h: int, cur_w: int) -> tuple[int, int]:
    """``LlavaNextProcessor._get_unpadded_features`` / vLLM ``_get_num_unpadded_features``."""
    if ow / oh > cur_w / cur_h:
        new_h = int(round(oh * (cur_w / ow), 7))
        pad = (cur_h - new_h) // 2
        cur_h -= 2 * pad
    else:
        new_w = int(round(ow * (cur_h / oh), 7))
        pad = (cur_w - new_w) // 2
        cur_w -= 2 * pad
    return cur_h, cur_w


def _anyres(width: int, height: int, facts: ModelFacts, kw: Mapping[str, Any], onevision: bool) -> tuple[int, int, int]:
    v = facts.vision
    assert v is not None
    tile, patch = v.image_size, v.patch_size
    npatch = tile // patch
    pins = kw.get("image_grid_pinpoints") or [[tile, tile]]
    best_h, best_w = select_best_resolution((height, width), pins)
    gh, gw = best_h // tile, best_w // tile
    cur_h, cur_w = _unpadded(height, width, npatch * gh, npatch * gw)
    unpadded, newline = cur_h * cur_w, cur_h
    if onevision:  # LlavaOnevisionProcessor: scale down past 9 tiles' worth of features
        ratio = math.sqrt(cur_h * cur_w / (9 * npatch**2))
        if ratio > 1.1:
            unpadded = int(cur_h // ratio) * int(cur_w // ratio)
            newline = int(cur_h // ratio)
    base = npatch * npatch  # CLS dropped ("default") / SigLIP has none ("full")
    tokens = unpadded + newline + base
    return tokens, tokens, (gh * gw + 1) * (npatch * npatch + (0 if onevision else 1))


def llava(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    v = f.vision
    assert v is not None
    n = (v.image_size // v.patch_size) ** 2
    if str(kw.get("vision_feature_select_strategy", "default")) == "full":
        n += 1
    return ItemTokens(n, n, n + 1, w, h)


def llava_next(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    t, e, p = _anyres(w, h, f, kw, onevision=False)
    return ItemTokens(t, e, p, w, h)


def llava_onevision(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    t, e, p = _anyres(w, h, f, kw, onevision=True)
    return ItemTokens(t, e, p, w, h)


# --------------------------------------------------------------------------------------------------- Qwen-VL family
def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """transformers ``qwen2_vl/image_processing_qwen2_vl.smart_resize`` (Python's round is round-half-even)."""
    if min(height, width) <= 0:
        raise TokenError("image sides must be positive")
    if max(height, width) / min(height, width) > 200:
        raise TokenError("absolute aspect ratio must be smaller than 200")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _qwen_params(f: ModelFacts, kw: Mapping[str, Any]) -> tuple[int, int, int, int]:
    v = f.vision
    assert v is not None
    patch = _kw_int(kw, "patch_size", v.patch_size)
    merge = _kw_int(kw, "merge_size", v.merge_size)
    size = kw.get("size")
    min_px, max_px = kw.get("min_pixels"), kw.get("max_pixels")
    if isinstance(size, Mapping):  # newer processors: size={"shortest_edge": min_pixels, "longest_edge": max_pixels}
        min_px = size.get("shortest_edge", min_px)
        max_px = size.get("longest_edge", max_px)
    for name, value in (("min_pixels", min_px), ("max_pixels", max_px)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise TokenError(f"mm processor kwarg {name!r} must be a number of pixels, not {value!r}")
    lo = int(min_px) if isinstance(min_px, int | float) else 56 * 56
    hi = int(max_px) if isinstance(max_px, int | float) else 28 * 28 * 1280
    if lo <= 0 or hi < lo:
        raise TokenError(f"need 0 < min_pixels <= max_pixels, got {lo} and {hi}")
    return patch, merge, lo, hi


def qwen_vl(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    patch, merge, lo, hi = _qwen_params(f, kw)
    rh, rw = smart_resize(h, w, patch * merge, lo, hi)
    patches = (rh // patch) * (rw // patch)
    n = patches // (merge * merge)
    # vision_start + image pads + vision_end; the two markers are text tokens around the placeholder run
    return ItemTokens(n + 2, n, patches, w, h)


def qwen_vl_max_size(f: ModelFacts, kw: Mapping[str, Any]) -> tuple[int, int]:
    """vLLM ``Qwen2VLProcessingInfo.get_image_size_with_most_features``: factorise ``max_pixels // unit²`` into the
    most-square (h, w) pair with aspect ratio <= 200 (vllm@HEAD qwen2_vl.py)."""
    patch, merge, _, hi = _qwen_params(f, kw)
    unit = patch * merge
    return _factor_size(unit, max(1, hi // (unit * unit)))


def _factor_size(unit: int, max_seq: int) -> tuple[int, int]:
    for seq in range(max_seq, 0, -1):
        d = math.isqrt(seq)
        while seq % d:
            d -= 1
        hf, wf = d, seq // d
        if wf / hf <= 200:
            return unit * wf, unit * hf
    return unit, unit


def glm4v(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    """GLM-4.1V/4.5V: Qwen-style resize with a temporal factor; an image counts as 2 frames, so 2·H·W <= max
    (transformers ``glm4v/image_processing_glm4v.smart_resize``)."""
    patch, merge, lo, hi = _qwen_params(f, kw)
    factor = patch * merge
    t = 2
    if max(h, w) / max(1, min(h, w)) > 200:
        raise TokenError("absolute aspect ratio must be smaller than 200")
    hh, ww = h, w
    if hh < factor or ww < factor:
        scale = max(factor / max(1, hh), factor / max(1, ww))
        hh, ww = int(hh * scale), int(ww * scale)
    h_bar = round(hh / factor) * factor
    w_bar = round(ww / factor) * factor
    if t * h_bar * w_bar > hi:
        beta = math.sqrt((t * hh * ww) / hi)
        h_bar = max(factor, math.floor(hh / beta / factor) * factor)
        w_bar = max(factor, math.floor(ww / beta / factor) * factor)
    elif t * h_bar * w_bar < lo:
        beta = math.sqrt(lo / (hh * ww * t))
        h_bar = math.ceil(hh * beta / factor) * factor
        w_bar = math.ceil(ww * beta / factor) * factor
    patches = (h_bar // patch) * (w_bar // patch)
    n = patches // (merge * merge)
    return ItemTokens(n + 2, n, patches, w, h)


def glm4v_max_size(f: ModelFacts, kw: Mapping[str, Any]) -> tuple[int, int]:
    """The Qwen-VL factorisation applied to ``max_pixels / 2`` (an image is two frames, temporal factor 2)."""
    _patch, _merge, lo, hi = _qwen_params(f, kw)
    return qwen_vl_max_size(f, dict(kw, size={"shortest_edge": lo, "longest_edge": hi // 2}))


def kimi_vl(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    """Kimi-VL MoonViT (remote ``image_processing_kimi_vl.py``; vLLM ``kimi_vl.py``): scale down so that
    (w/14)(h/14) <= in_token_limit, pad to multiples of 28, tokens = (H/28)(W/28)."""
    patch = _kw_int(kw, "patch_size", 14)
    limit = _kw_int(kw, "in_token_limit", 16384)
    merge = 2
    ww, hh = w, h
    if (ww // patch) * (hh // patch) > limit:
        scale = math.sqrt(limit / ((ww // patch) * (hh // patch)))
        ww, hh = int(ww * scale), int(hh * scale)
    pad = patch * merge
    gw = math.ceil(ww / pad) * pad // patch
    gh = math.ceil(hh / pad) * pad // patch
    n = (gw // merge) * (gh // merge)
    return ItemTokens(n + 2, n, gw * gh, w, h)


# --------------------------------------------------------------------------------------------------- tiling families
def _internvl_tiles(w: int, h: int, lo: int, hi: int, tile: int, thumb: bool) -> int:
    """InternVL ``dynamic_preprocess`` / ``find_closest_aspect_ratio``
    (vllm transformers_utils/processors/internvl.py)."""
    ratios = sorted(
        {(i, j) for n in range(lo, hi + 1) for i in range(1, n + 1) for j in range(1, n + 1) if lo <= i * j <= hi},
        key=lambda r: r[0] * r[1],
    )
    aspect = w / h
    best, best_diff = (1, 1), math.inf
    area = w * h
    for r in ratios:
        diff = abs(aspect - r[0] / r[1])
        if diff < best_diff:
            best, best_diff = r, diff
        elif diff == best_diff and area > 0.5 * tile * tile * r[0] * r[1]:
            best = r
    blocks = best[0] * best[1]
    return blocks + 1 if thumb and blocks != 1 else blocks


def internvl(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    v = f.vision
    assert v is not None
    tile = _kw_int(kw, "force_image_size", v.image_size)
    per_tile = int((tile // v.patch_size) ** 2 * float(kw.get("downsample_ratio", 0.5)) ** 2)
    if kw.get("dynamic_image_size", True) is False:
        blocks = 1
    else:
        lo = _kw_int(kw, "min_dynamic_patch", 1)
        hi = _kw_int(kw, "max_dynamic_patch", 12)
        if lo < 1 or hi < lo:
            raise TokenError(f"need 1 <= min_dynamic_patch <= max_dynamic_patch, got {lo}, {hi}")
        blocks = _internvl_tiles(w, h, lo, hi, tile, bool(kw.get("use_thumbnail", True)))
    n = blocks * per_tile
    extra = 2 if f.family == "internvl" else 2 + 3 * blocks  # NVLM-D adds a <tile_k> tag per tile
    return ItemTokens(n + extra, n, blocks * ((tile // v.patch_size) ** 2 + 1), w, h)


def phi3v(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    """vLLM ``phi3v.py`` ``_calc_hd_transform_size`` + ``get_num_image_tokens`` (HF remote processor)."""
    hd_num = _kw_int(kw, "num_crops", 4)
    if hd_num < 1:
        raise TokenError("num_crops must be >= 1")
    width, height, transposed = w, h, False
    if width < height:
        width, height, transposed = height, width, True
    ratio = width / height
    scale = 1
    while scale * math.ceil(scale / ratio) <= hd_num:
        scale += 1
    scale -= 1
    new_w = int(scale * 336)
    new_h = int(new_w / ratio)
    new_h = math.ceil(new_h / 336) * 336
    if transposed:
        new_w, new_h = new_h, new_w
    n = (new_h // 336 * new_w // 336 + 1) * 144 + 1 + (new_h // 336 + 1) * 12
    crops = (new_h // 336) * (new_w // 336)
    return ItemTokens(n, n, (crops + 1) * 577, w, h)


def phi4mm(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    """vLLM ``phi4mm.py`` ``_compute_num_image_tokens`` (SigLIP 448/14, 2x token compression).

    Crops: ``ceil(w/448) x ceil(h/448)`` when that is at most ``dynamic_hd``, else the closest aspect ratio among
    grids of at most ``dynamic_hd`` crops (InternVL's rule, which the remote Phi-4-mm processor shares). Feature rows
    or columns that cover only the resize padding are dropped. Tokens: 256 global + 1 separator + 16 global newlines
    + the compressed HD grid + one newline per grid row.
    """
    max_crops = _kw_int(kw, "dynamic_hd", 36)
    tile, patch, comp = 448, 14, 2
    cols, rows = math.ceil(w / tile), math.ceil(h / tile)
    if cols * rows > max_crops:
        ratios = sorted(
            {(i, j) for i in range(1, max_crops + 1) for j in range(1, max_crops + 1) if i * j <= max_crops},
            key=lambda r: r[0] * r[1],
        )
        aspect = w / h
        best, best_diff = (1, 1), math.inf
        for r in ratios:
            diff = abs(aspect - r[0] / r[1])
            if diff < best_diff:
                best, best_diff = r, diff
            elif diff == best_diff and w * h > 0.5 * tile * tile * r[0] * r[1]:
                best = r
        cols, rows = best
    tw, th = tile * cols, tile * rows
    # _get_padding_size: the image is scaled to fit the grid; the short side's remainder is padding
    if tw / w < th / h:
        pad_w, pad_h = 0, th - int(h * (tw / w))
    else:
        pad_w, pad_h = tw - int(w * (th / h)), 0
    feat_w, feat_h = tw // patch, th // patch
    if pad_w >= patch:
        feat_w -= pad_w // patch
    elif pad_h >= patch:
        feat_h -= pad_h // patch
    grid_w, grid_h = math.ceil(feat_w / comp), math.ceil(feat_h / comp)
    n = 256 + 1 + 16 + grid_w * grid_h + grid_h
    return ItemTokens(n, n, (cols * rows + 1) * 1024, w, h)


def gemma3(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    """Gemma 3: ``mm_tokens_per_image`` (256) per image/crop; pan&scan per ``Gemma3ImageProcessor.pan_and_scan``."""
    per = _kw_int(kw, "mm_tokens_per_image", 256)
    crops = 0
    if kw.get("do_pan_and_scan"):
        max_crops = _kw_int(kw, "pan_and_scan_max_num_crops", 4)
        min_size = _kw_int(kw, "pan_and_scan_min_crop_size", 256)
        min_ratio = float(kw.get("pan_and_scan_min_ratio_to_activate", 1.2))
        if w >= h:
            if w / h >= min_ratio:
                n_w = min(math.floor(w / h + 0.5), math.floor(w / min_size), max_crops)
                n_w = max(2, n_w)
                n_w = min(max_crops, n_w)
                crop_w = math.ceil(w / n_w)
                crops = n_w if min(crop_w, h) >= min_size else 0
        elif h / w >= min_ratio:
            n_h = min(math.floor(h / w + 0.5), math.floor(h / min_size), max_crops)
            n_h = min(max_crops, max(2, n_h))
            crop_h = math.ceil(h / n_h)
            crops = n_h if min(w, crop_h) >= min_size else 0
    images = crops + 1
    n = per * images
    extra = 4 * images + (12 if crops else 0)  # "\n\n<start_of_image>" ... "<end_of_image>\n\n" (+ pan&scan text)
    return ItemTokens(n + extra, n, images * 4096, w, h)


def paligemma(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    v = f.vision
    assert v is not None
    n = (v.image_size // v.patch_size) ** 2
    return ItemTokens(n, n, n, w, h)


def pixtral(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    """Pixtral / Mistral-Small-3.x: scale down to fit ``longest_edge`` (floor, transformers
    ``image_processing_pixtral.get_resize_output_image_size``), then rows x (cols + 1) with [IMG_BREAK]/[IMG_END]."""
    v = f.vision
    assert v is not None
    merge = v.merge_size
    unit = v.patch_size * merge
    size = kw.get("size")
    longest = int(size.get("longest_edge", 0)) if isinstance(size, Mapping) else 0
    longest = longest or _kw_int(kw, "longest_edge", 1540 if merge > 1 else 1024)
    hh, ww = h, w
    ratio = max(hh / longest, ww / longest)
    if ratio > 1:
        hh, ww = math.floor(hh / ratio), math.floor(ww / ratio)
    rows, cols = (hh - 1) // unit + 1, (ww - 1) // unit + 1
    return ItemTokens(rows * (cols + 1), rows * cols, rows * cols * merge * merge, w, h)


def mllama(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    """Llama 3.2 Vision: one ``<|image|>`` token in the decoder; cross-attention states tiles x 1601
    (``MllamaImageProcessor``: 560-px tiles, up to ``max_image_tiles``; the canvas is chosen like Llama 4's)."""
    tiles_max = _kw_int(kw, "max_image_tiles", 4)
    gh, gw = _llama4_canvas(h, w, tiles_max, 560)
    tiles = gh * gw
    return ItemTokens(1, tiles * 1601, tiles * 1601, w, h)


def _llama4_canvas(h: int, w: int, max_chunks: int, tile: int) -> tuple[int, int]:
    """transformers ``image_processing_llama4.find_supported_resolutions`` + ``get_best_fit`` (no max-canvas resize)."""
    resolutions: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for n in range(max_chunks, 0, -1):
        for a in range(1, n + 1):
            if n % a == 0 and (a, n // a) not in seen:
                seen.add((a, n // a))
                resolutions.append((a * tile, (n // a) * tile))
    scales = [min(rw / w, rh / h) for rh, rw in resolutions]
    up = [s for s in scales if s >= 1]
    chosen = min(up) if up else max(scales)
    options = [r for r, s in zip(resolutions, scales, strict=True) if s == chosen]
    rh, rw = min(options, key=lambda r: r[0] * r[1])
    return rh // tile, rw // tile


def llama4(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    """Llama 4: 336-px tiles, 144 tokens each after pixel shuffle, a global tile when tiled, plus separators
    (transformers ``Llama4Processor._prompt_split_image``)."""
    v = f.vision
    assert v is not None
    tile = v.image_size
    per = (tile // v.patch_size) ** 2 // (v.merge_size * v.merge_size)
    gh, gw = _llama4_canvas(h, w, _kw_int(kw, "max_patches", 16), tile)
    tiles = gh * gw
    n_tiles = tiles + (1 if tiles > 1 else 0)
    n = n_tiles * per
    separators = (gh * (gw - 1) + gh) if tiles > 1 else 0
    return ItemTokens(n + separators + 3, n, n_tiles * ((tile // v.patch_size) ** 2 + 1), w, h)


def _idefics_size(h: int, w: int, longest: int, tile: int) -> tuple[int, int]:
    """transformers ``Idefics3ImageProcessor``: rescale the longest edge to ``size.longest_edge`` (even sides), then
    round each side up to a multiple of ``max_image_size``."""
    aspect = w / h
    if w >= h:
        w = longest
        h = int(w / aspect)
        h += h % 2
    else:
        h = longest
        w = int(h * aspect)
        w += w % 2
    h, w = max(h, 1), max(w, 1)
    if w > 4096 or h > 4096:  # _resize_output_size_scale_below_upper_bound(max_len=MAX_IMAGE_SIZE)
        if w >= h:
            h, w = max(int(4096 / aspect), 1), 4096
        else:
            h, w = 4096, max(int(4096 * aspect), 1)
    aspect = w / h
    if w >= h:
        w = math.ceil(w / tile) * tile
        h = math.ceil(int(w / aspect) / tile) * tile
    else:
        h = math.ceil(h / tile) * tile
        w = math.ceil(int(h * aspect) / tile) * tile
    return h, w


def idefics3(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    v = f.vision
    assert v is not None
    tile = _kw_int(kw, "max_image_size", v.image_size)
    size = kw.get("size")
    longest = int(size.get("longest_edge", 0)) if isinstance(size, Mapping) else 0
    longest = longest or _kw_int(kw, "longest_edge", 4 * tile)
    seq = _kw_int(kw, "image_seq_len", (tile // v.patch_size) ** 2 // (v.merge_size * v.merge_size))
    if kw.get("do_image_splitting", True):
        rh, rw = _idefics_size(h, w, longest, tile)
        rows, cols = rh // tile, rw // tile
    else:
        rows = cols = 1
    images = rows * cols + 1 if rows * cols > 1 else 1
    n = images * seq
    # Idefics3Processor.replace_image_token / _get_num_multimodal_tokens: <fake><global-img>...<fake> for one image;
    # split: <fake><row_i_col_j> per tile, "\n" per row, "\n<fake><global-img>...<fake>" (the "\n\n" counted as two
    # tokens, which tokenizers that merge it overcount by one)
    markers = 2 * rows * cols + rows + 4 if images > 1 else 3
    return ItemTokens(n + markers, n, images * (tile // v.patch_size) ** 2, w, h)


def minicpmv(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    """MiniCPM-V 2.6 ``get_sliced_grid`` (vLLM ``minicpmv.py``): (slices + 1) x query_num plus markers."""
    max_slices = _kw_int(kw, "max_slice_nums", 9)
    query = _kw_int(kw, "query_num", 64)
    scale_res = 448
    log_ratio = math.log(w / h)
    ratio = w * h / (scale_res * scale_res)
    multiple = min(math.ceil(ratio), max_slices)
    grid = (0, 0)
    if multiple > 1:
        best, best_err = (1, 1), math.inf
        for n in (multiple - 1, multiple, multiple + 1):
            if n == 1 or n > max_slices:
                continue
            for m in range(1, n + 1):
                if n % m == 0:
                    err = abs(log_ratio - math.log(m / (n // m)))
                    if err < best_err:
                        best, best_err = (m, n // m), err
        grid = best
    slices = grid[0] * grid[1]
    n = (slices + 1) * query
    markers = 2 + (2 * slices + grid[1] if slices else 0) + 2
    return ItemTokens(n + markers, n, (slices + 1) * 1024, w, h)


def deepseek_vl2(w: int, h: int, f: ModelFacts, kw: Mapping[str, Any]) -> ItemTokens:
    """vLLM ``deepseek_vl2.py``: 14·15 global + (nh·14)·(nw·14+1) local + 1; tiles by select_best_resolution over
    ``candidate_resolutions`` (cropping only when a prompt has <= 2 images)."""
    cands = kw.get("candidate_resolutions") or [[384, 384]]
    if kw.get("_images_in_prompt", 1) > 2:
        cands = [[384, 384]]
    bh, bw = select_best_resolution((h, w), cands)
    nh, nw = bh // 384, bw // 384
    side = math.ceil((384 // 14) / 2)
    n = side * (side + 1) + (nh * side) * (nw * side + 1) + 1
    return ItemTokens(n, n, (nh * nw + 1) * 729, w, h)


ImageFn = Callable[[int, int, ModelFacts, Mapping[str, Any]], ItemTokens]

FAMILIES: dict[str, ImageFn] = {
    "llava": llava,
    "llava_next": llava_next,
    "llava_onevision": llava_onevision,
    "qwen2_vl": qwen_vl,
    "qwen2_5_vl": qwen_vl,
    "qwen3_vl": qwen_vl,
    "glm4v": glm4v,
    "kimi_vl": kimi_vl,
    "internvl": internvl,
    "nvlm_d": internvl,
    "phi3v": phi3v,
    "phi4mm": phi4mm,
    "gemma3": gemma3,
    "paligemma": paligemma,
    "pixtral": pixtral,
    "mistral3": pixtral,
    "mllama": mllama,
    "llama4": llama4,
    "idefics3": idefics3,
    "smolvlm": idefics3,
    "minicpmv": minicpmv,
    "deepseek_vl2": deepseek_vl2,
}

#: Worst-case image sizes (width, height) vLLM profiles with, for families whose worst case is not found by scanning.
_FIXED_WORST: dict[str, tuple[int, int]] = {
    "llava": (336, 336),
    "paligemma": (224, 224),
    "gemma3": (896, 896),
}


#: sizes vLLM itself profiles with that a coarse scan misses (LLaVA-OneVision profiles 1153x944: llava_onevision.py).
_EXTRA_CANDIDATES: dict[str, tuple[tuple[int, int], ...]] = {"llava_onevision": ((1153, 944), (944, 1153))}


def merged_kwargs(facts: ModelFacts, user: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The processor's defaults from the checkpoint, overridden by ``--mm-processor-kwargs``."""
    kw = dict(facts.processor)
    for k, v in (user or {}).items():
        kw[k] = v
    return kw


def image_tokens(facts: ModelFacts, width: int, height: int, kwargs: Mapping[str, Any] | None = None) -> ItemTokens:
    fn = FAMILIES.get(facts.family)
    if fn is None or facts.vision is None:
        raise TokenError(f"{facts.model_id} ({facts.family}) takes no images")
    if width < 1 or height < 1:
        raise TokenError("image sides must be positive")
    return fn(width, height, facts, merged_kwargs(facts, kwargs))


#: candidate sizes scanned for the worst case of tiling families (sides in pixels).
_SCAN_SIDES = (
    224,
    336,
    384,
    448,
    560,
    672,
    768,
    896,
    1008,
    1024,
    1152,
    1344,
    1536,
    1792,
    2048,
    2304,
    2688,
    3072,
    3456,
    4096,
)


_WORST_CACHE: dict[tuple[str, str, str, str], ItemTokens] = {}


def max_image_tokens(facts: ModelFacts, kwargs: Mapping[str, Any] | None = None) -> ItemTokens:
    """The most one image can cost under these processor kwargs (vLLM's profiling item). Memoised: the scan for
    tiling families evaluates a few hundred sizes."""
    kw = merged_kwargs(facts, kwargs)
    key = (facts.model_id, facts.family, repr(facts.vision), json.dumps(kw, sort_keys=True, default=str))
    hit = _WORST_CACHE.get(key)
    if hit is None:
        hit = _max_image_tokens(facts, kw)
        if len(_WORST_CACHE) < 4096:
            _WORST_CACHE[key] = hit
    return hit


#: aspect ratios tried for images below ``min_pixels`` (smart_resize rejects 200 and more)
_THIN_ASPECTS = (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 100, 150, 199)
_THIN_FILL = (0.05, 0.2, 0.4, 0.6, 0.8, 0.9, 0.97, 0.995)


def _upscaled_sizes(lo: int) -> list[tuple[int, int]]:
    """Images smaller than ``min_pixels``, thin and square, both orientations. smart_resize scales these *up* with a
    ceil on each side, and the ceils can overshoot ``max_pixels`` when ``min_pixels`` is close to it: a thin image
    overshoots most (its short side gains up to one whole factor)."""
    out: list[tuple[int, int]] = []
    for aspect in _THIN_ASPECTS:
        for fill in _THIN_FILL:
            short = max(1, int(math.sqrt(lo * fill / aspect)))
            long = max(1, int(short * aspect))
            out += [(long, short), (short, long)]
    return out


def vllm_profile_image(facts: ModelFacts, kwargs: Mapping[str, Any] | None = None, version: Any = None) -> ItemTokens:
    """The image vLLM itself profiles with (``get_image_size_with_most_features``), which can cost less than the
    worst real image (:func:`max_image_tokens`).

    Qwen2/2.5/3-VL: the most-square factor pair of ``max_pixels // (patch·merge)²`` with aspect <= 200
    (vllm/model_executor/models/qwen2_vl.py ``Qwen2VLProcessingInfo.get_image_size_with_most_features``, the
    ``closest_factor_pair`` form from vllm PR #29692, ~v0.12.0; before it, e.g. vllm@002d181a,
    ``smart_resize(9999999, 9999999)``, a square, which is never larger: ``releases.factorises_qwen_profile_image``).
    ``version`` None means the newest form. GLM-4.1V: the factorisation on ``max_pixels / 2``. Other families:
    their worst case is the size vLLM profiles.
    """
    kw = merged_kwargs(facts, kwargs)
    fn = FAMILIES.get(facts.family)
    if fn is None or facts.vision is None:
        raise TokenError(f"{facts.model_id} ({facts.family}) takes no images")
    if facts.family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        from vlm_operator import releases

        if version is not None and not releases.factorises_qwen_profile_image(version):
            patch, merge, lo, hi = _qwen_params(facts, kw)
            side_h, side_w = smart_resize(9999999, 9999999, patch * merge, lo, hi)
            return fn(side_w, side_h, facts, kw)
        w, h = qwen_vl_max_size(facts, kw)
        return fn(w, h, facts, kw)
    if facts.family == "glm4v":
        w, h = glm4v_max_size(facts, kw)
        return fn(w, h, facts, kw)
    return max_image_tokens(facts, kw)


def _max_image_tokens(facts: ModelFacts, kw: dict[str, Any]) -> ItemTokens:
    fam = facts.family
    fn = FAMILIES.get(fam)
    if fn is None or facts.vision is None:
        raise TokenError(f"{facts.model_id} ({fam}) takes no images")
    if fam in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "glm4v"):
        w, h = qwen_vl_max_size(facts, kw) if fam != "glm4v" else glm4v_max_size(facts, kw)
        best = fn(w, h, facts, kw)
        patch, merge, lo, hi = _qwen_params(facts, kw)
        unit = patch * merge
        if hi < 4 * lo and fam != "glm4v":
            # Near min_pixels, smart_resize scales small sizes *up*, so a smaller max_pixels can cost more tokens;
            # take the envelope over smaller budgets so the estimate stays monotone in max_pixels.
            for seq in range(1, max(1, hi // (unit * unit))):
                sw, sh = _factor_size(unit, seq)
                cand = fn(sw, sh, facts, kw)
                if cand.embeds > best.embeds:
                    best = cand
        # the true worst case: an image below min_pixels that the ceil-upscale pushes past max_pixels. The ceils add
        # at most one factor to each side: with an aspect ratio under 200 the upscaled area stays below
        # lo + factor·(sqrt(200·lo) + sqrt(lo)) + factor² (doubled for GLM's two-frame images), so the scan only runs
        # when that can pass max_pixels
        reach = lo + 2 * unit * (math.sqrt(200 * lo) + math.sqrt(lo)) + 2 * unit * unit
        for sw, sh in _upscaled_sizes(lo) if reach > hi else ():
            try:
                cand = fn(sw, sh, facts, kw)
            except TokenError:  # aspect ratio >= 200 after rounding
                continue
            if cand.embeds > best.embeds:
                best = cand
        return best
    if fam in _FIXED_WORST:
        w, h = _FIXED_WORST[fam]
        if fam == "gemma3" and kw.get("do_pan_and_scan"):
            return max((fn(s, 896, facts, kw) for s in (896 * 2, 896 * 3, 896 * 4, 896 * 5)), key=lambda t: t.prompt)
        return fn(w, h, facts, kw)
    if fam == "phi4mm":
        # vLLM profiles one 448 x (448 * dynamic_hd) image: a 1 x dynamic_hd grid, the costliest layout
        # (phi4mm.py ``get_image_size_with_most_features``: 10,065 tokens at the default 36)
        crops = _kw_int(kw, "dynamic_hd", 36)
        return fn(448, 448 * crops, facts, kw)
    if fam in ("pixtral", "mistral3"):
        size = kw.get("size")
        longest = int(size.get("longest_edge", 0)) if isinstance(size, Mapping) else 0
        longest = longest or (1540 if fam == "mistral3" else 1024)
        return fn(longest, longest, facts, kw)
    scanned: ItemTokens | None = None
    sizes = [(sw, sh) for sw in _SCAN_SIDES for sh in _SCAN_SIDES] + list(_EXTRA_CANDIDATES.get(fam, ()))
    for sw, sh in sizes:
        t = fn(sw, sh, facts, kw)
        if scanned is None or (t.prompt, t.embeds) > (scanned.prompt, scanned.embeds):
            scanned = t
    assert scanned is not None
    return scanned


def image_prompt_tokens(
    model: ModelFacts | str, width: int, height: int, processor_kwargs: Mapping[str, Any] | None = None
) -> int:
    """Prompt tokens one ``width`` x ``height`` image occupies for ``model`` (a catalog id or facts) under these
    ``--mm-processor-kwargs``: the placeholder run plus the start/end/tile/row markers the processor inserts, i.e.
    the positions the real engine's prompt gains for the image. For cross-attention models (Mllama) that is the one
    ``<|image|>`` token; the encoder states go to the cross-attention cache instead (:func:`modality_costs`).

    The entry point for cross-checks against a real engine (tests/vllm): count the prompt's token ids with and
    without the image and compare."""
    if isinstance(model, str):
        from vlm_operator.models import catalog

        model = catalog.lookup(model)
    return image_tokens(model, width, height, processor_kwargs).prompt


@dataclass(frozen=True)
class ModalityCost:
    """What one item of a modality costs, as ``vlmctl estimate`` reports it (docs/estimator.md §4 defines each)."""

    modality: str
    #: encoder output features of the worst-case item: what vLLM profiles and stores in the encoder cache
    encoder_tokens: int
    #: positions the item occupies in the prompt (placeholders + start/end/tile/row markers), counted against
    #: max_model_len and the KV cache
    prompt_tokens: int
    #: the markers among ``prompt_tokens`` (start/end, tile separators, row breaks, thumbnails' tags): prompt tokens
    #: that no encoder feature fills
    marker_tokens: int
    #: vision-encoder input patches of the item (drives the encoder's activation memory)
    encoder_input_patches: int
    #: (width, height) of the worst-case item
    size: tuple[int, int]
    #: what vLLM's own profiling item ("most features" size) costs in encoder tokens and prompt tokens
    vllm_profile_encoder_tokens: int
    vllm_profile_prompt_tokens: int
    #: a real item can cost more than vLLM's profiling item; the estimate keeps the real worst case
    exceeds_vllm_profile: bool
    #: cross-attention models: encoder states kept per sequence (tokens, and bytes over every cross-attention layer
    #: of one rank); 0 for models that put the features in the prompt
    cross_attention_tokens_per_sequence: int = 0
    cross_attention_bytes_per_sequence: float = 0.0
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "encoder_tokens": self.encoder_tokens,
            "prompt_tokens": self.prompt_tokens,
            "marker_tokens": self.marker_tokens,
            "encoder_input_patches": self.encoder_input_patches,
            "worst_case_size": list(self.size),
            "vllm_profile_encoder_tokens": self.vllm_profile_encoder_tokens,
            "vllm_profile_prompt_tokens": self.vllm_profile_prompt_tokens,
            "exceeds_vllm_profile": self.exceeds_vllm_profile,
            "cross_attention_tokens_per_sequence": self.cross_attention_tokens_per_sequence,
            "cross_attention_gib_per_sequence": round(self.cross_attention_bytes_per_sequence / 1024**3, 3),
            "note": self.note,
        }


def modality_costs(
    facts: ModelFacts,
    costs: Mapping[str, ItemTokens],
    *,
    kwargs: Mapping[str, Any] | None = None,
    limits: Mapping[str, int] | None = None,
    cross_bytes_per_token: float = 0.0,
    version: Any = None,
) -> dict[str, ModalityCost]:
    """The per-modality report for the worst-case items ``costs`` (what the estimate used).

    ``cross_bytes_per_token``: KV bytes one encoder token takes over one rank's cross-attention layers (Mllama);
    the states per sequence are ``limit × encoder tokens`` (vLLM V0 ``MllamaMultiModalProcessor``: every image's
    ``tiles × 1601`` states stay in the sequence's cross-attention cache).
    """
    out: dict[str, ModalityCost] = {}
    cross = facts.family == "mllama"
    for modality, item in costs.items():
        profile = item
        note = ""
        if modality == "image":
            profile = vllm_profile_image(facts, kwargs, version)
        elif modality == "video" and facts.family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "glm4v"):
            # vLLM's profiled video is frames of its "most features" image size (get_max_video_tokens)
            frame, vllm_frame = max_image_tokens(facts, kwargs), vllm_profile_image(facts, kwargs, version)
            groups = item.embeds // max(1, frame.embeds)
            n = groups * vllm_frame.embeds
            profile = ItemTokens(n + 2, n, groups * vllm_frame.patches, vllm_frame.width, vllm_frame.height)
        exceeds = (item.embeds, item.prompt) > (profile.embeds, profile.prompt) and item != profile
        if exceeds:
            what = "image" if modality == "image" else f"{modality} (frames of that size)"
            note = (
                f"a {item.width}x{item.height} {what} costs {item.embeds} encoder tokens, more than the "
                f"{profile.embeds} of the {profile.width}x{profile.height} one vLLM profiles with; the estimate "
                "keeps the larger"
            )
            if facts.family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl") and profile.width == profile.height:
                note += (
                    " (this release profiles a square image: when max_num_batched_tokens is below the real item's "
                    "tokens its encoder budget cannot schedule it, fixed by vllm PR #29692)"
                )
        in_prompt = item.prompt if cross else item.embeds  # Mllama: the one <|image|> token is the placeholder
        states = item.embeds * max(1, (limits or {}).get(modality, 1)) if cross else 0
        if cross:
            note = (
                note + "; " if note else ""
            ) + "one <|image|> token in the prompt; the features go to cross-attention"
        out[modality] = ModalityCost(
            modality=modality,
            encoder_tokens=item.embeds,
            prompt_tokens=item.prompt,
            marker_tokens=max(0, item.prompt - in_prompt),
            encoder_input_patches=item.patches,
            size=(item.width, item.height),
            vllm_profile_encoder_tokens=profile.embeds,
            vllm_profile_prompt_tokens=profile.prompt,
            exceeds_vllm_profile=exceeds,
            cross_attention_tokens_per_sequence=states,
            cross_attention_bytes_per_sequence=states * cross_bytes_per_token,
            note=note,
        )
    return out


def video_tokens(facts: ModelFacts, num_frames: int, kwargs: Mapping[str, Any] | None = None) -> ItemTokens:
    """Frames x tokens per frame with the family's temporal merge, at the largest frame size."""
    if num_frames < 1:
        raise TokenError("a video needs at least one frame")
    kw = merged_kwargs(facts, kwargs)
    fam = facts.family
    if fam in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "glm4v"):
        frame = max_image_tokens(facts, kw)
        temporal = facts.vision.temporal_patch_size if facts.vision else 2
        # Qwen2VLProcessingInfo.get_num_video_tokens: frames padded to a multiple of temporal_patch_size, at least one
        groups = max(num_frames // max(1, temporal), 1)
        return ItemTokens(
            groups * frame.embeds + 2, groups * frame.embeds, groups * frame.patches, frame.width, frame.height
        )
    if fam == "llava_onevision":
        per = math.ceil(27 / 2) ** 2  # 196 pooled tokens per frame, one newline per video
        return ItemTokens(num_frames * per + 1, num_frames * per, num_frames * 729)
    if fam in ("internvl", "minicpmv"):
        one = FAMILIES[fam](448, 448, facts, dict(kw, max_dynamic_patch=1, max_slice_nums=1))
        return ItemTokens(num_frames * one.prompt, num_frames * one.embeds, num_frames * one.patches)
    raise TokenError(f"{facts.model_id} takes no video")
