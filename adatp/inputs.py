"""Model inputs for one video and one question, as the checkpoint's own processor builds them.

The steps every family shares live here (model directory, tokenizer, text checks, frame checks,
context length); the family's processor (``adatp/families/<name>/processor.py``, found by the
config's ``model_type``) renders the chat template, expands the video placeholder and preprocesses
the frames, without torchvision.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoTokenizer, BatchFeature, PretrainedConfig

from adatp.errors import ConfigError, InputError, VideoError
from adatp.families import placeholders, processor_for
from adatp.families.processing import load_chat_template, render

#: text a question must not contain: every family's media placeholders
PLACEHOLDERS = placeholders()
NO_VIDEO = "a prompt without a video is not supported by adatp (it prunes video tokens): pass the video's frames"

ModelRef = str | os.PathLike[str] | Any  # a model directory, or a tokenizer loaded from one


def _model_dir(path: str | os.PathLike[str]) -> Path:
    model_dir = Path(path).expanduser()
    if not model_dir.is_dir():
        raise ConfigError(f"model directory {str(model_dir)!r} does not exist or is not a directory")
    config = model_dir / "config.json"
    if not config.is_file():
        raise ConfigError(
            f"{str(model_dir)!r} has no config.json: pass a local checkpoint directory (config, weights, tokenizer)"
        )
    read_config_json(config)
    return model_dir


def read_config_json(config: Path) -> dict[str, Any]:
    """``config.json`` as a dict; one ConfigError line when it is unreadable or not a JSON object."""
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read {str(config)!r} as JSON ({exc}): is the model directory complete?") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{str(config)!r} holds a JSON {type(data).__name__}, not an object")
    return data


def _load_tokenizer(model_dir: Path) -> Any:
    from huggingface_hub.errors import StrictDataclassError

    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except StrictDataclassError as exc:  # the tokenizer reads config.json too
        raise ConfigError(f"{str(model_dir / 'config.json')!r} holds a value of the wrong type: "
                          f"{' '.join(str(exc).split())}") from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"no usable tokenizer in {str(model_dir)!r} ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())})") from None


def resolve_model(model_dir_or_tokenizer: ModelRef) -> tuple[Path, Any]:
    """(model directory, tokenizer) from a directory or from a tokenizer loaded from one."""
    if isinstance(model_dir_or_tokenizer, (str, os.PathLike)):
        model_dir = _model_dir(model_dir_or_tokenizer)
        return model_dir, _load_tokenizer(model_dir)
    tokenizer = model_dir_or_tokenizer
    name = getattr(tokenizer, "name_or_path", "") or ""
    if not hasattr(tokenizer, "convert_tokens_to_ids") or not name or not Path(name).is_dir():
        raise ConfigError(
            "pass the model directory (or a tokenizer loaded from it with AutoTokenizer.from_pretrained(dir)): "
            "its config.json and preprocessing settings are needed too"
        )
    return _model_dir(name), tokenizer


def load_model_config(model_dir: str | os.PathLike[str]) -> PretrainedConfig:
    """The checkpoint's config; it must be a video model of a supported family."""
    model_dir = _model_dir(model_dir)
    from huggingface_hub.errors import StrictDataclassError

    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError, KeyError, TypeError, StrictDataclassError) as exc:  # a value of the wrong type, too
        raise ConfigError(f"could not read {str(model_dir / 'config.json')!r}: {' '.join(str(exc).split())}") from None
    processor_for(config.model_type).check_config(config, model_dir)
    return config


def tokens_per_frame(config: PretrainedConfig) -> int | None:
    """Video tokens of one frame when the config fixes them (the family's rule), else None."""
    return processor_for(config.model_type).tokens_per_frame(config)


def num_video_tokens(config: PretrainedConfig, num_frames: int) -> int | None:
    """Video tokens of ``num_frames`` frames when the config fixes them (LLaVA: ``T * c + 1``), else None."""
    return processor_for(config.model_type).video_token_count(config, num_frames)


def context_length(config: PretrainedConfig) -> int | None:
    """Positions the language model was built for (``max_position_embeddings``), None if unknown."""
    text_config = getattr(config, "text_config", None) or config
    value = getattr(text_config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def check_context(config: PretrainedConfig, num_frames: int, text_tokens: int, video_tokens: int,
                  new_tokens: int = 0, *, per_frame: int | None = None) -> int:
    """The prompt length ``text_tokens + video_tokens``; raises if it (plus the tokens to generate)
    does not fit in the model's context.

    ``per_frame`` (LLaVA: tokens of one frame, the rest of ``video_tokens`` being the newline) makes
    the "frames that fit" exact; without it the average over ``num_frames`` is used.

    Raises:
        InputError: the prompt does not fit, naming the numbers and how many frames would fit.
    """
    total = text_tokens + video_tokens
    limit = context_length(config)
    if limit is None or total + new_tokens <= limit:
        return total
    if per_frame is not None:
        fixed = video_tokens - num_frames * per_frame
        detail = f"{num_frames} frames x {per_frame} tokens + {fixed} newline + {text_tokens} text tokens"
        fit = max((limit - new_tokens - text_tokens - fixed) // per_frame, 0)
    else:
        detail = f"{num_frames} frames = {video_tokens} video tokens + {text_tokens} text tokens"
        fit = max(int((limit - new_tokens - text_tokens) * num_frames / max(video_tokens, 1)), 0)
    extra = f" + {new_tokens} new tokens" if new_tokens else ""
    advice = f"use {fit} frames or fewer" if fit else "shorten the question or generate fewer tokens"
    raise InputError(
        f"the prompt needs {total:,} positions ({detail}){extra}, over the model's context of {limit:,} "
        f"(max_position_embeddings): {advice}"
    )


def prompt_length(model_dir_or_tokenizer: ModelRef, question: str, num_frames: int, *, new_tokens: int = 0,
                  system_prompt: str | None = None) -> int | None:
    """The token count of the prompt ``prepare_inputs`` would build for ``num_frames`` frames, checked
    against the context length (see :func:`check_context`) without touching any frame.

    None for families whose token count depends on the frames' size (Qwen-VL): :func:`prepare_inputs`
    checks those once the frames are resized, before the model runs.
    """
    question = _check_text("question", question)
    model_dir, tokenizer = resolve_model(model_dir_or_tokenizer)
    config = load_model_config(model_dir)
    _check_special_tokens("question", question, tokenizer)
    processor = processor_for(config.model_type)
    count = processor.video_token_count(config, num_frames)
    if count is None:
        return None
    text_tokens = processor.text_tokens(model_dir, tokenizer, question, system_prompt)
    return check_context(config, num_frames, text_tokens, count, new_tokens, per_frame=processor.tokens_per_frame(config))


def _check_text(name: str, text: Any, *, allow_empty: bool = False) -> str:
    if not isinstance(text, str):
        raise InputError(f"{name} must be a string, got {type(text).__name__}")
    if not allow_empty and not text.strip():
        raise InputError(f"{name} is empty: ask a question about the video")
    for token in PLACEHOLDERS:
        if token in text:
            raise InputError(
                f"{name} contains {token!r}: the video placeholder is added by adatp, remove it from the text"
            )
    return text


def _check_special_tokens(name: str, text: str, tokenizer: Any) -> None:
    """Refuse chat-template control tokens (``<|im_end|>``, ...) inside user text: they would end the
    user's turn and inject turns the relevance scorer never reads."""
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    specials |= {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if getattr(t, "special", False)}
    found = sorted(t for t in specials if t and t in text)
    if found:
        raise InputError(
            f"{name} contains the tokenizer's special token(s) {', '.join(map(repr, found))}: they would be read as "
            "chat-template control tokens; remove them from the text"
        )


def build_prompt(model_dir_or_tokenizer: ModelRef, question: str, *, system_prompt: str | None = None) -> str:
    """The rendered prompt with its single video placeholder (before expansion; LLaVA: ``<video>``).

    For the llava-hf template: ``<|im_start|>user\\n<video>\\n{question}<|im_end|>\\n<|im_start|>assistant\\n``
    (a system turn first when ``system_prompt`` is given).
    """
    question = _check_text("question", question)
    if system_prompt is not None:
        _check_text("system_prompt", system_prompt, allow_empty=True)
    model_dir, tokenizer = resolve_model(model_dir_or_tokenizer)
    _check_special_tokens("question", question, tokenizer)
    if system_prompt is not None:
        _check_special_tokens("system_prompt", system_prompt, tokenizer)
    placeholder = processor_for(load_model_config(model_dir).model_type).placeholder
    return render(tokenizer, load_chat_template(model_dir, tokenizer), question, system_prompt, placeholder)


def check_frames(frames: Any) -> np.ndarray:
    """Frames as a C-contiguous uint8 array (T, H, W, 3), T >= 1, from numpy or torch."""
    if frames is None:
        raise InputError(f"no video: {NO_VIDEO}")
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if not isinstance(frames, np.ndarray):
        raise VideoError(
            f"frames must be a numpy array or torch tensor (T, H, W, 3) uint8, got {type(frames).__name__}"
        )
    if frames.ndim != 4 or frames.shape[-1] != 3:
        hint = " (channels first? use frames.permute(0, 2, 3, 1))" if frames.ndim == 4 and frames.shape[1] == 3 else ""
        raise VideoError(f"frames must have shape (T, H, W, 3), got {tuple(frames.shape)}{hint}")
    if frames.shape[0] == 0:
        raise VideoError(f"the video has zero frames: {NO_VIDEO}")
    if frames.shape[1] == 0 or frames.shape[2] == 0:
        raise VideoError(f"frames have an empty image size {tuple(frames.shape[1:3])}")
    if frames.dtype != np.uint8:
        raise VideoError(f"frames must be uint8 (0..255 RGB), got {frames.dtype}")
    return np.ascontiguousarray(frames)


def prepare_inputs(
    model_dir_or_tokenizer: ModelRef,
    frames: Any,
    question: str,
    *,
    system_prompt: str | None = None,
    fps: float | None = None,
) -> BatchFeature:
    """Inputs for ``model(**inputs)`` / ``model.generate(**inputs)`` from frames and a question.

    Args:
        model_dir_or_tokenizer: a local checkpoint directory of a supported family, or a tokenizer loaded from one.
        frames: uint8 RGB frames (T, H, W, 3), numpy or torch, T >= 1.
        question: the user's text; the video goes before it, as the chat template places media first.
        system_prompt: optional system turn (the llava-hf template has no default one).
        fps: the rate the frames were sampled at, for families whose prompts carry time (Qwen-VL, GLM;
            default: the checkpoint's sampling fps); the others refuse it.

    Returns:
        What the family's transformers processor returns for one video, nothing else (``generate()``
        rejects unknown keys): ``input_ids`` (1, L) long, ``attention_mask`` (1, L) ones and the
        family's pixels and grids (docs/families.md lists them per family; LLaVA-OneVision:
        ``pixel_values_videos`` (1, T, 3, S, S) float32 and ``T * ceil(p/2)**2 + 1`` video tokens).
        The question stays readable from ``input_ids`` after the video.

    Raises:
        InputError: no video (``frames`` is None), empty question, placeholder or chat-template special
            tokens in the question, a prompt longer than the model's context.
        VideoError: frames of the wrong type, shape or dtype, or zero frames.
        ConfigError: not a checkpoint directory, no tokenizer, no chat template, mismatched files.
        UnsupportedModelError: the checkpoint is of a family adatp does not support.
    """
    question = _check_text("question", question)
    if system_prompt is not None:
        _check_text("system_prompt", system_prompt, allow_empty=True)
    video = check_frames(frames)
    model_dir, tokenizer = resolve_model(model_dir_or_tokenizer)
    config = load_model_config(model_dir)
    _check_special_tokens("question", question, tokenizer)
    if system_prompt is not None:
        _check_special_tokens("system_prompt", system_prompt, tokenizer)
    # The family's processor: template, placeholder expansion, frame preprocessing.
    processor = processor_for(config.model_type)
    inputs = processor.build_inputs(model_dir, config, tokenizer, video, question, system_prompt, fps)
    ids = inputs["input_ids"]
    video_tokens = int((ids == processor.video_token_id(config)).sum())
    check_context(config, video.shape[0], ids.shape[1] - video_tokens, video_tokens,
                  per_frame=processor.tokens_per_frame(config))
    return inputs
