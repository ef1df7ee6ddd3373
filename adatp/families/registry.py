"""``model_type`` -> family package: the one place that names the families.

A family package (``adatp/families/<name>/``) exports ``Adapter`` (the loaded model: modules,
positions, q/k, layout), ``Processor`` (inputs: template, placeholders, token counts, pixels, input
keys, dtype) and ``tiny`` (the tiny-model builder hooks), and ships its real checkpoints' configs in
``configs/*.json``. Adding a family is one folder and one line below.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib import resources
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING

from adatp.errors import UnsupportedModelError

if TYPE_CHECKING:
    from torch import nn

    from adatp.families.base import ModelAdapter
    from adatp.families.processing import VideoProcessor

#: config ``model_type`` -> family package under ``adatp/families`` (or a module of one: a variant
#: that lives in its base's folder, as Qwen3.5-MoE in ``qwen3_5``).
FAMILIES: dict[str, str] = {
    "llava_onevision": "llava_onevision",
    "qwen2_vl": "qwen2_vl",
    "qwen2_5_vl": "qwen2_5_vl",
    "qwen3_vl": "qwen3_vl",
    "internvl": "internvl",
    "glm4v": "glm4v",
    "glm46v": "glm46v",
    "qwen3_5": "qwen3_5", "qwen3_5_moe": "qwen3_5.moe",
}


#: adapters registered at run time (:func:`register_adapter`), by ``model_type``.
_REGISTERED: dict[str, SimpleNamespace] = {}


def register_adapter(cls: type[ModelAdapter]) -> type[ModelAdapter]:
    """Class decorator: serve ``cls.model_types`` with ``cls`` and its ``processor``, for an adapter kept
    outside ``adatp/families`` (a family folder and a line in :data:`FAMILIES` is the way in the tree)."""
    for model_type in cls.model_types:
        _REGISTERED[model_type] = SimpleNamespace(Adapter=cls, Processor=cls.processor, tiny=None)
    _adapters_by_class.cache_clear()
    return cls


def model_types() -> list[str]:
    """Every supported ``model_type``."""
    return [*FAMILIES, *(t for t in _REGISTERED if t not in FAMILIES)]


def family(model_type: str) -> ModuleType | SimpleNamespace:
    """The family package of a config ``model_type``, or UnsupportedModelError listing the supported ones."""
    if model_type in _REGISTERED:
        return _REGISTERED[model_type]
    if model_type not in FAMILIES:
        raise UnsupportedModelError(
            f"adatp has no adapter for model type {model_type!r}; supported: {', '.join(sorted(model_types()))}"
        )
    return importlib.import_module(f"adatp.families.{FAMILIES[model_type]}")


def adapter_class_for(model_type: str) -> type[ModelAdapter]:
    """The adapter class of a config ``model_type``."""
    return family(model_type).Adapter


def processor_for(model_type: str) -> type[VideoProcessor]:
    """The processor class of a config ``model_type``."""
    return family(model_type).Processor


def supported_model_types() -> dict[str, str]:
    """``model_type`` -> transformers class name, for every family."""
    found = {}
    for model_type in model_types():
        cls = adapter_class_for(model_type)
        found[model_type] = dict(zip(cls.model_types, cls.model_classes))[model_type]
    return found


@cache
def _adapters_by_class() -> dict[str, type[ModelAdapter]]:
    return {name: adapter_class_for(t) for t in model_types() for name in adapter_class_for(t).model_classes}


def get_adapter(model: nn.Module) -> ModelAdapter:
    """The adapter for ``model``'s class, or UnsupportedModelError listing the supported ones."""
    adapters = _adapters_by_class()
    name = type(model).__name__
    if name not in adapters:
        raise UnsupportedModelError(
            f"adatp has no adapter for model class {name}; supported classes: {', '.join(sorted(adapters))}"
        )
    return adapters[name](model)


@cache
def architecture_files() -> dict[str, str]:
    """Shipped architecture name -> its config file, ``<family>/configs/<name>.json``, for every family."""
    root = resources.files("adatp.families")
    found = {}
    for package in sorted({name.split(".")[0] for name in FAMILIES.values()}):
        folder = root.joinpath(package, "configs")
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.name.endswith(".json"):
                    found[entry.name[: -len(".json")]] = f"{package}/configs/{entry.name}"
    return dict(sorted(found.items()))
