"""Qwen2.5-VL inputs: Qwen2-VL's, plus ``second_per_grid_ts`` (seconds each token grid spans)."""

from __future__ import annotations

import torch

from adatp.families.qwen2_vl.processor import Qwen2VLProcessor


class Qwen2_5_VLProcessor(Qwen2VLProcessor):
    @classmethod
    def extra_inputs(cls, seconds_per_grid: float) -> dict[str, torch.Tensor]:
        """``second_per_grid_ts`` (1,) = temporal_patch_size / fps: ``get_rope_index`` spaces grids by it."""
        return {"second_per_grid_ts": torch.tensor([seconds_per_grid])}
