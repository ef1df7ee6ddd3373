"""Stage 1 of AdaTP (docs/method.md, Global Debiasing): segment budgets from text relevance."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from adatp.errors import ConfigError


def tokens_for_retention(retention: float, num_visual: int) -> int:
    """B = floor(r * N + 0.5) (docs/method.md D4)."""
    return int(math.floor(retention * num_visual + 0.5))


def segment_relevance(frame_relevance: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
    """R_j = mean of r_t over the frames of segment j.

    Args:
        frame_relevance: (T,) r_t = cos(text, frame t).
        segment_ids: (T,) non-decreasing segment id per frame.
    Returns:
        (S,) float32.
    """
    num_segments = int(segment_ids.max()) + 1
    sums = torch.zeros(num_segments, dtype=torch.float32, device=frame_relevance.device)
    sums.index_add_(0, segment_ids, frame_relevance.float())
    counts = torch.bincount(segment_ids, minlength=num_segments).float()
    return sums / counts


def normalize_relevance(relevance: torch.Tensor) -> torch.Tensor:
    """R_hat = (R - min R) / (max R - min R); all zeros when max == min. (S,) -> (S,)."""
    lo, hi = relevance.min(), relevance.max()
    span = hi - lo
    if float(span) <= 0.0:
        return torch.zeros_like(relevance)
    return (relevance - lo) / span


def segment_weights(segment_tokens: Sequence[int], relevance_norm: torch.Tensor, alpha: float) -> list[float]:
    """w_j = n_j * (1 + alpha * R_hat_j). n_j is the segment's original token count (D4)."""
    if alpha < 0:
        raise ConfigError(f"alpha must be >= 0, got {alpha}")
    r = relevance_norm.double().tolist()
    return [n * (1.0 + alpha * rj) for n, rj in zip(segment_tokens, r, strict=True)]


def _largest_remainder(quotas: list[float], total: int, lower: list[int], upper: list[int]) -> list[int]:
    """Round quotas (each within [lower, upper]) to ints that sum to ``total``.

    Floors first, then +1 to the largest fractional parts; ties break by segment order.
    A final correction pass absorbs float error in the quotas' sum.
    """
    out = [min(max(math.floor(q), lo), hi) for q, lo, hi in zip(quotas, lower, upper)]
    rest = total - sum(out)
    # Fractions rounded to 1e-9 so that equal shares tie exactly and break by segment order.
    frac_order = sorted(range(len(quotas)), key=lambda j: (-round(quotas[j] - math.floor(quotas[j]), 9), j))
    while rest > 0:
        progressed = False
        for j in frac_order:
            if rest == 0:
                break
            if out[j] < upper[j]:
                out[j] += 1
                rest -= 1
                progressed = True
        if not progressed:  # pragma: no cover - guarded by the capacity check in the caller
            raise AssertionError("largest-remainder rounding ran out of capacity")
    while rest < 0:
        for j in reversed(frac_order):
            if rest == 0:
                break
            if out[j] > lower[j]:
                out[j] -= 1
                rest += 1
    return out


def allocate_segment_budgets(
    total: int,
    weights: Sequence[float],
    capacity: Sequence[int],
    min_per_segment: int = 1,
) -> list[int]:
    """Split a stage budget B over segments (spec, Stage 1).

    b_j is the largest-remainder rounding of B * w_j / sum(w), each capped at the tokens segment j
    still has (``capacity``), the overflow redistributed to the others by the same rule, and at
    least ``min_per_segment`` per segment while B allows. Formally the continuous quota is
    q_j = clip(lam * w_j, lo_j, cap_j) with lam chosen so that sum q_j = B (water-filling), which
    equals B * w_j / sum(w) when no bound binds. Deterministic; ties break by segment order.

    Args:
        total: B, the number of visual tokens this stage keeps.
        weights: (S,) w_j > 0.
        capacity: (S,) tokens each segment still has alive.
        min_per_segment: the floor per segment, honoured only while B >= sum of floors.
    Returns:
        S ints with sum exactly B, 0 <= b_j <= capacity_j.
    """
    num = len(weights)
    if num == 0 or len(capacity) != num:
        raise ConfigError(f"need one weight and one capacity per segment, got {num} and {len(capacity)}")
    if any(w <= 0 or not math.isfinite(w) for w in weights):
        raise ConfigError(f"segment weights must be finite and > 0, got {list(weights)}")
    if any(c < 0 for c in capacity):
        raise ConfigError(f"capacities must be >= 0, got {list(capacity)}")
    if total < 0 or total > sum(capacity):
        raise ConfigError(f"budget {total} is outside [0, {sum(capacity)}] (the tokens still alive)")
    upper = [int(c) for c in capacity]
    lower = [min(min_per_segment, c) for c in upper]
    if total < sum(lower):
        lower = [0] * num  # B too small for the floor: plain proportional rounding

    def filled(lam: float) -> float:
        return sum(min(max(lam * w, lo), hi) for w, lo, hi in zip(weights, lower, upper))

    # Bisection on lam: filled() is continuous and non-decreasing, filled(0) = sum(lower) <= B.
    lo_lam, hi_lam = 0.0, 1.0
    while filled(hi_lam) < total:
        hi_lam *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo_lam + hi_lam)
        if filled(mid) < total:
            lo_lam = mid
        else:
            hi_lam = mid
    # Recompute the unclamped quotas exactly, so that the common case is literally B * w_j / sum(w)
    # and float noise from the bisection cannot flip a tie.
    eps = 1e-9 * max(1.0, total)
    clamped = [hi_lam * w <= lo + eps or hi_lam * w >= hi - eps for w, lo, hi in zip(weights, lower, upper)]
    fixed = sum(min(max(hi_lam * w, lo), hi) for w, lo, hi, c in zip(weights, lower, upper, clamped) if c)
    free_w = sum(w for w, c in zip(weights, clamped) if not c)
    quotas = [
        min(max(hi_lam * w, lo), hi) if c else (total - fixed) * w / free_w
        for w, lo, hi, c in zip(weights, lower, upper, clamped)
    ]
    return _largest_remainder(quotas, total, lower, upper)
