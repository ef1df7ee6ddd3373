"""Tiny Qwen3.5 / Qwen3.5-MoE models: Qwen3-VL's recipe with Qwen3.5's decoder.

Rotary on a quarter of head_dim (64 -> 16 dims; 11:11:10 of 32 -> 3:3:2 of 8), the real layer pattern
(three ``linear_attention`` layers, then one ``full_attention``) cut to ``text_layers``, small Gated
DeltaNet heads, small experts (MoE), and a tower without deepstack. Preprocessing is Qwen3-VL's.
"""

from __future__ import annotations

from typing import Any

import torch

from adatp.families.qwen3_vl.tiny import Qwen3VLTiny


class Qwen3_5Tiny(Qwen3VLTiny):
    SIZES = dict(Qwen3VLTiny.SIZES, head_dim=64, mrope_section=[3, 3, 2], linear_key_heads=2, linear_value_heads=4,
                 linear_head_dim=16, vision_layers=2)

    @classmethod
    def shrink_text(cls, data: dict, text: dict, multimodal: dict, s: dict, head_dim: int) -> None:
        t = data["text_config"]
        pattern = t["layer_types"]
        t.update(text, head_dim=head_dim, dtype="float32",
                 layer_types=[pattern[i % len(pattern)] for i in range(s["text_layers"])],
                 linear_num_key_heads=s["linear_key_heads"], linear_num_value_heads=s["linear_value_heads"],
                 linear_key_head_dim=s["linear_head_dim"], linear_value_head_dim=s["linear_head_dim"])
        t["rope_parameters"]["mrope_section"] = list(s["mrope_section"])
        data.update(multimodal)

    @classmethod
    def shrink_vision(cls, vision: dict, s: dict) -> None:
        vision.update(hidden_size=s["vision_hidden"], intermediate_size=s["vision_intermediate"], depth=s["vision_layers"],
                      num_heads=s["vision_heads"], out_hidden_size=s["hidden"], num_position_embeddings=64)

    @staticmethod
    def adjust_weights(model: Any) -> None:
        """Gated DeltaNet decay rates A of 0.002 .. 0.05 a token. transformers' random init draws A up to
        16, which forgets everything within a token, so the recurrent state would hold only the last
        token and no test could see which tokens a layer was fed."""
        with torch.no_grad():
            for module in model.modules():
                a_log = getattr(module, "A_log", None)
                if isinstance(a_log, torch.nn.Parameter):
                    a_log.copy_(torch.linspace(0.002, 0.05, a_log.numel()).log().view_as(a_log))


class Qwen3_5MoeTiny(Qwen3_5Tiny):
    """Every layer's MLP a sparse block: 4 experts, 2 a token, a shared expert of the experts' width."""

    SIZES = dict(Qwen3_5Tiny.SIZES, intermediate=None, experts=4, experts_per_token=2, expert_intermediate=32)
    UNCHECKED_SIZES = (*Qwen3_5Tiny.UNCHECKED_SIZES, "intermediate")  # no dense MLP width

    @classmethod
    def shrink_text(cls, data: dict, text: dict, multimodal: dict, s: dict, head_dim: int) -> None:
        super().shrink_text(data, text, multimodal, s, head_dim)
        t = data["text_config"]
        t.pop("intermediate_size", None)
        t.update(num_experts=s["experts"], num_experts_per_tok=s["experts_per_token"],
                 moe_intermediate_size=s["expert_intermediate"], shared_expert_intermediate_size=s["expert_intermediate"])
