"""Qwen3-VL family (HF ``Qwen3VLForConditionalGeneration``): Qwen2-VL's adapter with three changes.

- Layout (transformers 5.23 ``Qwen3VLProcessor.replace_video_token``): every token grid (two
  frames) is its own ``<{t:.1f} seconds><|vision_start|> pads <|vision_end|>`` run, so text sits
  between the grids. The block runs from the first grid token to the last; the timestamp and marker
  tokens inside it are text: never pruned, in no segment, and not query rows (D15).
- Decoder: Qwen3 attention normalises queries and keys per head (``q_norm``/``k_norm``) before RoPE;
  interleaved M-RoPE is folded into one cos/sin by the rotary module as in Qwen2-VL.
- Deepstack: the tower's intermediate features are added to the visual tokens' hidden states after
  the first ``len(deepstack_visual_indexes)`` decoder layers (``Qwen3VLTextModel._deepstack_process``).
  The adapter takes them out of the language model's call and the runtime adds each level back
  after its layer to the tokens still alive, with the model's own ``_deepstack_process``: the same
  kept set as the hidden states. Prompts with images as well as a video are refused (the deepstack
  rows of images and video would have to be told apart).
"""

from __future__ import annotations

from typing import Any

import torch

from adatp.families.base import VideoSpan, interleaved_span, qwen_query_key_states
from adatp.families.qwen2_vl.adapter import Qwen2VLAdapter
from adatp.families.qwen3_vl.processor import Qwen3VLProcessor
from adatp.errors import InputError


class Qwen3VLAdapter(Qwen2VLAdapter):
    model_classes = ("Qwen3VLForConditionalGeneration",)
    model_types = ("qwen3_vl",)
    processor = Qwen3VLProcessor
    newline = "interleaved"

    def _vision_sizes(self) -> tuple[int, int, int, int]:
        v = self.model.config.vision_config
        return v.hidden_size, v.intermediate_size, v.depth, 2  # linear_fc1 -> act -> linear_fc2

    def locate_video(self, input_ids: torch.Tensor | None, kwargs: dict) -> VideoSpan | None:
        if kwargs.get("video_grid_thw") is not None and (
            kwargs.get("pixel_values") is not None or kwargs.get("image_grid_thw") is not None
        ):
            raise InputError("prompts with images and a video are not supported with pruning on this family: pass the video alone")
        return super().locate_video(input_ids, kwargs)

    def find_video(self, input_ids: torch.Tensor, grid) -> VideoSpan:
        t, h, w = grid
        return interleaved_span(self._pad_positions(input_ids, t * h * w), t, h, w, input_ids.shape[1])

    def _synthetic_block(self, grids: int, per_grid: int, gen: torch.Generator, text_range: tuple[int, int]) -> torch.Tensor:
        """Per grid: 5 random ids standing for ``<t seconds>``, then start, pads, end (5.23 layout)."""
        cfg = self.model.config
        start, end, pad = cfg.vision_start_token_id, cfg.vision_end_token_id, cfg.video_token_id
        parts = [torch.tensor([start])]
        for _ in range(grids):
            stamp = torch.randint(*text_range, (5,), generator=gen)
            stamp = torch.where(torch.isin(stamp, torch.tensor([start, end, pad])), text_range[0], stamp)
            parts += [stamp, torch.tensor([start]), torch.full((per_grid,), pad), torch.tensor([end])]
        parts.append(torch.tensor([end]))
        return torch.cat(parts)

    def query_key_states(self, layer, hidden, position_embeddings, query_rows, apply_rope: bool = True):
        return qwen_query_key_states(layer, hidden, position_embeddings, query_rows, apply_rope, qk_norm=True)

    # --- deepstack ---------------------------------------------------------------------------
    def take_layer_extras(self, lm_kwargs: dict, span: VideoSpan) -> Any:
        embeds = lm_kwargs.get("deepstack_visual_embeds")
        if embeds is None:
            return None
        mask = lm_kwargs.get("visual_pos_masks")
        if mask is None or int(mask.sum()) != span.layout.num_visual:  # host sync, once per prefill
            raise InputError("deepstack visual positions do not match the video tokens: one video and no images please")
        lm_kwargs["deepstack_visual_embeds"] = None
        lm_kwargs["visual_pos_masks"] = None
        return list(embeds)  # per level: (N, D) in visual order

    def after_layer(self, index, hidden, extras, visual_rows, visual_alive):
        if index >= len(extras):
            return None
        mask = torch.zeros(hidden.shape[:2], dtype=torch.bool, device=hidden.device)  # (1, m)
        mask[0, visual_rows] = True
        return self.language_model()._deepstack_process(hidden, mask, extras[index][visual_alive])
