"""GLM-4.1V inputs, as transformers 5.23's ``Glm4vProcessor`` and ``Glm4vVideoProcessor`` build them.

The template's ``<|begin_of_video|><|video|><|end_of_video|>`` keeps its markers; ``<|video|>`` becomes,
per token grid (two frames), ``<|begin_of_image|>`` + ``H * W / merge^2`` ``<|image|>`` +
``<|end_of_image|>`` + the grid's first frame time in whole seconds (``replace_frame_token_id``).
Frames are resized over the whole video by GLM's ``smart_resize`` (multiples of ``patch * merge``;
frames smaller than that are scaled up first; ``t_bar * h * w`` within the pixel limits), then
rescaled, normalised and patchified as Qwen2-VL's (:mod:`adatp.families.qwen2_vl.preprocess`).
"""

from __future__ import annotations

import math
from typing import Any

from adatp.errors import InputError, VideoError
from adatp.families.qwen2_vl.processor import Qwen2VLProcessor

VIDEO_TOKEN = "<|video|>"
IMAGE_TOKEN = "<|image|>"
BEGIN_IMAGE, END_IMAGE = "<|begin_of_image|>", "<|end_of_image|>"


class Glm4vProcessor(Qwen2VLProcessor):
    placeholder = VIDEO_TOKEN
    pad_token = IMAGE_TOKEN
    placeholders = (VIDEO_TOKEN, IMAGE_TOKEN, BEGIN_IMAGE, END_IMAGE, "<|begin_of_video|>", "<|end_of_video|>")
    pixel_keys = ("pixel_values_videos",)
    #: transformers 5.23 ``Glm4vVideoProcessor`` class defaults (CLIP mean/std, 2 fps).
    preprocess_defaults = dict(min_pixels=112 * 112, max_pixels=28 * 28 * 2 * 30000, fps=2.0,
                               mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))

    @classmethod
    def video_token_id(cls, config: Any) -> int:
        """GLM fills video grids with the image token (``mm_token_type_ids`` 2 marks them as video)."""
        return int(config.image_token_id)

    @classmethod
    def resized_size(cls, num_frames: int, height: int, width: int, settings) -> tuple[int, int]:
        return glm_smart_resize(num_frames, height, width, settings.temporal_patch_size,
                                settings.patch_size * settings.merge_size, settings.min_pixels, settings.max_pixels)

    @classmethod
    def grid_times(cls, num_frames: int, fps: float, temporal: int) -> list[float]:
        """``video_metadata.timestamps[::2]``: the time of each grid's first frame (frame i at i / fps)."""
        return [i / fps for i in range(0, num_frames, temporal)]

    @classmethod
    def frame_time(cls, seconds: float) -> str:
        """GLM-4.1V writes whole seconds."""
        return str(int(seconds))

    @classmethod
    def expand_video(cls, pad: str, grids: int, per_grid: int, times: list[float]) -> str:
        return "".join(f"{BEGIN_IMAGE}{pad * per_grid}{END_IMAGE}{cls.frame_time(s)}" for s in times[:grids])


def glm_smart_resize(num_frames: int, height: int, width: int, temporal: int, factor: int, min_pixels: int,
                     max_pixels: int) -> tuple[int, int]:
    """GLM-4.1V / GLM-4.6V's rule (``video_processing_glm4v.smart_resize``), whole video at once."""
    if num_frames < temporal:
        raise InputError(f"GLM video inputs need at least {temporal} frames (one temporal patch), got {num_frames}")
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > 200:
        raise VideoError(f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    t_bar = round(num_frames / temporal) * temporal
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt((num_frames * height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar
