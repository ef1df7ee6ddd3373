"""Tiny Qwen2.5-VL models: Qwen2-VL's recipe with its tower (window attention, the last block full)."""

from __future__ import annotations

from adatp.families.qwen2_vl.tiny import Qwen2VLTiny


class Qwen2_5_VLTiny(Qwen2VLTiny):
    SIZES = dict(Qwen2VLTiny.SIZES, vision_intermediate=64)
    PREPROCESSOR = dict(Qwen2VLTiny.PREPROCESSOR, processor_class="Qwen2_5_VLProcessor")

    @classmethod
    def shrink_vision(cls, vision: dict, s: dict) -> None:
        """Window attention in every block but the last (as 7, 15, 23, 31 of 32)."""
        vision.update(hidden_size=s["vision_hidden"], intermediate_size=s["vision_intermediate"], depth=s["vision_layers"],
                      num_heads=s["vision_heads"], out_hidden_size=s["hidden"], fullatt_block_indexes=[s["vision_layers"] - 1])
