"""The bias indices on hand-built attention patterns, against exact or brute-force values."""

import itertools
import math
import statistics

import pytest
import torch

from adatp.analysis import bias
from adatp.errors import ConfigError, InputError


def _mask(shape, cells):
    m = torch.zeros(shape, dtype=torch.bool)
    for t, y, x in cells:
        m[t, y, x] = True
    return m


@pytest.mark.parametrize("frames, k", [(1, 1), (2, 1), (5, 1), (8, 1), (15, 2), (16, 2), (25, 3), (32, 3), (64, 6)])
def test_end_frames_round_half_up_with_at_least_one(frames, k):
    assert bias.end_frame_count(frames) == k
    mask = bias.end_frame_mask(frames)
    assert mask[:k].all() and mask[-k:].all() and int(mask.sum()) == min(frames, 2 * k)


def test_end_bias_index_on_hand_built_maps():
    uniform = torch.ones(16, 3, 3)
    assert bias.end_bias_index(uniform) == pytest.approx(1.0, abs=1e-12)
    ends_only = torch.zeros(16, 3, 3)
    ends_only[[0, 15]] = 1.0  # T = 16: 2 end frames each side, share 4/16
    assert bias.end_bias_index(ends_only) == pytest.approx(16 / 4)
    ends_only[[1, 14]] = 3.0  # any split of all mass over the end frames gives the maximum
    assert bias.end_bias_index(ends_only) == pytest.approx(4.0)
    first_last = torch.zeros(10, 2, 2)
    first_last[0, 0, 0], first_last[-1, 1, 1] = 0.7, 0.3  # T = 10: one end frame each side
    assert bias.end_bias_index(first_last) == pytest.approx(10 / 2)
    middle = torch.zeros(10, 2, 2)
    middle[4:6] = 1.0
    assert bias.end_bias_index(middle) == 0.0
    half = torch.ones(10, 2, 2)
    half[0] = 9.0  # frame 0 holds 9 of 18 units: share 0.5 + 1/18 on 2 of 10 frames
    assert bias.end_bias_index(half) == pytest.approx((10 / 18) / 0.2)


def test_end_bias_of_a_selection_counts_tokens():
    sel = _mask((10, 2, 2), [(0, 0, 0), (9, 1, 1), (4, 0, 1), (5, 1, 0)])  # half the tokens at the ends
    assert bias.end_bias_index(sel) == pytest.approx(0.5 / 0.2)


def test_top_fraction_mask_keeps_the_highest_and_breaks_ties_by_seed():
    scores = torch.arange(40, dtype=torch.float32).view(10, 2, 2)
    top = bias.top_fraction_mask(scores)
    assert int(top.sum()) == 4 and top.flatten()[-4:].all()
    const = torch.ones(10, 2, 2)
    a, b = bias.top_fraction_mask(const, seed=0), bias.top_fraction_mask(const, seed=0)
    assert torch.equal(a, b) and int(a.sum()) == 4
    assert not torch.equal(a, bias.top_fraction_mask(const, seed=1))


def test_same_position_in_every_frame_is_maximal_concentration():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(32, 3, 3, generator=g) * 0.1
    scores[:, 1, 2] = 1.0  # K = 29 <= T: every top token at one position
    top = bias.top_fraction_mask(scores)
    assert bias.position_counts(top)[1, 2] == 29
    assert bias.position_concentration(top) == pytest.approx(1.0)
    assert bias.position_repeat_ratio(top) == pytest.approx(29 / bias.expected_collision(32, 9, 29))


def test_a_frame_independent_ranking_fills_whole_positions_and_is_maximal():
    # K = 13 > T = 8: positions fill in rank order (8 at the best, 5 at the next) -> S = S_max.
    ranking = torch.randperm(16, generator=torch.Generator().manual_seed(3)).float().view(1, 4, 4)
    top = bias.top_fraction_mask(ranking.expand(8, 4, 4).clone())
    assert sorted(bias.position_counts(top).flatten().tolist(), reverse=True)[:3] == [8, 5, 0]
    assert bias.position_concentration(top) == pytest.approx(1.0)


def test_random_selection_gives_the_reference_values():
    conc, ratio, marked = [], [], 0
    for seed in range(200):
        top = bias.top_fraction_mask(torch.rand(16, 4, 4, generator=torch.Generator().manual_seed(seed)))
        conc.append(bias.position_concentration(top))
        ratio.append(bias.position_repeat_ratio(top))
        marked += bool(bias.repeated_positions(top).any())
    assert abs(statistics.mean(conc)) < 0.01  # reference 0 (one sample's sd is ~0.025)
    assert statistics.mean(ratio) == pytest.approx(1.0, abs=0.01)
    assert marked / 200 <= 0.08  # family-wise level 0.05
    constant = bias.top_fraction_mask(torch.ones(16, 14, 14))  # ties broken at random
    assert abs(bias.position_concentration(constant)) < 0.05


def test_spread_selection_is_below_the_reference():
    diagonal = _mask((4, 2, 2), [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)])  # four distinct positions
    assert bias.position_concentration(diagonal) < 0
    assert bias.position_repeat_ratio(diagonal) < 1


def test_expected_collision_equals_brute_force_over_all_selections():
    frames, c, k = 3, 2, 3
    n = frames * c
    values = []
    for chosen in itertools.combinations(range(n), k):
        counts = [sum(1 for i in chosen if i % c == p) for p in range(c)]
        values.append(sum(x * x for x in counts) / k)
    assert bias.expected_collision(frames, c, k) == pytest.approx(sum(values) / len(values))
    assert bias.max_collision(frames, k) == pytest.approx(max(values))
    assert bias.expected_collision(1, 1, 1) == 1.0 and bias.max_collision(1, 1) == 1.0


def test_hypergeometric_tail_against_exact_counts():
    population, successes, draws = 12, 4, 5
    for m in range(0, 6):
        exact = sum(
            math.comb(successes, x) * math.comb(population - successes, draws - x) for x in range(m, min(successes, draws) + 1)
        ) / math.comb(population, draws)
        assert bias.hypergeom_tail(population, successes, draws, m) == pytest.approx(exact, abs=1e-12)


def test_repeat_threshold_is_the_first_count_past_chance():
    m = bias.repeat_threshold(16, 196, 314)
    assert bias.hypergeom_tail(3136, 16, 314, m) <= 0.05 / 196 < bias.hypergeom_tail(3136, 16, 314, m - 1)
    assert bias.repeat_threshold(1, 16, 2) == 2  # one frame: nothing can repeat (T + 1)


def test_colour_classes_on_a_hand_built_selection():
    cells = [(t, 1, 1) for t in range(10)] + [(0, 0, 0), (5, 2, 2)]
    labels = bias.classify_tokens(_mask((10, 3, 3), cells))  # T = 10: frames 0 and 9 are the ends
    assert labels[0, 1, 1] == labels[9, 1, 1] == bias.END_AND_REPEATED
    assert all(labels[t, 1, 1] == bias.REPEATED for t in range(1, 9))
    assert labels[0, 0, 0] == bias.END and labels[5, 2, 2] == bias.OTHER
    assert int((labels != bias.NOT_SELECTED).sum()) == 12
    stats = bias.selection_bias(_mask((10, 3, 3), cells))
    assert stats.class_counts == {"end": 1, "repeated": 8, "end_and_repeated": 2, "other": 1}
    assert stats.repeated_positions == [[1, 1]] and stats.count == 12


def test_layer_bias_numbers_are_consistent():
    g = torch.Generator().manual_seed(0)
    attention = torch.rand(8, 4, 4, generator=g) * 0.01
    attention[0] += 0.02
    result = bias.layer_bias(attention, layer=3)
    assert result.visual_mass == pytest.approx(float(attention.sum()))
    assert sum(result.frame_mass) == pytest.approx(1.0) and result.frame_mass[0] == max(result.frame_mass)
    assert sum(map(sum, result.position_mass)) == pytest.approx(1.0)
    assert result.top.count == 13 and result.to_dict()["top"]["count"] == 13


def test_bad_maps_and_settings_raise_clear_errors():
    with pytest.raises(InputError, match="non-negative"):
        bias.end_bias_index(-torch.ones(4, 2, 2))
    with pytest.raises(InputError, match="no mass"):
        bias.frame_mass(torch.zeros(4, 2, 2))
    with pytest.raises(InputError, match="empty"):
        bias.position_concentration(torch.zeros(4, 2, 2, dtype=torch.bool))
    with pytest.raises(InputError, match="frames, h, w"):
        bias.end_bias_index(torch.ones(4, 4))
    with pytest.raises(ConfigError, match="end_fraction"):
        bias.end_frame_count(8, 0.6)
    with pytest.raises(ConfigError, match="top_fraction"):
        bias.top_fraction_mask(torch.ones(4, 2, 2), fraction=0)
