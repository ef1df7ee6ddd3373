"""Qwen2.5-VL family (HF ``Qwen2_5_VLForConditionalGeneration``): Qwen2-VL's adapter, another tower.

The language side is Qwen2-VL's (same decoder, same M-RoPE layout); ``get_rope_index`` also spaces
the temporal positions by ``second_per_grid_ts * tokens_per_second``, which the runtime never
recomputes: it keeps the ids the model built. The tower has RMSNorm, a gated SiLU MLP
(gate/up/down) and window attention in all but ``fullatt_block_indexes``.
"""

from __future__ import annotations

from adatp.adapters.base import register_adapter
from adatp.adapters.qwen2_vl import Qwen2VLAdapter


@register_adapter
class Qwen2_5_VLAdapter(Qwen2VLAdapter):
    model_classes = ("Qwen2_5_VLForConditionalGeneration",)
    model_types = ("qwen2_5_vl",)

    def _vision_sizes(self) -> tuple[int, int, int, int]:
        v = self.model.config.vision_config
        return v.hidden_size, v.intermediate_size, v.depth, 3  # gated MLP
