"""Qwen2-VL inputs, as the transformers 5.23 ``Qwen2VLProcessor`` builds them for one video.

The template's ``<|video_pad|>`` becomes ``t * H * W / merge^2`` pads; frames go through
:mod:`adatp.families.qwen2_vl.preprocess` (``smart_resize``, rescale, normalise, patchify).
Later versions override the hooks: :meth:`expand_video` (Qwen3-VL's timestamps between grids),
:meth:`extra_inputs` (Qwen2.5-VL's ``second_per_grid_ts``), :attr:`preprocess_defaults`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from adatp.errors import InputError
from adatp.families.processing import VideoProcessor, checked_token_id, load_chat_template, render, tokenize_expanded
from adatp.families.qwen2_vl.preprocess import grid_timestamps, load_qwen_settings, qwen_frame_size, qwen_video_pixels

QWEN_VIDEO_PAD = "<|video_pad|>"


class Qwen2VLProcessor(VideoProcessor):
    placeholder = QWEN_VIDEO_PAD
    placeholders = (QWEN_VIDEO_PAD, "<|image_pad|>", "<|vision_start|>", "<|vision_end|>")
    pixel_keys = ("pixel_values_videos",)
    #: transformers 5.23 class defaults of the video processor, for keys a checkpoint omits.
    preprocess_defaults: ClassVar[dict[str, Any]] = dict(
        min_pixels=128 * 28 * 28, max_pixels=768 * 28 * 28, fps=2.0,
        mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711),
    )
    #: whether ``smart_resize`` bounds the pixels of the whole video (Qwen3-VL) or of each frame.
    resize_whole_video: ClassVar[bool] = False
    #: the tokens that receive the video's features (the template's placeholder expands to them).
    pad_token: ClassVar[str] = QWEN_VIDEO_PAD

    @classmethod
    def check_config(cls, config, model_dir) -> None:
        return None

    @classmethod
    def build_inputs(cls, model_dir, config, tokenizer, video, question, system_prompt, fps):
        """The template's one pad expanded (:meth:`expand_video`), the frames preprocessed, the grid
        and the token types (2 at video tokens) the model's ``get_rope_index`` reads."""
        from transformers import BatchFeature

        settings = load_qwen_settings(model_dir, config, cls)
        if fps is not None and (not isinstance(fps, (int, float)) or not fps > 0):
            raise InputError(f"fps must be a positive number, got {fps!r}")
        rate = float(fps) if fps is not None else settings.fps
        pad_id = checked_token_id(tokenizer, cls.pad_token, cls.video_token_id(config), cls.video_token_key)
        pixels, grid = qwen_video_pixels(video, settings)
        t, h, w = grid[0].tolist()
        per_grid = h * w // settings.merge_size**2
        times = cls.grid_times(video.shape[0], rate, settings.temporal_patch_size)
        expanded = cls.expand_video(cls.pad_token, t, per_grid, times)
        prompt = render(tokenizer, load_chat_template(model_dir, tokenizer), question, system_prompt, cls.placeholder)
        text = prompt.replace(cls.placeholder, expanded, 1)
        ids = tokenize_expanded(tokenizer, text, pad_id, t * per_grid, cls.pad_token)
        data = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "pixel_values_videos": pixels,
            "video_grid_thw": grid,
            "mm_token_type_ids": (ids == pad_id).long() * 2,
        }
        data.update(cls.extra_inputs(settings.temporal_patch_size / rate))
        return BatchFeature(data)

    @classmethod
    def tokens_for_video(cls, model_dir, config, num_frames: int, height: int, width: int) -> int:
        """Video tokens of ``num_frames`` frames of ``height`` x ``width`` (the resize rule, the temporal
        patch padding, the merge), without touching a pixel."""
        settings = load_qwen_settings(model_dir, config, cls)
        h, w = qwen_frame_size(num_frames, height, width, settings)
        grids = -(-num_frames // settings.temporal_patch_size)
        return grids * (h // settings.patch_size) * (w // settings.patch_size) // settings.merge_size**2

    @classmethod
    def prompt_tokens_for_size(cls, model_dir, config, tokenizer, question: str, system_prompt: str | None,
                               num_frames: int, height: int, width: int) -> tuple[int, int]:
        """(text tokens, video-block tokens) of the prompt :meth:`build_inputs` would build for
        ``num_frames`` frames of ``height`` x ``width``, from the sizes alone: the pads, plus what
        :meth:`expand_video` writes around them (Qwen3-VL's timestamps, GLM's markers and seconds)."""
        settings = load_qwen_settings(model_dir, config, cls)
        grids = -(-num_frames // settings.temporal_patch_size)
        markers = cls.expand_video(cls.pad_token, grids, 0, cls.grid_times(num_frames, settings.fps, settings.temporal_patch_size))
        marks = tokenizer(markers, add_special_tokens=False, verbose=False)["input_ids"] if markers else []
        text = cls.text_tokens(model_dir, tokenizer, question, system_prompt)
        return text, len(marks) + cls.tokens_for_video(model_dir, config, num_frames, height, width)

    @classmethod
    def grid_times(cls, num_frames: int, fps: float, temporal: int) -> list[float]:
        """The time of each token grid that :meth:`expand_video` writes: the mean time of its frames."""
        return grid_timestamps(num_frames, fps, temporal)

    @classmethod
    def extra_inputs(cls, seconds_per_grid: float) -> dict[str, torch.Tensor]:
        """Inputs beyond ids, mask, pixels, grid and token types: none for Qwen2-VL."""
        return {}

    @staticmethod
    def expand_video(pad: str, grids: int, per_grid: int, times: list[float]) -> str:
        """What the template's one ``<|video_pad|>`` becomes: Qwen2/2.5-VL, every grid's pads in a row."""
        return pad * (grids * per_grid)
