"""DyCoke's temporal token merging, worked out by hand, and its option errors."""

import pytest
import torch

from adatp.adapters.base import VideoLayout, VideoSpan
from adatp.errors import ConfigError
from adatp.methods import PrefillContext, Selection, build_method
from adatp.methods.dycoke import DyCoke, DyCokeConfig, pivot_frames, temporal_merge
from adatp.ops.flops import DecoderDims

DIMS = DecoderDims(hidden=8, intermediate=16, num_layers=4, num_kv_heads=1, head_dim=8)

# T = 4 frames (one window), c = 2 positions. Visual index v = 2 t + p.
# Frame 1 vs frame 0: p0 cos([1,.1],[1,0]) = .995, p1 cos([1,1],[0,1]) = .707.
# Frame 2 vs frame 0: p0 cos([0,1],[1,0]) = 0, p1 cos([0,1],[0,1]) = 1.
# Frame 3 vs frame 2: p0 cos([.6,.8],[0,1]) = .8, p1 cos([1,0],[0,1]) = 0.
# Merge order: v5 (1), v2 (.995), v6 (.8), v3 (.707), v4 (0), v7 (0); then frame 0 by norm: v0, v1.
WINDOW = torch.tensor(
    [
        [[1.0, 0.0], [0.0, 1.0]],
        [[1.0, 0.1], [1.0, 1.0]],
        [[0.0, 1.0], [0.0, 1.0]],
        [[0.6, 0.8], [1.0, 0.0]],
    ]
)


def _context(tokens):
    t, c, _ = tokens.shape
    span = VideoSpan(start=0, layout=VideoLayout(t, 1, c, "video_end"), seq_len=t * c + 5)
    return PrefillContext(span, tokens, None, None, "uniform", None, DIMS)


def test_pivots_follow_the_official_windows_of_four():
    pivot, level = pivot_frames(10)
    assert pivot.tolist() == [-1, 0, 0, 2, 0, 4, 4, 6, 4, 8]
    assert level.tolist() == [3, 1, 1, 1, 2, 1, 1, 1, 2, 1]


def test_most_similar_tokens_merge_into_their_pivot_token():
    # B=5: merge v5 -> v1, v2 -> v0, v6 -> v4 (frame 2 is frame 3's pivot).
    kept, merge_into = temporal_merge(WINDOW, 5)
    assert kept.tolist() == [0, 1, 3, 4, 7]
    assert merge_into.tolist() == [0, 1, 0, 2, 3, 1, 3, 4]


def test_merges_follow_a_merged_pivot():
    # B=3: also v3 -> v1 and v4 -> v0; v6 went to v4, which now goes to v0.
    kept, merge_into = temporal_merge(WINDOW, 3)
    assert kept.tolist() == [0, 1, 7]
    assert merge_into.tolist() == [0, 1, 0, 1, 0, 1, 0, 2]


def test_below_one_frame_the_lowest_norm_first_frame_tokens_are_dropped():
    # B=1: every non-pivot token merged (v7 -> v5 -> v1), then v0 (norm 1, tie -> lower index)
    # dropped together with what was merged into it (v2, v4, v6).
    kept, merge_into = temporal_merge(WINDOW, 1)
    assert kept.tolist() == [1]
    assert merge_into.tolist() == [-1, 0, -1, 0, -1, 0, -1, 0]


def test_window_pivots_merge_into_the_previous_window_pivot_last():
    # T=5, c=1: frame 4 starts window 2 (pivot frame 0, level 2).
    # Level 1: f1 vs f0 = 0, f2 vs f0 = 1, f3 vs f2 = .707; level 2: f4 vs f0 = .995.
    video = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 0.0]], [[1.0, 1.0]], [[1.0, 0.1]]])
    kept, merge_into = temporal_merge(video, 3)
    assert kept.tolist() == [0, 1, 4]  # f4 (.995) outlives f3 (.707): level 1 goes first
    assert merge_into.tolist() == [0, 1, 0, 0, 2]
    kept, merge_into = temporal_merge(video, 1)
    assert kept.tolist() == [0]
    assert merge_into.tolist() == [0, 0, 0, 0, 0]


def test_plan_and_select():
    method = DyCoke(DyCokeConfig(retention=5 / 8))
    stages = method.plan(_context(WINDOW))
    assert [(s.layer, s.budget, s.needs_hidden) for s in stages] == [(0, 5, True)]
    sel = method.select(stages[0], torch.arange(8), None, hidden=WINDOW.reshape(8, 2))
    assert isinstance(sel, Selection) and sel.weights is None
    assert sel.kept.tolist() == [0, 1, 3, 4, 7]
    assert sel.merge_into.tolist() == [0, 1, 0, 2, 3, 1, 3, 4]


def test_default_shape_is_the_official_window_retention():
    method = DyCoke(DyCokeConfig())
    assert method.default_shape(28) == [(0, pytest.approx(0.475))]
    stage = method.plan(_context(WINDOW))[0]
    assert stage.budget == 4  # floor(.475 * 8 + .5)


def test_full_budget_returns_alive_unchanged():
    method = DyCoke(DyCokeConfig(retention=1.0))
    stage = method.plan(_context(WINDOW))[0]
    alive = torch.arange(8)
    assert method.select(stage, alive, None, hidden=torch.zeros(8, 2)) is alive


@pytest.mark.parametrize(
    "options, message",
    [
        ({"pruning_ratio": 1.0}, "pruning_ratio"),
        ({"pruning_ratio": -0.5}, "pruning_ratio"),
        ({"pruning_ratio": None}, "pruning_ratio"),
        ({"window": 8}, "unknown option"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        build_method("dycoke", **options)


def test_in_llm_schedule_is_rejected():
    with pytest.raises(ConfigError, match="one stage at layer 0"):
        DyCoke(DyCokeConfig(schedule=[(0, 0.5), (2, 0.3)])).plan(_context(WINDOW))
