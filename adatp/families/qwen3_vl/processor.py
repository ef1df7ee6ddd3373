"""Qwen3-VL inputs (transformers 5.23 ``Qwen3VLProcessor``): timestamps between the token grids,
mean/std 0.5, 16 px patches, and ``smart_resize`` over the whole video."""

from __future__ import annotations

from adatp.families.qwen2_vl.processor import Qwen2VLProcessor


class Qwen3VLProcessor(Qwen2VLProcessor):
    preprocess_defaults = dict(min_pixels=128 * 32 * 32, max_pixels=768 * 32 * 32, fps=2.0, mean=(0.5, 0.5, 0.5),
                               std=(0.5, 0.5, 0.5))
    resize_whole_video = True

    @staticmethod
    def expand_video(pad: str, grids: int, per_grid: int, times: list[float]) -> str:
        """Per grid ``<{t:.1f} seconds><|vision_start|>`` pads ``<|vision_end|>``, inside the template's own
        start/end markers (5.23 replaces the pad token alone)."""
        return "".join(f"<{s:.1f} seconds><|vision_start|>" + pad * per_grid + "<|vision_end|>" for s in times)
