import pytest
import torch

from adatp.errors import ConfigError, InputError
from adatp.ops.dedup import duplicate_mask, spatial_redundancy
from adatp.ops.segmentation import adjacent_frame_similarity, segment_frames
from adatp.ops.selection import duplicate_last_scores, select_in_segments, top_k_global


def _frames(*directions):
    return torch.tensor(directions, dtype=torch.float32)


def test_segments_cut_where_similarity_drops():
    g = _frames([1, 0], [1, 0.1], [0, 1], [0.1, 1], [0.1, 1])
    assert segment_frames(g, 0.9).tolist() == [0, 0, 1, 1, 1]
    assert segment_frames(g, 1.5).tolist() == [0, 1, 2, 3, 4]  # everything cuts
    assert segment_frames(g, -2.0).tolist() == [0, 0, 0, 0, 0]


def test_min_segments_adds_the_lowest_similarities():
    g = _frames([1, 0], [1, 0.3], [1, 0.6], [1, 0.9])
    sims = adjacent_frame_similarity(g)
    assert segment_frames(g, -2.0, min_segments=1).tolist() == [0, 0, 0, 0]
    lowest = int(torch.argmin(sims))
    expected = [0] * (lowest + 1) + [1] * (3 - lowest)
    assert segment_frames(g, -2.0, min_segments=2).tolist() == expected
    assert segment_frames(g, -2.0, min_segments=9).tolist() == [0, 1, 2, 3]
    with pytest.raises(ConfigError):
        segment_frames(g, 0.9, min_segments=0)


def test_segments_partition_frames():
    g = torch.randn(17, 8, generator=torch.Generator().manual_seed(3))
    seg = segment_frames(g, 0.2)
    assert seg[0] == 0 and seg.shape == (17,)
    steps = seg[1:] - seg[:-1]
    assert set(steps.tolist()) <= {0, 1}


def test_redundancy_is_minus_one_on_segment_starts_and_cosine_inside():
    x = torch.zeros(3, 2, 2)
    x[0] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    x[1] = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # pos 0 repeats, pos 1 turns 90 degrees
    x[2] = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    u = spatial_redundancy(x, torch.tensor([0, 0, 1]))
    assert u.tolist() == [[-1.0, -1.0], [1.0, 0.0], [-1.0, -1.0]]
    assert duplicate_mask(u, 0.9).tolist() == [[False, False], [True, False], [False, False]]
    assert not duplicate_mask(u, 1.01).any()  # tau_d > 1: local debiasing off
    with pytest.raises(InputError):
        spatial_redundancy(x, torch.tensor([0, 0]))


def test_select_in_segments_never_crosses_segments():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1, 0.2, 0.05])
    seg = torch.tensor([0, 0, 0, 1, 1, 1])
    # Global top-3 would take all of segment 0; per-segment budgets (1, 2) cannot.
    assert top_k_global(scores, 3).tolist() == [0, 1, 2]
    assert select_in_segments(scores, seg, [1, 2], [3, 3]).tolist() == [0, 3, 4]


def test_select_ties_keep_the_earlier_token():
    scores = torch.zeros(6)
    seg = torch.tensor([0, 0, 0, 1, 1, 1])
    assert select_in_segments(scores, seg, [2, 1], [3, 3]).tolist() == [0, 1, 3]


def test_duplicates_rank_below_every_non_duplicate():
    imp = torch.tensor([0.9, 0.01, 0.5, 0.02])
    dup = torch.tensor([True, False, True, False])
    key = duplicate_last_scores(imp, dup)
    seg = torch.zeros(4, dtype=torch.long)
    assert select_in_segments(key, seg, [2], [4]).tolist() == [1, 3]
    assert select_in_segments(key, seg, [3], [4]).tolist() == [0, 1, 3]


def test_select_rejects_inconsistent_counts():
    with pytest.raises(InputError):
        select_in_segments(torch.zeros(4), torch.zeros(4, dtype=torch.long), [5], [4])
    with pytest.raises(InputError):
        select_in_segments(torch.zeros(4), torch.zeros(4, dtype=torch.long), [1], [3])


def test_segment_ranges_by_hand():
    from adatp.ops.segmentation import segment_ranges

    assert segment_ranges(torch.tensor([0, 0, 1, 2, 2, 2])) == [(0, 1), (2, 2), (3, 5)]
    assert segment_ranges(torch.zeros(4, dtype=torch.long)) == [(0, 3)]
