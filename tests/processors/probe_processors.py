"""Run the real Hugging Face image processors on synthetic images; print what they produce, as JSON.

Runs INSIDE the cached processors venv (hack/processors_venv.sh: transformers + pillow + numpy, no torch), never with
the repository on sys.path. Reads a JSON request on stdin:

    {"cases": [{"id": str, "kind": str, "config": {...preprocessor_config.json...}, "processor": {...},
                "sizes": [[width, height], ...]}]}

and prints {"transformers": version, "results": {id: [per size: {...} or {"error": str}]}}. Every count comes from the
processor's own output (``image_grid_thw``, ``num_crops``, ``num_tiles``, rows/cols, the prompt string it builds) or
from the processor class's own token-count method; nothing here re-implements a formula.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import transformers
from PIL import Image


def image(w: int, h: int) -> Image.Image:
    # A cheap non-constant pattern (constant images are fine too; the counts depend on the size only).
    return Image.new("RGB", (w, h), (40, 90, 160))


def _bare(cls: type, **attrs: Any) -> Any:
    """A processor instance without a tokenizer: only the attributes its token-count methods read."""
    obj: Any = object.__new__(cls)
    for k, v in attrs.items():
        setattr(obj, k, v)
    return obj


def qwen(cfg: dict[str, Any], proc: dict[str, Any], w: int, h: int) -> dict[str, Any]:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    ip = Qwen2VLImageProcessorPil(**cfg)
    out = ip(images=[image(w, h)], return_tensors="np")
    t, gh, gw = (int(x) for x in out["image_grid_thw"][0])
    merge = int(cfg.get("merge_size", 2))
    return {"patches": t * gh * gw, "embeds": t * gh * gw // (merge * merge), "grid": [t, gh, gw]}


def glm4v(cfg: dict[str, Any], proc: dict[str, Any], w: int, h: int) -> dict[str, Any]:
    from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil

    ip = Glm4vImageProcessorPil(**cfg)
    out = ip(images=[image(w, h)], return_tensors="np")
    t, gh, gw = (int(x) for x in out["image_grid_thw"][0])
    merge = int(cfg.get("merge_size", 2))
    return {"patches": t * gh * gw, "embeds": t * gh * gw // (merge * merge), "grid": [t, gh, gw]}


def llava(cfg: dict[str, Any], proc: dict[str, Any], w: int, h: int) -> dict[str, Any]:
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    ip = CLIPImageProcessorPil(**cfg)
    pv = ip(images=[image(w, h)], return_tensors="np")["pixel_values"]
    patch = int(proc["patch_size"])
    n = (pv.shape[-2] // patch) * (pv.shape[-1] // patch)
    if proc.get("vision_feature_select_strategy", "default") == "full":
        n += 1
    return {"embeds": n, "pixel_values": list(pv.shape)}


def llava_next(cfg: dict[str, Any], proc: dict[str, Any], w: int, h: int) -> dict[str, Any]:
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
    from transformers.models.llava_next.processing_llava_next import LlavaNextProcessor

    ip = LlavaNextImageProcessorPil(**cfg)
    out = ip(images=[image(w, h)], return_tensors="np")
    tiles = int(out["pixel_values"].shape[1])
    p = _bare(
        LlavaNextProcessor,
        image_processor=ip,
        patch_size=int(proc["patch_size"]),
        vision_feature_select_strategy=proc.get("vision_feature_select_strategy", "default"),
        num_additional_image_tokens=int(proc.get("num_additional_image_tokens", 1)),
    )
    # the processor's own count (what it expands <image> to; -1 for the CLS with the "default" strategy)
    n = p._get_num_multimodal_tokens(image_sizes=[[h, w]])["num_image_tokens"][0]
    return {"embeds": int(n), "tiles": tiles}


def llava_onevision(cfg: dict[str, Any], proc: dict[str, Any], w: int, h: int) -> dict[str, Any]:
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )
    from transformers.models.llava_onevision.processing_llava_onevision import LlavaOnevisionProcessor

    ip = LlavaOnevisionImageProcessorPil(**cfg)
    out = ip(images=[image(w, h)], return_tensors="np")
    tiles = int(out["pixel_values"].shape[1])
    p = _bare(
        LlavaOnevisionProcessor,
        image_processor=ip,
        num_image_tokens=int(proc["num_image_tokens"]),
        vision_aspect_ratio=proc.get("vision_aspect_ratio", "anyres_max_9"),
        vision_feature_select_strategy=proc.get("vision_feature_select_strategy", "full"),
    )
    n = p._get_num_multimodal_tokens(image_sizes=[[h, w]])["num_image_tokens"][0]
    return {"embeds": int(n), "tiles": tiles}


def idefics3(cfg: dict[str, Any], proc: dict[str, Any], w: int, h: int) -> dict[str, Any]:
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
    from transformers.models.idefics3.processing_idefics3 import Idefics3Processor

    ip = Idefics3ImageProcessorPil(**cfg)
    out = ip(images=[[image(w, h)]], return_row_col_info=True, return_tensors="np")
    rows, cols = int(out["rows"][0][0]), int(out["cols"][0][0])
    p = _bare(
        Idefics3Processor,
        image_processor=ip,
        image_seq_len=int(proc["image_seq_len"]),
        fake_image_token="<fake_token_around_image>",
        image_token="<image>",
        global_image_tag="<global-img>",
        # one token per character: "\n\n" counts as two tokens (tokenizers that merge it count one fewer)
        tokenizer=lambda text, add_special_tokens=False: {"input_ids": list(text)},
    )
    text = p.replace_image_token({"rows": [[rows]], "cols": [[cols]]}, 0)
    n = p._get_num_multimodal_tokens(image_sizes=[[h, w]])["num_image_tokens"][0]
    return {"embeds": text.count("<image>"), "prompt": int(n), "rows": rows, "cols": cols}


def gemma3(cfg: dict[str, Any], proc: dict[str, Any], w: int, h: int) -> dict[str, Any]:
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    ip = Gemma3ImageProcessorPil(**cfg)
    out = ip(images=[image(w, h)], return_tensors="np")
    crops = int(np.asarray(out["num_crops"]).reshape(-1)[0])
    per = int(proc.get("image_seq_length", 256))
    return {"embeds": (crops + 1) * per, "crops": crops, "images": int(out["pixel_values"].shape[0])}


def pixtral(cfg: dict[str, Any], proc: dict[str, Any], w: int, h: int) -> dict[str, Any]:
    from transformers.models.pixtral.image_processing_pil_pixtral import PixtralImageProcessorPil

    # PixtralProcessor.__call__ passes patch_size * spatial_merge_size to the image processor and divides by it.
    unit = int(proc["patch_size"]) * int(proc.get("spatial_merge_size", 1))
    ip = PixtralImageProcessorPil(**cfg)
    out = ip(images=[image(w, h)], patch_size={"height": unit, "width": unit}, return_tensors="np")
    rh, rw = (int(x) for x in out["image_sizes"][0])
    rows, cols = rh // unit, rw // unit
    return {"embeds": rows * cols, "prompt": rows * (cols + 1), "resized": [rh, rw]}


def mllama(cfg: dict[str, Any], proc: dict[str, Any], w: int, h: int) -> dict[str, Any]:
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

    ip = MllamaImageProcessorPil(**cfg)
    out = ip(images=[[image(w, h)]], return_tensors="np")
    tiles = int(np.asarray(out["num_tiles"]).reshape(-1)[0])
    return {"tiles": tiles, "embeds": tiles * 1601}


def internvl_hf(cfg: dict[str, Any], proc: dict[str, Any], w: int, h: int) -> dict[str, Any]:
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    ip = GotOcr2ImageProcessorPil(**cfg)
    out = ip(images=[image(w, h)], return_tensors="np")
    tiles = int(np.asarray(out["num_patches"]).reshape(-1)[0])
    return {"tiles": tiles, "embeds": tiles * int(proc["image_seq_length"])}


def _llama4_helpers() -> dict[str, Any]:
    """``find_supported_resolutions`` and ``get_best_fit`` from transformers' own Llama 4 module source (ast), run
    over a float32 numpy stand-in for the four torch calls they make: the module itself imports torch/torchvision,
    which this venv does not have (its image processor is torchvision-only)."""
    import ast
    import types
    from collections import defaultdict
    from functools import lru_cache
    from importlib.util import find_spec

    spec = find_spec("transformers.models.llama4.image_processing_llama4")
    assert spec is not None and spec.origin is not None
    with open(spec.origin, encoding="utf-8") as fh:
        src = fh.read()
    tree = ast.parse(src)
    wanted = {"get_factors", "find_supported_resolutions", "get_best_fit", "get_max_res_without_distortion"}
    body: list[ast.stmt] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    mod = ast.Module(body=body, type_ignores=[])

    class T(np.ndarray):  # type: ignore[misc]  # torch semantics: int tensor / number -> float32
        def __truediv__(self, other: Any) -> Any:
            return np.true_divide(np.asarray(self), other, dtype=np.float32).view(T)

    fake_torch = types.SimpleNamespace(
        Tensor=np.ndarray,
        where=lambda c, a, b: np.where(c, a, b).view(T),
        max=lambda a: np.max(a),
        min=lambda a: np.min(a),
        argmin=lambda a: int(np.argmin(a)),
        tensor=lambda x, device=None: np.asarray(x, dtype=np.int64).view(T),
    )
    ns: dict[str, Any] = {"torch": fake_torch, "defaultdict": defaultdict, "lru_cache": lru_cache, "SizeDict": None}
    exec(compile(mod, spec.origin, "exec"), ns)
    return ns


_L4: dict[str, Any] = {}


def llama4(cfg: dict[str, Any], proc: dict[str, Any], w: int, h: int) -> dict[str, Any]:
    from transformers.image_utils import SizeDict
    from transformers.models.llama4.processing_llama4 import Llama4Processor

    if not _L4:
        _L4.update(_llama4_helpers())
    size = SizeDict(height=int(cfg["size"]["height"]), width=int(cfg["size"]["width"]))
    res = _L4["find_supported_resolutions"](max_num_chunks=int(cfg.get("max_patches", 16)), patch_size=size)
    canvas = _L4["get_best_fit"]((h, w), _L4["torch"].tensor(res), resize_to_max_canvas=False)
    ch, cw = int(canvas[0]), int(canvas[1])
    gh, gw = ch // size.height, cw // size.width
    per = int(proc["num_patches_per_chunk"])
    p = _bare(
        Llama4Processor,
        start_of_img_token="<|image_start|>",
        end_of_img_token="<|image_end|>",
        img_patch_token="<|patch|>",
        tile_token="<|tile_x_separator|>",
        tile_global_token="<|tile_y_separator|>",
        image_token="<|image|>",
        fake_image_token="<|image|>",
    )
    text = p._prompt_split_image((gh, gw), per)
    markers = sum(
        text.count(t)
        for t in ("<|image_start|>", "<|image_end|>", "<|tile_x_separator|>", "<|tile_y_separator|>", "<|image|>")
    )
    return {"canvas": [gh, gw], "embeds": text.count("<|patch|>"), "prompt": text.count("<|patch|>") + markers}


KINDS: dict[str, Callable[[dict[str, Any], dict[str, Any], int, int], dict[str, Any]]] = {
    "qwen": qwen,
    "glm4v": glm4v,
    "llava": llava,
    "llava_next": llava_next,
    "llava_onevision": llava_onevision,
    "idefics3": idefics3,
    "gemma3": gemma3,
    "pixtral": pixtral,
    "mllama": mllama,
    "internvl_hf": internvl_hf,
    "llama4": llama4,
}


def main() -> None:
    req = json.load(sys.stdin)
    results: dict[str, list[dict[str, Any]]] = {}
    for case in req["cases"]:
        fn = KINDS[case["kind"]]
        cfg = {k: v for k, v in case["config"].items() if not k.startswith("_")}
        rows = []
        for w, h in case["sizes"]:
            try:
                rows.append(fn(dict(cfg), case.get("processor", {}), int(w), int(h)))
            except Exception as e:  # the processor rejecting a size is a result too
                rows.append({"error": f"{type(e).__name__}: {e}"[:300]})
        results[case["id"]] = rows
    json.dump({"transformers": transformers.__version__, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
