"""The ``config.json`` of the real checkpoints adatp targets, shipped as plain JSON.

Each file under ``adatp/models/configs/`` holds the public values of one checkpoint plus a ``_source``
key saying where every value came from. ``_source`` is documentation only: it never reaches the
config class. These configs let adatp reason about real architectures (layer counts, GQA ratios,
FLOPs) and shrink them into tiny test models without downloading anything.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from adatp.errors import ConfigError

#: architecture name -> JSON file in ``adatp/models/configs``.
ARCHITECTURES: dict[str, str] = {
    "llava-onevision-qwen2-0.5b-ov-hf": "llava-onevision-qwen2-0.5b-ov-hf.json",
    "llava-onevision-qwen2-7b-ov-hf": "llava-onevision-qwen2-7b-ov-hf.json",
    "llava-video-7b-qwen2-hf": "llava-video-7b-qwen2-hf.json",
    "qwen2-vl-7b-instruct": "qwen2-vl-7b-instruct.json",
    "qwen2.5-vl-7b-instruct": "qwen2.5-vl-7b-instruct.json",
    "qwen3-vl-8b-instruct": "qwen3-vl-8b-instruct.json",
    "qwen3.5-27b": "qwen3.5-27b.json",
    "qwen3.5-35b-a3b": "qwen3.5-35b-a3b.json",
}

SOURCE_KEY = "_source"


def _check_name(name: str) -> str:
    if name not in ARCHITECTURES:
        valid = ", ".join(sorted(ARCHITECTURES))
        raise ConfigError(f"unknown architecture {name!r}; valid names: {valid}")
    return ARCHITECTURES[name]


def load_architecture_dict(name: str, *, with_source: bool = False) -> dict[str, Any]:
    """The raw JSON of architecture ``name`` (a fresh dict), without ``_source`` unless asked."""
    filename = _check_name(name)
    text = resources.files("adatp.models").joinpath("configs", filename).read_text(encoding="utf-8")
    data = json.loads(text)
    if not with_source:
        data.pop(SOURCE_KEY, None)
    return data


def architecture_source(name: str) -> dict[str, str]:
    """Where each value of architecture ``name`` came from (the file's ``_source`` key)."""
    return load_architecture_dict(name, with_source=True)[SOURCE_KEY]


def load_architecture_config(name: str) -> PretrainedConfig:
    """The config of a real checkpoint (its family's config class, by ``model_type``), built offline.

    ``LlavaOnevisionConfig`` for the LLaVA ones, ``Qwen2VLConfig`` / ``Qwen2_5_VLConfig`` /
    ``Qwen3VLConfig`` for the Qwen-VL ones (flat Qwen2-VL files are read as transformers reads them).

    Raises:
        ConfigError: ``name`` is not one of :data:`ARCHITECTURES` (the message lists them).
    """
    data = load_architecture_dict(name)
    return AutoConfig.for_model(data.pop("model_type"), **data)
