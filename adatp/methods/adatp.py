"""AdaTP: Attention-Debiased Token Pruning (Sun et al., EMNLP 2025 Findings, arXiv 2505.20100).

As docs/method.md explains it: segment the video by per-frame feature
similarity (Stage 0), give each segment a budget weighted by text relevance (Stage 1, global
debiasing), rank spatial duplicates last inside each segment (Stage 2, local debiasing), and prune
progressively inside the LLM by query-row attention, never across segments (Stage 3).
Default schedule [(0, .75), (2, .35), (L/2, .20)]: 27.3% of vanilla FLOPs on LLaVA-OV-7B.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dataclasses
import warnings

import torch

from adatp.errors import ConfigError
from adatp.methods.base import PrefillContext, PromptPlan, PruningMethod, StagePlan, TargetConfig, register_method
from adatp.ops.budgets import allocate_segment_budgets, normalize_relevance, segment_relevance, segment_weights
from adatp.ops.dedup import duplicate_mask, spatial_redundancy
from adatp.ops.segmentation import adjacent_frame_similarity, segment_ranges, segments_from_similarity
from adatp.ops.selection import duplicate_last_scores, select_in_segments


@dataclass
class AdaTPConfig(TargetConfig):
    """AdaTP settings (the paper's defaults, docs/method.md). Each module can be switched off on its own (ablations).

    Attributes:
        segment_threshold: tau_s; None takes the adapter's default (0.90 for SigLIP towers).
        min_segments: m, FastVID's rule (cut at the m-1 lowest similarities if needed).
        segmentation: False puts every frame in one segment (ablation "no segmentation").
        alpha: relevance weight in w_j = n_j (1 + alpha R_hat_j); 0 turns global debiasing off.
        dedup_threshold: tau_d; > 1 turns local debiasing off: no duplicates, and the layer-0
            stage ranks inside each segment by layer 0's own query-row attention (D1, D13)
            instead of by redundancy.
        min_per_segment: at least this many tokens per segment while the budget allows.
        scoring: "attention" (query-row attention, the method) or "random" (ablation), seeded by ``seed``.
        seed: seed of the random ablation.
    """

    segment_threshold: float | None = field(default=None, metadata={"help": "tau_s (None: adapter default)"})
    min_segments: int = field(default=1, metadata={"help": "m, minimum number of segments"})
    segmentation: bool = field(default=True, metadata={"help": "False: one segment (ablation)"})
    alpha: float = field(default=1.0, metadata={"help": "relevance weight; 0 = no global debiasing"})
    dedup_threshold: float = field(default=0.90, metadata={"help": "tau_d; > 1 = no local debiasing"})
    min_per_segment: int = field(default=1, metadata={"help": "floor per segment while B allows"})
    scoring: str = field(default="attention", metadata={"help": "attention | random"})
    seed: int = field(default=0, metadata={"help": "seed of scoring='random'"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha < 0:
            raise ConfigError(f"alpha must be >= 0, got {self.alpha}")
        if self.min_segments < 1 or self.min_per_segment < 0:
            raise ConfigError("min_segments must be >= 1 and min_per_segment >= 0")
        if self.scoring not in ("attention", "random"):
            raise ConfigError(f"scoring must be 'attention' or 'random', got {self.scoring!r}")


@dataclass
class AdaTPPlan(PromptPlan):
    """One prompt's AdaTP state: segments (Stage 0), weights (Stage 1), redundancy (Stage 2), and
    the per-segment budgets the stages have spent so far (Stage 3 never crosses segments)."""

    stages: list[StagePlan]
    config: AdaTPConfig
    frame_segments: torch.Tensor  # (T,) segment of each frame
    token_segments: torch.Tensor  # (N,) segment of each visual token
    segment_tokens: list[int]  # n_j, fixed (D4)
    relevance: torch.Tensor  # (S,) segment relevance R_j
    weights: list[float]  # w_j = n_j (1 + alpha R_hat_j)
    redundancy: torch.Tensor  # (N,) spatial redundancy (D5)
    duplicates: torch.Tensor  # (N,) bool
    relevance_source: str
    frame_feature_source: str
    segmentation_note: str
    frame_similarity: list[float]
    threshold_used: float | None
    alive_per_segment: list[int] = field(default_factory=list)
    budgets: list[list[int]] = field(default_factory=list)
    generator: torch.Generator | None = None

    @property
    def local_debiasing_off(self) -> bool:
        return self.config.dedup_threshold > 1

    def select(
        self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None, hidden: torch.Tensor | None = None
    ) -> torch.Tensor:
        cfg = self.config
        budgets = allocate_segment_budgets(stage.budget, self.weights, self.alive_per_segment, cfg.min_per_segment)
        if cfg.scoring == "random":
            key = torch.rand(alive.shape[0], generator=self.generator).to(alive.device)
        elif stage.layer == 0 and not self.local_debiasing_off:
            # Before the LLM: drop the most redundant first (duplicates are the most redundant).
            key = -self.redundancy[alive]
        else:
            if scores is None:
                raise ConfigError("AdaTP needs attention scores at in-LLM stages")
            key = duplicate_last_scores(scores, self.duplicates[alive])
        kept = alive[select_in_segments(key, self.token_segments[alive], budgets, self.alive_per_segment)]
        self.alive_per_segment = budgets
        self.budgets.append(budgets)
        return kept

    def kept_per_group(self, kept: torch.Tensor) -> list[int]:
        return torch.bincount(self.token_segments[kept], minlength=len(self.segment_tokens)).tolist()

    def describe(self) -> dict[str, Any]:
        return {
            "segments": segment_ranges(self.frame_segments),
            "segment_tokens": list(self.segment_tokens),
            "segment_relevance": [round(float(r), 6) for r in self.relevance],
            "segment_weights": [round(w, 6) for w in self.weights],
            "relevance_source": self.relevance_source,
            "segmentation": self.segmentation_note,
            "segmentation_feature": self.frame_feature_source,
            "segment_threshold": self.threshold_used,
            "frame_similarity": [round(x, 6) for x in self.frame_similarity],
            "duplicates": int(self.duplicates.sum()),
            "segment_budgets": self.budgets,
        }


@register_method
class AdaTP(PruningMethod):
    name = "adatp"
    config_class = AdaTPConfig
    config: AdaTPConfig

    def plan(self, ctx: PrefillContext) -> AdaTPPlan:
        cfg = self.config
        layout = ctx.span.layout
        per_frame = layout.tokens_per_frame
        # Stage 0: segments of similar consecutive frames.
        segmentation_note = "on" if cfg.segmentation else "off (ablation: one segment)"
        frame_similarity: list[float] = []
        threshold_used: float | None = None
        if cfg.segmentation and ctx.frame_features is not None:
            tau = cfg.segment_threshold if cfg.segment_threshold is not None else ctx.segment_threshold
            similarity = adjacent_frame_similarity(ctx.frame_features)  # (T-1,)
            frame_segments = segments_from_similarity(similarity, tau, cfg.min_segments)
            frame_similarity = similarity.tolist()  # reported: why a cut fell where it did
            threshold_used = float(tau)
        else:
            if cfg.segmentation:  # never a silent change: warn and record it in the report
                msg = (
                    "adatp: no per-frame features were captured, so segmentation is off and the whole video is "
                    "one segment; pass pixel_values_videos through the model's own forward/generate so the "
                    "projector hook sees them, or set segmentation=False to make this explicit"
                )
                warnings.warn(msg, stacklevel=2)
                ctx.warnings.append(msg)
                segmentation_note = "off: no frame features"
            frame_segments = torch.zeros(layout.num_frames, dtype=torch.long, device=ctx.tokens.device)
        frame_segments = frame_segments.to(ctx.tokens.device)
        frames_per_segment = torch.bincount(frame_segments).tolist()
        segment_tokens = [f * per_frame for f in frames_per_segment]  # n_j, fixed (D4)
        # Stage 1: relevance -> weights.
        if ctx.frame_relevance is not None:
            relevance = segment_relevance(ctx.frame_relevance.to(frame_segments.device), frame_segments)
        else:
            relevance = torch.zeros(len(frame_segments.unique()), device=frame_segments.device)
        weights = segment_weights(segment_tokens, normalize_relevance(relevance), cfg.alpha)
        # Stage 2: redundancy once, on the projected tokens at their grid positions (D5).
        redundancy = spatial_redundancy(ctx.tokens, frame_segments).reshape(-1)  # (N,)
        stages = self.stages_for(ctx, "query_rows" if cfg.scoring == "attention" else None)
        if cfg.dedup_threshold > 1 and cfg.scoring == "attention":
            # No local debiasing: the layer-0 stage ranks by layer 0's own attention (D1, D13).
            stages = [dataclasses.replace(s, scoring="query_rows") if s.layer == 0 else s for s in stages]
        return AdaTPPlan(
            stages=stages,
            config=cfg,
            frame_segments=frame_segments,
            token_segments=frame_segments.repeat_interleave(per_frame),  # (N,)
            segment_tokens=segment_tokens,
            relevance=relevance,
            weights=weights,
            redundancy=redundancy,
            duplicates=duplicate_mask(redundancy, cfg.dedup_threshold),
            relevance_source=ctx.relevance_source,
            frame_feature_source=ctx.frame_feature_source,
            segmentation_note=segmentation_note,
            frame_similarity=frame_similarity,
            threshold_used=threshold_used,
            alive_per_segment=list(segment_tokens),
            generator=torch.Generator().manual_seed(cfg.seed),
        )
