"""Measured attention bias over (T, h, w) maps, and the colour classes of Figure-1-style pictures.

Pure functions, no model. A *map* is a non-negative (T, h, w) tensor: the attention each visual
token receives (or, for a kept set, a 0/1 mask). Definitions (docs/analysis.md has the same text):

- **end frames**: the first k and the last k frames, k = max(1, floor(f * T + 0.5)) with
  f = ``end_fraction`` (0.1): T = 8 -> 1, 16 -> 2, 32 -> 3. For T <= 2k they cover every frame.
- **end-bias index** = (share of the map's mass on the end frames) / (share of tokens in the end
  frames). 1.0 for a uniform map, T / |end frames| when all mass is on the end frames.
- **top tokens**: the K = max(1, floor(f * N + 0.5)) highest-scoring tokens, f = ``top_fraction``
  (0.1); ties are broken by a fixed seeded permutation, so a constant map gives a random-like set.
- **position concentration** of a selected set of K tokens. With n_p the number of selected tokens
  at grid position p (summed over frames), S = sum_p n_p^2 / K is the average number of selected
  tokens that share a selected token's grid position (itself included). Under a uniformly random
  choice of K of the N = T * c tokens, n_p is hypergeometric and exactly
  E[S] = (1 - 1/c) (N - K) / (N - 1) + K / c. S is largest when the selection fills whole
  positions (q = K // T positions in every frame, r = K % T more at one other position):
  S_max = (q T^2 + r^2) / K. The index is (S - E[S]) / (S_max - E[S]): 1 when the selection repeats
  the same positions as much as it can, ~0 for a random selection, below 0 when it spreads over
  positions more evenly than chance; 0 when S_max = E[S] (nothing to concentrate, e.g. K = N).
  ``repeat_ratio`` = S / E[S] (1 for random) is reported beside it.
- **repeated position**: a grid position whose count n_p is at least the smallest m >= 2 with
  P(X >= m) <= alpha / c for X ~ Hypergeometric(N, T, K): more frames than chance, with the c
  positions tested together (family-wise level alpha = 0.05; a random selection marks any
  position at all in at most 5% of draws).
- **colour classes** of a selected token: ``end`` (red: in an end frame), ``repeated`` (green: at a
  repeated position, outside the end frames), ``end_and_repeated`` (both; drawn red), ``other``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from adatp.errors import ConfigError, InputError

DEFAULT_END_FRACTION = 0.1
DEFAULT_TOP_FRACTION = 0.1
DEFAULT_ALPHA = 0.05
DEFAULT_TIE_SEED = 0

#: Colour classes of a token in a picture (``classify_tokens``); 0 = not selected.
NOT_SELECTED, END, REPEATED, END_AND_REPEATED, OTHER = 0, 1, 2, 3, 4
CLASS_NAMES = {END: "end", REPEATED: "repeated", END_AND_REPEATED: "end_and_repeated", OTHER: "other"}


# --- checks ------------------------------------------------------------------------------------


def _fraction(name: str, value: float, upper: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= upper:
        raise ConfigError(f"{name} must be a number in (0, {upper}], got {value!r}")
    return float(value)


def _grid_map(weights: torch.Tensor, name: str = "map") -> torch.Tensor:
    """A (T, h, w) float64 copy of a non-negative map with positive total mass."""
    weights = torch.as_tensor(weights)
    if weights.ndim != 3 or 0 in weights.shape:
        raise InputError(f"{name} must be a non-empty (frames, h, w) tensor, got shape {tuple(weights.shape)}")
    weights = weights.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise InputError(f"{name} must be finite and non-negative")
    if float(weights.sum()) <= 0:
        raise InputError(f"{name} has no mass (all zeros)")
    return weights


def _selection(mask: torch.Tensor) -> torch.Tensor:
    """A (T, h, w) bool mask with at least one selected token."""
    mask = torch.as_tensor(mask)
    if mask.ndim != 3 or 0 in mask.shape:
        raise InputError(f"a selection must be a non-empty (frames, h, w) mask, got shape {tuple(mask.shape)}")
    mask = mask.detach().cpu().bool()
    if not bool(mask.any()):
        raise InputError("the selection is empty")
    return mask


# --- global bias: frames ------------------------------------------------------------------------


def end_frame_count(num_frames: int, fraction: float = DEFAULT_END_FRACTION) -> int:
    """k = max(1, floor(fraction * T + 0.5)) frames at each end (see module docstring)."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ConfigError(f"num_frames must be a positive integer, got {num_frames!r}")
    fraction = _fraction("end_fraction", fraction, upper=0.5)
    return max(1, math.floor(fraction * num_frames + 0.5))


def end_frame_mask(num_frames: int, fraction: float = DEFAULT_END_FRACTION) -> torch.Tensor:
    """(T,) bool: True for the first k and the last k frames."""
    k = end_frame_count(num_frames, fraction)
    mask = torch.zeros(num_frames, dtype=torch.bool)
    mask[:k] = True
    mask[-k:] = True
    return mask


def frame_mass(weights: torch.Tensor) -> torch.Tensor:
    """(T, h, w) map -> (T,) float64 share of its mass on each frame (sums to 1)."""
    weights = _grid_map(weights)
    per_frame = weights.sum(dim=(1, 2))
    return per_frame / per_frame.sum()


def position_mass(weights: torch.Tensor) -> torch.Tensor:
    """(T, h, w) map -> (h, w) float64 share of its mass on each grid position, summed over frames."""
    weights = _grid_map(weights)
    per_position = weights.sum(dim=0)
    return per_position / per_position.sum()


def end_bias_index(weights: torch.Tensor, end_fraction: float = DEFAULT_END_FRACTION) -> float:
    """Mass share on the end frames over their share of tokens: 1 uniform, T/|end| at most.

    ``weights``: (T, h, w) attention map, or a selection mask (then it counts tokens).
    """
    shares = frame_mass(weights)  # a bool mask converts to 0/1 weights
    ends = end_frame_mask(shares.shape[0], end_fraction)
    token_share = float(ends.sum()) / shares.shape[0]
    return float(shares[ends].sum()) / token_share


# --- local bias: grid positions -----------------------------------------------------------------


def top_count(num_tokens: int, fraction: float = DEFAULT_TOP_FRACTION) -> int:
    """K = max(1, floor(fraction * N + 0.5)) top tokens out of N."""
    fraction = _fraction("top_fraction", fraction)
    return max(1, math.floor(fraction * num_tokens + 0.5))


def top_fraction_mask(
    scores: torch.Tensor, fraction: float = DEFAULT_TOP_FRACTION, seed: int = DEFAULT_TIE_SEED
) -> torch.Tensor:
    """(T, h, w) scores -> (T, h, w) bool mask of the top K tokens; ties broken by a seeded permutation."""
    scores = _grid_map(scores, "scores")
    flat = scores.flatten()
    k = top_count(flat.numel(), fraction)
    perm = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(seed))
    order = perm[torch.argsort(flat[perm], descending=True, stable=True)]
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[order[:k]] = True
    return mask.view(scores.shape)


def position_counts(mask: torch.Tensor) -> torch.Tensor:
    """(T, h, w) selection -> (h, w) int64 number of selected tokens at each grid position."""
    return _selection(mask).sum(dim=0)


def expected_collision(num_frames: int, positions: int, k: int) -> float:
    """E[S] for K tokens chosen uniformly at random among N = T * c (module docstring)."""
    n = num_frames * positions
    if not 1 <= k <= n:
        raise InputError(f"cannot choose {k} of {n} tokens")
    spread = (n - k) / (n - 1) if n > 1 else 0.0
    return (1 - 1 / positions) * spread + k / positions


def max_collision(num_frames: int, k: int) -> float:
    """S_max = (q T^2 + r^2) / K with q, r = divmod(K, T): whole positions filled first."""
    q, r = divmod(k, num_frames)
    return (q * num_frames**2 + r**2) / k


def _collision(mask: torch.Tensor) -> tuple[float, float, float]:
    """(S, E[S], S_max) of a selection."""
    mask = _selection(mask)
    num_frames, h, w = mask.shape
    counts = mask.sum(dim=0).double()
    k = int(counts.sum())
    s = float((counts**2).sum()) / k
    return s, expected_collision(num_frames, h * w, k), max_collision(num_frames, k)


def position_concentration(mask: torch.Tensor) -> float:
    """(S - E[S]) / (S_max - E[S]): 1 = positions repeated as much as possible, ~0 = random."""
    s, expected, best = _collision(mask)
    if best - expected <= 1e-12:
        return 0.0
    return (s - expected) / (best - expected)


def position_repeat_ratio(mask: torch.Tensor) -> float:
    """S / E[S]: 1 for a random selection, larger when grid positions repeat across frames."""
    s, expected, _ = _collision(mask)
    return s / expected


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def hypergeom_tail(population: int, successes: int, draws: int, m: int) -> float:
    """P(X >= m) for X ~ Hypergeometric(population N, successes T, draws K), in float64."""
    low = max(0, draws - (population - successes))
    high = min(successes, draws)
    if m <= low:
        return 1.0
    if m > high:
        return 0.0
    log_total = _log_comb(population, draws)
    tail = sum(
        math.exp(_log_comb(successes, x) + _log_comb(population - successes, draws - x) - log_total)
        for x in range(m, high + 1)
    )
    return min(1.0, tail)


def repeat_threshold(num_frames: int, positions: int, k: int, alpha: float = DEFAULT_ALPHA) -> int:
    """Smallest m >= 2 with P(n_p >= m) <= alpha / c under random selection; T + 1 if none (never)."""
    alpha = _fraction("alpha", alpha)
    n = num_frames * positions
    for m in range(2, min(num_frames, k) + 1):
        if hypergeom_tail(n, num_frames, k, m) <= alpha / positions:
            return m
    return num_frames + 1


def repeated_positions(mask: torch.Tensor, alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """(h, w) bool: grid positions selected in more frames than chance (module docstring)."""
    mask = _selection(mask)
    num_frames, h, w = mask.shape
    counts = mask.sum(dim=0)
    return counts >= repeat_threshold(num_frames, h * w, int(counts.sum()), alpha)


def classify_tokens(
    mask: torch.Tensor, end_fraction: float = DEFAULT_END_FRACTION, alpha: float = DEFAULT_ALPHA
) -> torch.Tensor:
    """(T, h, w) selection -> (T, h, w) int8 colour class (END, REPEATED, END_AND_REPEATED, OTHER; 0 unselected)."""
    mask = _selection(mask)
    ends = end_frame_mask(mask.shape[0], end_fraction)[:, None, None]
    repeated = repeated_positions(mask, alpha)[None]
    labels = torch.full(mask.shape, OTHER, dtype=torch.int8)
    labels[(ends & ~repeated).expand_as(mask)] = END
    labels[(~ends & repeated).expand_as(mask)] = REPEATED
    labels[(ends & repeated).expand_as(mask)] = END_AND_REPEATED
    labels[~mask] = NOT_SELECTED
    return labels


# --- summaries ---------------------------------------------------------------------------------


@dataclass
class SelectionBias:
    """Bias of one selected set (top tokens of a map, or the tokens a method keeps)."""

    count: int
    end_bias_index: float
    position_concentration: float
    repeat_ratio: float
    repeat_threshold: int
    repeated_positions: list[list[int]]  # [y, x] of each repeated position
    class_counts: dict[str, int]
    tokens_per_frame: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def selection_bias(
    mask: torch.Tensor, end_fraction: float = DEFAULT_END_FRACTION, alpha: float = DEFAULT_ALPHA
) -> SelectionBias:
    """Every number of a (T, h, w) selection: end bias by count, concentration, colour counts."""
    mask = _selection(mask)
    num_frames, h, w = mask.shape
    labels = classify_tokens(mask, end_fraction, alpha)
    k = int(mask.sum())
    return SelectionBias(
        count=k,
        end_bias_index=end_bias_index(mask, end_fraction),
        position_concentration=position_concentration(mask),
        repeat_ratio=position_repeat_ratio(mask),
        repeat_threshold=repeat_threshold(num_frames, h * w, k, alpha),
        repeated_positions=torch.nonzero(repeated_positions(mask, alpha)).tolist(),
        class_counts={name: int((labels == c).sum()) for c, name in CLASS_NAMES.items()},
        tokens_per_frame=mask.sum(dim=(1, 2)).tolist(),
    )


@dataclass
class LayerBias:
    """Bias of one layer's attention map (T, h, w) and of its top tokens."""

    layer: int
    visual_mass: float  # attention mass on visual tokens, averaged over query rows and heads
    end_bias_index: float
    frame_mass: list[float]  # (T,) share per frame
    position_mass: list[list[float]]  # (h, w) share per grid position
    top: SelectionBias = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["top"] = self.top.to_dict()
        return d


def layer_bias(
    attention: torch.Tensor,
    layer: int,
    top_fraction: float = DEFAULT_TOP_FRACTION,
    end_fraction: float = DEFAULT_END_FRACTION,
    alpha: float = DEFAULT_ALPHA,
    seed: int = DEFAULT_TIE_SEED,
) -> LayerBias:
    """The numbers of one layer: mass-based end bias, frame and position shares, top-token bias."""
    weights = _grid_map(attention, "attention map")
    top = top_fraction_mask(weights, top_fraction, seed)
    return LayerBias(
        layer=layer,
        visual_mass=float(weights.sum()),
        end_bias_index=end_bias_index(weights, end_fraction),
        frame_mass=frame_mass(weights).tolist(),
        position_mass=position_mass(weights).tolist(),
        top=selection_bias(top, end_fraction, alpha),
    )
