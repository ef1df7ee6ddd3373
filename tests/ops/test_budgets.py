import pytest
import torch

from adatp.errors import ConfigError
from adatp.ops.budgets import (
    allocate_segment_budgets,
    normalize_relevance,
    segment_relevance,
    segment_weights,
    tokens_for_retention,
)


def test_tokens_for_retention_rounds_half_up():
    assert tokens_for_retention(0.75, 6272) == 4704
    assert tokens_for_retention(0.5, 3) == 2  # 1.5 -> 2
    assert tokens_for_retention(0.2, 128) == 26  # 25.6 -> 26


def test_proportional_when_no_bound_binds():
    # B * w / sum(w) = (2.5, 5, 2.5): largest remainder, tie broken by segment order.
    assert allocate_segment_budgets(10, [1.0, 2.0, 1.0], [10, 10, 10]) == [3, 5, 2]


def test_budgets_sum_exactly_and_respect_capacity():
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        s = int(torch.randint(1, 9, (1,), generator=gen))
        cap = torch.randint(0, 40, (s,), generator=gen).tolist()
        if sum(cap) == 0:
            continue
        w = (torch.rand(s, generator=gen) * 5 + 0.01).tolist()
        total = int(torch.randint(0, sum(cap) + 1, (1,), generator=gen))
        b = allocate_segment_budgets(total, w, cap)
        assert sum(b) == total
        assert all(0 <= bj <= cj for bj, cj in zip(b, cap))
        if total >= sum(min(1, c) for c in cap):
            assert all(bj >= min(1, cj) for bj, cj in zip(b, cap))


def test_overflow_is_redistributed_by_weight():
    # Segment 0 wants 5.88 of 6 but holds 2: the other 4 go 3:1 by weight.
    assert allocate_segment_budgets(6, [100.0, 3.0, 1.0], [2, 10, 10]) == [2, 3, 1]


def test_minimum_per_segment_while_budget_allows():
    assert allocate_segment_budgets(3, [1.0, 1000.0], [100, 100]) == [1, 2]
    assert allocate_segment_budgets(6, [100.0, 1.0, 1.0], [5, 10, 10]) == [4, 1, 1]
    # Too small a budget for one per segment: plain proportional rounding.
    assert allocate_segment_budgets(1, [1.0, 5.0, 1.0], [4, 4, 4]) == [0, 1, 0]


def test_allocation_is_deterministic_and_rejects_bad_input():
    assert allocate_segment_budgets(7, [1, 1, 1], [9, 9, 9]) == [3, 2, 2]
    with pytest.raises(ConfigError, match="outside"):
        allocate_segment_budgets(31, [1, 1, 1], [10, 10, 10])
    with pytest.raises(ConfigError, match="weights"):
        allocate_segment_budgets(3, [1, 0, 1], [10, 10, 10])


def test_relevance_normalisation_and_weights():
    seg = torch.tensor([0, 0, 1, 2, 2])
    r = torch.tensor([0.2, 0.4, 0.1, 0.5, 0.7])
    rel = segment_relevance(r, seg)
    torch.testing.assert_close(rel, torch.tensor([0.3, 0.1, 0.6]))
    norm = normalize_relevance(rel)
    torch.testing.assert_close(norm, torch.tensor([0.4, 0.0, 1.0]))
    assert segment_weights([10, 5, 10], norm, alpha=1.0) == pytest.approx([14.0, 5.0, 20.0])
    assert segment_weights([10, 5, 10], norm, alpha=0.0) == [10.0, 5.0, 10.0]
    assert normalize_relevance(torch.tensor([0.3, 0.3])).tolist() == [0.0, 0.0]
