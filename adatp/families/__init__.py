"""Model families, one folder each (``adatp/families/<name>/``), and the registry that maps a config's
``model_type`` to its family (:mod:`adatp.families.registry`).

Callers use this small contract and never name a family or an input key:
:func:`get_adapter` (a loaded model's adapter), :func:`processor_for` (a config's inputs),
:func:`inputs_to` (prepared inputs on a model's device and dtype).
"""

from __future__ import annotations

from typing import Any

from adatp.families.base import ModelAdapter, VideoLayout, VideoSpan
from adatp.families.processing import VideoProcessor
from adatp.families.registry import (
    FAMILIES,
    adapter_class_for,
    architecture_files,
    family,
    get_adapter,
    model_types,
    processor_for,
    register_adapter,
    supported_model_types,
)


def inputs_to(inputs: Any, model: Any, device: Any = None) -> Any:
    """``inputs`` for ``model(**inputs)``: every tensor on ``device`` (default: the model's), the pixels in
    the model's dtype (ids, grids and timings keep theirs)."""
    return processor_for(model.config.model_type).to(inputs, model.device if device is None else device, model.dtype)


def placeholders() -> tuple[str, ...]:
    """Every family's media placeholders (text a question must not contain)."""
    found: list[str] = []
    for model_type in model_types():
        found += [p for p in processor_for(model_type).placeholders if p not in found]
    return tuple(found)


__all__ = [
    "FAMILIES",
    "ModelAdapter",
    "VideoLayout",
    "VideoProcessor",
    "VideoSpan",
    "adapter_class_for",
    "architecture_files",
    "family",
    "get_adapter",
    "inputs_to",
    "model_types",
    "placeholders",
    "processor_for",
    "register_adapter",
    "supported_model_types",
]
