"""Every registered method on every family: exact kept counts, FLOPs from the family's own sizes,
generate() consistent with the per-layer reference, or a one-line error saying why it cannot run."""

from __future__ import annotations

import pytest
import torch

import adatp
from adatp.errors import ConfigError
from adatp.methods.base import available_methods
from adatp.ops.budgets import tokens_for_retention
from adatp.ops.flops import DecoderDims, LinearAttentionDims, MoeDims, decoder_flops

from . import FAMILY_IDS, MROPE_IDS, family_model, make_inputs
from .reference import reference_generate

PRUNING = [m for m in available_methods() if m != "none"]
#: (family, method) pairs that cannot run, and the words their one-line error must contain.
REFUSED = {(fid, "uniform-frames"): "compact" for fid in MROPE_IDS}
STEPS = 4


def _dims_from_config(model) -> DecoderDims:
    t = model.config.text_config
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    if "linear_attention" not in (getattr(t, "layer_types", None) or ()):
        return DecoderDims(t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_key_value_heads, head_dim)
    # Qwen3.5: gated attention with H d_h != D, Gated DeltaNet layers, and a sparse MoE MLP (qwen3_5_moe).
    linear = LinearAttentionDims(t.linear_num_key_heads, t.linear_num_value_heads, t.linear_key_head_dim,
                                 t.linear_value_head_dim, t.linear_conv_kernel_dim)
    moe = (MoeDims(t.num_experts, t.num_experts_per_tok, t.moe_intermediate_size, t.shared_expert_intermediate_size)
           if hasattr(t, "num_experts") else None)
    return DecoderDims(t.hidden_size, 0 if moe else t.intermediate_size, t.num_hidden_layers, t.num_key_value_heads,
                       head_dim, num_heads=t.num_attention_heads, attention_gate=True, layer_types=tuple(t.layer_types),
                       linear=linear, moe=moe)


@pytest.mark.parametrize("method", PRUNING)
@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_method_runs_on_family_or_says_why_not(fid, method):
    model = family_model(fid)
    inputs = make_inputs(model, seed=3)
    if (fid, method) in REFUSED:
        with pytest.raises(ConfigError, match=REFUSED[fid, method]) as info:
            adatp.prune(model, method, retention=0.25)
        assert "\n" not in str(info.value)
        return
    with adatp.prune(model, method, retention=0.25) as handle:
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False,
                                 output_logits=True, return_dict_in_generate=True)
        report = handle.last_report
    n = report.num_visual
    assert report.stages[-1].kept == tokens_for_retention(0.25, n)
    for stage in report.stages:
        assert stage.kept == stage.budget == stage.kept_indices.numel()
        assert torch.equal(stage.kept_indices, torch.sort(stage.kept_indices).values)
    dims = _dims_from_config(model)
    counts = report.visual_tokens_per_layer
    assert report.flops.visual_vanilla == pytest.approx(decoder_flops([n] * dims.num_layers, dims))
    assert report.flops.visual_pruned == pytest.approx(decoder_flops(counts, dims))
    tokens = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    kept = [(s.layer, s.kept_indices, s.merge_into, s.merge_weights) for s in report.stages]
    ref_tokens, ref_logits = reference_generate(model, inputs, kept, STEPS, compact=report.positions == "compact")
    assert tokens == ref_tokens
    assert max((a[0] - b).abs().max().item() for a, b in zip(out.logits, ref_logits)) <= 1e-5
