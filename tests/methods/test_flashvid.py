"""FlashVID's pieces on hand-computed examples: ADTS, TSTM trees, the whole vision-side stage."""

import pytest
import torch

import adatp
from adatp.errors import ConfigError
from adatp.methods.flashvid import FlashVID, FlashVIDConfig, adts_select, flashvid_selection, temporal_trees
from adatp.ops.merging import merge_tokens


def test_adts_is_farthest_point_on_calibrated_distances():
    # 1 - cos: d01 = 1, d02 = 2, d03 = 0 (x3 is x0 scaled), d12 = 1, d13 = 1, d23 = 2.
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [2.0, 0.0]])
    ones = torch.ones(4)
    # first pick: column minima over i != j are [0, 1, 1, 0] -> token 1; then d(1, .) = [1, 0, 1, 1] -> 0;
    # then min(d(1, .), d(0, .)) = [0, 0, 1, 0] -> 2.
    assert adts_select(x, ones, 2).tolist() == [0, 1]
    assert adts_select(x, ones, 3).tolist() == [0, 1, 2]
    # Calibration scales column j: [0, .4, 1, 0] -> token 2 first; then d(2, .) = [2, .4, 0, 2] -> 0 (tie, earlier).
    assert adts_select(x, torch.tensor([1.0, 0.4, 1.0, 1.0]), 2).tolist() == [0, 2]


def test_tstm_trees_and_soft_threshold():
    x = torch.tensor([
        [[1.0, 0.0], [0.0, 1.0]],   # frame 0: roots 0, 1
        [[1.0, 0.1], [-1.0, 0.0]],  # token 2 joins 0 (cos .99504); token 3 best cos 0 -> root
        [[1.0, 0.2], [0.0, -1.0]],  # token 4 joins 2 (cos .99523) -> root 0; token 5 best cos 0 -> root
    ])
    free = torch.ones(3, 2, dtype=torch.bool)
    assert temporal_trees(x, free, 0.8, 0).tolist() == [0, 1, 0, 3, 0, 5]
    # Five roots needed: only the single most similar join (token 4 -> 2) is made.
    assert temporal_trees(x, free, 0.8, 5).tolist() == [0, 1, 2, 3, 2, 5]
    # A token taken by ADTS is in no tree and no anchor: token 2 taken -> token 4's best is 3 (cos 0) -> root.
    free[1, 0] = False
    assert temporal_trees(x, free, 0.8, 0).tolist() == [0, 1, -1, 3, 4, 5]


def test_vision_side_stage_by_hand():
    """2 frames x 3 tokens, one segment, B = 3, alpha = .5: ceil(1.5) = 2 ADTS tokens (one per
    frame), 1 context slot.

    Segment mean (5/6, 1/3). Frame 0 calibration [5/6, 1/3, 5/6], column minima [0, 1/3, 0] ->
    ADTS keeps token 1; frame 1 likewise keeps token 4. TSTM: tokens 3 and 5 join token 0
    (cos 1, the first of two equal anchors): tree {0, 3, 5}, mean (4/3, 0); token 2 is a tree
    alone. One cluster over frame 0's roots (frame 1 has none): equal density peaks -> the
    earlier root, 0, is the centre and root 2 joins it. Slot 0 = mean of the tree means
    ((4/3 + 1) / 2, 0) = (7/6, 0).
    """
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]])
    kept, merge_into, weights, budgets = flashvid_selection(
        tokens, torch.ones(2, 3), torch.zeros(2, dtype=torch.long), budget=3, alpha=0.5, temporal_threshold=0.8
    )
    assert budgets == [3]
    assert kept.tolist() == [0, 1, 4]
    assert merge_into.tolist() == [0, 1, 0, 0, 2, 0]
    torch.testing.assert_close(weights, torch.tensor([1 / 3, 1.0, 1.0, 1 / 3, 1.0, 1 / 3]))
    merged = merge_tokens(tokens.reshape(6, 2), merge_into, weights, 3)
    torch.testing.assert_close(merged, torch.tensor([[7 / 6, 0.0], [0.0, 1.0], [0.0, 1.0]]))


def test_default_shape_is_the_official_flops_equivalent():
    method = FlashVID(FlashVIDConfig())
    assert method.default_shape(28) == [(0, 0.3125), (20, 0.09375)]  # 1.25 R, then 30% of it at layer 20
    assert method.default_shape(6) == [(0, 0.3125), (4, 0.09375)]
    with pytest.raises(ConfigError, match="alpha must be in"):
        FlashVIDConfig(alpha=1.5)
    with pytest.raises(ConfigError, match="start at layer 0"):
        FlashVIDConfig(schedule=[(2, 0.5)])


def test_in_llm_stage_is_fastv_on_layer_k_minus_1():
    from tests.runtime.conftest import build_tiny, make_inputs

    model = build_tiny(layers=6)
    with adatp.prune(model, "flashvid", retention=0.2) as h, torch.no_grad():
        model(**make_inputs(num_frames=8, seed=3))
    stages = h.last_report.stages
    assert [s.layer for s in stages] == [0, 4]
    assert stages[0].merged > 0 and set(stages[1].kept_indices.tolist()) <= set(stages[0].kept_indices.tolist())
