"""FastVID (Shen et al., "FastVID: Dynamic Density Pruning for Fast Video Large Language Models",
NeurIPS 2025, arXiv 2503.11187; official code: github.com/LunarShen/FastVID).

One stage before the LLM (layer 0), on the projected visual tokens:

1. Dynamic Temporal Segmentation (DySeg): cut between frames t and t+1 where the cosine of their
   global features is < tau, and at the c-1 lowest similarities if that gives fewer than c
   segments (:func:`adatp.ops.segmentation.segment_frames`; the official union of both cut sets
   is the same partition).
2. Density Spatiotemporal Pruning (STPrune), per segment:
   * a fraction ``1 - d`` of the kept tokens are *salient* tokens, the top tokens of every frame
     by a global-query attention score (ATS);
   * a fraction ``d`` are *context* tokens, chosen only in the segment's *anchor* frames (every
     p-th frame counted back from the segment's last frame) by a density-peak (DPC) score on the
     non-salient tokens: rho_i = exp(-mean of the squared distances to its k nearest tokens,
     itself included), delta_i = distance to the nearest token of higher density (the frame's
     largest distance for the densest), score = rho_i * delta_i; distances are Euclidean / sqrt(D);
   * Density-based Token Merging (DTM): every non-salient token of the segment joins its most
     cosine-similar context token; a context token with n members (itself included) becomes
     w * itself + (1 - w) * mean(members), w = max(1 / (n + 1), beta).

Official defaults (``scripts/eval.sh``, ``lmms_eval/models/llava_onevision.py``): retention 0.10,
c = 8, tau = 0.9, d = 0.4, p = 4, beta = 0.6, k = 4 nearest neighbours (hard-coded). adatp's
default shape keeps 25% at layer 0 (the paper's main LLaVA-OneVision setting); the kept fraction
otherwise comes from the shared target (retention / flops_ratio, D8).

Deviations from the official code:

* Budgets are exact: the stage keeps exactly B = floor(rN + 0.5) tokens. Segments get budgets
  proportional to their size (largest remainder); inside a segment ``floor(b_j * d)`` context
  tokens split evenly over the anchor frames and the rest split evenly over all frames as salient
  tokens (largest remainder, earlier frames first). The official code keeps ``int(c r)`` tokens per
  frame, ``int(int(c r) d)`` of them context, and gives each anchor ``floor(total / anchors)``
  context tokens, so its count drifts from rN. If an anchor frame has no room left for its context
  share (high retention, few anchors), the excess becomes salient tokens.
* Salient score: the official ATS ranks tokens by the attention of SigLIP's multi-head pooling
  head (its learned probe) over the patches, bilinearly pooled like the tokens. adatp does not
  capture that head's attention, so ATS here is the attention logit of a [CLS]-free global query,
  the frame's mean projected token: s_i = <x_i, mean_t(x)> / sqrt(D) (ranking only, so no softmax).
* Global frame features: the official DySeg uses SigLIP's pooled head output; adatp uses
  ``ctx.frame_features`` (the adapter's global feature; for SigLIP the mean patch feature), or
  the mean projected token of the frame when none were captured.
* DPC ties: the official code adds uniform noise of 1e-6 to densities; here ties are broken
  deterministically (strictly higher density only; equal scores keep the earlier token).
* DTM in multi-anchor segments: officially every segment token joins one context token *per
  anchor frame* (it is averaged into several anchors). A merge plan gives each token one slot, so
  here it joins the single most similar context token over all the segment's anchors. With one
  anchor per segment (segments of <= p frames) this is the official rule exactly. The DTM update
  is expressed as weights of the runtime's weighted average: the context token weighs
  w + (1 - w) / n, each other member (1 - w) / n.
* Only a single stage at layer 0 is supported (FastVID prunes once, before the LLM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from adatp.errors import ConfigError, InputError
from adatp.methods.base import (
    PrefillContext, PruningMethod, SegmentPlan, Selection, StagePlan, TargetConfig, register_method,
    whole_video_tokens,
)
from adatp.ops.budgets import allocate_segment_budgets
from adatp.ops.clustering import density_peak_scores
from adatp.ops.schedule import Schedule
from adatp.ops.segmentation import segment_frames
from adatp.ops.selection import top_k_global

# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


def anchor_frames(num_frames: int, period: int) -> list[int]:
    """Local indices of a segment's anchor frames: every ``period``-th frame counted back from the
    last one (official: ``(L - 1 - i) % p == 0``), ascending. ceil(L / p) of them."""
    if num_frames < 1 or period < 1:
        raise ConfigError(f"need num_frames >= 1 and period >= 1, got {num_frames}, {period}")
    return [i for i in range(num_frames) if (num_frames - 1 - i) % period == 0]


def split_segment_budget(
    budget: int, num_frames: int, tokens_per_frame: int, density_ratio: float, period: int
) -> tuple[list[int], list[int], list[int]]:
    """Split one segment's budget into salient tokens per frame and context tokens per anchor.

    Context = floor(budget * d), spread evenly over the anchor frames; salient = the rest, spread
    evenly over all frames (largest remainder, earlier frames first). Context tokens come from an
    anchor's non-salient tokens, so when an anchor has no room the excess turns salient.

    Returns:
        (salient per frame (L,), context per anchor (A,), anchor local indices (A,)).
    """
    if not 0 <= budget <= num_frames * tokens_per_frame:
        raise InputError(f"segment budget {budget} outside [0, {num_frames * tokens_per_frame}]")
    anchors = anchor_frames(num_frames, period)
    context = int(math.floor(budget * density_ratio + 1e-9))
    ones, full = [1.0] * num_frames, [tokens_per_frame] * num_frames
    while True:
        salient = allocate_segment_budgets(budget - context, ones, full, 0)
        caps = [tokens_per_frame - salient[a] for a in anchors]
        if context <= sum(caps):
            break
        context = sum(caps)  # strictly smaller: terminates (context = 0 always fits)
    ctx = allocate_segment_budgets(context, [1.0] * len(anchors), caps, 0)
    return salient, ctx, anchors


def salient_scores(tokens: torch.Tensor) -> torch.Tensor:
    """ATS stand-in: attention logit of the frame's mean token on each token. (T, c, D) -> (T, c)."""
    x = tokens.float()
    query = x.mean(dim=1, keepdim=True)  # (T, 1, D)
    return (x * query).sum(-1) / math.sqrt(x.shape[-1])


def fastvid_selection(
    tokens: torch.Tensor,
    salient: torch.Tensor,
    frame_segments: torch.Tensor,
    budget: int,
    density_ratio: float = 0.4,
    period: int = 4,
    beta: float = 0.6,
    knn: int = 4,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """FastVID's STPrune + DTM over a whole video.

    Args:
        tokens: (T, c, D) the tokens (projected embeddings).
        salient: (T, c) salient score per token (higher is kept first).
        frame_segments: (T,) non-decreasing segment id per frame.
        budget: B, tokens kept in all.
    Returns:
        kept (B,) ascending flat indices t*c + p; merge_into (T*c,) slot in kept or -1;
        weights (T*c,) positive; segment budgets (S,).
    """
    num_frames, per_frame, _ = tokens.shape
    device = tokens.device
    sizes = torch.bincount(frame_segments.cpu()).tolist()
    seg_budgets = allocate_segment_budgets(budget, [float(s * per_frame) for s in sizes], [s * per_frame for s in sizes], 0)
    # Per-frame salient counts and per-frame context counts (0 on non-anchor frames).
    salient_n, context_n, seg_of_frame_start = [], [0] * num_frames, []
    start = 0
    for size, b in zip(sizes, seg_budgets):
        s, ctx, anchors = split_segment_budget(b, size, per_frame, density_ratio, period)
        salient_n += s
        for a, n in zip(anchors, ctx):
            context_n[start + a] = n
        seg_of_frame_start.append(start)
        start += size
    # Salient: top s_t of every frame (one vectorised rank).
    order = torch.sort(salient.float(), dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(per_frame, device=device).expand(num_frames, -1))
    is_salient = rank < torch.tensor(salient_n, device=device)[:, None]  # (T, c)
    flat_tokens = tokens.reshape(num_frames * per_frame, -1)
    n_all = num_frames * per_frame
    centres: list[torch.Tensor] = []
    members: list[tuple[torch.Tensor, torch.Tensor]] = []  # (member flat idx, centre flat idx)
    for start, size in zip(seg_of_frame_start, sizes):
        seg_centres = []
        for t in range(start, start + size):
            if context_n[t] == 0:
                continue
            rest = torch.nonzero(~is_salient[t]).squeeze(1)
            score = density_peak_scores(tokens[t, rest], knn)
            seg_centres.append(t * per_frame + rest[top_k_global(score, context_n[t])])
        if not seg_centres:
            continue
        seg_centres_t = torch.cat(seg_centres)  # ascending (frames ascend, positions ascend)
        centres.append(seg_centres_t)
        seg_rest = torch.nonzero(~is_salient[start : start + size].reshape(-1)).squeeze(1) + start * per_frame
        a = F.normalize(flat_tokens[seg_rest].float(), dim=-1)
        b = F.normalize(flat_tokens[seg_centres_t].float(), dim=-1)
        target = seg_centres_t[(a @ b.T).argmax(dim=1)]  # first maximum on ties
        members.append((seg_rest, target))
    salient_idx = torch.nonzero(is_salient.reshape(-1)).squeeze(1)
    centre_idx = torch.cat(centres) if centres else salient_idx.new_zeros(0)
    kept = torch.sort(torch.cat([salient_idx, centre_idx])).values
    merge_into = torch.full((n_all,), -1, dtype=torch.long, device=device)
    for member, target in members:
        merge_into[member] = torch.searchsorted(kept, target)
    merge_into[kept] = torch.arange(kept.numel(), device=device)  # kept tokens: own slot
    # DTM weights: w = max(1/(n+1), beta); centre w + (1-w)/n, other members (1-w)/n.
    joined = merge_into >= 0
    counts = torch.bincount(merge_into[joined], minlength=kept.numel()).double()
    w = torch.clamp(1.0 / (counts + 1.0), min=beta)
    share = (1.0 - w) / counts
    weights = torch.ones(n_all, dtype=torch.float64, device=device)
    weights[joined] = share[merge_into[joined]]
    weights[kept] = w + share
    return kept, merge_into, weights.float(), seg_budgets


# --------------------------------------------------------------------------------------------
# Method
# --------------------------------------------------------------------------------------------


@dataclass
class FastVIDConfig(TargetConfig):
    """FastVID settings (official defaults).

    Attributes:
        segment_threshold: tau, cut where adjacent frames' global cosine < tau (0.9).
        min_segments: c, at least this many segments (8).
        density_ratio: d, fraction of kept tokens chosen by density in anchor frames (0.4).
        anchor_period: p, every p-th frame of a segment is an anchor (4).
        merge_beta: beta, minimum weight of a context token in its merge (0.6).
        density_k: k nearest neighbours of the DPC density (4).
    """

    segment_threshold: float = field(default=0.9, metadata={"help": "tau: cut where adjacent-frame cosine < tau"})
    min_segments: int = field(default=8, metadata={"help": "c: minimum number of segments"})
    density_ratio: float = field(default=0.4, metadata={"help": "d: density (context) share of kept tokens"})
    anchor_period: int = field(default=4, metadata={"help": "p: anchor frame every p frames of a segment"})
    merge_beta: float = field(default=0.6, metadata={"help": "beta: minimum self-weight of a merged context token"})
    density_k: int = field(default=4, metadata={"help": "k nearest neighbours of the density"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule is not None and (len(self.schedule) != 1 or self.schedule[0][0] != 0):
            raise ConfigError(f"FastVID prunes once before the LLM: schedule must be [(0, r)], got {self.schedule}")
        if not math.isfinite(self.segment_threshold):
            raise ConfigError(f"segment_threshold must be finite, got {self.segment_threshold}")
        if self.min_segments < 1:
            raise ConfigError(f"min_segments must be >= 1, got {self.min_segments}")
        if not 0.0 <= self.density_ratio <= 1.0:
            raise ConfigError(f"density_ratio must be in [0, 1], got {self.density_ratio}")
        if self.anchor_period < 1:
            raise ConfigError(f"anchor_period must be >= 1, got {self.anchor_period}")
        if not 0.0 <= self.merge_beta <= 1.0:
            raise ConfigError(f"merge_beta must be in [0, 1], got {self.merge_beta}")
        if self.density_k < 1:
            raise ConfigError(f"density_k must be >= 1, got {self.density_k}")


@dataclass
class FastVIDPlan(SegmentPlan):
    """One prompt's FastVID state: DySeg's segments, the tokens and their salient scores."""

    config: FastVIDConfig | None = None
    tokens: torch.Tensor | None = None  # (T, c, D) projected tokens
    salient: torch.Tensor | None = None  # (T, c) ATS stand-in

    def select(
        self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None, hidden: torch.Tensor | None = None
    ) -> torch.Tensor | Selection:
        if stage.budget == alive.numel():
            return alive
        cfg = self.config
        tokens = whole_video_tokens(FastVID.name, alive, hidden, self.tokens)
        kept, merge_into, weights, self.segment_budgets = fastvid_selection(
            tokens, self.salient.to(tokens.device), self.frame_segments.to(tokens.device), stage.budget,
            cfg.density_ratio, cfg.anchor_period, cfg.merge_beta, cfg.density_k,
        )
        kept, merge_into, weights = kept.to(alive.device), merge_into.to(alive.device), weights.to(alive.device)
        return Selection(alive[kept], merge_into, weights)


@register_method
class FastVID(PruningMethod):
    name = "fastvid"
    config_class = FastVIDConfig
    config: FastVIDConfig

    def default_shape(self, num_layers: int) -> Schedule:
        return [(0, 0.25)]

    def plan(self, ctx: PrefillContext) -> FastVIDPlan:
        cfg = self.config
        stages = self.pre_llm_stage(ctx, needs_hidden=True)
        feats = ctx.frame_features if ctx.frame_features is not None else ctx.tokens.float().mean(1)
        frame_segments = segment_frames(feats, cfg.segment_threshold, cfg.min_segments).to(ctx.tokens.device)
        return FastVIDPlan.of_segments(
            stages, frame_segments, ctx.span.layout.tokens_per_frame, config=cfg, tokens=ctx.tokens,
            salient=salient_scores(ctx.tokens),
        )
