"""FastVID on hand-worked examples (anchors, budgets, DPC scores, STPrune + DTM) and its options."""

import math

import pytest
import torch

from adatp.errors import ConfigError
from adatp.methods.base import build_method
from adatp.methods.fastvid import (
    anchor_frames,
    fastvid_selection,
    salient_scores,
    split_segment_budget,
)
from adatp.ops.clustering import density_peak_scores
from adatp.ops.merging import check_merge, merge_tokens


def test_anchor_frames_count_back_from_the_last_frame():
    assert anchor_frames(6, 4) == [1, 5]  # (5 - i) % 4 == 0
    assert anchor_frames(4, 4) == [3]
    assert anchor_frames(1, 4) == [0]
    assert anchor_frames(3, 1) == [0, 1, 2]


def test_split_segment_budget_by_hand():
    # 1 frame of 8, budget 5, d = .4: context floor(2.0) = 2, salient 3.
    assert split_segment_budget(5, 1, 8, 0.4, 4) == ([3], [2], [0])
    # 4 frames of 4, budget 10: context 4, salient 6 -> [2,2,1,1]; the one anchor (frame 3) has
    # room for 4 - 1 = 3 < 4, so context 3, salient 7 -> [2,2,2,1], room 3: fits.
    assert split_segment_budget(10, 4, 4, 0.4, 4) == ([2, 2, 2, 1], [3], [3])
    # 6 frames, anchors 1 and 5 share the context evenly: budget 12, d = .5 -> 6 = 3 + 3.
    assert split_segment_budget(12, 6, 4, 0.5, 4) == ([1, 1, 1, 1, 1, 1], [3, 3], [1, 5])


def test_density_peak_scores_by_hand():
    # 1-D tokens 0, 1, 3, 10 (D = 1), k = 3 nearest (self included).
    x = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    rho = [math.exp(-10 / 3), math.exp(-5 / 3), math.exp(-13 / 3), math.exp(-130 / 3)]
    # densest is token 1 -> delta = largest distance 10; token 0 -> 1 (to 1); 2 -> 2 (to 1); 3 -> 7 (to 2).
    expected = torch.tensor([rho[0] * 1, rho[1] * 10, rho[2] * 2, rho[3] * 7])
    assert torch.allclose(density_peak_scores(x, k=3), expected, rtol=1e-5, atol=0)


def test_salient_score_is_the_mean_query_logit():
    tokens = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]])  # mean (4/3, 4/3)
    s = 4 / 3 / math.sqrt(2)
    assert torch.allclose(salient_scores(tokens), torch.tensor([[2 * s, 2 * s, 4 * s]]))


def _video():
    """2 frames x 4 tokens, D = 2, one segment; frame 1 (the anchor) holds the context tokens."""
    tokens = torch.tensor(
        [
            [[5.0, 5.0], [1.0, 0.1], [0.1, 1.0], [0.5, 0.5]],
            [[2.0, 0.0], [9.0, 9.0], [2.0, 0.5], [0.0, 3.0]],
        ]
    )
    salient = torch.tensor([[0.9, 0.1, 0.2, 0.3], [0.1, 0.8, 0.2, 0.3]])
    return tokens, salient


def test_stprune_and_dtm_worked_example():
    tokens, salient = _video()
    # B = 4, d = .5: context 2 on the anchor (frame 1), salient 1 per frame -> tokens 0 and 5.
    # Frame 1's non-salient tokens 4 (2,0), 6 (2,.5), 7 (0,3); squared distances / D:
    # 4-6 .125, 4-7 6.5, 6-7 5.125. k = 3: rho_4 = e^-2.208, rho_6 = e^-1.75, rho_7 = e^-3.875;
    # delta_6 = max distance sqrt(6.5), delta_4 = sqrt(.125), delta_7 = sqrt(5.125).
    # Scores: 6 -> .443, 7 -> .047, 4 -> .039: centres 6 and 7.
    # Cosine assignment of the segment's non-salient tokens 1, 2, 3, 4, 6, 7:
    # 1 (1,.1) -> 6, 2 (.1,1) -> 7, 3 (.5,.5) -> 6 (.858 > .707), 4 (2,0) -> 6.
    kept, merge_into, weights, budgets = fastvid_selection(
        tokens, salient, torch.tensor([0, 0]), 4, density_ratio=0.5, period=4, beta=0.6, knn=3
    )
    assert budgets == [4]
    assert kept.tolist() == [0, 5, 6, 7]
    assert merge_into.tolist() == [0, 2, 3, 2, 2, 1, 2, 3]
    # Slot 2 has n = 4 members: w = max(1/5, .6) = .6, centre .6 + .1, others .4/4; slot 3 n = 2.
    assert torch.allclose(weights, torch.tensor([1.0, 0.1, 0.2, 0.1, 0.1, 1.0, 0.7, 0.8]))
    alive = torch.arange(8)
    check_merge(alive, kept, merge_into, weights)
    flat = tokens.reshape(8, 2)
    merged = merge_tokens(flat, merge_into, weights, 4)
    official_6 = 0.6 * flat[6] + 0.4 * flat[[1, 3, 4, 6]].mean(0)
    official_7 = 0.6 * flat[7] + 0.4 * flat[[2, 7]].mean(0)
    assert torch.allclose(merged, torch.stack([flat[0], flat[5], official_6, official_7]))


def test_dtm_weight_floor_is_beta():
    tokens, salient = _video()
    _, _, weights, _ = fastvid_selection(tokens, salient, torch.tensor([0, 0]), 4, 0.5, 4, beta=0.0, knn=3)
    # beta = 0: w = 1/(n+1); slot 2 (n = 4): w = .2, share .2, centre .4; slot 3 (n = 2): w = 1/3, share 1/3.
    third = 1 / 3
    assert torch.allclose(weights, torch.tensor([1.0, 0.2, third, 0.2, 0.2, 1.0, 0.4, 2 * third]))


def test_single_frame_segments_merge_within_their_frame():
    tokens, salient = _video()
    kept, merge_into, _, budgets = fastvid_selection(tokens, salient, torch.tensor([0, 1]), 4, 0.5, 4, 0.6, 3)
    assert budgets == [2, 2]
    # Each frame: 1 salient + 1 context; frame 0's tokens never join frame 1's centre.
    assert kept.numel() == 4 and kept[:2].max() < 4 <= kept[2:].min()
    assert bool((merge_into[:4] < 2).all()) and bool((merge_into[4:] >= 2).all())


def test_budget_is_exact_on_a_random_video():
    torch.manual_seed(0)
    tokens = torch.randn(9, 16, 8)
    segs = torch.tensor([0, 0, 0, 0, 0, 0, 1, 2, 2])
    for budget in (1, 7, 30, 72, 143):
        kept, merge_into, weights, _ = fastvid_selection(tokens, salient_scores(tokens), segs, budget)
        assert kept.numel() == budget
        assert torch.equal(kept, torch.sort(kept).values)
        check_merge(torch.arange(144), kept, merge_into, weights)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"density_ratio": 1.5}, "density_ratio"),
        ({"anchor_period": 0}, "anchor_period"),
        ({"merge_beta": -0.1}, "merge_beta"),
        ({"min_segments": 0}, "min_segments"),
        ({"density_k": 0}, "density_k"),
        ({"segment_threshold": float("nan")}, "segment_threshold"),
        ({"schedule": [(2, 0.5)]}, "before the LLM"),
        ({"schedule": [(0, 0.5), (2, 0.2)]}, "before the LLM"),
        ({"alpha": 1.0}, "unknown option"),
    ],
)
def test_bad_options_raise(options, message):
    with pytest.raises(ConfigError, match=message):
        build_method("fastvid", **options)
