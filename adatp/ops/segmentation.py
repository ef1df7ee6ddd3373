"""Stage 0 of AdaTP (docs/method.md): split the video into segments of similar consecutive frames."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adatp.errors import ConfigError, InputError


def adjacent_frame_similarity(frame_features: torch.Tensor) -> torch.Tensor:
    """s_t = cos(g_t, g_{t+1}) for t = 0..T-2.

    Args:
        frame_features: (T, d) one global feature per frame (g in the spec).
    Returns:
        (T-1,) float32 cosine similarities.
    """
    if frame_features.ndim != 2:
        raise InputError(f"frame features must be (T, d), got shape {tuple(frame_features.shape)}")
    g = F.normalize(frame_features.float(), dim=-1)
    return (g[:-1] * g[1:]).sum(-1)


def segment_frames(
    frame_features: torch.Tensor, threshold: float = 0.90, min_segments: int = 1
) -> torch.Tensor:
    """Partition frames 0..T-1 into consecutive segments (spec, Stage 0).

    A new segment starts after frame t when s_t < threshold. If that gives fewer than
    ``min_segments`` segments, the cuts at the ``min_segments - 1`` lowest s_t are added too
    (FastVID's rule); ties break towards the earlier frame.

    Args:
        frame_features: (T, d) per-frame global features.
        threshold: tau_s; a value > 1 cuts everywhere, a value <= -1 never cuts.
        min_segments: m >= 1, capped at T.
    Returns:
        (T,) int64 segment id per frame, non-decreasing, starting at 0.
    """
    if frame_features.shape[0] == 0:
        raise InputError("cannot segment a video with zero frames")
    return segments_from_similarity(adjacent_frame_similarity(frame_features), threshold, min_segments)


def segments_from_similarity(sim: torch.Tensor, threshold: float, min_segments: int = 1) -> torch.Tensor:
    """:func:`segment_frames` given s_t: (T-1,) adjacent-frame similarities (empty for one frame)
    -> (T,) segment ids."""
    if min_segments < 1:
        raise ConfigError(f"min_segments must be >= 1, got {min_segments}")
    num_frames = sim.shape[0] + 1
    cut = sim < threshold  # cut[t]: a segment starts at frame t+1
    wanted_cuts = min(min_segments, num_frames) - 1
    if wanted_cuts > 0:
        # Host sync: the number of cuts decides the partition; segmentation runs once per video.
        order = torch.sort(sim, stable=True).indices[:wanted_cuts]
        extra = torch.zeros_like(cut)
        extra[order] = True
        if int(cut.sum()) < wanted_cuts:
            cut = cut | extra
    starts = torch.cat([torch.zeros(1, dtype=torch.long, device=cut.device), cut.long()])
    return starts.cumsum(0)


def segment_sizes(segment_ids: torch.Tensor) -> list[int]:
    """Frames per segment, in segment order. (T,) non-decreasing ids -> list of S ints."""
    return torch.bincount(segment_ids).tolist()


def segment_ranges(segment_ids: torch.Tensor) -> list[tuple[int, int]]:
    """(first, last) frame of each segment. (T,) non-decreasing ids -> list of S pairs."""
    ranges, first = [], 0
    for size in segment_sizes(segment_ids):
        ranges.append((first, first + size - 1))
        first += size
    return ranges


def check_percentile(percentile: float) -> float:
    if not 0.0 <= percentile <= 100.0:  # also refuses NaN
        raise ConfigError(f"percentile must be in [0, 100], got {percentile}: e.g. --percentile 10")
    return percentile


def calibrate_threshold(similarities: torch.Tensor, percentile: float = 10.0) -> dict[str, float | int | dict]:
    """tau_s for a tower by the documented rule (D6): the ``percentile``-th percentile of the
    adjacent-frame similarities s_t pooled over training clips, so that about that share of
    frame pairs starts a segment (linear interpolation, as ``numpy.percentile``).

    Args:
        similarities: (P,) s_t values of all clips, concatenated.
        percentile: in [0, 100].
    Returns:
        ``threshold``, ``percentile``, ``pairs`` and the 5/10/20/50th percentiles (``quantiles``).
    """
    check_percentile(percentile)
    values = similarities.detach().double().flatten().cpu()
    if values.numel() == 0:
        raise InputError("no frame pairs to calibrate on: give clips of at least 2 frames")

    def at(p: float) -> float:
        return float(torch.quantile(values, p / 100.0))

    return {"threshold": at(percentile), "percentile": percentile, "pairs": int(values.numel()),
            "quantiles": {str(q): round(at(q), 4) for q in (5, 10, 20, 50)}}
