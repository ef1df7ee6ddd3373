"""Where a video's tokens sit in a prompt: its (T, h, w) grid layout and its span.

Plain data over tensors, with no model knowledge: the families build these, the methods and the
runtime read them, and the vLLM plug-in builds them from vLLM's grids (so it imports neither
transformers nor any family).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NEWLINE_MODES = ("video_end", "row", "frame", "none", "interleaved")


@dataclass(frozen=True)
class VideoLayout:
    """The layout of one video's token block in the prompt.

    Grid tokens come frame by frame, row by row (t, y, x). ``newline`` says where the model puts
    its learned newline embeddings: ``video_end`` (HF LLaVA-OneVision / LLaVA-Video: one after the
    whole video), ``row`` (LLaVA-NeXT's own layout: one after every grid row), ``frame`` (one after
    every frame), ``none`` (Qwen2-VL / Qwen2.5-VL: the grids back to back) or ``interleaved``
    (Qwen3-VL: text between the frames' grids; ``frame_starts`` gives each grid's first offset in the
    block and ``length`` the block's length). Non-grid tokens inside the block (newlines, timestamps,
    vision start/end markers) are never pruned and belong to no segment (D2, D15).
    """

    num_frames: int
    grid_h: int
    grid_w: int
    newline: str = "video_end"
    frame_starts: tuple[int, ...] | None = None
    length: int | None = None

    def __post_init__(self) -> None:
        if self.newline not in NEWLINE_MODES:
            raise ValueError(f"newline must be one of {NEWLINE_MODES}, got {self.newline!r}")
        if (self.newline == "interleaved") != (self.frame_starts is not None and self.length is not None):
            raise ValueError("frame_starts and length are given exactly when newline is 'interleaved'")
        if self.frame_starts is not None and len(self.frame_starts) != self.num_frames:
            raise ValueError(f"{len(self.frame_starts)} frame_starts for {self.num_frames} frames")

    @property
    def tokens_per_frame(self) -> int:
        """c = h * w grid tokens per frame (newlines excluded)."""
        return self.grid_h * self.grid_w

    @property
    def num_visual(self) -> int:
        """N = T * c (D2)."""
        return self.num_frames * self.tokens_per_frame

    @property
    def block_length(self) -> int:
        """Tokens of the whole video block, newlines included."""
        if self.length is not None:
            return self.length
        extra = {"video_end": 1, "row": self.num_frames * self.grid_h, "frame": self.num_frames, "none": 0}
        return self.num_visual + extra[self.newline]

    def grid_offsets(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(N,) offset inside the block of each grid token, in (t, y, x) order."""
        t = torch.arange(self.num_frames, device=device)[:, None, None]
        y = torch.arange(self.grid_h, device=device)[None, :, None]
        x = torch.arange(self.grid_w, device=device)[None, None, :]
        if self.frame_starts is not None:
            starts = torch.tensor(self.frame_starts, device=device)[:, None, None]
            off = starts + y * self.grid_w + x
        elif self.newline == "row":
            off = t * self.grid_h * (self.grid_w + 1) + y * (self.grid_w + 1) + x
        elif self.newline == "frame":
            off = t * (self.tokens_per_frame + 1) + y * self.grid_w + x
        else:
            off = t * self.tokens_per_frame + y * self.grid_w + x
        return off.reshape(-1)

    def newline_offsets(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(block_length - N,) offsets of the newline tokens inside the block."""
        is_grid = torch.zeros(self.block_length, dtype=torch.bool, device=device)
        is_grid[self.grid_offsets(device)] = True
        return torch.nonzero(~is_grid).flatten()


@dataclass(frozen=True)
class VideoSpan:
    """Where one video's block sits in a prompt of ``seq_len`` tokens."""

    start: int
    layout: VideoLayout
    seq_len: int
    #: (H, W) patches of one frame before the merge, where the inputs decide it (Qwen-VL): vision FLOPs.
    patch_grid: tuple[int, int] | None = None

    @property
    def end(self) -> int:
        """One past the block's last token; query rows start here (D3)."""
        return self.start + self.layout.block_length
