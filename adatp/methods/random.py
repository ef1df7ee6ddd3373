"""``random``: uniform random visual tokens at the same schedule (a floor every method must beat).

The default shape is AdaTP's [(0, .75), (2, .35), (L/2, .20)], so at a given target it costs the
same FLOPs; each stage draws uniformly among the alive tokens, seeded (``seed``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from adatp.methods.base import PrefillContext, PruningMethod, StagePlan, TargetConfig, register_method


@dataclass
class RandomConfig(TargetConfig):
    """``seed`` makes the draws reproducible; the generator restarts at every prompt."""

    seed: int = field(default=0, metadata={"help": "random seed"})


@register_method
class RandomPruning(PruningMethod):
    name = "random"
    config_class = RandomConfig
    config: RandomConfig

    def plan(self, ctx: PrefillContext) -> list[StagePlan]:
        self._generator = torch.Generator().manual_seed(self.config.seed)
        return self.stages_for(ctx, scoring=None)

    def select(self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
        pick = torch.randperm(alive.shape[0], generator=self._generator)[: stage.budget]
        return alive[torch.sort(pick.to(alive.device)).values]
