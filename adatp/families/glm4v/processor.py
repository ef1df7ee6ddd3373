"""GLM-4.1V / GLM-4.6V inputs (transformers 5.23 ``Glm4vProcessor`` / ``Glm46VProcessor``)."""

from __future__ import annotations

from typing import Any

from adatp.families.qwen2_vl.processor import Qwen2VLProcessor

VIDEO_TOKEN = "<|video|>"
IMAGE_TOKEN = "<|image|>"


class Glm4vProcessor(Qwen2VLProcessor):
    placeholder = VIDEO_TOKEN
    placeholders = (VIDEO_TOKEN, IMAGE_TOKEN, "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
                    "<|end_of_video|>")
    pixel_keys = ("pixel_values_videos",)

    @classmethod
    def video_token_id(cls, config: Any) -> int:
        """GLM fills video grids with the image token (``mm_token_type_ids`` 2 marks them as video)."""
        return int(config.image_token_id)
