"""adatp.prepare_inputs for Qwen2-VL / Qwen2.5-VL / Qwen3-VL equals transformers' own processors.

The processors need torchvision, which the core profile lacks, so their output was recorded once in
a torchvision profile (tests/fixtures/record_qwen_processor.py -> tests/fixtures/qwen_processor.json)
and this test compares adatp to it without torchvision: ids, grid, timing and token types exactly,
pixels to the last bit (sha256 of the float32 array; measured max abs difference 0, docs/families.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import adatp
from adatp.models.tiny import build_tiny
from tests.fixtures.record_qwen_processor import NAMES, assert_pixels_equal, make_frames, sha256

FIXTURE = Path(__file__).parent / "fixtures" / "qwen_processor.json"
DATA = json.loads(FIXTURE.read_text(encoding="utf-8"))
CASES = {c["name"]: c for c in DATA["cases"]}
#: what AutoProcessor.from_pretrained loaded from each tiny directory when the fixture was recorded
PROCESSORS = {"qwen2-vl-7b-instruct": ("Qwen2VLProcessor", "Qwen2VLVideoProcessor"),
              "qwen2.5-vl-7b-instruct": ("Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor"),
              "qwen3-vl-8b-instruct": ("Qwen3VLProcessor", "Qwen3VLVideoProcessor")}


@pytest.fixture(scope="module")
def qwen_dirs(tmp_path_factory):
    return {n: build_tiny(n, tmp_path_factory.mktemp(n) / "model") for n in NAMES}


def _inputs(qwen_dirs, name: str, case: str):
    """(adatp's inputs, the recorded HF record) for one family and one video case."""
    c, rec = CASES[case], DATA["records"][name][case]
    frames = make_frames(c["seed"], c["frames"], c["height"], c["width"])
    assert sha256(frames) == rec["frames_sha256"], "the seeded frames changed (numpy?): re-record the fixture"
    return adatp.prepare_inputs(qwen_dirs[name], frames, DATA["question"], fps=c["fps"]), rec


@pytest.mark.parametrize("name", NAMES)
def test_fixture_comes_from_the_family_processor(name):
    rec = DATA["records"][name]
    assert (rec["processor_class"], rec["video_processor_class"]) == PROCESSORS[name]
    assert DATA["versions"]["transformers"] == "5.23.0" and "torchvision" in DATA["versions"]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", NAMES)
def test_ids_grid_timing_equal_the_hf_processor(qwen_dirs, name, case):
    inputs, rec = _inputs(qwen_dirs, name, case)
    assert sorted(inputs.keys()) == rec["keys"]
    assert inputs["input_ids"][0].tolist() == rec["input_ids"]
    assert inputs["attention_mask"].eq(1).all() and rec["attention_mask_all_ones"]
    assert inputs["video_grid_thw"].tolist() == rec["video_grid_thw"]
    assert inputs["mm_token_type_ids"][0].tolist() == rec["mm_token_type_ids"]
    if "second_per_grid_ts" in rec:  # Qwen2.5-VL only
        assert [float(v) for v in inputs["second_per_grid_ts"]] == rec["second_per_grid_ts"]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", NAMES)
def test_pixels_equal_the_hf_processor(qwen_dirs, name, case):
    inputs, rec = _inputs(qwen_dirs, name, case)
    assert_pixels_equal(inputs["pixel_values_videos"], rec["pixel_values_videos"])  # measured max abs difference: 0
