"""uniform-frames: worked examples of the frame choice and the truncation, and its option errors."""

import pytest
import torch

from adatp.adapters.base import VideoLayout, VideoSpan
from adatp.errors import ConfigError
from adatp.methods import PrefillContext, build_method
from adatp.methods.uniform_frames import UniformFrames, UniformFramesConfig, uniform_frame_tokens
from adatp.ops.flops import DecoderDims

DIMS = DecoderDims(hidden=8, intermediate=16, num_layers=4, num_kv_heads=1, head_dim=8)


def _context(t, c):
    span = VideoSpan(start=0, layout=VideoLayout(t, 1, c, "video_end"), seq_len=t * c + 5)
    return PrefillContext(span, torch.zeros(t, c, 4), None, None, "uniform", None, DIMS)


def test_whole_frames_uniformly_spaced():
    # T=8, c=4, B=12 -> F=3 frames at linspace(0, 7, 3) = [0, 3.5, 7] -> [0, 3, 7].
    assert uniform_frame_tokens(8, 4, 12).tolist() == [0, 1, 2, 3, 12, 13, 14, 15, 28, 29, 30, 31]


def test_last_chosen_frame_is_truncated_in_raster_order():
    # B=10 -> F=3 frames [0, 3, 7]; the last (frame 7) keeps only its first 10 - 8 = 2 tokens.
    assert uniform_frame_tokens(8, 4, 10).tolist() == [0, 1, 2, 3, 12, 13, 14, 15, 28, 29]
    # B=3 -> one frame (frame 0), first 3 tokens.
    assert uniform_frame_tokens(8, 4, 3).tolist() == [0, 1, 2]
    # B=5, T=3, c=2 -> F=3: all frames, last truncated to 1 token.
    assert uniform_frame_tokens(3, 2, 5).tolist() == [0, 1, 2, 3, 4]


def test_plan_and_select_keep_the_budget_and_compact_positions():
    method = UniformFrames(UniformFramesConfig(retention=0.25))
    stages = method.plan(_context(8, 4))
    assert [(s.layer, s.budget, s.scoring) for s in stages] == [(0, 8, None)]
    kept = method.select(stages[0], torch.arange(32), None)
    assert kept.tolist() == [0, 1, 2, 3, 28, 29, 30, 31]  # frames linspace(0, 7, 2) = [0, 7]
    assert method.positions == "compact"


def test_full_budget_returns_alive_unchanged():
    method = UniformFrames(UniformFramesConfig(retention=1.0))
    stage = method.plan(_context(4, 4))[0]
    alive = torch.arange(16)
    assert method.select(stage, alive, None) is alive


def test_default_is_half_the_tokens():
    method = UniformFrames(UniformFramesConfig())
    assert [(s.layer, s.retention, s.budget) for s in method.plan(_context(8, 4))] == [(0, 0.5, 16)]


def test_bad_options():
    with pytest.raises(ConfigError, match="one stage at layer 0"):
        UniformFrames(UniformFramesConfig(schedule=[(0, 0.5), (2, 0.25)])).plan(_context(8, 4))
    with pytest.raises(ConfigError, match="one stage at layer 0"):
        UniformFrames(UniformFramesConfig(schedule=[(1, 0.5)])).plan(_context(8, 4))
    with pytest.raises(ConfigError, match="unknown option"):
        build_method("uniform-frames", frames=4)
    with pytest.raises(ConfigError, match="outside"):
        uniform_frame_tokens(2, 2, 5)
