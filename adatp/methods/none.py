"""``none``: the unpruned model (vanilla), run through the same runtime so reports are comparable."""

from __future__ import annotations

import torch

from adatp.methods.base import PrefillContext, PruningMethod, StagePlan, TargetConfig, register_method


@register_method
class NoPruning(PruningMethod):
    name = "none"
    config_class = TargetConfig

    def plan(self, ctx: PrefillContext) -> list[StagePlan]:
        return []

    def select(self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
        return alive
