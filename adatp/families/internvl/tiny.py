"""Tiny InternVL models: the shipped config with only its sizes shrunk, and what a tiny directory holds.

Kept: the InternViT tower (LayerNorm, layer scale, class token, qkv bias), pixel shuffle 0.5, the
GELU projector, the Qwen3 decoder with QK-norm and explicit ``head_dim``, untied head. With the
defaults a frame is 112 px = 8 x 8 patches of 14 px, shuffled to 4 x 4 = 16 tokens.
"""

from __future__ import annotations

from typing import Any

from adatp.errors import ConfigError
from adatp.families.internvl.processor import CONTEXT_IMAGE, END_IMAGE, START_IMAGE

SIZES: dict[str, Any] = dict(text_layers=4, hidden=64, heads=4, kv_heads=2, intermediate=128, head_dim=16,
                             vision_hidden=32, vision_layers=2, vision_heads=2, vision_intermediate=64, image_size=112)
#: tokens the tiny tokenizer adds for this family (after the shared ones, so no other id moves).
SPECIAL_TOKENS = (START_IMAGE, END_IMAGE, CONTEXT_IMAGE)
#: InternVL3.5's chat template, media part: the video as ``<video>\n`` before the text of its turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<image>\n{% elif content['type'] == 'video' %}<video>\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
#: InternVL's video preprocessing (ImageNet mean/std, bicubic, the tower's square).
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def tiny_config(data: dict[str, Any], token_ids: dict[str, int], vocab: int, **sizes: Any) -> dict[str, Any]:
    """``data`` (the shipped config dict) with its sizes shrunk; ``token_ids`` maps token -> tiny id."""
    unknown = sorted(set(sizes) - set(SIZES))
    if unknown:
        raise ConfigError(f"unknown tiny size(s) {unknown}; valid: {sorted(SIZES)}")
    s = dict(SIZES, **sizes)
    bad = {k: v for k, v in s.items() if not isinstance(v, int) or v < 1}
    if bad:
        raise ConfigError(f"tiny model sizes must be positive integers, got {bad}")
    if s["heads"] % s["kv_heads"]:
        raise ConfigError(f"heads={s['heads']} must be a multiple of kv_heads={s['kv_heads']} (grouped-query attention)")
    if s["vision_hidden"] % s["vision_heads"]:
        raise ConfigError(f"vision_hidden={s['vision_hidden']} must be a multiple of vision_heads={s['vision_heads']}")
    patch = data["vision_config"]["patch_size"][0]
    if s["image_size"] % (2 * patch):
        raise ConfigError(f"image_size={s['image_size']} must be a multiple of 2 x the patch size {patch} (pixel shuffle)")
    data["text_config"].update(
        hidden_size=s["hidden"], intermediate_size=s["intermediate"], num_hidden_layers=s["text_layers"],
        max_window_layers=s["text_layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
        head_dim=s["head_dim"], vocab_size=vocab, bos_token_id=token_ids["bos"], eos_token_id=token_ids["eos"],
        dtype="float32",
    )
    data["vision_config"].update(
        hidden_size=s["vision_hidden"], intermediate_size=s["vision_intermediate"], num_hidden_layers=s["vision_layers"],
        num_attention_heads=s["vision_heads"], image_size=[s["image_size"]] * 2,
    )
    data.update(image_token_id=token_ids[CONTEXT_IMAGE], image_seq_length=(s["image_size"] // patch // 2) ** 2,
                torch_dtype="float32")
    return data


def preprocessor_files(config: Any) -> dict[str, dict[str, Any]]:
    """The tiny directory's ``video_preprocessor_config.json``: one tile a frame at the tower's size."""
    size = int(config.vision_config.image_size[0])
    video = {
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD, "resample": 3, "rescale_factor": 1 / 255,
        "size": {"height": size, "width": size}, "do_sample_frames": False,
        "video_processor_type": "InternVLVideoProcessor", "processor_class": "InternVLProcessor",
    }
    return {"video_preprocessor_config.json": video}
