"""GLM-4.1V family (HF ``Glm4vForConditionalGeneration``); GLM-4.6V (``glm46v``) subclasses it.

The layout is Qwen3-VL's (the adapter subclasses it): the tower patchifies two frames at a time and
merges 2 x 2 patches, ``video_grid_thw`` = (t, H, W) patches, and every token grid is its own run
``<|begin_of_image|>`` tokens ``<|end_of_image|>{seconds}`` inside ``<|begin_of_video|> ...
<|end_of_video|>`` (transformers 5.23 ``Glm4vProcessor.replace_video_token``): the markers and the
timestamps between the grids are text, never pruned, in no segment. Positions are 3-D M-RoPE from the
model's ``get_rope_index`` (kept rows keep every row; decode steps continue as the unpruned model).

Differences from Qwen3-VL: the video's tokens are ``image_token_id`` (GLM marks images and videos with
one token; ``mm_token_type_ids`` tells them apart), there is no deepstack, the tower's MLP is gated
(width ``out_hidden_size``), and the decoder's attention applies a partial (half of ``head_dim``),
interleaved M-RoPE with biased q/k projections and no QK-norm: :meth:`query_key_states` calls the
model's own ``apply_rotary_pos_emb``.
"""

from __future__ import annotations

import torch

from adatp.families.glm4v.processor import Glm4vProcessor
from adatp.families.qwen3_vl.adapter import Qwen3VLAdapter


class Glm4vAdapter(Qwen3VLAdapter):
    model_classes = ("Glm4vForConditionalGeneration",)
    model_types = ("glm4v",)
    processor = Glm4vProcessor

    def _vision_sizes(self) -> tuple[int, int, int, int]:
        v = self.model.config.vision_config
        return v.hidden_size, v.out_hidden_size, v.depth, 3  # gated MLP of width out_hidden_size

    def _special_ids(self) -> set[int]:
        cfg = self.model.config
        return {cfg.image_token_id, cfg.video_token_id, cfg.image_start_token_id, cfg.image_end_token_id,
                cfg.video_start_token_id, cfg.video_end_token_id}

    def _synthetic_block(self, grids, per_grid, gen, text_range):
        """Per grid ``<|begin_of_image|>`` tokens ``<|end_of_image|>`` and 1 random id for the seconds,
        all inside ``<|begin_of_video|> ... <|end_of_video|>`` (5.23 layout)."""
        cfg = self.model.config
        parts = [torch.tensor([cfg.video_start_token_id])]
        for _ in range(grids):
            stamp = torch.randint(*text_range, (1,), generator=gen)
            stamp = torch.where(torch.isin(stamp, torch.tensor(sorted(self._special_ids()))), text_range[0], stamp)
            parts += [torch.tensor([cfg.image_start_token_id]), torch.full((per_grid,), self.video_token_id),
                      torch.tensor([cfg.image_end_token_id]), stamp]
        parts.append(torch.tensor([cfg.video_end_token_id]))
        return torch.cat(parts)

    def query_key_states(self, layer, hidden, position_embeddings, query_rows, apply_rope: bool = True):
        """``input_layernorm -> q_proj/k_proj -> apply_rotary_pos_emb`` (GLM's partial interleaved RoPE)."""
        attn = layer.self_attn
        rotary = _apply_rotary(type(attn))
        normed = layer.input_layernorm(hidden)  # (1, n, D)
        q = attn.q_proj(normed[:, query_rows]).view(1, query_rows.shape[0], -1, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(normed).view(1, normed.shape[1], -1, attn.head_dim).transpose(1, 2)
        if apply_rope:
            cos, sin = position_embeddings
            q, _ = rotary(q, q, cos[:, query_rows], sin[:, query_rows])
            k, _ = rotary(k, k, cos, sin)
        return q[0], k[0], float(attn.scaling)


def _apply_rotary(attention_class: type):
    """The ``apply_rotary_pos_emb`` of the attention's own modeling module (``Glm4vTextAttention``'s,
    which GLM-4.6V's language model is too)."""
    import sys

    return sys.modules[attention_class.__module__].apply_rotary_pos_emb
