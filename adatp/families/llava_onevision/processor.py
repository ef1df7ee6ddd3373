"""LLaVA-OneVision / LLaVA-Video inputs: what ``LlavaOnevisionProcessor`` does for one video.

``transformers``' video processors need torchvision, which adatp does not depend on, so this
rebuilds it: render the checkpoint's chat template, expand the ``<video>`` placeholder to
``T * ceil(p / 2) ** 2 + 1`` tokens (``p`` patches per side; the pooled grid of every frame plus ONE
newline for the whole video, as ``LlavaOnevisionProcessor.replace_video_token``), tokenise, and
preprocess the frames with the checkpoint's own settings (:mod:`adatp.video.preprocess`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adatp.errors import ConfigError, InputError, UnsupportedModelError
from adatp.families.processing import VideoProcessor, checked_token_id, load_chat_template, render, tokenize_expanded
from adatp.video.preprocess import load_preprocess_config, preprocess_frames

VIDEO_TOKEN = "<video>"
IMAGE_TOKEN = "<image>"


class LlavaOnevisionProcessor(VideoProcessor):
    placeholder = VIDEO_TOKEN
    placeholders = (VIDEO_TOKEN, IMAGE_TOKEN)
    pixel_keys = ("pixel_values_videos",)
    video_token_key = "video_token_index"

    @classmethod
    def check_config(cls, config: Any, model_dir: Path) -> None:
        if getattr(config, "vision_config", None) is None or getattr(config, "video_token_index", None) is None:
            raise UnsupportedModelError(
                f"{str(model_dir)!r} holds a {config.model_type!r} model without a vision tower or video token: "
                "not a LLaVA-OneVision / LLaVA-Video checkpoint (model_type 'llava_onevision')"
            )

    @classmethod
    def tokens_per_frame(cls, config: Any) -> int:
        """Video tokens of one frame: the ``p x p`` patch grid bilinearly pooled to ``ceil(p/2)`` a side."""
        patches = config.vision_config.image_size // config.vision_config.patch_size
        return math.ceil(patches / 2) ** 2

    @classmethod
    def video_token_count(cls, config: Any, num_frames: int) -> int:
        """``num_frames * tokens_per_frame + 1``: one newline token closes the whole video."""
        return num_frames * cls.tokens_per_frame(config) + 1

    @classmethod
    def build_inputs(cls, model_dir, config, tokenizer, video, question, system_prompt, fps):
        """The template's ``<video>`` expanded to ``T * ceil(p/2)^2 + 1`` tokens, frames resized to the
        tower's square (``adatp.video.preprocess``)."""
        from transformers import BatchFeature

        if fps is not None:
            raise InputError("fps is read by Qwen-VL checkpoints only; LLaVA-OneVision prompts carry no time")
        video_id = checked_token_id(tokenizer, VIDEO_TOKEN, cls.video_token_id(config), cls.video_token_key)
        prompt = render(tokenizer, load_chat_template(model_dir, tokenizer), question, system_prompt, VIDEO_TOKEN)
        expected = cls.video_token_count(config, video.shape[0])
        text = prompt.replace(VIDEO_TOKEN, VIDEO_TOKEN * expected, 1)
        input_ids = tokenize_expanded(tokenizer, text, video_id, expected, VIDEO_TOKEN)
        pixels = _pixels(model_dir, video, config)
        return BatchFeature({"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "pixel_values_videos": pixels})


def _pixels(model_dir: Path, video: np.ndarray, config: Any) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (1, T, 3, S, S) float32, S = the vision tower's image size."""
    pixels = preprocess_frames(video, load_preprocess_config(model_dir))
    size = config.vision_config.image_size
    if tuple(pixels.shape) != (video.shape[0], 3, size, size):
        raise ConfigError(
            f"preprocessing in {str(model_dir)!r} gives frames of shape {tuple(pixels.shape)}, but the vision tower "
            f"takes ({video.shape[0]}, 3, {size}, {size}): the preprocessing config does not match config.json"
        )
    return pixels.to(torch.float32).unsqueeze(0)
