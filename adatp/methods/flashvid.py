"""FlashVID (Fan et al., "FlashVID: Efficient Video Large Language Models via Training-free
Tree-based Spatiotemporal Token Merging", ICLR 2026; official code: github.com/Fanziyang-v/FlashVID).

Two stages: one before the LLM that merges, one inside it that prunes.

1. Before the LLM (layer 0), on the projected tokens, per segment:
   * Dynamic segmentation (DySeg): cut where the cosine of adjacent frames' mean tokens < tau, and at
     the lowest similarities until there are at least ``min_segments`` segments
     (:func:`adatp.ops.segmentation.segment_frames`, the official complementary rule).
   * Attention- and diversity-based token selection (ADTS, ``attn_div_v2``), per frame: a greedy
     farthest-point pick on calibrated distances d'(i, j) = (1 - cos(x_i, x_j)) * a_j * e_j, with
     a_j the token's attention weight and e_j = <x_j, mean token of the segment> (event relevance).
     The first pick maximises min_{i != j} d'(i, j); each next one maximises min over the picked s
     of d'(s, j). ceil(alpha f) of a frame's budget f are spent here; these tokens are kept as
     they are.
   * Tree-based spatiotemporal merging (TSTM) of the other tokens: each token of frame t > first
     joins its most cosine-similar unselected token of frame t-1 when that similarity exceeds
     ``temporal_threshold``; chains of joins form trees rooted at a token that joined nothing, and
     a root stands for the plain average of its tree. If fewer roots than context slots remain,
     only the most similar joins are made (official "soft threshold").
   * Spatial merging: the roots of each frame are clustered by density peaks (DPC-kNN, k =
     min(clusters, 7)), the frame's share of the segment's context slots set by its root count;
     each cluster becomes the plain average of its roots' tree averages, at its centre's position.
2. Inside the LLM (input of layer K, official K = 20 of Qwen2-7B's 28 layers, scaled to depth):
   FastV's rule on what is left, the last prompt row's attention from layer K-1's map (D11).

Official defaults (``flashvid/__init__.py`` wrapper; ``configuration_flashvid.py``):
retention_ratio 0.25, expansion 1.25 (the vision side keeps 1.25 R), pruning_layer 20,
llm_retention_ratio 0.3, alpha 0.7, temporal_threshold 0.8, segment_threshold 0.9,
min_segment_num 8, token_selection_method "attn_div_v2" (the config file's default is "attn_div").
Average retention over 28 layers is (20 * 1.25 R + 8 * 0.375 R) / 28 = R: adatp's default shape
is [(0, 1.25 R), (round(20 L / 28), 0.375 R)] with R = 0.25, scaled to the target like every method.

Deviations from the official code:

* Attention weight a_j: the official code uses SigLIP's last-layer attention (mean over heads and
  query rows, 2x2 pooled); adatp does not capture the tower's attention maps, so the frame's
  mean-query softmax softmax_p(<mean token, x_p> / sqrt(D)) on projected tokens stands in (as for
  VisionZip). Tokens are projected embeddings, not encoder features.
* Exact budgets: segment budgets b_j proportional to size (largest remainder), each split evenly
  over its frames (f_t, largest remainder; official: ceil(c R) per frame, so its count drifts
  from B); ADTS gets ceil(alpha f_t) per frame, context slots the rest of the segment; per-frame
  cluster counts are a largest-remainder split by root count (at least one per frame with roots
  while slots allow) instead of ceil per frame, so the stage keeps exactly B. The soft threshold
  keeps exactly as many roots as slots.
* Tree values: a root is the plain average of its tree, as the paper describes. The released
  TSTM adds 1 to an anchor's count per direct child instead of the child's tree size, so its
  root is sum(tree) / (1 + direct children), not an average (and not expressible as a weighted
  average); DPC then clusters different values. ``benchmarks/peer_overlap.py`` measures the
  effect (docs/methods.md).
* Single-frame segments: the released code clusters all of the frame's tokens, ADTS picks
  included (a picked token can then also be a cluster centre, kept twice); adatp clusters only
  the unpicked ones.
* Picked tokens are excluded from later ADTS picks explicitly (``attn_div_v2`` relies on the
  zero self-distance, which a negative calibration can defeat).
* DPC ties: no random noise (strictly denser only; the earlier token wins ties).
* In-LLM scores are computed from layer K-1's q/k for the last row (equal to its eager map).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from adatp.errors import ConfigError
from adatp.methods.base import (
    PrefillContext, PruningMethod, SegmentPlan, Selection, StagePlan, TargetConfig, register_method,
    whole_video_tokens,
)
from adatp.ops.budgets import allocate_segment_budgets
from adatp.ops.clustering import density_peak_clusters
from adatp.ops.importance import dominant_scores
from adatp.ops.schedule import Schedule
from adatp.ops.segmentation import segment_frames
from adatp.ops.selection import top_k_global

# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


def adts_select(x: torch.Tensor, calibration: torch.Tensor, k: int) -> torch.Tensor:
    """Attention- and diversity-based selection in one frame. (c, D), (c,) -> (k,) ascending.

    d'(i, j) = (1 - cos(x_i, x_j)) * calibration_j. First pick: argmax_j of the second smallest
    d'(., j) (= min_{i != j} d'(i, j) for a positive calibration); then argmax over unpicked j of
    min over picked s of d'(s, j). Ties: the earlier token.
    """
    c = x.shape[0]
    if k <= 0:
        return torch.zeros(0, dtype=torch.long, device=x.device)
    xn = F.normalize(x.float(), dim=-1)
    dist = (1.0 - xn @ xn.T) * calibration.float()[None, :]  # (c, c), column j scaled by its calibration
    # Official first pick: the second smallest entry of each column (the smallest is the zero
    # self-distance whenever the calibration is positive).
    first = torch.topk(dist, k=2, dim=0, largest=False).values[1] if c > 1 else dist[0]
    picked = [int(torch.argmax(first))]
    nearest = dist[picked[0]].clone()  # min over picked s of d'(s, j)
    taken = torch.zeros(c, dtype=torch.bool, device=x.device)
    taken[picked[0]] = True
    for _ in range(1, k):
        j = int(torch.argmax(nearest.masked_fill(taken, float("-inf"))))
        picked.append(j)
        taken[j] = True
        nearest = torch.minimum(nearest, dist[j])
    return torch.sort(torch.tensor(picked, device=x.device)).values


def temporal_trees(x: torch.Tensor, free: torch.Tensor, threshold: float, min_roots: int) -> torch.Tensor:
    """TSTM: the root of every free token of a segment. (L, c, D), (L, c) bool -> (L*c,) int64.

    A free token of frame t > 0 joins its most similar free token of frame t-1 when the cosine
    exceeds ``threshold``; if that leaves fewer than ``min_roots`` roots, only the most similar
    joins are made so that exactly ``min_roots`` remain. Roots map to themselves; non-free tokens
    get -1. Flat indices are t * c + p.
    """
    num_frames, c, _ = x.shape
    xn = F.normalize(x.float(), dim=-1)
    sim = torch.full((num_frames, c), -2.0, device=x.device)  # -2: no candidate edge
    parent = torch.full((num_frames, c), -1, dtype=torch.long, device=x.device)
    for t in range(1, num_frames):
        s = (xn[t] @ xn[t - 1].T).masked_fill(~free[t - 1][None, :], -2.0)  # (c, c)
        best, arg = s.max(1)
        sim[t] = torch.where(free[t], best, torch.full_like(best, -2.0))
        parent[t] = (t - 1) * c + arg
    flat = sim.reshape(-1)
    join = flat > threshold
    num_free = int(free.sum())
    if num_free - int(join.sum()) < min_roots:  # soft threshold: keep exactly min_roots roots
        order = torch.sort(flat, descending=True, stable=True).indices[: max(num_free - min_roots, 0)]
        join = torch.zeros_like(join)
        join[order] = True
        join &= flat > -2.0
    root = torch.where(free.reshape(-1), torch.arange(num_frames * c, device=x.device), -1)
    flat_parent = parent.reshape(-1)
    for t in range(1, num_frames):  # roots resolve frame by frame: the parent's root is known
        rows = torch.arange(t * c, (t + 1) * c, device=x.device)
        j = join[rows]
        root[rows[j]] = root[flat_parent[rows[j]]]
    return root


def flashvid_selection(
    tokens: torch.Tensor,
    attention: torch.Tensor,
    frame_segments: torch.Tensor,
    budget: int,
    alpha: float = 0.7,
    temporal_threshold: float = 0.8,
    knn: int = 7,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """FlashVID's vision-side compression of a whole video (ADTS + TSTM + DPC per segment).

    Args:
        tokens: (T, c, D); attention: (T, c) a_j per token; frame_segments: (T,) non-decreasing.
        budget: B, tokens kept in all.
    Returns:
        kept (B,) ascending flat indices, merge_into (T*c,) slot or -1, weights (T*c,) > 0,
        segment budgets.
    """
    num_frames, c, _ = tokens.shape
    device = tokens.device
    sizes = torch.bincount(frame_segments.cpu()).tolist()
    seg_budgets = allocate_segment_budgets(budget, [float(s * c) for s in sizes], [s * c for s in sizes], 0)
    kept_parts: list[torch.Tensor] = []
    groups: list[tuple[torch.Tensor, torch.Tensor]] = []  # (members flat, their slot's flat index)
    weights = torch.ones(num_frames * c, dtype=torch.float32, device=device)
    start = 0
    for size, b in zip(sizes, seg_budgets):
        x = tokens[start : start + size]  # (L, c, D)
        # Official split per frame: a frame's budget f, of which ceil(alpha f) are ADTS tokens.
        frame_budget = allocate_segment_budgets(b, [1.0] * size, [c] * size, 0)
        per_frame = [min(f, math.ceil(alpha * f - 1e-9)) for f in frame_budget]
        num_adts = sum(per_frame)
        seg_mean = x.float().reshape(-1, x.shape[-1]).mean(0)
        free = torch.ones(size, c, dtype=torch.bool, device=device)
        for t in range(size):
            calib = attention[start + t].float() * (x[t].float() @ seg_mean)  # a_j * e_j
            pick = adts_select(x[t], calib, per_frame[t])
            free[t, pick] = False
            kept_parts.append((start + t) * c + pick)
        slots = b - num_adts
        if slots > 0:
            root = temporal_trees(x, free, temporal_threshold, slots)
            flat_x = x.reshape(size * c, -1).float()
            is_root = root == torch.arange(size * c, device=device)
            tree_size = torch.bincount(root[root >= 0], minlength=size * c).float()
            tree_mean = torch.zeros_like(flat_x).index_add_(0, root[root >= 0], flat_x[root >= 0])
            tree_mean = tree_mean / tree_size.clamp(min=1)[:, None]
            roots_per_frame = is_root.reshape(size, c).sum(1).tolist()
            active = [t for t in range(size) if roots_per_frame[t] > 0]
            clusters = allocate_segment_budgets(
                slots, [float(roots_per_frame[t]) for t in active], [roots_per_frame[t] for t in active], 1
            )
            centre_of_root = torch.full((size * c,), -1, dtype=torch.long, device=device)
            for t, n in zip(active, clusters):
                if n == 0:
                    continue
                r = torch.nonzero(is_root[t * c : (t + 1) * c]).squeeze(1) + t * c
                centres, assign = density_peak_clusters(tree_mean[r], n, knn)
                centre_of_root[r] = r[centres][assign]
                kept_parts.append(r[centres] + start * c)
            members = torch.nonzero(root >= 0).squeeze(1)
            target = centre_of_root[root[members]]
            ok = target >= 0  # roots of a frame left without a cluster are dropped
            groups.append((members[ok] + start * c, target[ok] + start * c))
            weights[members + start * c] = 1.0 / tree_size[root[members]]  # a tree counts as one root
        start += size
    kept = torch.sort(torch.cat(kept_parts)).values
    merge_into = torch.full((num_frames * c,), -1, dtype=torch.long, device=device)
    for members, target in groups:
        merge_into[members] = torch.searchsorted(kept, target)
    merge_into[kept] = torch.arange(kept.numel(), device=device)
    return kept, merge_into, weights, seg_budgets


# --------------------------------------------------------------------------------------------
# Method
# --------------------------------------------------------------------------------------------


@dataclass
class FlashVIDConfig(TargetConfig):
    """FlashVID settings (official defaults).

    Attributes:
        alpha: share of each segment's budget picked by ADTS (0.7).
        temporal_threshold: cosine above which a token joins its tree in the previous frame (0.8).
        segment_threshold: tau of DySeg (0.9).
        min_segments: at least this many segments (8).
        expansion: vision-side retention as a multiple of R in the default shape (1.25).
        llm_layer_fraction: the in-LLM stage's layer as a fraction of depth (20/28).
        llm_retention: share of the vision-side tokens kept at the in-LLM stage (0.3).
        density_k: k of DPC-kNN (7, capped at the frame's cluster count).
    """

    alpha: float = field(default=0.7, metadata={"help": "ADTS share of the vision-side budget"})
    temporal_threshold: float = field(default=0.8, metadata={"help": "TSTM join threshold (cosine)"})
    segment_threshold: float = field(default=0.9, metadata={"help": "DySeg tau"})
    min_segments: int = field(default=8, metadata={"help": "minimum number of segments"})
    expansion: float = field(default=1.25, metadata={"help": "vision-side retention / R (default shape)"})
    llm_layer_fraction: float = field(default=20 / 28, metadata={"help": "in-LLM stage layer / depth"})
    llm_retention: float = field(default=0.3, metadata={"help": "in-LLM kept share of the vision-side tokens"})
    density_k: int = field(default=7, metadata={"help": "k of DPC-kNN"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("alpha", "llm_retention"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {v}")
        if not 0.0 < self.llm_layer_fraction < 1.0:
            raise ConfigError(f"llm_layer_fraction must be in (0, 1), got {self.llm_layer_fraction}")
        if self.expansion < 1.0:
            raise ConfigError(f"expansion must be >= 1, got {self.expansion}")
        if self.min_segments < 1 or self.density_k < 1:
            raise ConfigError("min_segments and density_k must be >= 1")
        if self.schedule is not None and self.schedule[0][0] != 0:
            raise ConfigError(f"FlashVID merges before the LLM first: its schedule must start at layer 0, got {self.schedule}")


@dataclass
class FlashVIDPlan(SegmentPlan):
    """One prompt's FlashVID state: DySeg's segments, the tokens and their attention stand-in."""

    config: FlashVIDConfig | None = None
    tokens: torch.Tensor | None = None  # (T, c, D) projected tokens
    attention: torch.Tensor | None = None  # (T, c) stand-in for a_j

    def select(
        self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None, hidden: torch.Tensor | None = None
    ) -> torch.Tensor | Selection:
        if stage.budget == alive.numel():
            return alive
        if stage.layer > 0:
            if scores is None:
                raise ConfigError("FlashVID's in-LLM stage ranks by attention")
            return alive[top_k_global(scores, stage.budget)]
        cfg = self.config
        tokens = whole_video_tokens(FlashVID.name, alive, hidden, self.tokens)
        kept, merge_into, weights, self.segment_budgets = flashvid_selection(
            tokens, self.attention.to(tokens.device), self.frame_segments.to(tokens.device), stage.budget,
            cfg.alpha, cfg.temporal_threshold, cfg.density_k,
        )
        return Selection(alive[kept.to(alive.device)], merge_into.to(alive.device), weights.to(alive.device))


@register_method
class FlashVID(PruningMethod):
    name = "flashvid"
    config_class = FlashVIDConfig
    config: FlashVIDConfig

    def default_shape(self, num_layers: int) -> Schedule:
        cfg = self.config
        r0 = 0.25 * cfg.expansion  # official retention_ratio 0.25
        layer = min(num_layers - 1, max(1, round(cfg.llm_layer_fraction * num_layers)))
        return [(0, r0), (layer, r0 * cfg.llm_retention)] if cfg.llm_retention < 1 else [(0, r0)]

    def plan(self, ctx: PrefillContext) -> FlashVIDPlan:
        cfg = self.config
        stages = self.stages_for(ctx, "last_row")
        stages = [
            StagePlan(s.layer, s.retention, s.budget, None, needs_hidden=True) if s.layer == 0
            else StagePlan(s.layer, s.retention, s.budget, "last_row", score_layer=s.layer - 1)
            for s in stages
        ]
        # Official DySeg compares frames by their mean (pooled, projected) token, which adatp has exactly.
        feats = ctx.tokens.float().mean(1)
        frame_segments = segment_frames(feats, cfg.segment_threshold, cfg.min_segments).to(ctx.tokens.device)
        return FlashVIDPlan.of_segments(
            stages, frame_segments, ctx.span.layout.tokens_per_frame, config=cfg, tokens=ctx.tokens,
            attention=torch.stack([dominant_scores(f) for f in ctx.tokens]),
        )
