"""VidCom2 on hand-worked examples (channels, Gaussian scores, frame budgets, outliers) and its options."""

import math

import pytest
import torch

from adatp.errors import ConfigError
from adatp.methods.base import build_method
from adatp.methods.vidcom2 import (
    frame_budgets,
    frame_weights,
    low_variance_channels,
    multi_scale_gaussian,
    vidcom2_keep,
    vidcom2_similarities,
)


def _g(dist_sq):
    """The official multi-scale Gaussian written out: widths 1/8, 1/4, 1/2, 1, 2."""
    return sum(math.exp(-dist_sq / (2 * a)) for a in (0.125, 0.25, 0.5, 1.0, 2.0))


def test_low_variance_channels_by_hand():
    x = torch.tensor([[0.0, 1.0, 0.0], [4.0, 1.0, 1.0], [8.0, 1.0, 2.0]])  # variances 10.67, 0, .67
    assert low_variance_channels(x, 0.5).tolist() == [1]  # floor(3 * .5) = 1
    assert low_variance_channels(x, 0.7).tolist() == [1, 2]
    assert low_variance_channels(x, 1.0).tolist() == [0, 1, 2]
    assert low_variance_channels(torch.ones(2, 4), 0.5).tolist() == [0, 1]  # ties: earlier channels


def test_multi_scale_gaussian_by_hand():
    x, m = torch.tensor([[3.0, 4.0], [0.0, 0.0]]), torch.zeros(2)
    assert torch.allclose(multi_scale_gaussian(x, m), torch.tensor([_g(25.0), 5.0]).float())


def _video():
    """2 frames x 4 tokens, D = 2: frame 0 is a a a b, frame 1 is b b b b (a = (1,0), b = (0,1))."""
    a, b = [1.0, 0.0], [0.0, 1.0]
    return torch.tensor([[a, a, a, b], [b, b, b, b]])


def test_worked_example_budgets_and_outliers():
    tokens = _video()
    video_sim, frame_sim = vidcom2_similarities(tokens, channel_ratio=1.0)
    # Video centre (3/8, 5/8): |a - m|^2 = 2 (5/8)^2 = .78125, |b - m|^2 = 2 (3/8)^2 = .28125.
    # Frame 0 centre (3/4, 1/4): a .125, b 1.125; frame 1 centre b: 0.
    ga, gb = _g(0.78125), _g(0.28125)
    assert torch.allclose(video_sim, torch.tensor([[ga, ga, ga, gb], [gb] * 4]).float())
    assert torch.allclose(frame_sim, torch.tensor([[_g(0.125)] * 3 + [_g(1.125)], [_g(0.0)] * 4]).float())
    # u_0 = -(3 ga + gb)/4 > u_1 = -gb: frame 0 is the unique one; p = softmax(u / .01).
    u0, u1 = -(3 * ga + gb) / 4, -gb
    p0 = 1 / (1 + math.exp((u1 - u0) / 0.01))
    weights = frame_weights(video_sim, 0.01)
    assert torch.allclose(weights, torch.tensor([1 + p0 - 0.5, 1 + (1 - p0) - 0.5], dtype=torch.float64))
    assert p0 > 0.999  # weights ~ (1.5, .5)
    # B = 4: quotas 3 and 1.
    budgets = frame_budgets(4, weights, 4)
    assert budgets == [3, 1]
    # Frame 0 keeps its 3 lowest ga + g(.125) (6.39) vs gb + g(1.125) (5.22): b first, then a, a;
    # frame 1's tokens tie: the earliest.
    assert gb + _g(1.125) < ga + _g(0.125)
    assert vidcom2_keep(video_sim, frame_sim, budgets).tolist() == [0, 1, 3, 4]


def test_frame_budgets_are_exact_capped_and_at_least_one():
    weights = torch.tensor([1.9, 0.55, 0.55], dtype=torch.float64)
    assert frame_budgets(6, weights, 3) == [3, 2, 1]  # 3.8 capped at 3, the rest .6/.6 -> 2, 1 (order)
    assert frame_budgets(3, torch.tensor([2.9, 0.05, 0.05], dtype=torch.float64), 4) == [1, 1, 1]
    torch.manual_seed(0)
    video_sim, frame_sim = vidcom2_similarities(torch.randn(6, 9, 16))
    w = frame_weights(video_sim)
    for budget in (6, 11, 30, 54):
        kept = vidcom2_keep(video_sim, frame_sim, frame_budgets(budget, w, 9))
        assert kept.numel() == budget and torch.equal(kept, torch.sort(kept).values)
        assert bool((torch.bincount(kept // 9, minlength=6) >= 1).all())


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"channel_ratio": 0.0}, "channel_ratio"),
        ({"channel_ratio": 1.5}, "channel_ratio"),
        ({"schedule": [(2, 0.5)]}, "before the LLM"),
        ({"retention": 0.3, "flops_ratio": 0.5}, "not both"),
        ({"k": 2}, "unknown option"),
    ],
)
def test_bad_options_raise(options, message):
    with pytest.raises(ConfigError, match=message):
        build_method("vidcom2", **options)
