"""VisionZip: dominant + contextual tokens per frame, worked out by hand, and its option errors."""

import math

import pytest
import torch

from adatp.adapters.base import VideoLayout, VideoSpan
from adatp.errors import ConfigError
from adatp.methods import PrefillContext, Selection, build_method
from adatp.methods.visionzip import (
    VisionZip,
    VisionZipConfig,
    contextual_count,
    dominant_scores,
    zip_frame,
    zip_video,
)
from adatp.ops.flops import DecoderDims

DIMS = DecoderDims(hidden=8, intermediate=16, num_layers=4, num_kv_heads=1, head_dim=8)

# One frame, c = 6 tokens, D = 2. Mean g = (5/6, 2/6); <g, x_p> * 6 = [10, 2, 7, -2, 15, -3].
FRAME = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, -1.0], [3.0, 0.0], [-1.0, 1.0]])


def _context(tokens):
    t, c, _ = tokens.shape
    span = VideoSpan(start=0, layout=VideoLayout(t, 1, c, "video_end"), seq_len=t * c + 5)
    return PrefillContext(span, tokens, None, None, "uniform", None, DIMS)


def test_mean_query_attention_is_a_softmax_of_scaled_dot_products():
    logits = torch.tensor([10.0, 2, 7, -2, 15, -3]) / 6 / math.sqrt(2)
    assert torch.allclose(dominant_scores(FRAME), torch.softmax(logits, 0))
    assert torch.allclose(dominant_scores(FRAME, "norm"), FRAME.norm(dim=-1))


def test_frame_two_dominant_two_contextual():
    # Dominant (top-2 mean-query): tokens 4, 0. Remaining [1, 2, 3, 5], R=4, step=4//2=2 ->
    # targets at positions 0, 2 -> tokens 1, 3. Token 2 = (1,1): cos 1/sqrt2 with 1, -1/sqrt2 with 3
    # -> joins 1; token 5 = (-1,1): likewise joins 1.
    kept, merge_into = zip_frame(FRAME, 4, 2)
    assert kept.tolist() == [0, 1, 3, 4]
    assert merge_into.tolist() == [0, 1, 1, 2, 3, 1]


def test_dominant_signal_changes_the_dominant_set():
    # b=5, k=1: four dominant. mean-query: 4, 0, 2, 1; rest [3, 5], target 3, 5 joins it.
    kept, merge_into = zip_frame(FRAME, 5, 1, "mean-query")
    assert kept.tolist() == [0, 1, 2, 3, 4]
    assert merge_into.tolist() == [0, 1, 2, 3, 4, 3]
    # norm: 3, 2, sqrt2 (token 2), sqrt2 (token 5); rest [1, 3], target 1, 3 joins it.
    kept, merge_into = zip_frame(FRAME, 5, 1, "norm")
    assert kept.tolist() == [0, 1, 2, 4, 5]
    assert merge_into.tolist() == [0, 1, 2, 1, 3, 4]


def test_video_splits_the_budget_by_largest_remainder():
    # Two copies of FRAME, B=7 -> b = [4, 3]; contextual_ratio .5 -> k = [2, 2].
    # Frame 1: dominant 4; remaining [0, 1, 2, 3, 5], step 5//2 = 2 -> targets 0, 2;
    # 1 -> 2 (cos 1/sqrt2 vs 0), 3 -> 0 (0 vs -1/sqrt2), 5 -> 2 (0 vs -1/sqrt2).
    kept, merge_into, budgets = zip_video(torch.stack([FRAME, FRAME]), 7, 0.5)
    assert budgets == [4, 3]
    assert kept.tolist() == [0, 1, 3, 4, 6, 8, 10]
    assert merge_into.tolist() == [0, 1, 1, 2, 3, 1, 4, 5, 5, 4, 6, 5]


def test_no_contextual_tokens_drop_the_rest():
    assert contextual_count(3, 10 / 64) == 0 and contextual_count(64, 10 / 64) == 10
    kept, merge_into = zip_frame(FRAME, 3, 0)
    assert kept.tolist() == [0, 2, 4]
    assert merge_into.tolist() == [0, -1, 1, -1, 2, -1]


def test_plan_and_select_use_the_hidden_states():
    tokens = torch.stack([FRAME, FRAME])
    method = VisionZip(VisionZipConfig(schedule=[(0, 7 / 12)], contextual_ratio=0.5))
    stages = method.plan(_context(tokens))
    assert [(s.layer, s.budget, s.needs_hidden) for s in stages] == [(0, 7, True)]
    sel = method.select(stages[0], torch.arange(12), None, hidden=tokens.reshape(12, 2))
    assert isinstance(sel, Selection) and sel.weights is None
    assert sel.kept.tolist() == [0, 1, 3, 4, 6, 8, 10]
    assert sel.merge_into.tolist() == [0, 1, 1, 2, 3, 1, 4, 5, 5, 4, 6, 5]
    assert method.describe() == {"frame_budgets": [4, 3]}


def test_full_budget_returns_alive_unchanged():
    method = VisionZip(VisionZipConfig(retention=1.0))
    stage = method.plan(_context(torch.stack([FRAME, FRAME])))[0]
    alive = torch.arange(12)
    assert method.select(stage, alive, None, hidden=torch.zeros(12, 2)) is alive


@pytest.mark.parametrize(
    "options, message",
    [
        ({"contextual_ratio": 1.0}, "contextual_ratio"),
        ({"contextual_ratio": -0.1}, "contextual_ratio"),
        ({"contextual_ratio": "a"}, "contextual_ratio"),
        ({"dominant_signal": "cls"}, "dominant_signal"),
        ({"dominant": 54}, "unknown option"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        build_method("visionzip", **options)


def test_in_llm_schedule_is_rejected():
    with pytest.raises(ConfigError, match="one stage at layer 0"):
        VisionZip(VisionZipConfig(schedule=[(2, 0.5)])).plan(_context(torch.stack([FRAME, FRAME])))
