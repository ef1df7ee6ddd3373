"""Qwen3.5 (HF ``Qwen3_5ForConditionalGeneration``) and Qwen3.5-MoE: Qwen3-VL's adapter, a hybrid decoder.

What stays Qwen3-VL's (transformers 5.23 ``modular_qwen3_5.py``): the processor (``Qwen3VLProcessor``:
per grid ``<t seconds><|vision_start|> pads <|vision_end|>``), the video tower's merged tokens, and
interleaved M-RoPE ids from ``get_rope_index`` (each grid split off by its timestamp). The tower has
no deepstack, so nothing is added back after the layers.

What differs is the language model:

- ``config.text_config.layer_types``: ``linear_attention`` (a Gated DeltaNet token mixer,
  ``layer.linear_attn``) or ``full_attention`` (``layer.self_attn``), three linear to one full by
  default. Linear layers take no positions and keep no KV cache; their cache entry is a
  convolution state (the last ``linear_conv_kernel_dim`` inputs of the causal convolution) and a
  recurrent state (``(H_v, d_k, d_v)`` per layer). Both come from the tokens the layer is fed, so a
  pruned prefill leaves exactly the states of the tokens each layer saw.
- Full attention: the query projection emits the query and a sigmoid output gate per head
  (``view(..., 2 * d_h)`` then split), Q/K RMSNorm per head, and RoPE on the first quarter of
  each head (``partial_rotary_factor`` 0.25; the rotary module returns cos/sin of that width).
- Scoring at a linear-attention layer (docs/families.md, "Qwen3.5"): the layer's own queries and
  keys through a causal softmax. A Gated DeltaNet layer reads token s into query t's output through
  ``q_t . k_s`` (q, k after the causal convolution, SiLU and L2 normalisation, scaled by
  ``d_k^-0.5``), weighted further by decays and the delta correction; ranking keys by that
  similarity keeps every stage scored by the layer it prunes at (as D1 asks) and needs no
  full-attention layer before it (Qwen3.5's first is layer 3, after FastV's K = 2 and AdaTP's
  layer-0 stage).
- MoE (``qwen3_5_moe``): every layer's MLP is a sparse block (top-k routed experts plus a gated
  shared expert); FLOPs count the active experts only.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from adatp.errors import UnsupportedModelError
from adatp.families.base import _rotate_half
from adatp.families.qwen3_5.processor import Qwen3_5Processor
from adatp.families.qwen3_vl.adapter import Qwen3VLAdapter
from adatp.ops.flops import DecoderDims, LinearAttentionDims, MoeDims

LAYER_TYPES = ("full_attention", "linear_attention")
_FULL_ATTENTION_PARTS = ("q_proj", "k_proj", "q_norm", "k_norm", "head_dim", "scaling")
_LINEAR_ATTENTION_PARTS = ("in_proj_qkv", "conv1d", "key_dim", "value_dim", "head_k_dim", "num_k_heads", "activation")


def partial_rope_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on the first ``cos.shape[-1]`` dims of (1, H, n, d_h), the rest passed through (as
    transformers' Qwen3.5 ``apply_rotary_pos_emb``)."""
    r = cos.shape[-1]
    rot, rest = x[..., :r], x[..., r:]
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return torch.cat([rot * cos + _rotate_half(rot) * sin, rest], dim=-1)


def _l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The kernel's L2 normalisation of queries and keys (``use_qk_l2norm_in_kernel``)."""
    return x * torch.rsqrt((x * x).sum(dim=-1, keepdim=True) + eps)


def linear_attention_query_key(layer: nn.Module, hidden: torch.Tensor, query_rows: torch.Tensor):
    """Queries of ``query_rows`` and keys of every row of one Gated DeltaNet layer, as its forward
    builds them: ``input_layernorm -> in_proj_qkv -> causal depthwise conv -> SiLU -> split -> L2``.

    Args:
        hidden: (1, n, D) the layer's input (no padding: the runtime refuses padded prompts).
    Returns:
        (H_k, q, d_k) queries, (H_k, n, d_k) keys, and the kernel's scaling d_k^-0.5.
    """
    mixer = layer.linear_attn
    normed = layer.input_layernorm(hidden)
    mixed = mixer.in_proj_qkv(normed).transpose(1, 2)  # (1, C, n)
    weight = mixer.conv1d.weight  # (C, 1, w) depthwise
    n = mixed.shape[-1]
    conv = F.conv1d(mixed.to(weight.dtype), weight, mixer.conv1d.bias, padding=weight.shape[-1] - 1, groups=weight.shape[0])
    conv = ACT2FN[mixer.activation](conv[..., :n])
    conv = conv.to(mixed.dtype).transpose(1, 2)  # (1, n, C)
    query, key, _ = torch.split(conv, [mixer.key_dim, mixer.key_dim, mixer.value_dim], dim=-1)
    d_k = mixer.head_k_dim
    q = _l2norm(query[0, query_rows].view(query_rows.shape[0], -1, d_k).float()).transpose(0, 1)  # (H_k, q, d_k)
    k = _l2norm(key[0].view(n, -1, d_k).float()).transpose(0, 1)  # (H_k, n, d_k)
    return q, k, float(d_k**-0.5)


class Qwen3_5Adapter(Qwen3VLAdapter):
    model_classes = ("Qwen3_5ForConditionalGeneration",)
    model_types = ("qwen3_5",)
    processor = Qwen3_5Processor

    def layer_attention(self, index: int) -> str:
        types = getattr(self.text_config(), "layer_types", None)
        return types[index] if types else "full_attention"

    def check_model(self) -> None:
        super().check_model()
        if "full_attention" not in (self.layer_attention(i) for i in range(len(self.decoder_layers()))):
            # transformers' hybrid cache reads its length from the first attention layer
            raise UnsupportedModelError("a decoder with no full_attention layer is not supported: its cache has no length")

    def check_decoder_layer(self, index: int, layer: nn.Module, hint: str = "") -> None:
        kind = self.layer_attention(index)
        if kind not in LAYER_TYPES:
            raise UnsupportedModelError(f"decoder layer {index} has type {kind!r}; adatp prunes {' and '.join(LAYER_TYPES)} layers")
        owner, parts = (("self_attn", _FULL_ATTENTION_PARTS) if kind == "full_attention"
                        else ("linear_attn", _LINEAR_ATTENTION_PARTS))
        mixer = getattr(layer, owner, None)
        if mixer is None or not all(hasattr(mixer, p) for p in parts):
            raise UnsupportedModelError(f"{kind} layer {index} ({type(layer).__name__}) has no {owner} with {'/'.join(parts)}{hint}")

    def decoder_dims(self) -> DecoderDims:
        t = self.text_config()
        linear = LinearAttentionDims(t.linear_num_key_heads, t.linear_num_value_heads, t.linear_key_head_dim,
                                     t.linear_value_head_dim, t.linear_conv_kernel_dim)
        return DecoderDims(
            t.hidden_size, self._dense_intermediate(t), t.num_hidden_layers, t.num_key_value_heads, t.head_dim,
            num_heads=t.num_attention_heads, attention_gate=True,
            layer_types=tuple(t.layer_types[: t.num_hidden_layers]), linear=linear,
        )

    @staticmethod
    def _dense_intermediate(text) -> int:
        return text.intermediate_size

    def query_key_states(self, layer, hidden, position_embeddings, query_rows, apply_rope: bool = True):
        if getattr(layer, "linear_attn", None) is not None:
            return linear_attention_query_key(layer, hidden, query_rows)
        attn = layer.self_attn
        normed = layer.input_layernorm(hidden)
        d = attn.head_dim
        q = attn.q_proj(normed[:, query_rows]).view(1, query_rows.shape[0], -1, 2 * d)[..., :d]  # drop the output gate
        k = attn.k_proj(normed).view(1, normed.shape[1], -1, d)
        q, k = attn.q_norm(q).transpose(1, 2), attn.k_norm(k).transpose(1, 2)
        if apply_rope:
            cos, sin = position_embeddings
            q = partial_rope_rotate(q, cos[:, query_rows], sin[:, query_rows])
            k = partial_rope_rotate(k, cos, sin)
        return q[0], k[0], float(attn.scaling)


class Qwen3_5MoeAdapter(Qwen3_5Adapter):
    """Qwen3.5-MoE: Qwen3.5's decoder with a sparse MoE block in every layer."""

    model_classes = ("Qwen3_5MoeForConditionalGeneration",)
    model_types = ("qwen3_5_moe",)

    @staticmethod
    def _dense_intermediate(text) -> int:
        return 0  # no dense MLP: DecoderDims.moe counts the MLP

    def decoder_dims(self) -> DecoderDims:
        t = self.text_config()
        moe = MoeDims(t.num_experts, t.num_experts_per_tok, t.moe_intermediate_size, t.shared_expert_intermediate_size)
        return replace(super().decoder_dims(), moe=moe)
