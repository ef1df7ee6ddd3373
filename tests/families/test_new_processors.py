"""``prepare_inputs`` for InternVL3.5 and GLM-4.6V against transformers' own processor code, in the core
profile (no torchvision): the prompt text comes from the HF processors' ``replace_video_token`` (called
on an instance built without ``__init__``, which would need the video processor), GLM's frame size from
transformers' ``smart_resize`` and its patch order from ``Glm4vVideoProcessor.patchify``. The resize
and the fused rescale/normalise are the Qwen-VL path, compared with the torchvision processors in
``tests/test_qwen_processor_fixture.py``; the full HF processors, recorded with torchvision, are compared
in ``tests/test_family_processor_fixture.py`` (docs/families.md)."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

import adatp
from adatp.inputs import build_prompt
from adatp.families.qwen2_vl.preprocess import rescale_and_normalize, resize_video
from adatp.models.tiny import build_tiny
from adatp.video.preprocess import load_preprocess_config

QUESTION = "What colour is the ball?"
#: (seed, frames, height, width, fps): shrunk, grown (frames under one merged patch), odd frame counts
CASES = [(0, 8, 100, 136, 4.0), (1, 5, 64, 200, 1.5), (2, 4, 20, 30, 2.0), (3, 3, 300, 90, 3.0)]


@functools.lru_cache(maxsize=None)
def _model_dir(arch: str, root: str):
    from pathlib import Path

    return build_tiny(arch, Path(root) / arch, seed=0)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("processors"))


def _frames(seed, t, h, w):
    return np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("case", CASES)
def test_internvl_prompt_is_the_hf_processors_and_pixels_are_one_tile_a_frame(root, case):
    from transformers.models.internvl.processing_internvl import InternVLProcessor

    seed, t, h, w, _ = case
    model_dir = _model_dir("internvl3_5-8b-hf", root)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    frames = _frames(seed, t, h, w)
    inputs = adatp.prepare_inputs(model_dir, frames, QUESTION)
    hf = object.__new__(InternVLProcessor)  # replace_video_token reads these attributes only
    hf.start_image_token, hf.end_image_token, hf.image_token = "<img>", "</img>", "<IMG_CONTEXT>"
    hf.image_seq_length = 16
    expanded = hf.replace_video_token({"pixel_values_videos": [torch.zeros(t, 3, 112, 112)]}, 0)
    prompt = build_prompt(model_dir, QUESTION).replace("<video>", expanded, 1)
    expected = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    assert torch.equal(inputs["input_ids"], expected)
    assert int((inputs["input_ids"] == tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")).sum()) == t * 16
    cfg = load_preprocess_config(model_dir)  # one 112 px tile a frame, no thumbnail
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
    reference = (resize_video(video, (112, 112)).float() / 255 - torch.tensor(cfg.image_mean).view(-1, 1, 1)) / torch.tensor(
        cfg.image_std).view(-1, 1, 1)
    assert inputs["pixel_values"].shape == (t, 3, 112, 112)
    torch.testing.assert_close(inputs["pixel_values"], reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_glm46v_prompt_grid_and_patches_are_the_hf_processors(root, case):
    from transformers.models.glm4v.video_processing_glm4v import Glm4vVideoProcessor, smart_resize
    from transformers.models.glm46v.processing_glm46v import Glm46VProcessor

    seed, t, h, w, fps = case
    model_dir = _model_dir("glm-4.6v-flash", root)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    frames = _frames(seed, t, h, w)
    inputs = adatp.prepare_inputs(model_dir, frames, QUESTION, fps=fps)
    cfg = load_preprocess_config(model_dir)
    size = smart_resize(num_frames=t, height=h, width=w, temporal_factor=2, factor=28, min_pixels=56 * 56,
                        max_pixels=16 * 112 * 112)
    grid = [(t + t % 2) // 2, size[0] // 14, size[1] // 14]
    assert inputs["video_grid_thw"].tolist() == [grid]
    # the prompt: HF's replace_video_token with the frames' timestamps (i / fps), then HF's token types
    hf = object.__new__(Glm46VProcessor)
    hf.image_token, hf.video_processor = "<|image|>", SimpleNamespace(merge_size=2)
    metadata = SimpleNamespace(fps=fps, timestamps=[i / fps for i in range(t)])
    expanded = hf.replace_video_token({"video_grid_thw": torch.tensor([grid]), "video_metadata": [metadata]}, 0)
    prompt = build_prompt(model_dir, QUESTION).replace("<|video|>", expanded, 1)
    expected = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert inputs["input_ids"][0].tolist() == expected
    hf.video_start_id, hf.video_end_id = (tokenizer.convert_tokens_to_ids(x) for x in ("<|begin_of_video|>", "<|end_of_video|>"))
    hf.image_token_id = tokenizer.convert_tokens_to_ids("<|image|>")
    assert inputs["mm_token_type_ids"][0].tolist() == hf.create_mm_token_type_ids([expected])[0]
    # the patches: HF's patchify of the resized, normalised frames
    video = resize_video(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), size, cfg.resample)
    hf_video = object.__new__(Glm4vVideoProcessor)
    patches, *hf_grid = hf_video.patchify(rescale_and_normalize(video, cfg)[None], 14, 2, 2)
    assert list(hf_grid) == grid
    assert torch.equal(inputs["pixel_values_videos"], patches[0])


def test_glm_needs_one_temporal_patch_of_frames(root):
    with pytest.raises(adatp.errors.VideoError, match="at least temporal_patch_size=2") as info:
        adatp.prepare_inputs(_model_dir("glm-4.6v-flash", root), _frames(0, 1, 64, 64), QUESTION)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("arch", ["llava-onevision-qwen2-0.5b-ov-hf", "qwen2-vl-7b-instruct", "qwen2.5-vl-7b-instruct",
                                  "qwen3-vl-8b-instruct", "internvl3_5-8b-hf", "glm-4.6v-flash"])
def test_tokens_for_video_counts_what_prepare_inputs_builds(root, arch):
    """The per-family count from a video's header (frames, height, width) equals the video tokens of the
    inputs built from decoded frames of that size."""
    from adatp.families import processor_for
    from adatp.inputs import load_model_config

    model_dir = _model_dir(arch, root)
    config = load_model_config(model_dir)
    processor = processor_for(config.model_type)
    for seed, t, h, w, _ in CASES:
        ids = adatp.prepare_inputs(model_dir, _frames(seed, t, h, w), QUESTION)["input_ids"]
        assert processor.tokens_for_video(model_dir, config, t, h, w) == int((ids == processor.video_token_id(config)).sum())
