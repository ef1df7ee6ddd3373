"""InternVL3 / InternVL3.5 inputs, as transformers 5.23's ``InternVLProcessor`` builds them for one video.

Video inference in InternVL uses one 448 px tile per frame and no thumbnail (``max_num=1``): the
video processor resizes every frame to the tower's square, and the template's ``<video>`` becomes,
per frame, ``Frame{i}: <img>`` + ``image_seq_length`` ``<IMG_CONTEXT>`` + ``</img>``, the frames joined
by a newline (``InternVLProcessor.replace_video_token``). The frames reach the model as
``pixel_values`` (T, 3, S, S), as images do. The ``Frame{i}:`` text, the markers and the newlines sit
between the frames' tokens: text, never pruned.

Pixels follow the torchvision backend of ``InternVLVideoProcessor``: bicubic resize with antialias on
uint8, then rescale and normalise fused in float32 (:mod:`adatp.families.qwen2_vl.preprocess` holds
the torch-only steps, shared).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from adatp.errors import ConfigError, InputError, UnsupportedModelError
from adatp.families.processing import VideoProcessor, checked_token_id, load_chat_template, render, tokenize_expanded
from adatp.families.qwen2_vl.preprocess import rescale_and_normalize, resize_video
from adatp.video.preprocess import load_preprocess_config

VIDEO_TOKEN = "<video>"
IMAGE_TOKEN = "<image>"
START_IMAGE = "<img>"
END_IMAGE = "</img>"
CONTEXT_IMAGE = "<IMG_CONTEXT>"


class InternVLProcessor(VideoProcessor):
    placeholder = VIDEO_TOKEN
    placeholders = (VIDEO_TOKEN, IMAGE_TOKEN, START_IMAGE, END_IMAGE, CONTEXT_IMAGE)
    pixel_keys = ("pixel_values",)
    video_token_key = "image_token_id"  # <IMG_CONTEXT>: every frame's tokens are image tokens

    @classmethod
    def check_config(cls, config: Any, model_dir: Path) -> None:
        if getattr(config, "vision_config", None) is None or getattr(config, "image_token_id", None) is None:
            raise UnsupportedModelError(f"{str(model_dir)!r} holds an {config.model_type!r} model without a vision tower")

    @classmethod
    def tokens_per_frame(cls, config: Any) -> int:
        """``(S / p)^2 * r^2`` tokens a frame: the patch grid pixel-shuffled by ``downsample_ratio`` r."""
        side = grid_side(config)
        return side * side

    @classmethod
    def video_token_count(cls, config: Any, num_frames: int) -> int:
        return num_frames * cls.tokens_per_frame(config)

    @staticmethod
    def expand_video(num_frames: int, per_frame: int) -> str:
        """``InternVLProcessor.replace_video_token``: ``Frame{i}: <img>`` context tokens ``</img>``, joined by newlines."""
        return "\n".join(f"Frame{i + 1}: {START_IMAGE}{CONTEXT_IMAGE * per_frame}{END_IMAGE}" for i in range(num_frames))

    @classmethod
    def build_inputs(cls, model_dir, config, tokenizer, video, question, system_prompt, fps):
        from transformers import BatchFeature

        if fps is not None:
            raise InputError("fps is read by Qwen-VL and GLM checkpoints only; InternVL prompts carry no time")
        context_id = checked_token_id(tokenizer, CONTEXT_IMAGE, cls.video_token_id(config), cls.video_token_key)
        per_frame = cls.tokens_per_frame(config)
        prompt = render(tokenizer, load_chat_template(model_dir, tokenizer), question, system_prompt, VIDEO_TOKEN)
        text = prompt.replace(VIDEO_TOKEN, cls.expand_video(video.shape[0], per_frame), 1)
        ids = tokenize_expanded(tokenizer, text, context_id, video.shape[0] * per_frame, CONTEXT_IMAGE)
        pixels = frame_pixels(model_dir, video, config)
        return BatchFeature({"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels})


def grid_side(config: Any) -> int:
    """Tokens a side of one frame: ``S / p * downsample_ratio``."""
    v = config.vision_config
    size, patch = side_of(v.image_size), side_of(v.patch_size)
    patches = size // patch
    side = patches * config.downsample_ratio
    if side != int(side):
        raise ConfigError(f"{patches} patches a side do not pixel-shuffle by {config.downsample_ratio}")
    return int(side)


def side_of(value: Any) -> int:
    """One side of a size given as an int or (height, width)."""
    return int(value[0] if isinstance(value, (list, tuple)) else value)


def frame_pixels(model_dir: Path, video: np.ndarray, config: Any) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, S, S) float32: one tile a frame, resized to the tower's square."""
    cfg = load_preprocess_config(model_dir)
    size = side_of(config.vision_config.image_size)
    if cfg.size != (size, size):
        raise ConfigError(
            f"preprocessing in {str(model_dir)!r} resizes frames to {cfg.size}, but the vision tower takes "
            f"{(size, size)}: the preprocessing config does not match config.json"
        )
    frames = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).contiguous()  # (T, 3, H, W)
    if cfg.do_resize:
        frames = resize_video(frames, cfg.size, cfg.resample)
    return rescale_and_normalize(frames, cfg)
