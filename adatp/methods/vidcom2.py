"""VidCom2 (Liu et al., "Video Compression Commander: Plug-and-Play Inference Acceleration for
Video Large Language Models", EMNLP 2025, arXiv 2505.14454; official code:
github.com/xuyang-liu16/VidCom2, ``token_compressor/vidcom2/vidcom2.py``).

One pure-pruning stage before the LLM (layer 0), on the projected visual tokens X (T, c, D), as
the official code computes it:

1. Channel selection: keep the ``floor(D * 0.5)`` channels of lowest variance over all N tokens
   (``select_low_var_channels``), then L2-normalise every token on those channels.
2. Similarities to the video centre m_v (mean of all tokens) and to the frame centre m_t (mean of
   the frame's tokens), each a multi-scale Gaussian kernel
   G(x, m) = sum_{a in {1/8, 1/4, 1/2, 1, 2}} exp(-||x - m||^2 / (2a)).
3. Frame uniqueness (Adaptive Frame Compression): u_t = -mean_i G(x_ti, m_v);
   p = softmax((u - max u) / temp), temp = 0.01; frame retention
   r_t = R (1 + p_t - mean p), capped at 1; at least one token per frame.
4. Within a frame (Token-Level Compression): keep the r_t c tokens with the *lowest*
   G(x, m_v) + G(x, m_t), i.e. the tokens most distinct from both the video and the frame.

No merging (the official code only gathers the kept tokens).

Official defaults: base retention R = 0.25 (``R_RATIO``), temp = 0.01, channel ratio 0.5,
kernel widths 2^-3..2^1. adatp's default shape is [(0, 0.25)]; the kept fraction otherwise comes
from the shared target (retention / flops_ratio, D8).

Deviations from the official code:

* Exact budget: the official per-frame count round(r_t c) (clamped to [1, c]) makes the total
  drift from R N, and clamping at 1.0 loses the overflow. Here the frame budgets are the
  largest-remainder rounding of B w_t / sum(w) with w_t = 1 + p_t - mean p (the same proportions,
  since sum_t r_t c = R T c before clamping), capped at c with the overflow redistributed by
  water-filling, and at least 1 per frame while B >= T
  (:func:`adatp.ops.budgets.allocate_segment_budgets`).
* Ties (equal channel variances or equal token scores; ``torch.topk`` leaves them unspecified)
  break deterministically towards the earlier channel / token.
* Only a single stage at layer 0 is supported (VidCom2 compresses once, before the LLM).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from adatp.errors import ConfigError
from adatp.methods.base import PrefillContext, PruningMethod, StagePlan, TargetConfig, register_method
from adatp.ops.budgets import allocate_segment_budgets
from adatp.ops.schedule import Schedule
from adatp.ops.selection import select_in_segments

#: Kernel widths a of the multi-scale Gaussian (official: 2**k for k in -3..1).
KERNEL_WIDTHS = tuple(2.0**k for k in range(-3, 2))


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


def low_variance_channels(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Indices of the max(1, floor(D * ratio)) channels of lowest variance over the N rows,
    ties to the earlier channel; ascending. (N, D) -> (k,) int64."""
    var = x.float().var(dim=0, unbiased=False)
    k = max(1, int(x.shape[-1] * ratio))
    return torch.sort(torch.sort(var, stable=True).indices[:k]).values


def multi_scale_gaussian(x: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """G(x, m) = sum_a exp(-||x - m||^2 / (2a)) over KERNEL_WIDTHS. (..., d) x (..., d) -> (...)."""
    dist_sq = ((x - centre) ** 2).sum(-1)
    return sum(torch.exp(-dist_sq / (2.0 * a)) for a in KERNEL_WIDTHS)


def vidcom2_similarities(tokens: torch.Tensor, channel_ratio: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarity of every token to the video centre and to its frame's centre.

    Args:
        tokens: (T, c, D) projected visual tokens.
    Returns:
        (video_sim, frame_sim), each (T, c) float32.
    """
    num_frames, per_frame, dim = tokens.shape
    flat = tokens.reshape(-1, dim).float()
    x = F.normalize(flat[:, low_variance_channels(flat, channel_ratio)], dim=-1).reshape(num_frames, per_frame, -1)
    video_centre = x.mean(dim=(0, 1), keepdim=True)
    frame_centre = x.mean(dim=1, keepdim=True)
    return multi_scale_gaussian(x, video_centre), multi_scale_gaussian(x, frame_centre)


def frame_weights(video_sim: torch.Tensor, temperature: float = 0.01) -> torch.Tensor:
    """w_t = 1 + p_t - mean p, p = softmax((u - max u) / temp), u_t = -mean_i video_sim[t, i].

    Frames less similar to the video centre get more tokens. (T, c) -> (T,) float64, all > 0.
    """
    u = -video_sim.double().mean(dim=1)
    p = torch.softmax((u - u.max()) / temperature, dim=0)
    return 1.0 + p - p.mean()


def frame_budgets(budget: int, weights: torch.Tensor, tokens_per_frame: int) -> list[int]:
    """Exact per-frame budgets: largest remainder of B w_t / sum w, <= c, >= 1 while B >= T."""
    num_frames = weights.shape[0]
    return allocate_segment_budgets(budget, weights.tolist(), [tokens_per_frame] * num_frames, 1)


def vidcom2_keep(
    video_sim: torch.Tensor, frame_sim: torch.Tensor, budgets: list[int]
) -> torch.Tensor:
    """Per frame t, the budgets[t] tokens of lowest video_sim + frame_sim (ties: earlier token).

    Returns (sum(budgets),) ascending flat indices t*c + p.
    """
    num_frames, per_frame = video_sim.shape
    outlier = -(video_sim + frame_sim).reshape(-1)
    frames = torch.arange(num_frames, device=outlier.device).repeat_interleave(per_frame)
    return select_in_segments(outlier, frames, budgets, [per_frame] * num_frames)


# --------------------------------------------------------------------------------------------
# Method
# --------------------------------------------------------------------------------------------


@dataclass
class VidCom2Config(TargetConfig):
    """VidCom2 settings (official defaults).

    Attributes:
        temperature: softmax temperature of the frame-uniqueness budgets (0.01).
        channel_ratio: fraction of lowest-variance channels the scores use (0.5).
    """

    temperature: float = field(default=0.01, metadata={"help": "softmax temperature of frame budgets"})
    channel_ratio: float = field(default=0.5, metadata={"help": "fraction of lowest-variance channels scored"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule is not None and (len(self.schedule) != 1 or self.schedule[0][0] != 0):
            raise ConfigError(f"VidCom2 prunes once before the LLM: schedule must be [(0, r)], got {self.schedule}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 < self.channel_ratio <= 1.0:
            raise ConfigError(f"channel_ratio must be in (0, 1], got {self.channel_ratio}")


@register_method
class VidCom2(PruningMethod):
    name = "vidcom2"
    config_class = VidCom2Config
    config: VidCom2Config

    def default_shape(self, num_layers: int) -> Schedule:
        return [(0, 0.25)]  # official R_RATIO = 0.25

    def plan(self, ctx: PrefillContext) -> list[StagePlan]:
        stages = self.pre_llm_stage(ctx)
        layout = ctx.span.layout
        self.num_frames, self.per_frame = layout.num_frames, layout.tokens_per_frame
        self.video_sim, self.frame_sim = vidcom2_similarities(ctx.tokens, self.config.channel_ratio)
        self.weights = frame_weights(self.video_sim, self.config.temperature)
        self.budgets: list[int] = []
        return stages

    def select(self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
        n = alive.numel()
        if stage.budget == n:
            return alive
        self.check_whole_video(self.name, alive, self.num_frames * self.per_frame)
        self.budgets = frame_budgets(stage.budget, self.weights, self.per_frame)
        kept = vidcom2_keep(self.video_sim, self.frame_sim, self.budgets)
        return alive[kept.to(alive.device)]

    def kept_per_group(self, kept: torch.Tensor) -> list[int]:
        return torch.bincount(kept // self.per_frame, minlength=self.num_frames).tolist()

    def describe(self) -> dict[str, Any]:
        return {"frame_weights": [round(float(w), 6) for w in self.weights], "frame_budgets": list(self.budgets)}
