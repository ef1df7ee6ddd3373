"""One table of model families (peft ``TEST_CASES`` style): every family-wide test is parametrised over it.

Each row names a shipped architecture; its tiny model is that config with only the sizes shrunk
(:func:`adatp.models.tiny.tiny_model`), and :func:`make_inputs` builds a raw-id prompt in the
family's own layout, random frames included, with no tokenizer or processor.
"""

from __future__ import annotations

import functools

import torch

from adatp.models.tiny import tiny_model

#: (id, architecture name, tiny-size overrides)
FAMILIES = [
    ("llava-ov", "llava-onevision-qwen2-0.5b-ov-hf", {"text_layers": 6}),
    ("llava-video", "llava-video-7b-qwen2-hf", {"text_layers": 6}),
    ("qwen2-vl", "qwen2-vl-7b-instruct", {"text_layers": 6}),
    ("qwen2.5-vl", "qwen2.5-vl-7b-instruct", {"text_layers": 6}),
    ("qwen3-vl", "qwen3-vl-8b-instruct", {"text_layers": 6}),
    ("internvl3.5", "internvl3_5-8b-hf", {"text_layers": 6}),
    ("glm-4.6v", "glm-4.6v-flash", {"text_layers": 6}),
    # Qwen3.5: layers 0-2 and 4-5 Gated DeltaNet (linear attention), layer 3 full attention.
    ("qwen3.5", "qwen3.5-27b", {"text_layers": 6}),
    ("qwen3.5-moe", "qwen3.5-35b-a3b", {"text_layers": 6}),
]
FAMILY_IDS = [f[0] for f in FAMILIES]
#: families with linear-attention layers, and the schedule their table tests run (a stage at a
#: linear layer, 2, and one at the full-attention layer, 3).
HYBRID_SCHEDULE = {"qwen3.5": [(0, 0.5), (2, 0.3), (3, 0.15)], "qwen3.5-moe": [(0, 0.5), (2, 0.3), (3, 0.15)]}
QWEN_IDS = [i for i in FAMILY_IDS if i.startswith("qwen")]
#: families whose positions are M-RoPE ids from the model's get_rope_index (no compact positions)
MROPE_IDS = [*QWEN_IDS, "glm-4.6v"]
_BY_ID = {f[0]: f for f in FAMILIES}
#: families whose grids come with a timestamp each (Qwen3-VL's layout; Qwen3.5 uses the same processor).
TIMESTAMPED = ("qwen3_vl", "qwen3_5", "qwen3_5_moe")
#: Qwen-VL tiny frames: 8 x 8 patches, merged 2 x 2 -> a 4 x 4 grid of 16 tokens per temporal grid.
PATCHES = 8


@functools.lru_cache(maxsize=None)
def _cached_model(family_id: str, attn: str):
    _, name, overrides = _BY_ID[family_id]
    model = tiny_model(name, seed=0, **overrides)
    if attn != "sdpa":
        model.config._attn_implementation = attn
        model.config.text_config._attn_implementation = attn
        model.set_attn_implementation(attn)
    return model


def family_model(family_id: str, attn: str = "sdpa"):
    """The family's tiny model (cached per test session: never modify its weights)."""
    return _cached_model(family_id, attn)


def fresh_model(family_id: str, **overrides):
    _, name, defaults = _BY_ID[family_id]
    return tiny_model(name, seed=0, **dict(defaults, **overrides))


def video_token_id(model) -> int:
    """The id of the tokens that receive the video's features (InternVL: the image context token)."""
    cfg = model.config
    return int(cfg.image_token_id if cfg.model_type in ("internvl", "glm4v", "glm46v") else cfg.video_token_id)


def _ids(n: int, g: torch.Generator, high: int = 900) -> torch.Tensor:
    return torch.randint(0, high, (1, n), generator=g)


def make_inputs(
    model, num_frames: int = 8, seed: int = 1, prefix: int = 5, question: int = 12, second_per_grid: float = 1.0
) -> dict:
    """A prompt ``prefix ids, video block, question ids`` with random frames, in the family's layout.

    Frames repeat in pairs of grids (a little noise) so that segmentation and dedup find something.
    LLaVA: ``T * 16 + 1`` video tokens. InternVL: per frame a label (random text), 16 context tokens,
    2 text ids. Qwen2/2.5-VL: ``<|vision_start|>``, ``T/2 * 16`` pads,
    ``<|vision_end|>`` (two frames per temporal grid). Qwen3-VL: per grid a timestamp (random text of
    3 or 4 ids), ``<|vision_start|>``, 16 pads, ``<|vision_end|>``. GLM: inside the video markers, per grid
    ``<|begin_of_image|>``, 16 image tokens, ``<|end_of_image|>``, the seconds (1 or 2 random ids).
    """
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    if cfg.model_type == "llava_onevision":
        size = cfg.vision_config.image_size
        pixels = torch.randn(1, num_frames, 3, size, size, generator=g)
        pixels[:, 1::2] = pixels[:, 0::2] + 0.05 * torch.randn(pixels[:, 1::2].shape, generator=g)
        patches = size // cfg.vision_config.patch_size
        per_frame = ((patches + 1) // 2) ** 2
        ids = torch.cat([_ids(prefix, g), torch.full((1, num_frames * per_frame + 1), cfg.video_token_id), _ids(question, g)], 1)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values_videos": pixels}
    if cfg.model_type == "internvl":
        size = cfg.vision_config.image_size[0]
        pixels = torch.randn(num_frames, 3, size, size, generator=g)
        pixels[1::2] = pixels[0::2] + 0.05 * torch.randn(pixels[1::2].shape, generator=g)
        per_frame = (size // cfg.vision_config.patch_size[0] // 2) ** 2
        parts = [_ids(prefix, g)]
        for t in range(num_frames):  # "Frame{t}: <img>" as 3 or 4 text ids, the tile's tokens, "</img>\n" as 2
            parts += [_ids(3 + t % 2, g), torch.full((1, per_frame), cfg.image_token_id), _ids(2, g)]
        ids = torch.cat([*parts, _ids(question, g)], 1)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels}
    v = cfg.vision_config
    tp, merge, p = v.temporal_patch_size, v.spatial_merge_size, v.patch_size
    grids = num_frames // tp
    # Patches in the processor's order: (t, h/merge, w/merge, merge, merge) rows of (C * tp * p * p).
    pixels = torch.randn(grids, PATCHES * PATCHES, 3 * tp * p * p, generator=g)
    pairs = grids // 2
    pixels[1 : 2 * pairs : 2] = pixels[0 : 2 * pairs : 2] + 0.05 * torch.randn(pixels[1 : 2 * pairs : 2].shape, generator=g)
    pixels = pixels.reshape(grids * PATCHES * PATCHES, -1)
    per_grid = (PATCHES // merge) ** 2
    pad = video_token_id(model)
    parts = [_ids(prefix, g)]
    if cfg.model_type in ("glm4v", "glm46v"):  # per grid <|begin_of_image|> pads <|end_of_image|> seconds
        parts.append(torch.tensor([[cfg.video_start_token_id]]))
        for t in range(grids):
            parts += [torch.tensor([[cfg.image_start_token_id]]), torch.full((1, per_grid), pad),
                      torch.tensor([[cfg.image_end_token_id]]), _ids(1 + t % 2, g)]
        parts.append(torch.tensor([[cfg.video_end_token_id]]))
    elif cfg.model_type in TIMESTAMPED:
        start, end = cfg.vision_start_token_id, cfg.vision_end_token_id
        for t in range(grids):
            parts += [_ids(3 + t % 2, g), torch.tensor([[start]]), torch.full((1, per_grid), pad), torch.tensor([[end]])]
    else:
        start, end = cfg.vision_start_token_id, cfg.vision_end_token_id
        parts += [torch.tensor([[start]]), torch.full((1, grids * per_grid), pad), torch.tensor([[end]])]
    parts.append(_ids(question, g))
    ids = torch.cat(parts, 1)
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values_videos": pixels,
        "video_grid_thw": torch.tensor([[grids, PATCHES, PATCHES]]),
        "mm_token_type_ids": (ids == pad).long() * 2,
    }
    if cfg.model_type == "qwen2_5_vl":
        inputs["second_per_grid_ts"] = torch.tensor([second_per_grid])  # 1.0: 2 frames a grid at 2 fps
    return inputs
