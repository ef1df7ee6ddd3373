"""FLOPs as the paper reports them (docs/method.md) (a multiply-add counted once, visual tokens only by default)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DecoderDims:
    """Sizes of a decoder stack, read from a model config (never constants).

    hidden: D; intermediate: D' (gated MLP width); num_layers: L; num_kv_heads: h_kv; head_dim: d_h.
    """

    hidden: int
    intermediate: int
    num_layers: int
    num_kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class VisionDims:
    """Sizes of a ViT tower: patches per frame (per temporal grid for Qwen-VL) and its MLP.

    ``mlp_matrices``: 2 for a plain MLP (fc1, fc2), 3 for a gated one (Qwen2.5-VL: gate, up, down).
    """

    hidden: int
    intermediate: int
    num_layers: int
    patches_per_frame: int
    mlp_matrices: int = 2


def decoder_layer_flops(n: float, dims: DecoderDims) -> float:
    """One decoder layer with n tokens: 2nD^2 + 2nD(h_kv d_h) + 2n^2 D + 3nDD'."""
    d = dims.hidden
    return 2 * n * d * d + 2 * n * d * dims.num_kv_heads * dims.head_dim + 2 * n * n * d + 3 * n * d * dims.intermediate


def tokens_per_layer(stages: Sequence[tuple[int, float]], initial: float, num_layers: int) -> list[float]:
    """Tokens alive at the input of each layer, given (layer, tokens) stages in layer order.

    A stage at layer k sets the count seen by layers k..L-1 (docs/method.md D1); before the first
    stage every layer sees ``initial``.
    """
    counts = [float(initial)] * num_layers
    for layer, n in stages:
        for i in range(layer, num_layers):
            counts[i] = float(n)
    return counts


def decoder_flops(counts: Sequence[float], dims: DecoderDims) -> float:
    """Sum of decoder_layer_flops over layers, one token count per layer."""
    if len(counts) != dims.num_layers:
        raise ValueError(f"need {dims.num_layers} per-layer counts, got {len(counts)}")
    return sum(decoder_layer_flops(n, dims) for n in counts)


def schedule_flops_ratio(retentions: Sequence[tuple[int, float]], num_visual: float, dims: DecoderDims) -> float:
    """Visual-only FLOPs of a retention schedule over the unpruned visual FLOPs (paper convention).

    ``retentions``: (layer, fraction of N) pairs; counts are continuous (r * N), so that a target
    ratio can be solved to any precision.
    """
    stages = [(k, r * num_visual) for k, r in retentions]
    pruned = decoder_flops(tokens_per_layer(stages, num_visual, dims.num_layers), dims)
    full = decoder_flops([num_visual] * dims.num_layers, dims)
    return pruned / full


def vision_tower_flops(dims: VisionDims, num_frames: int) -> float:
    """ViT encoder FLOPs for num_frames frames: per layer 4nD^2 + 2n^2 D + m nDD' (n patches, m MLP
    matrices: 2 plain, 3 gated). Attention is counted over the whole frame (Qwen2.5-VL's windowed
    blocks attend less: an upper bound there)."""
    n, d = dims.patches_per_frame, dims.hidden
    per_layer = 4 * n * d * d + 2 * n * n * d + dims.mlp_matrices * n * d * dims.intermediate
    return num_frames * dims.num_layers * per_layer
