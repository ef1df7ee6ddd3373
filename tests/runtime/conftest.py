"""A tiny LLaVA-OneVision (Qwen2 decoder with GQA, SigLIP tower, 4x4 pooled grid) and raw-id inputs."""

import pytest
import torch
from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

VIDEO_ID, IMAGE_ID, VOCAB = 299, 298, 300


def build_tiny(seed: int = 0, layers: int = 6, attn: str = "sdpa") -> LlavaOnevisionForConditionalGeneration:
    cfg = LlavaOnevisionConfig(
        text_config=dict(
            model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
            num_attention_heads=4, num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=4096,
        ),
        vision_config=dict(
            model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, image_size=112, patch_size=14, vision_use_head=False,
        ),
        image_token_index=IMAGE_ID,
        video_token_index=VIDEO_ID,
    )
    cfg._attn_implementation = attn
    torch.manual_seed(seed)
    return LlavaOnevisionForConditionalGeneration(cfg).eval()


def make_inputs(num_frames: int = 8, seed: int = 1, prefix: int = 5, question: int = 12) -> dict:
    """Prompt = prefix ids, T*16 + 1 video tokens, question ids; random frames."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(1, num_frames, 3, 112, 112, generator=g)
    # Repeat frames in runs of two so that segmentation and dedup have something to find.
    pixels[:, 1::2] = pixels[:, 0::2] + 0.05 * torch.randn(pixels[:, 1::2].shape, generator=g)
    ids = torch.cat(
        [
            torch.randint(0, 290, (1, prefix), generator=g),
            torch.full((1, num_frames * 16 + 1), VIDEO_ID),
            torch.randint(0, 290, (1, question), generator=g),
        ],
        dim=1,
    )
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values_videos": pixels}


@pytest.fixture(scope="module")
def tiny_ov():
    return build_tiny()


@pytest.fixture(scope="module")
def video_inputs():
    return make_inputs()
