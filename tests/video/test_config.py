"""load_preprocess_config: file precedence, every HF size form, value checks, malformed JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adatp.errors import ConfigError
from adatp.video import VideoPreprocessConfig, load_preprocess_config

#: llava-hf/llava-onevision-qwen2-0.5b-ov-hf's video_preprocessor_config.json, as published.
LLAVA_HF_VIDEO = {
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_processor_type": "LlavaOnevisionVideoProcessor",
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "LlavaOnevisionProcessor",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"height": 384, "width": 384},
}


def _write(folder: Path, name: str, data: Any) -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_llava_hf_file(tmp_path: Path) -> None:
    _write(tmp_path, "video_preprocessor_config.json", LLAVA_HF_VIDEO)
    cfg = load_preprocess_config(tmp_path)
    assert cfg == VideoPreprocessConfig(
        size=(384, 384), resample="bicubic", image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5)
    )


def test_video_file_wins_over_image_file(tmp_path: Path) -> None:
    _write(tmp_path, "video_preprocessor_config.json", {"size": {"height": 112, "width": 112}})
    _write(tmp_path, "preprocessor_config.json", {"size": {"height": 384, "width": 384}})
    assert load_preprocess_config(tmp_path).size == (112, 112)


def test_image_file_is_the_fallback(tmp_path: Path) -> None:
    _write(tmp_path, "preprocessor_config.json", {"size": {"height": 336, "width": 336}, "resample": 2})
    cfg = load_preprocess_config(tmp_path)
    assert (cfg.size, cfg.resample) == ((336, 336), "bilinear")


def test_no_file_gives_defaults(tmp_path: Path) -> None:
    assert load_preprocess_config(tmp_path) == VideoPreprocessConfig()


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ({"height": 336, "width": 448}, (336, 448)),
        ({"shortest_edge": 384}, (384, 384)),  # LLaVA-OneVision makes video frames square
        ([224, 320], (224, 320)),
        ([256], (256, 256)),
        (256, (256, 256)),
    ],
)
def test_size_forms(tmp_path: Path, size: Any, expected: tuple[int, int]) -> None:
    _write(tmp_path, "video_preprocessor_config.json", {"size": size})
    assert load_preprocess_config(tmp_path).size == expected


@pytest.mark.parametrize(("code", "name"), [(0, "nearest"), (2, "bilinear"), (3, "bicubic"), ("BiCubic", "bicubic")])
def test_resample_codes(tmp_path: Path, code: Any, name: str) -> None:
    _write(tmp_path, "video_preprocessor_config.json", {"resample": code})
    assert load_preprocess_config(tmp_path).resample == name


def test_other_keys_and_nulls(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "video_preprocessor_config.json",
        {"do_normalize": False, "rescale_factor": 0.5, "image_std": None, "crop_size": {"height": 1}, "foo": [1]},
    )
    cfg = load_preprocess_config(tmp_path)
    assert (cfg.do_normalize, cfg.rescale_factor) == (False, 0.5)
    assert cfg.image_std == VideoPreprocessConfig().image_std  # null keeps the default


def test_malformed_json_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "video_preprocessor_config.json", '{"size": {"height": 384,')
    with pytest.raises(ConfigError, match="not valid JSON") as info:
        load_preprocess_config(tmp_path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([1, 2, 3], "JSON object"),
        ({"size": {"longest_edge": 384}}, "size"),
        ({"size": [0, 384]}, "positive"),
        ({"size": "384"}, "size"),
        ({"resample": 1}, "resample"),  # LANCZOS: not used by LLaVA-OneVision, not supported
        ({"image_mean": [0.5, 0.5]}, "image_mean"),
        ({"image_std": [0.5, 0.0, 0.5]}, "image_std"),
        ({"rescale_factor": "1/255"}, "rescale_factor"),
        ({"do_resize": "yes"}, "do_resize"),
    ],
)
def test_invalid_values_name_the_file(tmp_path: Path, data: Any, match: str) -> None:
    path = _write(tmp_path, "preprocessor_config.json", data)
    with pytest.raises(ConfigError, match=match) as info:
        load_preprocess_config(tmp_path)
    assert str(path) in str(info.value)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        load_preprocess_config(tmp_path / "nope")
