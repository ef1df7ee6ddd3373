"""Model inputs for one video and one question, as the checkpoint's own processor builds them.

The shared steps live here (model directory, tokenizer, chat template, text checks, frame checks);
each family's adapter builds its inputs (``ModelAdapter.build_inputs``): LLaVA-OneVision below in
words, Qwen2-VL / Qwen2.5-VL / Qwen3-VL in ``adatp/adapters/qwen2_vl.py`` (pixels in
:mod:`adatp.video.qwen_preprocess`).

``transformers``' video processors need torchvision, which adatp does not depend on, so this
module rebuilds what ``LlavaOnevisionProcessor`` does for a single video: render the checkpoint's
chat template, expand the ``<video>`` placeholder to ``T * ceil(p / 2) ** 2 + 1`` tokens (``p``
patches per side; the pooled grid of every frame plus ONE newline for the whole video, as
``LlavaOnevisionProcessor.replace_video_token``), tokenise, and preprocess the frames with the
checkpoint's own settings (:mod:`adatp.video.preprocess`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoTokenizer, BatchFeature, PretrainedConfig

from adatp.errors import ConfigError, InputError, UnsupportedModelError, VideoError
from adatp.video.preprocess import load_preprocess_config, preprocess_frames

VIDEO_TOKEN = "<video>"
IMAGE_TOKEN = "<image>"
QWEN_VIDEO_PAD = "<|video_pad|>"
#: text a question must not contain: every family's media placeholders
PLACEHOLDERS = (VIDEO_TOKEN, IMAGE_TOKEN, QWEN_VIDEO_PAD, "<|image_pad|>", "<|vision_start|>", "<|vision_end|>")
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
    """The checkpoint's config; it must be a LLaVA-OneVision-style video model."""
    model_dir = _model_dir(model_dir)
    from huggingface_hub.errors import StrictDataclassError

    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError, KeyError, TypeError, StrictDataclassError) as exc:  # a value of the wrong type, too
        raise ConfigError(f"could not read {str(model_dir / 'config.json')!r}: {' '.join(str(exc).split())}") from None
    from adatp.video.qwen_preprocess import QWEN_FAMILIES

    if config.model_type in QWEN_FAMILIES:
        return config
    if getattr(config, "vision_config", None) is None or getattr(config, "video_token_index", None) is None:
        raise UnsupportedModelError(
            f"{str(model_dir)!r} holds a {config.model_type!r} model: adatp.prepare_inputs builds inputs for "
            f"LLaVA-OneVision / LLaVA-Video checkpoints (model_type 'llava_onevision') and {', '.join(QWEN_FAMILIES)}"
        )
    return config


def tokens_per_frame(config: PretrainedConfig) -> int:
    """LLaVA-OneVision: video tokens of one frame (the adapter's rule)."""
    from adatp.adapters.llava_onevision import LlavaOnevisionAdapter

    return LlavaOnevisionAdapter.tokens_per_frame(config)


def num_video_tokens(config: PretrainedConfig, num_frames: int) -> int:
    """LLaVA-OneVision: ``num_frames * tokens_per_frame + 1`` (the adapter's rule)."""
    from adatp.adapters.llava_onevision import LlavaOnevisionAdapter

    return LlavaOnevisionAdapter.video_token_count(config, num_frames)


def context_length(config: PretrainedConfig) -> int | None:
    """Positions the language model was built for (``max_position_embeddings``), None if unknown."""
    text_config = getattr(config, "text_config", None) or config
    value = getattr(text_config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def _video_token_index(config: PretrainedConfig) -> int:
    """The id of the video placeholder token (LLaVA: ``video_token_index``, Qwen-VL: ``video_token_id``)."""
    value = getattr(config, "video_token_index", None)
    return int(value if value is not None else config.video_token_id)


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
    from adatp.adapters.base import adapter_class_for

    count = getattr(adapter_class_for(config.model_type), "video_token_count", None)
    if count is None:
        return None
    prompt = _render(tokenizer, load_chat_template(model_dir, tokenizer), question, system_prompt)
    text_tokens = len(tokenizer(prompt.replace(VIDEO_TOKEN, ""), add_special_tokens=False)["input_ids"])
    return check_context(config, num_frames, text_tokens, count(config, num_frames), new_tokens,
                         per_frame=tokens_per_frame(config))


def load_chat_template(model_dir: str | os.PathLike[str], tokenizer: Any = None) -> str:
    """The checkpoint's multimodal chat template.

    Looked up in the order the llava-hf checkpoints need: ``chat_template.jinja``,
    ``chat_template.json``, ``processor_config.json`` (processor templates, which render media),
    then the tokenizer's own (on llava-hf checkpoints that one, if any, is Qwen2's text-only one).
    """
    model_dir = Path(model_dir)
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    for name in ("chat_template.json", "processor_config.json"):
        path = model_dir / name
        if path.is_file():
            try:
                template = json.loads(path.read_text(encoding="utf-8")).get("chat_template")
            except ValueError as exc:
                raise ConfigError(f"{str(path)!r} is not valid JSON: {exc}") from None
            if isinstance(template, str) and template:
                return template
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and template:
        return template
    raise ConfigError(
        f"no chat template in {str(model_dir)!r} (looked for chat_template.jinja, chat_template.json, "
        "processor_config.json and the tokenizer's): adatp needs the checkpoint's template to place the video"
    )


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


def _conversation(question: str, system_prompt: str | None) -> list[dict[str, Any]]:
    messages = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append({"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]})
    return messages


def _render(tokenizer: Any, template: str, question: str, system_prompt: str | None, placeholder: str = VIDEO_TOKEN) -> str:
    prompt = tokenizer.apply_chat_template(
        _conversation(question, system_prompt), chat_template=template, tokenize=False, add_generation_prompt=True
    )
    if prompt.count(placeholder) != 1:
        raise ConfigError(
            f"the chat template rendered {prompt.count(placeholder)} {placeholder!r} placeholders for one video, "
            "expected exactly 1: is it this checkpoint's template?"
        )
    return prompt


def build_prompt(model_dir_or_tokenizer: ModelRef, question: str, *, system_prompt: str | None = None) -> str:
    """The rendered prompt with its single ``<video>`` placeholder (before expansion).

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
    return _render(tokenizer, load_chat_template(model_dir, tokenizer), question, system_prompt)


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


def _video_token_id(tokenizer: Any, config: PretrainedConfig) -> int:
    token_id = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
    if token_id != config.video_token_index:
        raise ConfigError(
            f"the tokenizer maps {VIDEO_TOKEN!r} to {token_id}, but config.video_token_index is "
            f"{config.video_token_index}: tokenizer and model do not belong together"
        )
    return token_id


def _tokenize(tokenizer: Any, prompt: str, video_id: int, expected: int) -> torch.Tensor:
    """Expand the placeholder in the text and tokenise: (1, L) long ids with ``expected`` video ids."""
    text = prompt.replace(VIDEO_TOKEN, VIDEO_TOKEN * expected, 1)
    # The template already holds every special token; Qwen2 adds no BOS anyway.
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].long()
    found = int((ids == video_id).sum())
    if found != expected:
        raise ConfigError(
            f"tokenised prompt holds {found} video tokens, expected {expected}: "
            f"{VIDEO_TOKEN!r} is not one special token of this tokenizer"
        )
    return ids


def _pixels(model_dir: Path, video: np.ndarray, config: PretrainedConfig) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (1, T, 3, S, S) float32, S = the vision tower's image size."""
    pixels = preprocess_frames(video, load_preprocess_config(model_dir))
    size = config.vision_config.image_size
    if tuple(pixels.shape) != (video.shape[0], 3, size, size):
        raise ConfigError(
            f"preprocessing in {str(model_dir)!r} gives frames of shape {tuple(pixels.shape)}, but the vision tower "
            f"takes ({video.shape[0]}, 3, {size}, {size}): the preprocessing config does not match config.json"
        )
    return pixels.to(torch.float32).unsqueeze(0)


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
        model_dir_or_tokenizer: a local LLaVA-OneVision checkpoint directory, or a tokenizer loaded from one.
        frames: uint8 RGB frames (T, H, W, 3), numpy or torch, T >= 1.
        question: the user's text; the video goes before it, as the chat template places media first.
        system_prompt: optional system turn (the llava-hf template has no default one).
        fps: Qwen-VL only: the rate the frames were sampled at (default: the checkpoint's sampling
            fps, 2). It sets Qwen2.5-VL's ``second_per_grid_ts`` and Qwen3-VL's timestamps.

    Returns:
        ``input_ids`` (1, L) long, ``attention_mask`` (1, L) ones, ``pixel_values_videos``
        (1, T, 3, S, S) float32, where L includes ``T * ceil(p/2)**2 + 1`` video tokens. Nothing else:
        ``generate()`` rejects unknown keys. The question stays readable from ``input_ids`` after the video.
        Qwen-VL: ``input_ids``, ``attention_mask``, ``pixel_values_videos`` (t*H*W, 3*2*p*p),
        ``video_grid_thw`` (1, 3), ``mm_token_type_ids`` (1, L) (2 at video tokens) and, for
        Qwen2.5-VL, ``second_per_grid_ts`` (1,) = temporal_patch_size / fps.

    Raises:
        InputError: no video (``frames`` is None), empty question, placeholder or chat-template special
            tokens in the question, a prompt longer than the model's context.
        VideoError: frames of the wrong type, shape or dtype, or zero frames.
        ConfigError: not a checkpoint directory, no tokenizer, no chat template, mismatched files.
        UnsupportedModelError: the checkpoint is not a LLaVA-OneVision-style model.
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
    from adatp.adapters.base import adapter_class_for

    # The family's adapter knows its processor: template, placeholder expansion, frame preprocessing.
    adapter = adapter_class_for(config.model_type)
    inputs = adapter.build_inputs(model_dir, config, tokenizer, video, question, system_prompt, fps)
    ids = inputs["input_ids"]
    video_tokens = int((ids == _video_token_index(config)).sum())
    check_context(config, video.shape[0], ids.shape[1] - video_tokens, video_tokens,
                  per_frame=adapter.config_tokens_per_frame(config))
    return inputs
