"""Attention capture on the tiny random model: eager-attention reference, no side effects, kept sets."""

import pytest
import torch
from transformers import LlavaOnevisionForConditionalGeneration

import adatp
import adatp.analysis.attention as capture
from adatp.analysis.attention import capture_attention, check_layers, kept_tokens, parse_layers
from adatp.errors import ConfigError
from adatp.inputs import prepare_inputs
from adatp.video import make_synthetic_frames

FRAMES = 8


@pytest.fixture(scope="module")
def inputs(tiny_model_dir):
    frames = make_synthetic_frames(FRAMES, (112, 112), seed=2)
    return dict(prepare_inputs(tiny_model_dir, frames, "What colour is the moving shape?"))


def _sharpen(model):
    """Scale q/k by 8 (logits by 64): random-init attention is nearly uniform, this makes maps differ by ~1e-2."""
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj):
                proj.weight.mul_(8)
                proj.bias.mul_(8)
    return model


def _eager_copy(model, model_dir):
    eager = LlavaOnevisionForConditionalGeneration.from_pretrained(model_dir, attn_implementation="eager").eval()
    eager.load_state_dict(model.state_dict())
    return eager


def _visual_columns(model, inputs):
    span = adatp.adapters.get_adapter(model).find_video(inputs["input_ids"], FRAMES)
    return span, span.start + span.layout.grid_offsets()


def test_maps_equal_eager_attention_of_every_layer(tiny_model, tiny_model_dir, inputs):
    model = _sharpen(tiny_model)
    maps = capture_attention(model, inputs)
    span, visual = _visual_columns(model, inputs)
    assert maps.layers == [0, 1, 2, 3] and maps.maps.shape == (4, FRAMES, 4, 4)
    assert maps.num_query_rows == span.seq_len - span.end > 0
    assert float((maps.maps[1] - maps.maps[2]).abs().max()) > 1e-3  # layers differ far beyond the tolerance
    eager = _eager_copy(model, tiny_model_dir)
    with torch.no_grad():
        out = eager(**inputs, output_attentions=True)
    for layer in maps.layers:
        probs = out.attentions[layer][0, :, span.end:]  # (H, q, L): query rows = every row after the video
        rows_visual = probs[..., visual].sum(-1)
        assert bool((rows_visual <= 1 + 1e-6).all())  # each row's mass over visual tokens
        expected = probs[..., visual].float().mean(dim=(0, 1)).view(FRAMES, 4, 4)
        torch.testing.assert_close(maps.map(layer), expected, atol=1e-5, rtol=0)
        assert 0 < float(maps.map(layer).sum()) <= 1 + 1e-6


def test_pre_rope_layer_zero_equals_attention_at_one_shared_position(tiny_model, tiny_model_dir, inputs):
    # Layer 0's input does not depend on positions; with every position equal, RoPE rotates queries and
    # keys alike and drops out of q.k: the eager weights then are the pre-RoPE ones.
    model = _sharpen(tiny_model)
    pre = capture_attention(model, inputs, layers=[0], pre_rope=True)
    with_rope = capture_attention(model, inputs, layers=[0])
    span, visual = _visual_columns(model, inputs)
    eager = _eager_copy(model, tiny_model_dir)
    with torch.no_grad():
        out = eager(**inputs, position_ids=torch.zeros_like(inputs["input_ids"]), output_attentions=True)
    expected = out.attentions[0][0, :, span.end:][..., visual].float().mean(dim=(0, 1)).view(FRAMES, 4, 4)
    assert pre.pre_rope and pre.layers == [0]
    torch.testing.assert_close(pre.map(0), expected, atol=1e-5, rtol=0)
    assert float((pre.map(0) - with_rope.map(0)).abs().max()) > 1e-3


def test_capture_leaves_the_model_unchanged_and_stops_after_the_deepest_layer(tiny_model, inputs):
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    with torch.no_grad():
        before = tiny_model(**inputs).logits
    calls = []
    spy = tiny_model.model.language_model.layers[3].register_forward_pre_hook(lambda m, a: calls.append(1))
    capture_attention(tiny_model, inputs, layers=[1, 2])
    spy.remove()
    assert calls == []  # layer 3 never ran
    with torch.no_grad():
        after = tiny_model(**inputs).logits
    assert torch.equal(before, after)
    assert all(torch.equal(v, state[k]) for k, v in tiny_model.state_dict().items())
    assert all(not layer._forward_pre_hooks for layer in tiny_model.model.language_model.layers)


def test_hooks_are_removed_when_the_capture_fails(tiny_model, inputs, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(capture, "query_row_attention", broken)
    with pytest.raises(RuntimeError, match="boom"):
        capture_attention(tiny_model, inputs, layers=[0, 2])
    assert all(not layer._forward_pre_hooks for layer in tiny_model.model.language_model.layers)


def test_bad_layers_and_a_pruned_model_are_refused(tiny_model, inputs):
    with pytest.raises(ConfigError, match="past the model's depth.*4 decoder layers"):
        capture_attention(tiny_model, inputs, layers=[1, 4])
    with pytest.raises(ConfigError, match="non-negative"):
        check_layers([-1], 4)
    assert parse_layers("all") is None and parse_layers("0,2, 3") == [0, 2, 3] and parse_layers("1-3") == [1, 2, 3]
    with pytest.raises(ConfigError, match="--layers"):
        parse_layers("one")
    with adatp.prune(tiny_model, "adatp", retention=0.5):
        with pytest.raises(ConfigError, match="pruned"):
            capture_attention(tiny_model, inputs, layers=[0])


def test_kept_tokens_reads_every_stage_and_removes_the_handle(tiny_model, inputs):
    kept = kept_tokens(tiny_model, inputs, "adatp", retention=0.3)
    report = kept.report
    assert [layer for layer, _ in kept.stages] == [s.layer for s in report.stages] and len(kept.stages) >= 2
    for i, stage in enumerate(report.stages):
        mask = kept.stage_mask(i)
        assert int(mask.sum()) == stage.kept
        assert torch.equal(torch.nonzero(mask.flatten()).flatten(), stage.kept_indices)
    assert int(kept.final_mask().sum()) == report.stages[-1].kept == round(0.3 * FRAMES * 16)
    assert getattr(tiny_model, "_adatp_pruned", None) is None
    vanilla = kept_tokens(tiny_model, inputs, "none")
    assert vanilla.stages == [] and bool(vanilla.final_mask().all())
