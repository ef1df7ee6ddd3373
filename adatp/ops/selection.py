"""Segment-aware top-k (docs/method.md, Stage 3): selection never crosses segments."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from adatp.errors import InputError


def duplicate_last_scores(importance: torch.Tensor, is_duplicate: torch.Tensor) -> torch.Tensor:
    """Rank key for in-LLM stages: non-duplicates first, then importance.

    ``importance`` is an attention probability in [0, 1], so subtracting 2 puts every duplicate
    below every non-duplicate of its segment while keeping the order among duplicates.
    (n,) x (n,) -> (n,) float32.
    """
    return importance.float() - 2.0 * is_duplicate.float()


def select_in_segments(
    scores: torch.Tensor, token_segments: torch.Tensor, budgets: Sequence[int], alive_per_segment: Sequence[int]
) -> torch.Tensor:
    """Keep the top ``budgets[j]`` tokens by score inside every segment j.

    Tokens are the alive visual tokens in sequence order, so each segment's tokens are one
    contiguous run (segments are consecutive frames). Two stable sorts give segment-major,
    score-descending order; ties keep the earlier token. No host sync: counts are Python ints.

    Args:
        scores: (n,) higher is kept first.
        token_segments: (n,) segment id of each alive token, non-decreasing.
        budgets: (S,) tokens to keep per segment, each <= alive_per_segment[j].
        alive_per_segment: (S,) alive tokens per segment, summing to n.
    Returns:
        (sum(budgets),) int64 positions into the n alive tokens, ascending.
    """
    n = scores.shape[0]
    if sum(alive_per_segment) != n or len(budgets) != len(alive_per_segment):
        raise InputError(
            f"alive counts {list(alive_per_segment)} do not match {n} tokens or budgets {list(budgets)}"
        )
    if any(b < 0 or b > a for b, a in zip(budgets, alive_per_segment)):
        raise InputError(f"budgets {list(budgets)} exceed alive tokens {list(alive_per_segment)}")
    by_score = torch.sort(scores, descending=True, stable=True).indices
    by_segment = torch.sort(token_segments[by_score], stable=True).indices
    order = by_score[by_segment]  # segment-major, best first within a segment
    # aranges built on the device from Python ints: no host-to-device copy that would sync.
    runs, start = [], 0
    for b, a in zip(budgets, alive_per_segment):
        runs.append(torch.arange(start, start + b, device=scores.device))
        start += a
    return torch.sort(order[torch.cat(runs)]).values


def top_k_global(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k over all tokens regardless of segment (FastV-style). (n,) -> (k,) ascending positions."""
    if not 0 <= k <= scores.shape[0]:
        raise InputError(f"cannot keep {k} of {scores.shape[0]} tokens")
    order = torch.sort(scores, descending=True, stable=True).indices[:k]
    return torch.sort(order).values
