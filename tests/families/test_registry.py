"""The registry and the family folders: one folder per model_type, no family knowledge outside them."""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

import pytest

import adatp
from adatp.families import FAMILIES, family, get_adapter, processor_for, supported_model_types
from adatp.families import registry

ROOT = Path(adatp.__file__).parent
#: kept re-exports of the former layout, and the registry itself; and the vLLM plug-in's model classes,
#: subclasses of vLLM's own Qwen-VL classes that read vLLM's video-input fields (vLLM's names, not adatp's)
ALLOWED = {"families", "adapters", "video/qwen_preprocess.py", "integrations/vllm/models.py"}
INPUT_KEYS = {"pixel_values", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts", "mm_token_type_ids",
              "image_grid_thw"}


def test_every_model_type_has_its_own_folder_with_the_three_parts():
    for model_type, folder in FAMILIES.items():
        module = family(model_type)
        assert module.__name__ == f"adatp.families.{folder}"
        assert model_type in module.Adapter.model_types
        assert module.Adapter.processor is module.Processor is processor_for(model_type)
        assert module.tiny is not None
    assert set(supported_model_types()) == set(FAMILIES)


def _string_literals(path: Path) -> set[str]:
    found = set()
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        if tok.type == tokenize.STRING and tok.string[0] in "'\"":
            found.add(tok.string.strip("'\""))
    return found


def test_no_family_name_or_input_key_outside_the_families_folder():
    offenders = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.split("/")[0] in ALLOWED or rel in ALLOWED:
            continue
        named = _string_literals(path) & (set(FAMILIES) | INPUT_KEYS)
        if named:
            offenders[rel] = sorted(named)
    assert offenders == {}


def test_an_adapter_outside_the_tree_can_register(monkeypatch):
    from adatp.families.qwen3_vl.adapter import Qwen3VLAdapter

    from . import family_model

    monkeypatch.setattr(registry, "_REGISTERED", {})
    registry._adapters_by_class.cache_clear()
    model = family_model("qwen3-vl")

    class Renamed(type(model)):
        pass

    renamed = object.__new__(Renamed)
    renamed.__dict__.update(model.__dict__)

    @registry.register_adapter
    class RenamedAdapter(Qwen3VLAdapter):
        model_classes = ("Renamed",)
        model_types = ("renamed_vl",)

    try:
        assert type(get_adapter(renamed)) is RenamedAdapter and processor_for("renamed_vl") is RenamedAdapter.processor
        assert "renamed_vl" in supported_model_types()
    finally:
        registry._adapters_by_class.cache_clear()
    with pytest.raises(adatp.errors.UnsupportedModelError, match="no adapter for model type 'nope'"):
        family("nope")
