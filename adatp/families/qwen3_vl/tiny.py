"""Tiny Qwen3-VL models: a nested text config with QK-norm and explicit head_dim, interleaved M-RoPE
(24:20:20 of 64 -> 6:5:5 of 16), and one deepstack level per vision block (as the 8B's three at blocks
8, 16, 24 of 27). Real preprocessing: mean/std 0.5, 16 px patches, video 4096 .. 25165824 pixels, 2 fps."""

from __future__ import annotations

from adatp.families.qwen2_vl.tiny import Qwen2VLTiny
from adatp.models.tokenizer import QWEN3_VL_CHAT_TEMPLATE


class Qwen3VLTiny(Qwen2VLTiny):
    SIZES = dict(Qwen2VLTiny.SIZES, head_dim=32, mrope_section=[6, 5, 5], vision_layers=3, vision_intermediate=64)
    CHAT_TEMPLATE = QWEN3_VL_CHAT_TEMPLATE
    PREPROCESSOR = dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], fps=2.0, processor_class="Qwen3VLProcessor",
                        image_processor_type="Qwen2VLImageProcessor", video_processor_type="Qwen3VLVideoProcessor")
    MIN_PIXELS = 64 * 64
    MAX_PIXELS = 16 * 128 * 128  # the whole video

    @classmethod
    def shrink_text(cls, data: dict, text: dict, multimodal: dict, s: dict, head_dim: int) -> None:
        data["text_config"].update(text, head_dim=head_dim, dtype="float32")
        data["text_config"]["rope_scaling"]["mrope_section"] = list(s["mrope_section"])
        data.update(multimodal)

    @classmethod
    def shrink_vision(cls, vision: dict, s: dict) -> None:
        depth = s["vision_layers"]
        vision.update(hidden_size=s["vision_hidden"], intermediate_size=s["vision_intermediate"], depth=depth,
                      num_heads=s["vision_heads"], out_hidden_size=s["hidden"], num_position_embeddings=64,
                      deepstack_visual_indexes=list(range(min(3, depth))))
