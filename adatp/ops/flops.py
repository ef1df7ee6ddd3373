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
    ``window_patches``: patches in each attention window of a frame, for towers whose blocks attend
    inside windows (Qwen2.5-VL); empty when every block attends over the whole frame.
    ``full_attention_layers``: how many blocks attend over the whole frame (None: all of them).
    """

    hidden: int
    intermediate: int
    num_layers: int
    patches_per_frame: int
    mlp_matrices: int = 2
    window_patches: tuple[int, ...] = ()
    full_attention_layers: int | None = None


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


def window_patch_counts(grid_h: int, grid_w: int, merge: int, window_units: int) -> tuple[int, ...]:
    """Patches in each attention window of a (grid_h x grid_w)-patch frame when windows are
    ``window_units`` x ``window_units`` merge units (merge x merge patches each), tiled from the top
    left; edge windows are cut short (Qwen2.5-VL: window_size 112 px / patch 14 / merge 2 = 4 units)."""
    def chunks(units: int) -> list[int]:
        return [min(window_units, units - start) for start in range(0, units, window_units)]

    return tuple(a * b * merge * merge for a in chunks(grid_h // merge) for b in chunks(grid_w // merge))


def vision_tower_flops(dims: VisionDims, num_frames: int) -> float:
    """ViT encoder FLOPs for num_frames frames: per layer 4nD^2 + m nDD' (n patches, m MLP matrices:
    2 plain, 3 gated) plus attention, 2n^2 D over the whole frame, or 2D sum(w_i^2) over windows of
    w_i patches in the windowed blocks (all but ``full_attention_layers``)."""
    n, d = dims.patches_per_frame, dims.hidden
    linear = 4 * n * d * d + dims.mlp_matrices * n * d * dims.intermediate
    full = dims.num_layers if dims.full_attention_layers is None else dims.full_attention_layers
    windowed_pairs = sum(w * w for w in dims.window_patches) if dims.window_patches else n * n
    attention = full * 2 * n * n * d + (dims.num_layers - full) * 2 * windowed_pairs * d
    return num_frames * (dims.num_layers * linear + attention)
