"""InternVL3 / InternVL3.5 family (HF ``InternVLForConditionalGeneration``).

Video tokens (transformers 5.23, ``InternVLModel.get_image_features``): every frame is one image tile
(InternVL's video inference: one tile a frame, no thumbnail). The InternViT tower's patches (its
class token dropped, strategy ``default``) are pixel-shuffled by ``downsample_ratio`` (0.5: each 2 x 2
patches become one token of 4x the width) and projected: ``(S/p * r)^2`` tokens a frame (256 at 448 px),
in (y, x) order. In the prompt each frame's tokens are a ``<IMG_CONTEXT>`` run inside
``Frame{i}: <img> ... </img>`` with a newline between frames, so the layout is ``interleaved``: the
frame labels and markers are text, never pruned, in no segment. The frame's global feature g_t is the
mean of its projected tokens (``token_mean``).

Positions are 1-D (``arange``) as in LLaVA; the language model is Qwen2 (InternVL3) or Qwen3
(InternVL3.5, with per-head ``q_norm``/``k_norm`` before RoPE), so compact positions work.
"""

from __future__ import annotations

import torch
from torch import nn

from adatp.errors import ConfigError, InputError
from adatp.families.base import ModelAdapter, VideoSpan, interleaved_span, qwen_query_key_states
from adatp.families.internvl.processor import InternVLProcessor, grid_side, side_of
from adatp.ops.flops import VisionDims


class InternVLAdapter(ModelAdapter):
    model_classes = ("InternVLForConditionalGeneration",)
    model_types = ("internvl",)
    tested_transformers = "5.23.0"
    # Not calibrated for InternViT (D6 asks for a training split): the SigLIP value, unless the config
    # carries adatp_segment_threshold (`adatp analyze segments` measures one).
    default_segment_threshold = 0.90
    global_feature = "token_mean"
    processor = InternVLProcessor
    #: text ids standing for ``Frame{i}: <img>`` and ``</img>\n`` around each synthetic frame.
    synthetic_label_tokens = 4

    def check_model(self) -> None:
        self.check_sdpa_decoder(" (InternVL with a Qwen2/Qwen3 language model is supported)")

    # --- structure -------------------------------------------------------------------------
    def vision_tower(self) -> nn.Module:
        return self.model.model.vision_tower

    def vision_modules(self) -> tuple[nn.Module, nn.Module]:
        return self.vision_tower(), self.model.model.multi_modal_projector

    def vision_dims(self, patch_grid: tuple[int, int] | None = None) -> VisionDims:
        """InternViT on one 448 px tile a frame: its patches plus the class token."""
        v = self.model.config.vision_config
        patches = (side_of(v.image_size) // side_of(v.patch_size)) ** 2
        return VisionDims(v.hidden_size, v.intermediate_size, v.num_hidden_layers, patches + 1)

    @property
    def video_token_id(self) -> int:
        return self.processor.video_token_id(self.model.config)

    def synthetic_inputs(self, frames, text_tokens, tokens_per_frame=None, seed=0, text_before=4):
        """``input_ids`` with ``frames`` tiles, each ``<label ids> <img> context tokens </img>`` after
        ``text_before`` random text ids; random pixels (T, 3, S, S). The grid is the config's."""
        cfg = self.model.config
        side = grid_side(cfg)
        if tokens_per_frame is not None and tokens_per_frame != side * side:
            raise ConfigError(f"this model takes {side * side} tokens a frame (fixed by its tower), not {tokens_per_frame}")
        gen = torch.Generator().manual_seed(seed)
        context = cfg.image_token_id
        lo, hi = min(1000, context // 2), min(self.text_config().vocab_size, 150000)
        text = torch.randint(lo, hi, (text_tokens,), generator=gen)
        text = torch.where(text == context, lo, text)
        parts = [text[: min(text_before, max(0, text_tokens - 1))]]
        for _ in range(frames):
            label = torch.randint(lo, hi, (self.synthetic_label_tokens,), generator=gen)
            parts += [torch.where(label == context, lo, label), torch.full((side * side,), context)]
        parts.append(text[parts[0].numel():])
        ids = torch.cat(parts)[None]
        size = side_of(cfg.vision_config.image_size)
        pixels = torch.rand(frames, 3, size, size, generator=gen) * 2 - 1
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels}

    # --- inputs ----------------------------------------------------------------------------
    def video_frames(self, kwargs: dict) -> int | None:
        """Tiles of the call: ``pixel_values`` (T, 3, S, S) or, when ``generate()`` encoded them first,
        ``mm_encoder_outputs["image"]`` (T, c, D). Every tile is a frame of the one video."""
        pixels = self.processor.video_pixels(kwargs)
        if pixels is not None:
            if pixels.ndim != 4:
                raise InputError(f"pixel_values must be (frames, 3, H, W), got {tuple(pixels.shape)}")
            return int(pixels.shape[0])
        encoded = (kwargs.get("mm_encoder_outputs") or {}).get("image")
        if encoded is None:
            return None
        return int(encoded.pooler_output.shape[0])

    def find_video(self, input_ids: torch.Tensor, num_frames: int) -> VideoSpan:
        if input_ids is None:
            raise InputError("pruning needs input_ids to locate the video tokens; inputs_embeds alone are not supported")
        side = grid_side(self.model.config)
        per_frame = side * side
        # Host sync: the video's place in the prompt decides every index below; once per prefill.
        positions = torch.nonzero(input_ids[0] == self.video_token_id).flatten().tolist()
        if len(positions) != num_frames * per_frame:
            raise InputError(
                f"the prompt has {len(positions)} video tokens but {num_frames} frames need {num_frames * per_frame} "
                f"({num_frames} x {side}x{side}); build inputs with adatp.prepare_inputs"
            )
        return interleaved_span(positions, num_frames, side, side, input_ids.shape[1], unit="frame")

    # --- attention importance ---------------------------------------------------------------
    def query_key_states(self, layer, hidden, position_embeddings, query_rows, apply_rope: bool = True):
        qk_norm = hasattr(layer.self_attn, "q_norm")  # Qwen3 (InternVL3.5); Qwen2 (InternVL3) has none
        return qwen_query_key_states(layer, hidden, position_embeddings, query_rows, apply_rope, qk_norm=qk_norm)
