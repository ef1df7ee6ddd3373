"""The pruned prefill against the unpruned model and against a hand-built per-layer reference."""

import pytest
import torch

import adatp
from adatp.errors import ConfigError, InputError, UnsupportedModelError

from .conftest import build_tiny, make_inputs
from .reference import reference_generate

STEPS = 20


def _generate(model, inputs, steps=STEPS):
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
            output_logits=True, return_dict_in_generate=True,
        )
    new = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    return new, [lg[0] for lg in out.logits]


def test_retention_one_matches_unpruned_model(tiny_ov, video_inputs):
    ref_tokens, ref_logits = _generate(tiny_ov, video_inputs)
    with adatp.prune(tiny_ov, "adatp", retention=1.0) as handle:
        tokens, logits = _generate(tiny_ov, video_inputs)
        report = handle.last_report
    assert tokens == ref_tokens
    assert max((a - b).abs().max().item() for a, b in zip(logits, ref_logits)) <= 1e-5
    assert [s.kept for s in report.stages] == [128, 128, 128]


@pytest.mark.parametrize("target", [{"retention": 0.2}, {"flops_ratio": 0.273}, {"schedule": [(0, 0.5), (1, 0.3), (4, 0.1)]}])
def test_pruned_generate_matches_per_layer_reference(tiny_ov, video_inputs, target):
    with adatp.prune(tiny_ov, "adatp", **target) as handle:
        tokens, logits = _generate(tiny_ov, video_inputs)
        report = handle.last_report
    kept = [(s.layer, s.kept_indices) for s in report.stages]
    assert report.stages[-1].kept < 128
    ref_tokens, ref_logits = reference_generate(tiny_ov, video_inputs, kept, STEPS)
    assert tokens == ref_tokens
    assert max((a - b).abs().max().item() for a, b in zip(logits, ref_logits)) <= 1e-5


def test_report_counts_equal_what_each_layer_received(tiny_ov, video_inputs):
    seen = []
    hooks = []
    with adatp.prune(tiny_ov, "adatp", retention=0.2) as handle:
        for layer in tiny_ov.model.language_model.layers:
            hooks.append(layer.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[1])))
        with torch.no_grad():
            tiny_ov(**video_inputs)
        report = handle.last_report
    for h in hooks:
        h.remove()
    other = report.seq_len - report.num_visual
    assert seen == [n + other for n in report.visual_tokens_per_layer]
    for stage, budgets in zip(report.stages, report.method_info["segment_budgets"]):
        assert stage.kept_per_segment == budgets
        assert sum(budgets) == stage.budget == stage.kept


def _hook_ids(model):
    return {
        (name, kind, key)
        for name, m in model.named_modules()
        for kind in ("_forward_pre_hooks", "_forward_hooks")
        for key in getattr(m, kind)
    }


def test_remove_restores_outputs_and_state_dict_bit_exactly(tiny_ov, video_inputs):
    hooks_before = _hook_ids(tiny_ov)
    before_sd = {k: v.clone() for k, v in tiny_ov.state_dict().items()}
    with torch.no_grad():
        before = tiny_ov(**video_inputs).logits
    handle = adatp.prune(tiny_ov, "adatp", retention=0.2)
    with torch.no_grad():
        pruned = tiny_ov(**video_inputs).logits
    handle.remove()
    handle.remove()  # idempotent
    with torch.no_grad():
        after = tiny_ov(**video_inputs).logits
    assert pruned.shape[1] < before.shape[1]
    assert torch.equal(before, after)
    after_sd = tiny_ov.state_dict()
    assert before_sd.keys() == after_sd.keys()
    assert all(torch.equal(before_sd[k], after_sd[k]) for k in before_sd)
    assert _hook_ids(tiny_ov) == hooks_before
    assert not hasattr(tiny_ov, "_adatp_pruned")


def test_manual_decode_loop_without_position_ids_keeps_original_positions(tiny_ov, video_inputs):
    with adatp.prune(tiny_ov, "adatp", retention=0.2) as handle:
        ref_tokens, ref_logits = _generate(tiny_ov, video_inputs, steps=5)
        with torch.no_grad():
            out = tiny_ov(**video_inputs, use_cache=True)
            logits = [out.logits[0, -1]]
            cache = out.past_key_values
            for _ in range(4):
                nxt = logits[-1].argmax().view(1, 1)
                out = tiny_ov(input_ids=nxt, past_key_values=cache, use_cache=True)
                logits.append(out.logits[0, -1])
        assert handle.last_report is not None
    assert [int(lg.argmax()) for lg in logits] == ref_tokens
    assert max((a - b).abs().max().item() for a, b in zip(logits, ref_logits)) <= 1e-5


def test_text_only_call_is_not_pruned(tiny_ov):
    ids = torch.randint(0, 290, (1, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = tiny_ov(input_ids=ids).logits
        with adatp.prune(tiny_ov, "adatp", retention=0.2) as handle:
            out = tiny_ov(input_ids=ids).logits
            assert handle.last_report is None
    assert torch.equal(ref, out)


def test_bad_inputs_get_clear_errors(tiny_ov, video_inputs):
    with adatp.prune(tiny_ov, "adatp", retention=0.2):
        batch = {k: torch.cat([v, v]) for k, v in video_inputs.items()}
        with pytest.raises(InputError, match="batch size 1"):
            tiny_ov(**batch)
        padded = dict(video_inputs, attention_mask=video_inputs["attention_mask"].clone())
        padded["attention_mask"][0, 0] = 0
        with pytest.raises(InputError, match="padding"):
            tiny_ov(**padded)
        short = dict(video_inputs, input_ids=video_inputs["input_ids"][:, 3:], attention_mask=video_inputs["attention_mask"][:, 3:])
        short["input_ids"] = torch.cat([short["input_ids"][:, :2], short["input_ids"][:, 3:]], 1)
        short["attention_mask"] = torch.ones_like(short["input_ids"])
        with pytest.raises(InputError, match="video tokens"):
            tiny_ov(**short)
        with torch.no_grad():
            out = tiny_ov(**video_inputs, use_cache=True)
            with pytest.raises(InputError, match="one token at a time"):
                tiny_ov(input_ids=video_inputs["input_ids"][:, -3:], past_key_values=out.past_key_values)


def test_static_cache_and_regenerate_are_refused(tiny_ov, video_inputs):
    with adatp.prune(tiny_ov, "adatp", retention=0.2):
        with pytest.raises(InputError, match="StaticCache"):
            tiny_ov.generate(**video_inputs, max_new_tokens=2, cache_implementation="static")
        with torch.no_grad():
            out = tiny_ov(**video_inputs, use_cache=True)
            with pytest.raises(InputError):
                tiny_ov.generate(**video_inputs, max_new_tokens=2, past_key_values=out.past_key_values)


def test_bad_settings_and_models_are_refused(tiny_ov):
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        adatp.prune(tiny_ov, "adatp", retention=1.5)
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        adatp.prune(tiny_ov, "adatp", flops_ratio=0)
    with pytest.raises(ConfigError, match="past the model's depth"):
        adatp.prune(tiny_ov, "adatp", schedule=[(0, 0.5), (6, 0.2)])
    with pytest.raises(ConfigError, match="must not increase"):
        adatp.prune(tiny_ov, "adatp", schedule="0:.3,2:.5")
    with pytest.raises(ConfigError, match="unknown method"):
        adatp.prune(tiny_ov, "nope")
    with pytest.raises(ConfigError, match="unknown option"):
        adatp.prune(tiny_ov, "adatp", beta=2)
    with pytest.raises(ConfigError, match="not both"):
        adatp.prune(tiny_ov, "adatp", retention=0.2, flops_ratio=0.3)
    handle = adatp.prune(tiny_ov, "adatp")
    with pytest.raises(ConfigError, match="already pruned"):
        adatp.prune(tiny_ov, "adatp")
    handle.remove()
    with pytest.raises(UnsupportedModelError, match="no adapter"):
        adatp.prune(tiny_ov.model.language_model, "adatp")
    with pytest.raises(UnsupportedModelError, match="sdpa"):
        adatp.prune(build_tiny(layers=2, attn="eager"), "adatp")


def test_inputs_encoded_inside_forward_and_by_generate_agree(tiny_ov):
    inputs = make_inputs(num_frames=6, seed=5)
    with adatp.prune(tiny_ov, "adatp", retention=0.3) as handle:
        with torch.no_grad():
            tiny_ov(**inputs)  # the tower runs inside forward
        direct = handle.last_report
        _generate(tiny_ov, inputs, steps=1)  # generate() encodes the video before the prefill
        via_generate = handle.last_report
    assert direct.method_info["segments"] == via_generate.method_info["segments"]
    for a, b in zip(direct.stages, via_generate.stages):
        assert torch.equal(a.kept_indices, b.kept_indices)
