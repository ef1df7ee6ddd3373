"""LLaVA-OneVision family (HF ``LlavaOnevisionForConditionalGeneration``; LLaVA-Video loads into it).

Video tokens (transformers 5.23, ``LlavaOnevisionModel.get_video_features``): the SigLIP tower's
patches (P = (image_size/patch_size)^2, "full" strategy) go through the projector, are pooled 2x2
bilinearly to ceil(p/2) x ceil(p/2) per frame, and ONE ``image_newline`` follows the whole video:
``T * ceil(p/2)^2 + 1`` video tokens (D9). The per-frame global feature g_t is the mean of the
projector's input patches (D6). The text decoder is Qwen2: each layer builds its queries and keys
as ``input_layernorm -> q_proj/k_proj -> RoPE``, which :meth:`query_key_states` repeats.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from adatp.families.base import ModelAdapter, VideoLayout, VideoSpan, qwen_query_key_states, rope_rotate  # noqa: F401
from adatp.families.llava_onevision.processor import LlavaOnevisionProcessor
from adatp.errors import ConfigError, InputError, UnsupportedModelError
from adatp.ops.flops import VisionDims

#: attention implementations whose decode step works with per-layer cache lengths (docs/method.md, transformers behaviour).
#: Flash-attention reads non-contiguous position_ids as packed sequences, so it is left out.
SUPPORTED_ATTENTION = ("sdpa",)


class LlavaOnevisionAdapter(ModelAdapter):
    model_classes = ("LlavaOnevisionForConditionalGeneration",)
    model_types = ("llava_onevision",)
    processor = LlavaOnevisionProcessor
    tested_transformers = "5.23.0"
    default_segment_threshold = 0.90  # SigLIP tower, as FastVID uses (D6)

    #: newline layout; "row" describes LLaVA-NeXT's own 13x14 layout (D9) for FLOPs and tests.
    newline = "video_end"

    def check_model(self) -> None:
        cfg = self.model.config
        impl = getattr(self.text_config(), "_attn_implementation", None) or getattr(cfg, "_attn_implementation", None)
        if impl not in SUPPORTED_ATTENTION:
            raise UnsupportedModelError(
                f"attention implementation {impl!r} is not supported for pruning: decoding with per-layer "
                f"cache lengths needs one of {SUPPORTED_ATTENTION}; load the model with attn_implementation='sdpa'"
            )
        text = self.text_config()
        layer_types = getattr(text, "layer_types", None) or []
        if getattr(text, "use_sliding_window", False) or "sliding_attention" in layer_types:
            raise UnsupportedModelError(
                "sliding-window attention layers are not supported: their cache drops tokens by position"
            )
        for layer in self.decoder_layers():
            attn = getattr(layer, "self_attn", None)
            if attn is None or not all(hasattr(attn, n) for n in ("q_proj", "k_proj", "head_dim")):
                raise UnsupportedModelError(
                    f"decoder layer {type(layer).__name__} has no q_proj/k_proj/head_dim; "
                    "this adapter supports Qwen2/Llama-style text decoders"
                )

    # --- structure -------------------------------------------------------------------------

    def frame_feature_module(self) -> nn.Module:
        return self.model.model.multi_modal_projector

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        # "default" drops the tower's first token (a CLS, as in CLIP/DINOv2 towers) before the
        # projector: that token is then the frame's global feature. SigLIP towers ("full") have none.
        self.global_feature = "cls" if model.config.vision_feature_select_strategy == "default" else "patch_mean"

    def vision_tower(self) -> nn.Module:
        return self.model.model.vision_tower

    def vision_modules(self) -> tuple[nn.Module, nn.Module]:
        return self.vision_tower(), self.model.model.multi_modal_projector

    def newline_embedding(self) -> nn.Parameter:
        """(D,) the learned newline that closes the video block (D9)."""
        return self.model.model.image_newline

    # --- the video encoding, step by step (``get_video_features``), for training and analysis ----
    def run_tower(self, pixels: torch.Tensor):
        """The tower on (n, 3, S, S) frames, with every layer's hidden states, as the VLM calls it."""
        return self.vision_tower()(pixels, output_hidden_states=True)

    def patch_features(self, tower_output) -> torch.Tensor:
        """(n, P, d_v) the projector's input: the VLM's feature layer, its class token dropped under
        the ``default`` strategy (that token is then the frame's global feature)."""
        cfg = self.model.config
        patches = tower_output.hidden_states[cfg.vision_feature_layer]
        return patches[:, 1:] if cfg.vision_feature_select_strategy == "default" else patches

    def project_and_pool(self, features: torch.Tensor) -> torch.Tensor:
        """(n, P, d_v) patch features -> (n, g*g, D) video tokens of each frame: the projector, then the
        2x2 bilinear pooling (``get_video_features`` without the newline)."""
        inner = self.model.model
        return inner.apply_pooling(inner.multi_modal_projector(features))

    def synthetic_inputs(self, frames, text_tokens, tokens_per_frame=None, seed=0, text_before=4):
        """``input_ids`` with the video block (T * g^2 + 1 video tokens) after ``text_before`` random text
        ids, random pixels (1, T, 3, S, S); the grid is the config's (``tokens_per_frame`` must match it)."""
        cfg = self.model.config
        v = cfg.vision_config
        side = self.pooled_grid()
        if tokens_per_frame is not None and tokens_per_frame != side * side:
            raise ConfigError(f"this model takes {side * side} tokens a frame (fixed by its tower), not {tokens_per_frame}")
        gen = torch.Generator().manual_seed(seed)
        special = torch.tensor(sorted({cfg.video_token_index, cfg.image_token_index}))
        text = torch.randint(1000, min(cfg.text_config.vocab_size, 150000), (text_tokens,), generator=gen)
        text = torch.where(torch.isin(text, special), text + 1, text)
        before = min(text_before, max(0, text_tokens - 1))
        ids = torch.cat([text[:before], torch.full((frames * side * side + 1,), cfg.video_token_index), text[before:]])[None]
        pixels = torch.rand(1, frames, 3, v.image_size, v.image_size, generator=gen) * 2 - 1
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values_videos": pixels}

    def cls_features(self, tower_output) -> torch.Tensor | None:
        hidden = getattr(tower_output, "hidden_states", None)
        layer = self.model.config.vision_feature_layer
        if hidden is None or not isinstance(layer, int):
            return None
        return hidden[layer][:, 0]

    def vision_dims(self, patch_grid: tuple[int, int] | None = None) -> VisionDims:
        v = self.model.config.vision_config
        p = v.image_size // v.patch_size
        intermediate = getattr(v, "intermediate_size", None) or int(v.hidden_size * v.mlp_ratio)  # DINOv2: mlp_ratio
        return VisionDims(v.hidden_size, intermediate, v.num_hidden_layers, p * p)

    def grid_extent(self) -> tuple[float, float]:
        """The tower drops the pixels past its last whole patch (384 px / 14 px patches -> 27 patches = 378 px)."""
        v = self.model.config.vision_config
        covered = (v.image_size // v.patch_size) * v.patch_size / v.image_size
        return covered, covered

    @classmethod
    def resize_config_grid(cls, config, tokens_per_frame: int) -> None:
        """Resize the tower's frames to ``2 g`` patches a side so that they pool to ``g x g`` tokens."""
        side = math.isqrt(tokens_per_frame) if tokens_per_frame >= 1 else 0
        if side < 1 or side * side != tokens_per_frame:
            raise ConfigError(f"tokens per frame must be a square (the pooled grid is g x g), got {tokens_per_frame}")
        if cls.processor.tokens_per_frame(config) != tokens_per_frame:
            v = config.vision_config
            v.image_size = 2 * side * v.patch_size

    def pooled_grid(self) -> int:
        """ceil(p / 2): the side of the pooled per-frame grid (``apply_pooling``)."""
        v = self.model.config.vision_config
        return math.ceil((v.image_size // v.patch_size) / 2)

    @property
    def video_token_id(self) -> int:
        return int(self.model.config.video_token_id)

    # --- inputs ----------------------------------------------------------------------------
    def video_frames(self, kwargs: dict) -> int | None:
        """Frames of the call's video: from ``pixel_values_videos`` (B, T, 3, H, W) or, when
        ``generate()`` encoded the video beforehand, from ``mm_encoder_outputs["video"]``."""
        pixels = self.processor.video_pixels(kwargs)
        if pixels is not None:
            if pixels.ndim != 5:
                raise InputError(f"pixel_values_videos must be (batch, frames, 3, H, W), got {tuple(pixels.shape)}")
            if pixels.shape[0] != 1:
                raise InputError(f"adatp prunes one video per prompt; got {pixels.shape[0]} videos")
            return int(pixels.shape[1])
        encoded = (kwargs.get("mm_encoder_outputs") or {}).get("video")
        if encoded is None:
            return None
        feats = encoded.pooler_output  # (B, T*c + 1, D): grid tokens then one newline
        if feats.shape[0] != 1:
            raise InputError(f"adatp prunes one video per prompt; got {feats.shape[0]} videos")
        per_frame = self.pooled_grid() ** 2
        return (feats.shape[1] - 1) // per_frame

    def find_video(self, input_ids: torch.Tensor, num_frames: int) -> VideoSpan:
        if input_ids is None:
            raise InputError("pruning needs input_ids to locate the video tokens; inputs_embeds alone are not supported")
        g = self.pooled_grid()
        layout = VideoLayout(num_frames, g, g, self.newline)
        # Host sync: the video's place in the prompt decides every index below; once per prefill.
        positions = torch.nonzero(input_ids[0] == self.video_token_id).flatten().tolist()
        if len(positions) != layout.block_length:
            raise InputError(
                f"the prompt has {len(positions)} video tokens but {layout.num_frames} frames need "
                f"{layout.block_length} ({layout.num_frames} x {g}x{g} + newline); build inputs with adatp.prepare_inputs"
            )
        start = positions[0]
        if positions[-1] - start + 1 != len(positions):
            raise InputError("the video tokens are not contiguous: only one video per prompt is supported")
        return VideoSpan(start=start, layout=layout, seq_len=input_ids.shape[1])

    # --- attention importance ---------------------------------------------------------------
    def query_key_states(self, layer, hidden, position_embeddings, query_rows, apply_rope: bool = True):
        return qwen_query_key_states(layer, hidden, position_embeddings, query_rows, apply_rope)
