"""PruneVid (Huang et al., "PruneVid: Visual Token Pruning for Efficient Video Large Language
Models", ACL 2025 Findings, arXiv 2412.16117).

The method, as the official code (Visual-AI/PruneVid, ``models/pllava/modeling_pllava.py``
``merge_frames_dynamic`` and ``elastic_cache.py`` ``VTPWindowCache``) runs it:

1. Temporal segmentation: the per-frame means of the projected tokens are clustered with DPC-KNN
   into ``int(T * temporal_segment_ratio)`` clusters (official 0.25, k=7), refined into contiguous
   scenes.
2. Static tokens: inside a scene of W frames, a grid position is static when the mean pairwise
   cosine similarity of its W tokens (over ordered pairs t != t') exceeds ``tau`` (official 0.8);
   its W tokens are averaged into one. W = 1 has no static tokens.
3. Spatial merging: the scene's static tokens, and each frame's remaining (dynamic) tokens, are
   clustered with DPC-KNN (k=7) into ``int(n * cluster_ratio)`` clusters (official 0.5; groups of
   <= 14 tokens are left alone) and each cluster is averaged into one token.
4. In the LLM, after layer ``selected_layer`` (official 10), the attention of the question tokens
   (every token after the video) to the visual tokens, max over heads and over question rows, keeps
   ``int(alpha * size)`` tokens of every scene's static group and of every frame's dynamic group
   (official alpha 0.4); the KV caches of layers 0..10 are pruned the same way.

Mapping to adatp (defaults here): a merging stage before the LLM and one attention stage at layer
``layer`` (10, clamped to the last layer for shallow models). Default shape
``[(0, .40), (layer, .40 * alpha)]`` = ``[(0, .40), (10, .16)]``: the official README reports 16.2%
retained tokens for PLLaVA (about 40% after merging, times alpha 0.4), scaled to the shared target.

Deviations from the official code:

- Segmentation is adatp's threshold segmentation (:func:`adatp.ops.segmentation.segment_frames`) of
  ``ctx.frame_features`` (the means of the projected tokens when none were captured) with
  ``segment_threshold`` (None: the adapter's default) and at least ``int(T * temporal_segment_ratio)``
  segments (cuts at the lowest similarities), instead of DPC-KNN clustering of frames + refinement.
- Exact budgets. The pre-LLM stage keeps exactly its budget B: after static merging there are U
  tokens; if U >= B the cluster count of every group (a scene's static group, a frame's dynamic
  group) is B * n_g / U rounded by largest remainder (official: ``int(n_g * cluster_ratio)``, so
  ``cluster_ratio`` is not an option; groups of <= 14 tokens are clustered too; a group that gets
  0 clusters is dropped). If U < B, static positions are turned dynamic, the least similar first,
  until U >= B. The in-LLM stage likewise splits its budget over the same groups in proportion to
  their alive tokens (official ``int(alpha * size)``) and keeps the top tokens of each by attention.
- Attention signal: adatp's "query_rows" (the question rows' attention from the pruned layer's own
  q/k at its input, mean over heads and rows, docs/method.md D1/D3), not the max over heads and rows of
  layer 10's attention map; the stage prunes the input of layer ``layer`` (official: its output and
  also the KV caches of layers 0..10, which adatp keeps whole).
- Positions: merged tokens sit at their representative's position (a cluster's DPC-KNN centre; for
  a static group, the centre position in the scene's first frame), in the original (t, y, x)
  order; the official code reorders the scene's static tokens first, then the dynamic ones, and
  renumbers positions.
- DPC-KNN ties: the official code adds random noise (1e-6) to the densities; here ties are broken
  by token order (deterministic). Averages are equal-weight over the original tokens, as the
  official mean of per-position means (each static position holds W tokens).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from adatp.errors import ConfigError
from adatp.methods.base import PrefillContext, PruningMethod, Selection, StagePlan, TargetConfig, register_method
from adatp.ops.budgets import allocate_segment_budgets
from adatp.ops.clustering import dpc_knn
from adatp.ops.schedule import Schedule
from adatp.ops.segmentation import segment_frames
from adatp.ops.selection import select_in_segments


@dataclass
class PruneVidConfig(TargetConfig):
    """PruneVid settings (official defaults; see the module docstring for what replaces the rest)."""

    tau: float = field(default=0.8, metadata={"help": "static-token threshold on the mean temporal cosine similarity"})
    alpha: float = field(default=0.4, metadata={"help": "in-LLM kept fraction; shapes the default schedule"})
    layer: int = field(default=10, metadata={"help": "decoder layer of the attention stage (clamped to the depth)"})
    temporal_segment_ratio: float = field(default=0.25, metadata={"help": "at least int(T * ratio) scenes"})
    segment_threshold: float | None = field(default=None, metadata={"help": "scene cut threshold (None: adapter default)"})
    k: int = field(default=7, metadata={"help": "neighbours of DPC-KNN's local density"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not -1.0 <= float(self.tau) <= 1.0:
            raise ConfigError(f"tau must be in [-1, 1], got {self.tau}")
        if not 0.0 < float(self.alpha) <= 1.0:
            raise ConfigError(f"alpha must be in (0, 1], got {self.alpha}")
        if not isinstance(self.layer, int) or isinstance(self.layer, bool) or self.layer < 1:
            raise ConfigError(f"layer must be an int >= 1 (the attention stage is inside the LLM), got {self.layer!r}")
        if not 0.0 <= float(self.temporal_segment_ratio) <= 1.0:
            raise ConfigError(f"temporal_segment_ratio must be in [0, 1], got {self.temporal_segment_ratio}")
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ConfigError(f"k must be an int >= 1, got {self.k!r}")


def mean_pairwise_frame_cosine(tokens: torch.Tensor) -> torch.Tensor:
    """Mean pairwise cosine similarity over ordered frame pairs t != t', per grid position.

    Args:
        tokens: (W, c, D) one scene's tokens.
    Returns:
        (c,) float32; NaN-free: -inf when W == 1 (a one-frame scene has no static tokens).
    """
    w = tokens.shape[0]
    if w < 2:
        return torch.full((tokens.shape[1],), float("-inf"), device=tokens.device)
    x = F.normalize(tokens.float(), dim=-1)
    total = x.sum(0).pow(2).sum(-1)  # sum over all (t, t') of cos, the W diagonal terms included
    return (total - w) / (w * (w - 1))


def static_mask(tokens: torch.Tensor, frame_segments: torch.Tensor, tau: float, budget: int) -> torch.Tensor:
    """Static positions per scene: similarity > tau, then the least similar turned dynamic until the
    tokens left after merging each static run (U) are at least ``budget``.

    Args:
        tokens: (T, c, D); frame_segments: (T,) non-decreasing scene id per frame; budget: B <= T*c.
    Returns:
        (S, c) bool.
    """
    sizes = torch.bincount(frame_segments).tolist()
    starts = [0]
    for w in sizes[:-1]:
        starts.append(starts[-1] + w)
    sims = torch.stack([mean_pairwise_frame_cosine(tokens[s : s + w]) for s, w in zip(starts, sizes)])  # (S, c)
    static = sims > tau
    gain = (torch.tensor(sizes, device=tokens.device) - 1)[:, None].expand_as(static)  # tokens saved per run
    num_tokens = tokens.shape[0] * tokens.shape[1]
    left = num_tokens - int(gain[static].sum())
    if left < budget:
        flat = torch.nonzero(static.reshape(-1)).squeeze(1)
        order = flat[torch.sort(sims.reshape(-1)[flat], stable=True).indices]  # least similar first
        regained = torch.cumsum(gain.reshape(-1)[order], 0)
        demote = int(torch.searchsorted(regained, torch.tensor(budget - left, device=regained.device))) + 1
        static = static.clone().reshape(-1)
        static[order[:demote]] = False
        static = static.reshape(sims.shape)
    return static


@register_method
class PruneVid(PruningMethod):
    name = "prunevid"
    config_class = PruneVidConfig
    config: PruneVidConfig

    def default_shape(self, num_layers: int) -> Schedule:
        layer = min(self.config.layer, num_layers - 1)
        if layer < 1:
            return [(0, 0.40 * self.config.alpha)]
        return [(0, 0.40), (layer, 0.40 * self.config.alpha)]

    def plan(self, ctx: PrefillContext) -> list[StagePlan]:
        cfg = self.config
        layout = ctx.span.layout
        self.num_frames, self.tokens_per_frame = layout.num_frames, layout.tokens_per_frame
        feats = ctx.frame_features if ctx.frame_features is not None else ctx.tokens.float().mean(1)
        tau_s = cfg.segment_threshold if cfg.segment_threshold is not None else ctx.segment_threshold
        min_segments = max(1, int(layout.num_frames * cfg.temporal_segment_ratio))
        self.frame_segments = segment_frames(feats, tau_s, min_segments).to(ctx.tokens.device)
        # Group of each visual token for the in-LLM stage: its frame until the merge stage says otherwise.
        self.group_of = torch.arange(self.num_frames, device=ctx.tokens.device).repeat_interleave(self.tokens_per_frame)
        self.info: dict[str, Any] = {}
        stages = self.stages_for(ctx, "query_rows")
        return [dataclasses.replace(s, needs_hidden=True) if s.layer == 0 else s for s in stages]

    def select(
        self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None, hidden: torch.Tensor | None = None
    ) -> torch.Tensor | Selection:
        if stage.budget == alive.shape[0]:
            return alive
        if stage.layer == 0:
            if hidden is None:
                raise ConfigError("PruneVid's merging stage needs the projected tokens")
            return self._merge(stage.budget, alive, hidden)
        if scores is None:
            raise ConfigError("PruneVid's in-LLM stage needs attention scores")
        labels, groups = torch.unique(self.group_of[alive], return_inverse=True)
        sizes = torch.bincount(groups, minlength=labels.shape[0]).tolist()
        budgets = allocate_segment_budgets(stage.budget, [float(s) for s in sizes], sizes, 0)
        return alive[select_in_segments(scores, groups, budgets, sizes)]

    def _merge(self, budget: int, alive: torch.Tensor, hidden: torch.Tensor) -> Selection:
        """Static runs -> one token each, then DPC-KNN clusters per group, B clusters in all."""
        num_frames, c = self.num_frames, self.tokens_per_frame
        if alive.shape[0] != num_frames * c:
            raise ConfigError("PruneVid's merging stage must be the first stage (layer 0)")
        device = alive.device
        tokens = hidden.reshape(num_frames, c, -1)
        static = static_mask(tokens, self.frame_segments, self.config.tau, budget)  # (S, c)
        sizes = torch.bincount(self.frame_segments).tolist()
        starts = [0]
        for w in sizes[:-1]:
            starts.append(starts[-1] + w)
        # Groups: (members (m, W') visual indices, feature (m, D), representative frame, label).
        groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]] = []
        positions = torch.arange(c, device=device)
        for s, (t0, w) in enumerate(zip(starts, sizes)):
            stat = positions[static[s]]
            if stat.numel():
                frames = torch.arange(t0, t0 + w, device=device)
                members = frames[None, :] * c + stat[:, None]  # (m, W): a static run per row
                groups.append((members, tokens[t0 : t0 + w, stat].float().mean(0), members[:, 0], num_frames + s))
            dyn = positions[~static[s]]
            if dyn.numel():
                for t in range(t0, t0 + w):
                    members = (t * c + dyn)[:, None]
                    groups.append((members, tokens[t, dyn].float(), members[:, 0], t))
        counts = [g[0].shape[0] for g in groups]
        clusters = allocate_segment_budgets(budget, [float(n) for n in counts], counts, 0)
        target = torch.full((num_frames * c,), -1, dtype=torch.long, device=device)  # representative per token
        reps = []
        for (members, feats, rep_tokens, label), num in zip(groups, clusters):
            if num == 0:
                continue  # the whole group is dropped
            assign, centres = dpc_knn(feats, num, self.config.k)
            rep = rep_tokens[centres]  # (num,) visual indices of the cluster representatives
            target[members.reshape(-1)] = rep[assign][:, None].expand_as(members).reshape(-1)
            self.group_of[rep] = label
            reps.append(rep)
        kept = torch.sort(torch.cat(reps)).values
        merge_into = torch.where(
            target >= 0, torch.searchsorted(kept, target.clamp_min(0)), torch.full_like(target, -1)
        )
        self.info = {
            "segments": [(t0, t0 + w - 1) for t0, w in zip(starts, sizes)],
            "static_positions": static.sum(1).tolist(),
            "clusters_per_group": clusters,
        }
        return Selection(kept, merge_into[alive], None)

    def kept_per_group(self, kept: torch.Tensor) -> list[int]:
        segs = self.frame_segments[(kept // self.tokens_per_frame).clamp_max(self.num_frames - 1)]
        return torch.bincount(segs, minlength=int(self.frame_segments.max()) + 1).tolist()

    def describe(self) -> dict[str, Any]:
        return dict(getattr(self, "info", {}))
