"""FastV (Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024, arXiv 2403.06764).

One in-LLM stage at layer K (official default K=2): visual tokens are ranked by the attention the
LAST prompt token gives them, averaged over heads, and the top R are kept, over the whole video
(no segments). The official default keeps R = 50%; here the kept fraction comes from the shared
target (retention / flops_ratio, D8), the layer from ``k``.

Deviation from the official code (``fastv_kvcache``): it reads layer K-1's attention map (computed
anyway in eager mode); adatp scores with layer K's own q/k on its input (DECISIONS D1), the same
signal AdaTP's in-LLM stages use, so both are compared on one definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from adatp.errors import ConfigError
from adatp.methods.base import PrefillContext, PruningMethod, StagePlan, TargetConfig, register_method
from adatp.ops.schedule import Schedule
from adatp.ops.selection import top_k_global


@dataclass
class FastVConfig(TargetConfig):
    """FastV settings. ``k``: the decoder layer whose input is pruned (official K=2)."""

    k: int = field(default=2, metadata={"help": "prune the input of decoder layer K"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise ConfigError(f"FastV prunes inside the LLM: k must be >= 1, got {self.k}")


@register_method
class FastV(PruningMethod):
    name = "fastv"
    config_class = FastVConfig
    config: FastVConfig

    def default_shape(self, num_layers: int) -> Schedule:
        if self.config.k >= num_layers:
            raise ConfigError(f"FastV layer k={self.config.k} is past the model's depth ({num_layers} layers)")
        return [(self.config.k, 0.5)]  # official R = 50%

    def plan(self, ctx: PrefillContext) -> list[StagePlan]:
        return self.stages_for(ctx, "last_row")

    def select(self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
        if scores is None:  # a user schedule with a stage at layer 0: no attention exists there
            raise ConfigError("FastV ranks by attention: its stages must be at layers >= 1")
        return alive[top_k_global(scores, stage.budget)]
