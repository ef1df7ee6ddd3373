"""FLOPs as the paper reports them (docs/method.md) (a multiply-add counted once, visual tokens only by default)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LinearAttentionDims:
    """Sizes of a Gated DeltaNet token mixer (Qwen3.5's ``linear_attention`` layers).

    key_heads: H_k; value_heads: H_v (queries and keys are repeated to H_v heads); key_head_dim:
    d_k; value_head_dim: d_v; conv_kernel: w (depthwise causal convolution over q, k and v).
    """

    key_heads: int
    value_heads: int
    key_head_dim: int
    value_head_dim: int
    conv_kernel: int


@dataclass(frozen=True)
class MoeDims:
    """Sizes of a sparse MoE block, counted by the experts a token really uses.

    num_experts: E (the router scores all of them); experts_per_token: k; expert_intermediate: D_e
    (gated MLP width of one expert); shared_intermediate: D_s (the shared expert, 0 if none).
    """

    num_experts: int
    experts_per_token: int
    expert_intermediate: int
    shared_intermediate: int = 0


@dataclass(frozen=True)
class DecoderDims:
    """Sizes of a decoder stack, read from a model config (never constants).

    hidden: D; intermediate: D' (gated MLP width); num_layers: L; num_kv_heads: h_kv; head_dim: d_h.
    The optional fields describe hybrid and sparse stacks (Qwen3.5); left at their defaults the
    count is the paper's formula (every layer full attention with H d_h = D, a dense MLP):
    ``num_heads``: H when H d_h != D; ``attention_gate``: the query projection also emits an output
    gate (twice the width); ``layer_types``: one of ``full_attention`` / ``linear_attention`` per
    layer (empty: all full); ``linear``: the linear layers' sizes; ``moe``: the MLP is a sparse MoE.
    """

    hidden: int
    intermediate: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    num_heads: int | None = None
    attention_gate: bool = False
    layer_types: tuple[str, ...] = ()
    linear: LinearAttentionDims | None = None
    moe: MoeDims | None = None

    def layer_type(self, index: int) -> str:
        return self.layer_types[index] if self.layer_types else "full_attention"


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


def decoder_layer_flops(n: float, dims: DecoderDims, layer_type: str = "full_attention") -> float:
    """One decoder layer with n tokens: 2nD^2 + 2nD(h_kv d_h) + 2n^2 D + 3nDD' (the paper's formula).

    With ``dims.num_heads`` (A = H d_h) and an output gate the attention part reads
    ``nDA (x2 with the gate) + nAD + 2nD h_kv d_h + 2n^2 A``; a ``linear_attention`` layer is
    :func:`linear_attention_flops` instead (linear in n); with ``dims.moe`` the MLP is
    :func:`moe_flops` instead of 3nDD'.
    """
    d = dims.hidden
    if layer_type == "linear_attention":
        if dims.linear is None:
            raise ValueError("a linear_attention layer needs DecoderDims.linear")
        mixer = linear_attention_flops(n, d, dims.linear)
    elif dims.num_heads is None and not dims.attention_gate:
        mixer = 2 * n * d * d + 2 * n * d * dims.num_kv_heads * dims.head_dim + 2 * n * n * d
    else:
        width = (dims.num_heads or d // dims.head_dim) * dims.head_dim  # A = H d_h
        q = n * d * width * (2 if dims.attention_gate else 1)
        mixer = q + n * width * d + 2 * n * d * dims.num_kv_heads * dims.head_dim + 2 * n * n * width
    mlp = 3 * n * d * dims.intermediate if dims.moe is None else moe_flops(n, d, dims.moe)
    return mixer + mlp


def linear_attention_flops(n: float, hidden: int, dims: LinearAttentionDims) -> float:
    """One Gated DeltaNet token mixer over n tokens (multiply-adds counted once): linear in n.

    Derivation (transformers' ``Qwen3_5GatedDeltaNet``), with K = H_k d_k and V = H_v d_v:

    - projections: ``in_proj_qkv`` nD(2K + V), ``in_proj_z`` nDV, ``in_proj_b`` and ``in_proj_a``
      2nDH_v, ``out_proj`` nVD;
    - depthwise causal convolution of kernel w over the 2K + V channels: n(2K + V)w;
    - the delta rule, per value head with a state S of d_k x d_v (q and k repeated to H_v heads):
      each token reads k^T S (d_k d_v), writes S += k (beta (v - k^T S))^T (d_k d_v) and reads the
      output q^T S (d_k d_v): 3 n d_k d_v per head. The chunked form transformers runs in prefill
      computes the same recurrence regrouped by chunks of C tokens; its intra-chunk products add
      O(n C (d_k + d_v)) per head, a constant factor at fixed C, still linear in n. Decays, gates,
      norms and activations are elementwise and not counted (as norms are not in the paper's
      formula).

    Total: ``nD(2K + 2V + 2H_v) + nVD + n(2K + V)w + 3 n H_v d_k d_v``.
    """
    k = dims.key_heads * dims.key_head_dim
    v = dims.value_heads * dims.value_head_dim
    projections = n * hidden * (2 * k + 2 * v + 2 * dims.value_heads) + n * v * hidden
    conv = n * (2 * k + v) * dims.conv_kernel
    state = 3 * n * dims.value_heads * dims.key_head_dim * dims.value_head_dim
    return projections + conv + state


def moe_flops(n: float, hidden: int, dims: MoeDims) -> float:
    """A sparse MoE block over n tokens, by its active experts: router nDE, k routed gated experts
    3nD D_e k, the shared expert 3nD D_s and its one-unit gate nD."""
    routed = 3 * n * hidden * dims.expert_intermediate * dims.experts_per_token
    shared = 3 * n * hidden * dims.shared_intermediate + (n * hidden if dims.shared_intermediate else 0)
    return n * hidden * dims.num_experts + routed + shared


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
    return sum(decoder_layer_flops(n, dims, dims.layer_type(i)) for i, n in enumerate(counts))


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
