"""HoliTom's pieces on hand-computed examples: windows, static/dynamic merging, the in-LLM merge."""

import pytest
import torch

from adatp.errors import ConfigError
from adatp.methods.holitom import (
    HoliTom,
    HoliTomConfig,
    holitom_selection,
    running_average_merge,
    select_windows,
)
from adatp.ops.merging import merge_tokens


def test_windows_maximise_the_saved_tokens():
    static = torch.tensor([[True, True, False], [True, False, False], [False, False, True]])
    # saved: [0,1] 2*1 = 2, [0,2] 1*2 = 2, [1,2] 1, [2,3] 1, [0,3] 0 -> best [0,1] + [2,3] = 3.
    assert select_windows(static, 1024) == [(0, 1), (2, 3)]
    assert select_windows(static, 1) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert select_windows(torch.zeros(3, 2, dtype=torch.bool), 8) == [(0, 0), (1, 1), (2, 2), (3, 3)]


def _video():
    # Positions 0 and 1 are static from frame 0 to 1 (cos 1); position 2 turns (cos 0): dynamic.
    return torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [[2.0, 0.0], [0.0, 1.0], [-1.0, 1.0]]])


def test_static_tokens_merge_by_density_with_beta_and_dynamic_tokens_stay():
    """Window [0, 1]; units = 2 static + 2 dynamic = 4 >= B = 3. Quotas by largest remainder on
    [2, 1, 1]: [1, 1, 1]. Static means (1.5, 0) and (0, 1): one centre, equal density peaks -> the
    earlier (position 0), at frame 0. Its value: .6 * (1.5, 0) + .4 * (0, 1) = (.9, .4): weights .3
    on each frame's position-0 token and .2 on each position-1 token."""
    tokens = _video()
    kept, merge_into, weights, windows = holitom_selection(tokens, torch.ones(2, 3), 3, tau=0.8, beta=0.6)
    assert windows == [(0, 1)]
    assert kept.tolist() == [0, 2, 5]
    assert merge_into.tolist() == [0, 0, 1, 0, 0, 2]
    torch.testing.assert_close(weights, torch.tensor([0.3, 0.2, 1.0, 0.3, 0.2, 1.0]))
    merged = merge_tokens(tokens.reshape(6, 2), merge_into, weights, 3)
    torch.testing.assert_close(merged, torch.tensor([[0.9, 0.4], [1.0, 1.0], [-1.0, 1.0]]))


def test_a_budget_above_the_units_keeps_the_least_static_copies_alone():
    """B = 5 > 4 units: one static copy stays alone; both frame-1 copies have cosine 1 to frame 0,
    so the earlier (token 3) does. Quotas [2, 1, 1] over 4 units: both static positions are
    centres; position 0's average is token 0 alone, position 1's the mean of tokens 1 and 4."""
    kept, merge_into, weights, windows = holitom_selection(_video(), torch.ones(2, 3), 5, tau=0.8)
    assert windows == [(0, 1)]
    assert kept.tolist() == [0, 1, 2, 3, 5]
    assert merge_into.tolist() == [0, 1, 2, 3, 1, 4]
    torch.testing.assert_close(weights, torch.tensor([1.0, 0.5, 1.0, 1.0, 0.5, 1.0]))
    # Lower cosine, chosen first: make frame 1's position 1 turn a little.
    video = _video()
    video[1, 1] = torch.tensor([0.2, 1.0])  # cos .98 > tau: still static, but less than position 0's 1.0
    kept, merge_into, _, _ = holitom_selection(video, torch.ones(2, 3), 5, tau=0.8)
    assert kept.tolist() == [0, 1, 2, 4, 5] and merge_into.tolist() == [0, 1, 2, 0, 3, 4]


def test_in_llm_merge_is_the_official_running_average():
    """Keep the top 2 by attention (0, 1); tokens 2 and 3 both join token 0 (cos 1). Officially
    h0 = (h0 + h2) / 2 = (1.5, 0), then (h0 + h3) / 2 = (2.25, 0): weights .25, .25, .5."""
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [3.0, 0.0]])
    kept, merge_into, weights = running_average_merge(hidden, torch.tensor([0.5, 0.4, 0.05, 0.05]), 2)
    assert kept.tolist() == [0, 1] and merge_into.tolist() == [0, 1, 0, 0]
    torch.testing.assert_close(weights, torch.tensor([0.25, 1.0, 0.25, 0.5]))
    torch.testing.assert_close(merge_tokens(hidden, merge_into, weights, 2), torch.tensor([[2.25, 0.0], [0.0, 1.0]]))


def test_default_shape_and_config_errors():
    method = HoliTom(HoliTomConfig())
    assert method.default_shape(28) == [(0, 0.10), (18, 0.05)]  # RETAIN_RATIO .1, HOLITOM_k 18, r .5
    assert method.default_shape(6) == [(0, 0.10), (4, 0.05)]
    with pytest.raises(ConfigError, match="llm_merge_ratio must be in"):
        HoliTomConfig(llm_merge_ratio=1.0)
    with pytest.raises(ConfigError, match="start at layer 0"):
        HoliTomConfig(schedule=[(3, 0.5)])
