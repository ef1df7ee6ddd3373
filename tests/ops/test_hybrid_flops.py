"""FLOPs of hybrid and sparse decoders (Qwen3.5): hand-computed examples, and the counts checked
against the weight shapes of real transformers modules (a multiply-add per weight per token)."""

import pytest
import torch

from adatp.ops.flops import (
    DecoderDims,
    LinearAttentionDims,
    MoeDims,
    decoder_flops,
    decoder_layer_flops,
    linear_attention_flops,
    moe_flops,
    schedule_flops_ratio,
)
from adatp.ops.schedule import scale_to_flops_ratio

SMALL_LINEAR = LinearAttentionDims(key_heads=1, value_heads=2, key_head_dim=2, value_head_dim=3, conv_kernel=2)


def test_linear_attention_by_hand():
    # D = 4, K = 1*2 = 2, V = 2*3 = 6, n = 5:
    # projections 5*4*(2K + 2V + 2H_v) = 20*20 = 400, out_proj 5*6*4 = 120,
    # conv 5*(2K + V)*w = 5*10*2 = 100, delta rule 3*n*H_v*d_k*d_v = 3*5*2*2*3 = 180.
    assert linear_attention_flops(5, 4, SMALL_LINEAR) == 400 + 120 + 100 + 180
    assert linear_attention_flops(10, 4, SMALL_LINEAR) == 2 * 800  # linear in n


def test_moe_by_hand():
    # n = 10, D = 4, E = 8 experts, k = 2 of width 3, a shared expert of width 5:
    # router 10*4*8 = 320, routed 3*10*4*3*2 = 720, shared 3*10*4*5 = 600 and its gate 10*4 = 40.
    assert moe_flops(10, 4, MoeDims(8, 2, 3, 5)) == 320 + 720 + 600 + 40


def test_gated_attention_layer_by_hand():
    # n = 3, D = 8, H = 2 heads of d_h = 6 (A = 12), h_kv = 1, MLP width 5:
    # q with its gate 3*8*12*2 = 576, o 3*12*8 = 288, k/v 2*3*8*6 = 288, products 2*9*12 = 216, MLP 3*3*8*5 = 360.
    dims = DecoderDims(8, 5, 1, 1, 6, num_heads=2, attention_gate=True)
    assert decoder_layer_flops(3, dims) == 576 + 288 + 288 + 216 + 360


def test_the_paper_formula_is_unchanged_without_the_new_fields():
    dims = DecoderDims(8, 5, 2, 1, 4)
    n = 7
    assert decoder_layer_flops(n, dims) == 2 * n * 64 + 2 * n * 8 * 4 + 2 * n * n * 8 + 3 * n * 8 * 5
    assert decoder_flops([n, n], dims) == 2 * decoder_layer_flops(n, dims)


def test_hybrid_stack_sums_each_layer_by_its_type():
    dims = DecoderDims(4, 5, 3, 1, 2, num_heads=2, layer_types=("linear_attention", "full_attention", "linear_attention"),
                       linear=SMALL_LINEAR)
    counts = [6, 5, 3]
    expected = (linear_attention_flops(6, 4, SMALL_LINEAR) + 3 * 6 * 4 * 5
                + decoder_layer_flops(5, dims, "full_attention")
                + linear_attention_flops(3, 4, SMALL_LINEAR) + 3 * 3 * 4 * 5)
    assert decoder_flops(counts, dims) == expected
    with pytest.raises(ValueError, match="linear"):
        decoder_layer_flops(3, DecoderDims(4, 5, 1, 1, 2), "linear_attention")


def _matmul_weights(module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))


def test_counts_equal_the_weights_of_the_real_modules():
    """Per token, a projection costs one multiply-add per weight: the linear-attention count minus
    its delta-rule term equals the Gated DeltaNet module's Linear and conv weights, and the MoE count
    equals router + k experts + shared expert + its gate, read from transformers' own modules."""
    from adatp.models.tiny import tiny_model

    dense = tiny_model("qwen3.5-27b", text_layers=4)
    t = dense.config.text_config
    layer = dense.model.language_model.layers[0]
    assert t.layer_types[0] == "linear_attention"
    dims = LinearAttentionDims(t.linear_num_key_heads, t.linear_num_value_heads, t.linear_key_head_dim,
                               t.linear_value_head_dim, t.linear_conv_kernel_dim)
    state = 3 * dims.value_heads * dims.key_head_dim * dims.value_head_dim
    per_token = _matmul_weights(layer.linear_attn) + layer.linear_attn.conv1d.weight.numel()
    assert linear_attention_flops(1, t.hidden_size, dims) - state == per_token

    moe = tiny_model("qwen3.5-35b-a3b", text_layers=4)
    t = moe.config.text_config
    block = moe.model.language_model.layers[0].mlp
    e = t.num_experts
    per_expert = (block.experts.gate_up_proj.numel() + block.experts.down_proj.numel()) // e
    active = block.gate.weight.numel() + t.num_experts_per_tok * per_expert + _matmul_weights(block.shared_expert)
    active += block.shared_expert_gate.weight.numel()
    assert moe_flops(1, t.hidden_size, MoeDims(e, t.num_experts_per_tok, t.moe_intermediate_size,
                                               t.shared_expert_intermediate_size)) == active


def test_solver_uses_the_hybrid_count():
    """On the shipped Qwen3.5-27B sizes, the FLOPs solver hits its target with the hybrid count, and
    the same schedule costs a different share than if every layer were full attention."""
    from adatp.models.configs import load_architecture_config

    t = load_architecture_config("qwen3.5-27b").text_config
    linear = LinearAttentionDims(t.linear_num_key_heads, t.linear_num_value_heads, t.linear_key_head_dim,
                                 t.linear_value_head_dim, t.linear_conv_kernel_dim)
    hybrid = DecoderDims(t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_key_value_heads, t.head_dim,
                         num_heads=t.num_attention_heads, attention_gate=True, layer_types=tuple(t.layer_types),
                         linear=linear)
    all_full = DecoderDims(t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_key_value_heads, t.head_dim,
                           num_heads=t.num_attention_heads, attention_gate=True)
    n = 32 * 196
    shape = [(0, 0.75), (2, 0.35), (32, 0.20)]
    for target in (0.273, 0.15):
        s = scale_to_flops_ratio(shape, target, n, hybrid)
        assert schedule_flops_ratio(s, n, hybrid) == pytest.approx(target, abs=1e-3)
    assert schedule_flops_ratio(shape, n, hybrid) != pytest.approx(schedule_flops_ratio(shape, n, all_full), abs=1e-3)
    # 48 of 64 layers are linear: doubling the tokens costs less than twice... plus the 16 quadratic layers.
    ratio = decoder_flops([2 * n] * 64, hybrid) / decoder_flops([n] * 64, hybrid)
    assert 2 < ratio < decoder_flops([2 * n] * 64, all_full) / decoder_flops([n] * 64, all_full)
