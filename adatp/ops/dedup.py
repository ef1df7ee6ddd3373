"""Stage 2 of AdaTP (docs/method.md, Local Debiasing): spatial duplicates inside segments."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adatp.errors import InputError


def spatial_redundancy(tokens: torch.Tensor, frame_segments: torch.Tensor) -> torch.Tensor:
    """u_{t,p} = cos(x_{t,p}, x_{t-1,p}) inside a segment; -1 on a segment's first frame.

    Computed once before the LLM on the projected tokens at their original grid positions and
    reused at every stage (docs/method.md D5).

    Args:
        tokens: (T, c, d) projected visual tokens, c = h*w grid positions per frame.
        frame_segments: (T,) segment id per frame.
    Returns:
        (T, c) float32 redundancy in [-1, 1].
    """
    if tokens.ndim != 3:
        raise InputError(f"tokens must be (T, c, d), got shape {tuple(tokens.shape)}")
    num_frames, per_frame, _ = tokens.shape
    if frame_segments.shape != (num_frames,):
        raise InputError(f"frame_segments must be ({num_frames},), got {tuple(frame_segments.shape)}")
    u = torch.full((num_frames, per_frame), -1.0, dtype=torch.float32, device=tokens.device)
    if num_frames > 1:
        x = F.normalize(tokens.float(), dim=-1)
        sim = (x[1:] * x[:-1]).sum(-1)  # (T-1, c)
        same_segment = (frame_segments[1:] == frame_segments[:-1]).unsqueeze(-1)  # (T-1, 1)
        u[1:] = torch.where(same_segment, sim, u[1:])
    return u


def duplicate_mask(redundancy: torch.Tensor, threshold: float = 0.90) -> torch.Tensor:
    """A token is a spatial duplicate when u >= tau_d. tau_d > 1 turns local debiasing off."""
    return redundancy >= threshold
