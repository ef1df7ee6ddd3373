"""FastV (Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024, arXiv 2403.06764).

One in-LLM stage at layer K (official default K=2): visual tokens are ranked by the attention the
LAST prompt token gives them, averaged over heads, and the top R are kept, over the whole video
(no segments). The official default keeps R = 50%; here the kept fraction comes from the shared
target (retention / flops_ratio, D8), the layer from ``k``.

Scores, as the official code (``fastv_kvcache``) computes them: the attention map that layer K-1
produced, i.e. layer K-1's own q/k (its input layernorm, RoPE, GQA repeat) on layer K-1's input,
softmax over every causal key in fp32, the last query row, mean over heads; the input of layer K is
pruned (``score_layer="previous"``, the default). ``score_layer="self"`` keeps adatp's earlier
variant, layer K's own q/k on its input (the D1 rule AdaTP's in-LLM stages use); it is not FastV.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from adatp.errors import ConfigError
from adatp.methods.base import PrefillContext, PruningMethod, StagePlan, TargetConfig, register_method
from adatp.ops.schedule import Schedule
from adatp.ops.selection import top_k_global


@dataclass
class FastVConfig(TargetConfig):
    """FastV settings.

    Attributes:
        k: the decoder layer whose input is pruned (official K=2).
        score_layer: "previous" (official: layer K-1's attention map ranks the tokens) or "self"
            (variant: layer K's own q/k on its input, as AdaTP's stages score).
    """

    k: int = field(default=2, metadata={"help": "prune the input of decoder layer K"})
    score_layer: str = field(default="previous", metadata={"help": "previous (official, layer K-1) | self (layer K)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise ConfigError(f"FastV prunes inside the LLM: k must be >= 1, got {self.k}")
        if self.score_layer not in ("previous", "self"):
            raise ConfigError(
                f"score_layer must be 'previous' (official FastV) or 'self', got {self.score_layer!r}"
            )


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
        stages = self.stages_for(ctx, "last_row")
        if self.config.score_layer == "self":
            return stages
        # Official rule: the stage at layer K is ranked by layer K-1's attention map (D11).
        return [dataclasses.replace(s, score_layer=s.layer - 1) if s.layer > 0 else s for s in stages]

    def select(self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
        if scores is None:  # a user schedule with a stage at layer 0: no attention exists there
            raise ConfigError("FastV ranks by attention: its stages must be at layers >= 1")
        return alive[top_k_global(scores, stage.budget)]
