"""What one pruned prefill did: kept tokens per stage and per segment, and its FLOPs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from adatp.ops.flops import DecoderDims, VisionDims, decoder_flops, tokens_per_layer, vision_tower_flops


@dataclass
class StageReport:
    """One stage as it ran: the visual tokens fed to decoder layer ``layer`` and after it."""

    layer: int
    retention: float
    budget: int
    kept: int
    kept_per_segment: list[int] | None
    kept_indices: torch.Tensor = field(repr=False)  # (kept,) visual indices, ascending
    merged: int = 0  # dropped tokens averaged into kept ones (merging methods)
    merge_into: torch.Tensor | None = field(default=None, repr=False)  # (n,) slot per alive token, -1 dropped
    merge_weights: torch.Tensor | None = field(default=None, repr=False)  # (n,) weights of the average
    scored_layer: int | None = None  # decoder layer whose q/k gave the scores (None: not attention-scored)
    scored_attention: str | None = None  # that layer's token mixer: full_attention or linear_attention

    def to_dict(self, with_indices: bool = False) -> dict[str, Any]:
        d = {
            "layer": self.layer,
            "retention": round(self.retention, 6),
            "budget": self.budget,
            "kept": self.kept,
            "kept_per_segment": self.kept_per_segment,
            "merged": self.merged,
        }
        if self.scored_layer is not None:
            d["scored_layer"], d["scored_attention"] = self.scored_layer, self.scored_attention
        if with_indices:
            d["kept_indices"] = self.kept_indices.tolist()
        return d


@dataclass
class FlopsReport:
    """Analytic FLOPs (docs/method.md): visual-only (paper convention), full sequence, vision tower."""

    visual_vanilla: float
    visual_pruned: float
    full_vanilla: float
    full_pruned: float
    vision_tower: float

    @property
    def visual_ratio(self) -> float:
        return self.visual_pruned / self.visual_vanilla if self.visual_vanilla else 1.0

    @property
    def full_ratio(self) -> float:
        """Full-sequence LLM ratio; its inverse is the FLOPs-ideal prefill speed-up (D8)."""
        return self.full_pruned / self.full_vanilla if self.full_vanilla else 1.0

    @property
    def vision_share(self) -> float:
        """Vision tower FLOPs over (tower + unpruned LLM) FLOPs."""
        total = self.vision_tower + self.full_vanilla
        return self.vision_tower / total if total else 0.0

    @classmethod
    def compute(
        cls,
        stages: list[tuple[int, int]],
        num_visual: int,
        num_other: int,
        decoder: DecoderDims,
        vision: VisionDims | None,
        num_frames: int,
    ) -> FlopsReport:
        """``stages``: (layer, visual tokens kept); ``num_other``: text + newline tokens."""
        visual = tokens_per_layer(stages, num_visual, decoder.num_layers)
        full = [n + num_other for n in visual]
        return cls(
            visual_vanilla=decoder_flops([num_visual] * decoder.num_layers, decoder),
            visual_pruned=decoder_flops(visual, decoder),
            full_vanilla=decoder_flops([num_visual + num_other] * decoder.num_layers, decoder),
            full_pruned=decoder_flops(full, decoder),
            vision_tower=vision_tower_flops(vision, num_frames) if vision else 0.0,
        )

    def to_dict(self) -> dict[str, float]:
        return {
            "visual_vanilla_tflops": self.visual_vanilla / 1e12,
            "visual_pruned_tflops": self.visual_pruned / 1e12,
            "visual_ratio": self.visual_ratio,
            "full_vanilla_tflops": self.full_vanilla / 1e12,
            "full_pruned_tflops": self.full_pruned / 1e12,
            "full_ratio": self.full_ratio,
            "vision_tower_tflops": self.vision_tower / 1e12,
            "vision_share": self.vision_share,
        }


@dataclass
class PruneReport:
    """The report of the last pruned prefill (``handle.last_report``)."""

    method: str
    num_frames: int
    grid: tuple[int, int]
    num_visual: int
    seq_len: int
    num_layers: int
    positions: str
    stages: list[StageReport]
    flops: FlopsReport
    relevance_source: str
    relevance_uniform: bool
    method_info: dict[str, Any] = field(default_factory=dict)
    query_text: str | None = None
    warnings: list[str] = field(default_factory=list)
    overhead_s: float | None = None

    @property
    def visual_tokens_per_layer(self) -> list[int]:
        """Visual tokens each decoder layer actually received."""
        stages = [(s.layer, s.kept) for s in self.stages]
        return [int(n) for n in tokens_per_layer(stages, self.num_visual, self.num_layers)]

    def to_dict(self, with_indices: bool = False) -> dict[str, Any]:
        return {
            "method": self.method,
            "num_frames": self.num_frames,
            "grid": list(self.grid),
            "num_visual": self.num_visual,
            "seq_len": self.seq_len,
            "positions": self.positions,
            "stages": [s.to_dict(with_indices) for s in self.stages],
            "visual_tokens_per_layer": self.visual_tokens_per_layer,
            "flops": self.flops.to_dict(),
            "relevance_source": self.relevance_source,
            "relevance_uniform": self.relevance_uniform,
            "query_text": self.query_text,
            "method_info": self.method_info,
            "warnings": self.warnings,
        }

    def summary(self) -> str:
        """A few plain lines for logs and the CLI."""
        lines = [
            f"method {self.method}: {self.num_frames} frames x {self.grid[0]}x{self.grid[1]} = {self.num_visual} visual tokens"
        ]
        for s in self.stages:
            seg = f"  per segment {s.kept_per_segment}" if s.kept_per_segment is not None else ""
            scored = ""
            if s.scored_layer is not None and (s.scored_layer != s.layer or s.scored_attention != "full_attention"):
                scored = f"  scored by layer {s.scored_layer} ({s.scored_attention})"
            lines.append(f"  layer {s.layer:>2}: keep {s.kept:>6} ({s.kept / self.num_visual:6.1%}){seg}{scored}")
        f = self.flops
        lines.append(
            f"  FLOPs vs vanilla: visual {f.visual_ratio:.3f}, full LLM {f.full_ratio:.3f} "
            f"(ideal prefill speed-up {1 / f.full_ratio:.2f}x); vision tower {f.vision_tower / 1e12:.3f} TFLOPs"
        )
        if self.relevance_uniform:
            lines.append("  relevance: uniform (no scorer given): global debiasing used segment sizes only")
        return "\n".join(lines)
