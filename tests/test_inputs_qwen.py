"""adatp.prepare_inputs for Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3.5 (dense, MoE) model directories (no torchvision)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer

import adatp
from adatp.errors import InputError
from adatp.models.tiny import build_tiny
from adatp.video.qwen_preprocess import grid_timestamps, patchify, smart_resize, smart_resize_video

NAMES = ["qwen2-vl-7b-instruct", "qwen2.5-vl-7b-instruct", "qwen3-vl-8b-instruct", "qwen3.5-27b", "qwen3.5-35b-a3b"]


@pytest.fixture(scope="module")
def qwen_dirs(tmp_path_factory):
    return {n: build_tiny(n, tmp_path_factory.mktemp(n) / "model") for n in NAMES}


def _frames(t=8, h=90, w=120, seed=0):
    return (np.random.default_rng(seed).random((t, h, w, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(8, 64, 96), (5, 64, 96), (4, 96, 32)])
def test_patchify_and_video_resize_equal_transformers_qwen3_code(shape):
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize as hf_smart_resize

    x = torch.randn(shape[0], 3, shape[1], shape[2])
    padded = torch.cat([x, x[-1:].expand(-shape[0] % 2, -1, -1, -1)])
    theirs, *grid = Qwen3VLVideoProcessor.patchify(None, padded[None], patch_size=16, merge_size=2, temporal_patch_size=2)
    mine, my_grid = patchify(x, 16, 2, 2)
    assert torch.equal(theirs[0], mine) and list(grid) == my_grid
    for t, h, w in [(8, 90, 120), (32, 480, 640), (2, 20, 300)]:
        assert smart_resize_video(t, h, w, 2, 32, 4096, 262144) == hf_smart_resize(t, h, w, 2, 32, 4096, 262144)


def test_qwen2_smart_resize_worked_examples():
    assert smart_resize(90, 120, 28, 3136, 12544) == (84, 112)  # rounded to multiples of 28, inside the limits
    assert smart_resize(480, 640, 28, 3136, 12544) == (84, 112)  # beta = sqrt(307200 / 12544): floor to 28s
    assert smart_resize(10, 20, 28, 3136, 12544) == (56, 84)  # beta = sqrt(3136 / 200): ceil to 28s


@pytest.mark.parametrize("name", NAMES)
def test_prepare_inputs_builds_the_processor_layout(qwen_dirs, name):
    model_dir = qwen_dirs[name]
    tok = AutoTokenizer.from_pretrained(model_dir)
    inputs = adatp.prepare_inputs(model_dir, _frames(), "What colour is the ball?", fps=4.0)
    ids = inputs["input_ids"]
    pad = tok.convert_tokens_to_ids("<|video_pad|>")
    t, h, w = inputs["video_grid_thw"][0].tolist()
    assert t == 4  # 8 frames, two a grid
    # Qwen3-VL: 8 x 90 x 120 fits its whole-video limit of 16*128*128 pixels: 96 x 128 in 16 px patches.
    # Qwen2/2.5-VL: one frame 90 x 120 -> 84 x 112 pixels, in 14 px patches.
    patch = 16 if name.startswith("qwen3") else 14
    assert (h, w) == (6, 8)
    assert inputs["pixel_values_videos"].shape == (t * h * w, 3 * 2 * patch * patch)
    assert int((ids == pad).sum()) == t * h * w // 4
    assert torch.equal(inputs["mm_token_type_ids"], (ids == pad).long() * 2)
    text = tok.decode(ids[0])
    assert text.endswith("What colour is the ball?<|im_end|>\n<|im_start|>assistant\n")
    if name.startswith("qwen2.5"):
        assert inputs["second_per_grid_ts"].tolist() == [0.5]  # temporal patch 2 / 4 fps
    else:
        assert "second_per_grid_ts" not in inputs
    if name.startswith("qwen3"):
        stamps = grid_timestamps(8, 4.0, 2)
        assert stamps == [0.125, 0.625, 1.125, 1.625]
        for s in stamps:
            assert f"<{s:.1f} seconds><|vision_start|>" in text
        assert text.count("<|vision_start|>") == 5  # the template's, then one per grid (5.23 layout)


@pytest.mark.parametrize("name", NAMES)
def test_prepared_inputs_prune_and_match_the_unpruned_model_at_retention_one(qwen_dirs, name):
    model = AutoModelForImageTextToText.from_pretrained(qwen_dirs[name], attn_implementation="sdpa").eval()
    inputs = adatp.prepare_inputs(qwen_dirs[name], _frames(), "What happens in this video?")
    with torch.no_grad():
        ref = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        with adatp.prune(model, "adatp", retention=1.0) as handle:
            out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
            report = handle.last_report
        with adatp.prune(model, "adatp", retention=0.25) as handle:
            model.generate(**inputs, max_new_tokens=2, do_sample=False)
            pruned = handle.last_report
    assert torch.equal(ref, out)
    assert report.num_frames == 4 and report.num_visual == inputs["video_grid_thw"][0].prod() // 4
    assert pruned.stages[-1].kept == round(0.25 * pruned.num_visual)


def test_bad_inputs_get_one_line_errors(qwen_dirs):
    model_dir = qwen_dirs["qwen2.5-vl-7b-instruct"]
    for question, match in [("<|video_pad|> what?", "placeholder|remove"), ("", "empty")]:
        with pytest.raises(InputError, match=match) as info:
            adatp.prepare_inputs(model_dir, _frames(), question)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="fps"):
        adatp.prepare_inputs(model_dir, _frames(), "What?", fps=0)
