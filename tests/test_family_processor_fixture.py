"""adatp.prepare_inputs for InternVL3.5 and GLM-4.6V equals transformers' own processors.

Recorded once in a torchvision profile (tests/fixtures/record_family_processors.py ->
tests/fixtures/family_processors.json) with ``InternVLProcessor`` / ``Glm46VProcessor`` and their video
processors, as tests/test_qwen_processor_fixture.py does for Qwen-VL: ids, token types and grid
exactly, pixels to the last bit (measured max abs difference 0, docs/families.md). InternVL: one tile a
frame, no thumbnail, ``pixel_values`` (T, 3, S, S), no grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import adatp
from adatp.models.tiny import build_tiny
from tests.fixtures.record_family_processors import NAMES, TIMED
from tests.fixtures.record_qwen_processor import assert_pixels_equal, make_frames, sha256

FIXTURE = Path(__file__).parent / "fixtures" / "family_processors.json"
DATA = json.loads(FIXTURE.read_text(encoding="utf-8"))
CASES = {c["name"]: c for c in DATA["cases"]}
#: the processor classes the fixture was recorded with, and the key of each family's pixels
PROCESSORS = {"internvl3_5-8b-hf": ("InternVLProcessor", "InternVLVideoProcessor", "pixel_values"),
              "glm-4.6v-flash": ("Glm46VProcessor", "Glm46VVideoProcessor", "pixel_values_videos")}


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    return {n: build_tiny(n, tmp_path_factory.mktemp(n) / "model") for n in NAMES}


def _inputs(family_dirs, name: str, case: str):
    """(adatp's inputs, the recorded HF record) for one family and one video case."""
    c, rec = CASES[case], DATA["records"][name][case]
    frames = make_frames(c["seed"], c["frames"], c["height"], c["width"])
    assert sha256(frames) == rec["frames_sha256"], "the seeded frames changed (numpy?): re-record the fixture"
    fps = c["fps"] if TIMED[name] else None
    return adatp.prepare_inputs(family_dirs[name], frames, DATA["question"], fps=fps), rec


@pytest.mark.parametrize("name", NAMES)
def test_fixture_comes_from_the_family_processor(name):
    rec = DATA["records"][name]
    assert (rec["processor_class"], rec["video_processor_class"]) == PROCESSORS[name][:2]
    assert DATA["versions"]["transformers"] == "5.23.0" and "torchvision" in DATA["versions"]
    assert all(rec[c]["adatp_at_recording"]["pixel_max_abs_diff"] == 0.0 for c in CASES)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", NAMES)
def test_ids_grid_token_types_equal_the_hf_processor(family_dirs, name, case):
    inputs, rec = _inputs(family_dirs, name, case)
    assert sorted(inputs.keys()) == rec["keys"]
    assert inputs["input_ids"][0].tolist() == rec["input_ids"]
    assert inputs["attention_mask"].eq(1).all() and rec["attention_mask_all_ones"]
    if "video_grid_thw" in rec:  # GLM only: InternVL's frames are image tiles
        assert inputs["video_grid_thw"].tolist() == rec["video_grid_thw"]
        assert inputs["mm_token_type_ids"][0].tolist() == rec["mm_token_type_ids"]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", NAMES)
def test_pixels_equal_the_hf_processor(family_dirs, name, case):
    inputs, rec = _inputs(family_dirs, name, case)
    key = PROCESSORS[name][2]
    assert_pixels_equal(inputs[key], rec[key])  # measured max abs difference: 0
