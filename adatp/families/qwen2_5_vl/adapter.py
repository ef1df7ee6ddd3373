"""Qwen2.5-VL family (HF ``Qwen2_5_VLForConditionalGeneration``): Qwen2-VL's adapter, another tower.

The language side is Qwen2-VL's (same decoder, same M-RoPE layout); ``get_rope_index`` also spaces
the temporal positions by ``second_per_grid_ts * tokens_per_second``, which the runtime never
recomputes: it keeps the ids the model built. The tower has RMSNorm, a gated SiLU MLP
(gate/up/down) and window attention in all but ``fullatt_block_indexes``.
"""

from __future__ import annotations

from dataclasses import replace

from adatp.families.qwen2_5_vl.processor import Qwen2_5_VLProcessor
from adatp.families.qwen2_vl.adapter import Qwen2VLAdapter
from adatp.ops.flops import VisionDims, window_patch_counts


class Qwen2_5_VLAdapter(Qwen2VLAdapter):
    model_classes = ("Qwen2_5_VLForConditionalGeneration",)
    model_types = ("qwen2_5_vl",)
    processor = Qwen2_5_VLProcessor

    def _vision_sizes(self) -> tuple[int, int, int, int]:
        v = self.model.config.vision_config
        return v.hidden_size, v.intermediate_size, v.depth, 3  # gated MLP

    def vision_dims(self, patch_grid: tuple[int, int] | None = None) -> VisionDims:
        """Qwen2-VL's sizes, with the windows that all blocks but ``fullatt_block_indexes`` attend in."""
        dims = super().vision_dims(patch_grid)
        v = self.model.config.vision_config
        h, w = patch_grid or (0, 0)
        units = v.window_size // v.spatial_merge_size // v.patch_size
        windows = window_patch_counts(h, w, v.spatial_merge_size, units)
        return replace(dims, window_patches=windows, full_attention_layers=len(v.fullatt_block_indexes))
