"""Does a video prompt fit the model? Checked from the frame count and the video's header, before
any frame is decoded, for every family and entry point (``adatp generate``, ``adatp eval mcq`` and
``needle``, the lmms-eval plug-in).

LLaVA-OneVision's token count depends on the frame count alone (:func:`adatp.inputs.prompt_length`).
Qwen-VL's depends on the frames' size too: it is computed from the header's width and height with
the checkpoint's own resize rule (the family processor's ``prompt_tokens_for_size``). Decoding itself is
bounded by :func:`adatp.video.memory.check_decode_memory` inside :func:`adatp.read_video`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from adatp.errors import ConfigError


def check_video_fits(model_ref: Any, question: str, num_frames: int, *, video: str | os.PathLike[str] | None = None,
                     frame_size: tuple[int, int] | None = None, new_tokens: int = 0,
                     system_prompt: str | None = None) -> int | None:
    """The prompt's length for ``num_frames`` frames of ``video`` (or of ``frame_size`` = (height,
    width)); raises when it, plus ``new_tokens``, exceeds the model's context. Nothing is decoded.

    ``model_ref``: the model directory or a tokenizer loaded from it (faster when called per item).
    Returns None when the count cannot be known without the frames (no video or size given).

    Raises:
        InputError: the prompt does not fit (the numbers, and how many frames would).
        VideoError: the video cannot be opened (from its header).
    """
    from adatp.families import processor_for
    from adatp.inputs import check_context, load_model_config, prompt_length, resolve_model

    length = prompt_length(model_ref, question, num_frames, new_tokens=new_tokens, system_prompt=system_prompt)
    if length is not None:  # the count depends on the frame count alone (LLaVA-OneVision)
        return length
    model_dir, tokenizer = resolve_model(model_ref)
    config = load_model_config(model_dir)
    by_size = getattr(processor_for(config.model_type), "prompt_tokens_for_size", None)
    if by_size is None:
        return None
    if frame_size is None:
        if video is None:
            return None
        from adatp.video.io import video_frame_size

        frame_size = video_frame_size(video)
    height, width = frame_size
    if not height or not width:
        return None
    text, visual = by_size(model_dir, config, tokenizer, question, system_prompt, num_frames, height, width)
    return check_context(config, num_frames, text, visual, new_tokens)


def check_frame_option(model_dir: str | os.PathLike[str] | Path, num_frames: int, option: str = "--frames") -> None:
    """Refuse a frame count whose video tokens alone exceed the model's context, whatever the videos
    (families whose count does not depend on the frame size; others are checked per video).

    Raises:
        ConfigError: naming the option, the count and how many frames fit.
    """
    from adatp.families import processor_for
    from adatp.inputs import context_length, load_model_config

    config = load_model_config(model_dir)
    count = processor_for(config.model_type).video_token_count
    limit = context_length(config)
    if limit is None or count(config, num_frames) is None or count(config, num_frames) <= limit:
        return
    per_frame = max(count(config, 2) - count(config, 1), 1)
    fit = max((limit - (count(config, 1) - per_frame)) // per_frame, 0)
    raise ConfigError(f"{option} {num_frames}: {num_frames} frames are {count(config, num_frames):,} video tokens, over "
                      f"the model's context of {limit:,} positions: use {fit:,} frames or fewer")
