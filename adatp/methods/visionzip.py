"""VisionZip (Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision Language Models",
CVPR 2025, arXiv 2412.04467), applied per frame to a video.

Official method (``dvlab-research/VisionZip``, LLaVA-1.5 image default 54 dominant + 10 contextual
= 64 of 576 tokens): in the vision encoder's second-to-last layer, keep the tokens the [CLS] token
attends to most (attention summed over heads; the CLS token itself is kept) as *dominant* tokens;
of the remaining tokens take every ``step``-th one (``step = max(1, R // C)``, the first C of
``arange(0, R, step)``) as *contextual* targets, assign each other remaining token to its most
similar target (cosine of the encoder's keys, argmax) and replace each target by the plain average
of itself and the tokens assigned to it.

Here (one stage before the LLM, default shape [(0, 0.25)]):

* per frame, after LLaVA-OneVision's 2x2 pooling and the projector: the stage budget B is split
  over the T frames with equal weights by largest remainder (ties to earlier frames), b_t tokens
  for frame t, of which ``round(b_t * contextual_ratio)`` are contextual (default 10/64, the
  54:10 split FastVID uses in its video comparison) and the rest dominant;
* dominant signal: SigLIP (LLaVA-OV's tower) has no CLS token, so what stands in is a
  similarity-based attention from the frame's global query, ``softmax_p(<g, x_p> / sqrt(D))``
  with g the mean of the frame's projected tokens x_p (``dominant_signal="mean-query"``), or the
  token norm ``||x_p||`` (``"norm"``); ties break towards the earlier token;
* contextual tokens: official target choice on the frame's remaining tokens in raster order;
  similarity is the cosine of the *projected tokens* (official: vision-encoder keys, which the
  runtime does not capture); each target becomes the plain average of itself and its assigned
  tokens (``weights=None``); argmax ties go to the earlier target. The official code instead adds
  the mean of the assigned tokens to the target (``target + sum / count``, an unnormalised sum that
  roughly doubles a merged token's scale); adatp's merging methods all average, so the runtime's
  merge stays one weighted mean (the kept positions are the official ones: 100 % overlap,
  docs/methods.md).

Deviations from the official code: per-frame application after pooling/projection instead of per
image inside the encoder (the merged tokens are projected embeddings, not encoder features);
mean-query attention or norm instead of CLS attention; projected-token cosine instead of keys;
budgets from the shared target (retention / FLOPs) instead of fixed 54 + 10 per image; no CLS
token to keep. At ``stage.budget == N`` the alive set is returned unchanged (no merging).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from adatp.errors import ConfigError
from adatp.methods.base import PrefillContext, PruningMethod, Selection, StagePlan, TargetConfig, register_method
from adatp.ops.budgets import allocate_segment_budgets
from adatp.ops.importance import SIGNALS, dominant_scores
from adatp.ops.schedule import Schedule


@dataclass
class VisionZipConfig(TargetConfig):
    """VisionZip settings.

    Attributes:
        contextual_ratio: fraction of each frame's budget spent on contextual (merged) tokens.
        dominant_signal: "mean-query" (softmax of <mean token, token> / sqrt(D), stands in for the
            CLS attention) or "norm" (token L2 norm).
    """

    contextual_ratio: float = field(
        default=10 / 64, metadata={"help": "contextual share of each frame's budget (54:10)"}
    )
    dominant_signal: str = field(
        default="mean-query", metadata={"help": "mean-query | norm (stands in for CLS attention)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        r = self.contextual_ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= float(r) < 1.0:
            raise ConfigError(f"contextual_ratio must be a number in [0, 1), got {r!r}")
        if self.dominant_signal not in SIGNALS:
            raise ConfigError(f"dominant_signal must be one of {SIGNALS}, got {self.dominant_signal!r}")


def contextual_count(budget: int, ratio: float) -> int:
    """Contextual tokens of a frame with ``budget`` tokens: floor(b * ratio + 0.5)."""
    return min(budget, int(math.floor(budget * ratio + 0.5)))


def zip_frame(
    tokens: torch.Tensor, budget: int, num_contextual: int, signal: str = "mean-query"
) -> tuple[torch.Tensor, torch.Tensor]:
    """VisionZip on one frame.

    Args:
        tokens: (c, D) the frame's tokens in raster order.
        budget: b, tokens the frame keeps (0..c).
        num_contextual: k <= b contextual targets; the other b - k are dominant.
    Returns:
        kept: (b,) ascending local indices 0..c-1.
        merge_into: (c,) slot in ``kept`` per token (kept tokens: their own), -1 when dropped.
    """
    c = tokens.shape[0]
    device = tokens.device
    if not 0 <= num_contextual <= budget <= c:
        raise ConfigError(f"need 0 <= contextual ({num_contextual}) <= budget ({budget}) <= tokens ({c})")
    num_dominant = budget - num_contextual
    scores = dominant_scores(tokens, signal)
    order = torch.sort(scores, descending=True, stable=True).indices
    is_dominant = torch.zeros(c, dtype=torch.bool, device=device)
    is_dominant[order[:num_dominant]] = True
    rest = torch.nonzero(~is_dominant).flatten()  # raster order
    remaining = rest.shape[0]
    if num_contextual > 0:
        step = max(1, remaining // num_contextual)
        targets = rest[torch.arange(0, remaining, step, device=device)[:num_contextual]]
    else:
        targets = rest[:0]
    is_kept = is_dominant.clone()
    is_kept[targets] = True
    kept = torch.nonzero(is_kept).flatten()
    merge_into = torch.full((c,), -1, dtype=torch.long, device=device)
    merge_into[kept] = torch.arange(kept.shape[0], device=device)
    others = torch.nonzero(~is_kept).flatten()
    if targets.numel() > 0 and others.numel() > 0:
        x = F.normalize(tokens.float(), dim=-1)
        sim = x[others] @ x[targets].T  # (others, k)
        best = targets[torch.argmax(sim, dim=1)]  # first maximum: earlier target on ties
        merge_into[others] = torch.searchsorted(kept, best)
    return kept, merge_into


def zip_video(
    tokens: torch.Tensor, budget: int, contextual_ratio: float, signal: str = "mean-query"
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """VisionZip frame by frame over a (T, c, D) video with total budget B.

    Returns (kept (B,) ascending visual indices, merge_into (T c,) global slots or -1, budgets b_t).
    """
    t, c, _ = tokens.shape
    budgets = allocate_segment_budgets(budget, [1.0] * t, [c] * t, min_per_segment=0)
    kept_all, merge_all, offset = [], [], 0
    for f, b in enumerate(budgets):
        kept, merge_into = zip_frame(tokens[f], b, contextual_count(b, contextual_ratio), signal)
        kept_all.append(kept + f * c)
        merge_all.append(torch.where(merge_into >= 0, merge_into + offset, merge_into))
        offset += b
    return torch.cat(kept_all), torch.cat(merge_all), budgets


@register_method
class VisionZip(PruningMethod):
    name = "visionzip"
    config_class = VisionZipConfig
    config: VisionZipConfig

    def default_shape(self, num_layers: int) -> Schedule:
        return [(0, 0.25)]

    def plan(self, ctx: PrefillContext) -> list[StagePlan]:
        self.tokens = ctx.tokens
        self.frame_budgets: list[int] = []
        return self.pre_llm_stage(ctx, needs_hidden=True)

    def select(
        self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None, hidden: torch.Tensor | None = None
    ) -> torch.Tensor | Selection:
        if stage.budget == alive.shape[0]:
            return alive
        tokens = self.whole_video_tokens(alive, hidden, self.tokens)
        kept, merge_into, self.frame_budgets = zip_video(
            tokens, stage.budget, self.config.contextual_ratio, self.config.dominant_signal
        )
        return Selection(alive[kept.to(alive.device)], merge_into.to(alive.device), None)

    def describe(self) -> dict:
        return {"frame_budgets": list(self.frame_budgets)}
