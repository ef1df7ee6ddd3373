"""Tiny GLM-4.1V models (GLM-4.6V's subclass these hooks): the shipped config with only its sizes shrunk.

Kept: qkv bias, partial rotary 0.5 with the M-RoPE proportions 8:12:12 (2:3:3 at the tiny head_dim of
32: 16 rotary dims), the gated-MLP tower with its downsampling conv and merger, temporal patch 2,
spatial merge 2, 14 px patches, no tied head. With 112 px frames a token grid is 4 x 4 = 16 tokens.
"""

from __future__ import annotations

from typing import Any, ClassVar

from adatp.errors import ConfigError
from adatp.families.glm4v.processor import BEGIN_IMAGE, END_IMAGE, IMAGE_TOKEN, VIDEO_TOKEN

BEGIN_VIDEO, END_VIDEO = "<|begin_of_video|>", "<|end_of_video|>"
#: GLM's chat template, media part: ``[gMASK]<sop>`` is left out (not in the tiny vocabulary).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|begin_of_image|><|image|><|end_of_image|>"
    "{% elif content['type'] == 'video' %}<|begin_of_video|><|video|><|end_of_video|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class Glm4vTiny:
    SIZES: ClassVar[dict[str, Any]] = dict(
        text_layers=4, hidden=128, heads=4, kv_heads=2, intermediate=128, mrope_section=[2, 3, 3],
        vision_hidden=32, vision_layers=2, vision_heads=2, vision_intermediate=64,
    )
    #: tokens the tiny tokenizer adds for this family (after the shared ones, so no other id moves).
    SPECIAL_TOKENS: ClassVar[tuple[str, ...]] = (BEGIN_IMAGE, END_IMAGE, BEGIN_VIDEO, END_VIDEO, IMAGE_TOKEN, VIDEO_TOKEN)
    CHAT_TEMPLATE: ClassVar[str] = CHAT_TEMPLATE
    PROCESSOR_CLASSES: ClassVar[dict[str, str]] = dict(video_processor_type="Glm4vVideoProcessor",
                                                       processor_class="Glm4vProcessor")

    @classmethod
    def tiny_config(cls, data: dict[str, Any], token_ids: dict[str, int], vocab: int, **sizes: Any) -> dict[str, Any]:
        """``data`` (the shipped config dict) with its sizes shrunk; ``token_ids`` maps token -> tiny id."""
        return _tiny_config(cls.SIZES, data, token_ids, vocab, **sizes)

    @classmethod
    def preprocessor_files(cls, config: Any) -> dict[str, dict[str, Any]]:
        """The tiny directory's ``video_preprocessor_config.json`` (pixel limits scaled to tiny frames)."""
        v = config.vision_config
        video = {
            "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "resample": 3, "rescale_factor": 1 / 255,
            "patch_size": v.patch_size, "temporal_patch_size": v.temporal_patch_size, "merge_size": v.spatial_merge_size,
            "size": {"shortest_edge": 56 * 56, "longest_edge": 16 * 112 * 112}, "fps": 2, "do_sample_frames": False,
            **cls.PROCESSOR_CLASSES,
        }
        return {"video_preprocessor_config.json": video}


def _tiny_config(defaults: dict[str, Any], data: dict[str, Any], token_ids: dict[str, int], vocab: int,
                 **sizes: Any) -> dict[str, Any]:
    unknown = sorted(set(sizes) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown tiny size(s) {unknown}; valid: {sorted(defaults)}")
    s = dict(defaults, **sizes)
    ints = {k: v for k, v in s.items() if k != "mrope_section"}
    bad = {k: v for k, v in ints.items() if not isinstance(v, int) or v < 1}
    if bad:
        raise ConfigError(f"tiny model sizes must be positive integers, got {bad}")
    if s["hidden"] % s["heads"] or s["heads"] % s["kv_heads"]:
        raise ConfigError(f"hidden={s['hidden']}, heads={s['heads']}, kv_heads={s['kv_heads']} do not divide")
    rotary = s["hidden"] // s["heads"] * data["text_config"]["rope_parameters"]["partial_rotary_factor"]
    if sum(s["mrope_section"]) * 2 != rotary:
        raise ConfigError(f"mrope_section {s['mrope_section']} must sum to half the rotary dims ({rotary // 2:g})")
    text = data["text_config"]
    text.update(hidden_size=s["hidden"], intermediate_size=s["intermediate"], num_hidden_layers=s["text_layers"],
                num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"], vocab_size=vocab,
                eos_token_id=token_ids["eos"], pad_token_id=token_ids["bos"], dtype="float32")
    text["rope_parameters"]["mrope_section"] = list(s["mrope_section"])
    data["vision_config"].update(hidden_size=s["vision_hidden"], depth=s["vision_layers"], num_heads=s["vision_heads"],
                                 intermediate_size=s["vision_intermediate"], out_hidden_size=s["hidden"])
    data.update(image_token_id=token_ids[IMAGE_TOKEN], video_token_id=token_ids[VIDEO_TOKEN],
                image_start_token_id=token_ids[BEGIN_IMAGE], image_end_token_id=token_ids[END_IMAGE],
                video_start_token_id=token_ids[BEGIN_VIDEO], video_end_token_id=token_ids[END_VIDEO],
                torch_dtype="float32")
    return data

