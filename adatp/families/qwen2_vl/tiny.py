"""Tiny Qwen2-VL models: the shipped config.json with only its sizes shrunk (Qwen2.5-VL and Qwen3-VL
subclass :class:`Qwen2VLTiny` and override its hooks).

Kept: M-RoPE and its section proportions, temporal patch size 2, spatial merge size 2, the patch size,
and what each successor adds (Qwen2.5-VL's window attention, Qwen3-VL's QK-norm, explicit head_dim,
interleaved M-RoPE and deepstack).
"""

from __future__ import annotations

from typing import Any, ClassVar

from adatp.errors import ConfigError
from adatp.models.tokenizer import IMAGE_PAD, QWEN2_VL_CHAT_TEMPLATE, QWEN_VL_SPECIAL_TOKENS, VIDEO_PAD, VISION_END, VISION_START

#: Qwen2-VL and Qwen2.5-VL: CLIP mean/std, 14 px patches; their video processors default to
#: 128*28*28 .. 768*28*28 pixels a frame and 2 fps (images: 56*56 .. 28*28*16384).
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class Qwen2VLTiny:
    #: tiny sizes; ``mrope_section`` keeps the real proportions at the tiny head_dim (16:24:24 of 64 -> 2:3:3 of 8).
    SIZES: ClassVar[dict[str, Any]] = dict(
        text_layers=4, hidden=64, heads=4, kv_heads=2, intermediate=128, head_dim=None, mrope_section=[2, 3, 3],
        vision_hidden=32, vision_layers=2, vision_heads=2, vision_intermediate=128,
    )
    #: sizes that are not positive integers (None: the default, or a width the family has not got).
    UNCHECKED_SIZES: ClassVar[tuple[str, ...]] = ("head_dim", "mrope_section")
    SPECIAL_TOKENS: ClassVar[tuple[str, ...]] = QWEN_VL_SPECIAL_TOKENS
    CHAT_TEMPLATE: ClassVar[str] = QWEN2_VL_CHAT_TEMPLATE
    #: the real checkpoints' preprocessing (their preprocessor_config.json / video_preprocessor_config.json).
    PREPROCESSOR: ClassVar[dict[str, Any]] = dict(
        image_mean=CLIP_MEAN, image_std=CLIP_STD, fps=2.0, processor_class="Qwen2VLProcessor",
        image_processor_type="Qwen2VLImageProcessor", video_processor_type="Qwen2VLVideoProcessor",
    )
    #: tiny frames: at most 8 x 8 patches of 14 px (112 x 112) a frame, at least 56 x 56.
    MIN_PIXELS: ClassVar[int] = 56 * 56
    MAX_PIXELS: ClassVar[int] = 112 * 112

    @classmethod
    def tiny_config(cls, data: dict[str, Any], token_ids: dict[str, int], vocab: int, **sizes: Any) -> dict[str, Any]:
        """``data`` (the shipped config dict, no model_type) with its sizes shrunk; ``token_ids`` maps
        token -> tiny id (and ``bos`` / ``eos``)."""
        unknown = sorted(set(sizes) - set(cls.SIZES))
        if unknown:
            raise ConfigError(f"unknown tiny size(s) {unknown}; valid: {sorted(cls.SIZES)}")
        s = dict(cls.SIZES, **sizes)
        ints = {k: v for k, v in s.items() if k not in cls.UNCHECKED_SIZES}
        bad = {k: v for k, v in ints.items() if not isinstance(v, int) or v < 1}
        if bad:
            raise ConfigError(f"tiny model sizes must be positive integers, got {bad}")
        head_dim = s["head_dim"] or s["hidden"] // s["heads"]
        if s["head_dim"] is None and s["hidden"] % s["heads"]:
            raise ConfigError(f"hidden={s['hidden']} must be a multiple of heads={s['heads']}")
        if s["heads"] % s["kv_heads"]:
            raise ConfigError(f"heads={s['heads']} must be a multiple of kv_heads={s['kv_heads']} (grouped-query attention)")
        rotary = int(head_dim * data.get("text_config", {}).get("rope_parameters", {}).get("partial_rotary_factor", 1.0))
        if sum(s["mrope_section"]) * 2 != rotary:
            raise ConfigError(f"mrope_section {s['mrope_section']} must sum to the rotary dims / 2 = {rotary // 2}")
        if s["vision_hidden"] % s["vision_heads"]:
            raise ConfigError(f"vision_hidden={s['vision_hidden']} must be a multiple of vision_heads={s['vision_heads']}")
        text = dict(
            hidden_size=s["hidden"], intermediate_size=s["intermediate"], num_hidden_layers=s["text_layers"],
            num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"], vocab_size=vocab,
            bos_token_id=token_ids["bos"], eos_token_id=token_ids["eos"],
        )
        multimodal = dict(
            image_token_id=token_ids[IMAGE_PAD], video_token_id=token_ids[VIDEO_PAD],
            vision_start_token_id=token_ids[VISION_START], vision_end_token_id=token_ids[VISION_END],
        )
        cls.shrink_text(data, text, multimodal, s, head_dim)
        cls.shrink_vision(data["vision_config"], s)
        return data

    @classmethod
    def shrink_text(cls, data: dict, text: dict, multimodal: dict, s: dict, head_dim: int) -> None:
        """Qwen2-VL / Qwen2.5-VL: a flat config (text sizes at the top level)."""
        data.update(text, max_window_layers=s["text_layers"], torch_dtype="float32", **multimodal)
        data["rope_scaling"]["mrope_section"] = list(s["mrope_section"])
        data.pop("vision_token_id", None)

    @classmethod
    def shrink_vision(cls, vision: dict, s: dict) -> None:
        vision.update(embed_dim=s["vision_hidden"], depth=s["vision_layers"], num_heads=s["vision_heads"],
                      mlp_ratio=s["vision_intermediate"] // s["vision_hidden"], hidden_size=s["hidden"])

    @classmethod
    def preprocessor_files(cls, config: Any) -> dict[str, dict[str, Any]]:
        """The tiny directory's image and video preprocessor configs (pixel limits scaled to tiny frames)."""
        pre = cls.PREPROCESSOR
        v = config.vision_config
        common = {
            "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": pre["image_mean"], "image_std": pre["image_std"], "resample": 3,
            "rescale_factor": 1 / 255, "patch_size": v.patch_size, "temporal_patch_size": v.temporal_patch_size,
            "merge_size": v.spatial_merge_size, "processor_class": pre["processor_class"],
        }
        size = {"shortest_edge": cls.MIN_PIXELS, "longest_edge": cls.MAX_PIXELS}
        image = dict(common, min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"], size=size,
                     image_processor_type=pre["image_processor_type"])
        video = dict(common, size=size, fps=pre["fps"], do_sample_frames=False,
                     video_processor_type=pre["video_processor_type"])
        return {"preprocessor_config.json": image, "video_preprocessor_config.json": video}
