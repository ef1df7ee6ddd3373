"""GLM-4.1V inputs, as transformers 5.23's ``Glm4vProcessor`` and ``Glm4vVideoProcessor`` build them.

The template's ``<|begin_of_video|><|video|><|end_of_video|>`` keeps its markers; ``<|video|>`` becomes,
per token grid (two frames), ``<|begin_of_image|>`` + ``H * W / merge^2`` ``<|image|>`` +
``<|end_of_image|>`` + the grid's first frame time in whole seconds (``replace_frame_token_id``).
Frames are resized over the whole video by GLM's ``smart_resize``, which is Qwen3-VL's rule
(multiples of ``patch * merge``; frames smaller than that are scaled up first; ``t_bar * h * w``
within the pixel limits), then rescaled, normalised and patchified as Qwen2-VL's
(:mod:`adatp.families.qwen2_vl.preprocess`).
"""

from __future__ import annotations

from adatp.families.qwen2_vl.processor import Qwen2VLProcessor

VIDEO_TOKEN = "<|video|>"
IMAGE_TOKEN = "<|image|>"
BEGIN_IMAGE, END_IMAGE = "<|begin_of_image|>", "<|end_of_image|>"


class Glm4vProcessor(Qwen2VLProcessor):
    placeholder = VIDEO_TOKEN
    pad_token = IMAGE_TOKEN
    placeholders = (VIDEO_TOKEN, IMAGE_TOKEN, BEGIN_IMAGE, END_IMAGE, "<|begin_of_video|>", "<|end_of_video|>")
    pixel_keys = ("pixel_values_videos",)
    video_token_key = "image_token_id"  # GLM fills video grids with the image token (token type 2 marks them)
    #: transformers 5.23 ``Glm4vVideoProcessor`` class defaults (CLIP mean/std, 2 fps).
    preprocess_defaults = dict(min_pixels=112 * 112, max_pixels=28 * 28 * 2 * 30000, fps=2.0,
                               mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))
    #: GLM's ``smart_resize`` is Qwen3-VL's whole-video rule (same code in transformers 5.23).
    resize_whole_video = True

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

