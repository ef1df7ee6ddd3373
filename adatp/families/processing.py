"""What every family's processor shares: the chat template, the rendered prompt, the contract.

A family's :class:`VideoProcessor` rebuilds, without torchvision, what its transformers processor
does for one video and one question: render the checkpoint's chat template, expand the video
placeholder to the family's token block, tokenise, and preprocess the frames with the checkpoint's
own settings. It also names the family's input keys, so that no caller has to:
:meth:`VideoProcessor.to` casts the pixels to the model's dtype, :meth:`VideoProcessor.video_pixels`
finds them in a forward call.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from adatp.errors import ConfigError, UnsupportedModelError


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


def conversation(question: str, system_prompt: str | None) -> list[dict[str, Any]]:
    """One user turn: the video, then the question (a system turn first when given)."""
    messages = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append({"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]})
    return messages


def render(tokenizer: Any, template: str, question: str, system_prompt: str | None, placeholder: str) -> str:
    """The rendered prompt, checked to hold exactly one ``placeholder`` (the video, before expansion)."""
    prompt = tokenizer.apply_chat_template(
        conversation(question, system_prompt), chat_template=template, tokenize=False, add_generation_prompt=True
    )
    if prompt.count(placeholder) != 1:
        raise ConfigError(
            f"the chat template rendered {prompt.count(placeholder)} {placeholder!r} placeholders for one video, "
            "expected exactly 1: is it this checkpoint's template?"
        )
    return prompt


def checked_token_id(tokenizer: Any, token: str, config_id: int, config_key: str) -> int:
    """The tokenizer's id of ``token``, checked against the config's (``config_key``)."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id != config_id:
        raise ConfigError(
            f"the tokenizer maps {token!r} to {token_id}, but config.{config_key} is {config_id}: "
            "tokenizer and model do not belong together"
        )
    return token_id


def tokenize_expanded(tokenizer: Any, text: str, video_id: int, expected: int, placeholder: str) -> torch.Tensor:
    """(1, L) long ids of an expanded prompt, checked to hold ``expected`` video ids."""
    # The template already holds every special token; Qwen2 adds no BOS anyway.
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].long()
    found = int((ids == video_id).sum())
    if found != expected:
        raise ConfigError(
            f"tokenised prompt holds {found} video tokens, expected {expected}: "
            f"{placeholder!r} is not one special token of this tokenizer"
        )
    return ids


class VideoProcessor:
    """One family's inputs, as classmethods of the config (no loaded model needed).

    Override :meth:`build_inputs` and what differs below; the defaults fit a family whose pixels
    are ``pixel_values_videos`` and whose video token id is ``config.video_token_id``.
    """

    #: the template's video placeholder, before expansion.
    placeholder: ClassVar[str] = "<video>"
    #: media placeholders user text must not contain (the video's and the family's others).
    placeholders: ClassVar[tuple[str, ...]] = ()
    #: the input keys that hold pixels: cast to the model's dtype, and the tower runs when present.
    pixel_keys: ClassVar[tuple[str, ...]] = ("pixel_values_videos",)

    @classmethod
    def check_config(cls, config: Any, model_dir: Path) -> None:
        """Raise UnsupportedModelError when ``config`` is not a video model this processor serves."""
        if getattr(config, "vision_config", None) is None:
            raise UnsupportedModelError(f"{str(model_dir)!r} holds a {config.model_type!r} model without a vision tower")

    #: the config key of the id of the tokens that receive the video's features.
    video_token_key: ClassVar[str] = "video_token_id"

    @classmethod
    def video_token_id(cls, config: Any) -> int:
        """The id of the tokens that receive the video's features."""
        return int(getattr(config, cls.video_token_key))

    @classmethod
    def tokens_per_frame(cls, config: Any) -> int | None:
        """Video tokens of one frame when the config alone fixes them, None when the frames' size decides."""
        return None

    @classmethod
    def video_token_count(cls, config: Any, num_frames: int) -> int | None:
        """Video tokens of ``num_frames`` frames when the config alone fixes them, else None."""
        return None

    @classmethod
    def tokens_for_video(cls, model_dir: Path, config: Any, num_frames: int, height: int, width: int) -> int:
        """Video tokens ``prepare_inputs`` gives ``num_frames`` frames of ``height`` x ``width`` pixels,
        without decoding them (a context check from the video's header). Here the config's count."""
        count = cls.video_token_count(config, num_frames)
        if count is None:
            raise UnsupportedModelError(f"{cls.__name__} cannot count video tokens before the frames are resized")
        return count

    @classmethod
    def text_without_video(cls, prompt: str) -> str:
        """The rendered prompt without its placeholder: the text tokens a prompt of any video holds."""
        return prompt.replace(cls.placeholder, "")

    @classmethod
    def text_tokens(cls, model_dir: Path, tokenizer: Any, question: str, system_prompt: str | None) -> int:
        """Tokens of the rendered prompt without its video: what a prompt of any video adds to it."""
        prompt = render(tokenizer, load_chat_template(model_dir, tokenizer), question, system_prompt, cls.placeholder)
        return len(tokenizer(cls.text_without_video(prompt), add_special_tokens=False)["input_ids"])

    @classmethod
    def build_inputs(cls, model_dir: Path, config: Any, tokenizer: Any, video: np.ndarray, question: str,
                     system_prompt: str | None, fps: float | None):
        """``adatp.prepare_inputs`` for this family: a BatchFeature the model's forward takes."""
        raise UnsupportedModelError(f"{cls.__name__} cannot build inputs from a model directory")

    @classmethod
    def video_pixels(cls, inputs: dict) -> torch.Tensor | None:
        """The video's pixels in a forward call's kwargs (or prepared inputs), None when absent."""
        for key in cls.pixel_keys:
            if inputs.get(key) is not None:
                return inputs[key]
        return None

    @classmethod
    def to(cls, inputs: dict, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> dict:
        """``inputs`` on ``device`` with the pixels in ``dtype`` (ids, grids and timings keep theirs)."""
        out = type(inputs)(inputs) if isinstance(inputs, dict) else dict(inputs)
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor):
                value = value.to(device) if device is not None else value
                if dtype is not None and key in cls.pixel_keys:
                    value = value.to(dtype)
                out[key] = value
        return out
