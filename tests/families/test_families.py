"""The family table: every test below runs for every row of ``tests/families/__init__.py``."""

from __future__ import annotations

import pytest
import torch

import adatp
from adatp.errors import InputError

from . import FAMILY_IDS, HYBRID_SCHEDULE, MROPE_IDS, family_model, make_inputs, video_token_id
from .reference import reference_generate

STEPS = 20
PRUNED_SCHEDULE = [(0, 0.5), (2, 0.3), (4, 0.15)]


def _generate(model, inputs, steps=STEPS):
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
            output_logits=True, return_dict_in_generate=True,
        )
    return out.sequences[0, inputs["input_ids"].shape[1]:].tolist(), [lg[0] for lg in out.logits]


def _max_diff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


@pytest.fixture(params=FAMILY_IDS)
def family(request):
    model = family_model(request.param)
    return request.param, model, make_inputs(model)


def test_retention_one_equals_the_unpruned_model(family):
    _, model, inputs = family
    ref_tokens, ref_logits = _generate(model, inputs)
    with adatp.prune(model, "adatp", retention=1.0) as handle:
        tokens, logits = _generate(model, inputs)
        report = handle.last_report
    assert tokens == ref_tokens
    assert _max_diff(logits, ref_logits) <= 1e-5
    assert report is not None and all(s.kept == report.num_visual for s in report.stages)


@pytest.mark.parametrize("target", [{"retention": 0.2}, {"schedule": PRUNED_SCHEDULE}])
def test_pruned_generate_equals_the_per_layer_reference(family, target):
    _, model, inputs = family
    with adatp.prune(model, "adatp", **target) as handle:
        tokens, logits = _generate(model, inputs)
        report = handle.last_report
    assert report.stages[-1].kept < report.num_visual
    kept = [(s.layer, s.kept_indices) for s in report.stages]
    ref_tokens, ref_logits = reference_generate(model, inputs, kept, STEPS)
    assert tokens == ref_tokens
    assert _max_diff(logits, ref_logits) <= 1e-5


def test_decode_loop_without_positions_continues_where_the_unpruned_model_would(family):
    fid, model, _ = family
    # Qwen2.5-VL: temporal positions (8 s a grid x 2 tokens/s) run past the question, so a bare loop
    # (length + delta) and generate() (last position + 1) place new tokens differently (D14).
    inputs = make_inputs(model, question=4, second_per_grid=8.0)
    with adatp.prune(model, "adatp", schedule=PRUNED_SCHEDULE) as handle:
        with torch.no_grad():
            out = model(**inputs, use_cache=True)
            logits = [out.logits[0, -1]]
            cache = out.past_key_values
            for _ in range(5):
                nxt = logits[-1].argmax().view(1, 1)
                out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
                logits.append(out.logits[0, -1])
        kept = [(s.layer, s.kept_indices) for s in handle.last_report.stages]
    ref_tokens, ref_logits = reference_generate(model, inputs, kept, 6, decode="loop")
    assert [int(lg.argmax()) for lg in logits] == ref_tokens
    assert _max_diff(logits, ref_logits) <= 1e-5


@pytest.mark.parametrize("fid", sorted(HYBRID_SCHEDULE))
def test_linear_attention_states_are_those_of_the_tokens_each_layer_saw(fid):
    """After a pruned prefill, every Gated DeltaNet layer's convolution state (its last w inputs) and
    recurrent state equal those of the per-layer reference, which runs each layer on exactly the
    tokens alive at it; and the recurrent states differ from the unpruned prefill's (the test can
    tell them apart)."""
    model = family_model(fid)
    inputs = make_inputs(model)
    kinds = model.config.text_config.layer_types
    with torch.no_grad():
        full = model(**inputs, use_cache=True).past_key_values
    with adatp.prune(model, "adatp", schedule=HYBRID_SCHEDULE[fid]) as handle, torch.no_grad():
        pruned = model(**inputs, use_cache=True).past_key_values
        kept = [(s.layer, s.kept_indices) for s in handle.last_report.stages]
    caches = []
    reference_generate(model, inputs, kept, 1, caches=caches)
    linear = [i for i, kind in enumerate(kinds) if kind == "linear_attention"]
    assert linear and any(kind == "full_attention" for kind in kinds)
    for i in linear:
        for get in ("get_conv_state", "get_recurrent_state"):
            got, want, unpruned = (getattr(c, get)(i) for c in (pruned, caches[0], full))
            assert got is not None and got.shape == want.shape
            assert torch.allclose(got, want, atol=1e-6, rtol=1e-5), (i, get, (got - want).abs().max())
            if get == "get_recurrent_state":  # it integrates every token (the conv state holds the last w, text)
                assert not torch.allclose(got, unpruned, atol=1e-4), (i, get)
    for i, kind in enumerate(kinds):  # attention layers: KV of the tokens each layer saw
        if kind == "full_attention":
            assert pruned.layers[i].keys.shape == caches[0].layers[i].keys.shape
            assert torch.allclose(pruned.layers[i].keys, caches[0].layers[i].keys, atol=1e-6)


@pytest.mark.parametrize("fid", sorted(HYBRID_SCHEDULE))
def test_hybrid_cache_misuse_is_refused_with_one_line(fid):
    """What cannot decode with uneven per-layer lengths is refused before any layer runs: transformers'
    static hybrid cache, and a cache that already holds tokens (its length is read from the first
    full-attention layer; a linear layer's states cannot be rolled back)."""
    model = family_model(fid)
    inputs = make_inputs(model)
    with adatp.prune(model, "adatp", retention=0.2):
        with pytest.raises(InputError, match="StaticCache") as info:
            model.generate(**inputs, max_new_tokens=2, cache_implementation="static")
        assert "\n" not in str(info.value)
        with torch.no_grad():
            used = model(input_ids=inputs["input_ids"][:, :3], use_cache=True).past_key_values
        with pytest.raises(InputError, match="already holds tokens") as info:
            model(**inputs, past_key_values=used, use_cache=True)
        assert "\n" not in str(info.value)


def test_remove_restores_outputs_weights_and_hooks_bit_for_bit(family):
    _, model, inputs = family

    def hook_ids():
        return {(n, kind, k) for n, m in model.named_modules() for kind in ("_forward_pre_hooks", "_forward_hooks")
                for k in getattr(m, kind)}

    hooks = hook_ids()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(**inputs).logits
    handle = adatp.prune(model, "adatp", retention=0.2)
    with torch.no_grad():
        pruned = model(**inputs).logits
    handle.remove()
    with torch.no_grad():
        after = model(**inputs).logits
    assert pruned.shape[1] < before.shape[1]
    assert torch.equal(before, after)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert hook_ids() == hooks


def test_report_counts_equal_what_each_layer_received(family):
    _, model, inputs = family
    seen, hooks = [], []
    with adatp.prune(model, "adatp", retention=0.2) as handle:
        for layer in model.model.language_model.layers:
            hooks.append(layer.register_forward_pre_hook(lambda m, a, k: seen.append((a[0] if a else k["hidden_states"]).shape[1]), with_kwargs=True))
        with torch.no_grad():
            model(**inputs)
        report = handle.last_report
    for h in hooks:
        h.remove()
    other = report.seq_len - report.num_visual
    assert seen == [n + other for n in report.visual_tokens_per_layer]


@pytest.mark.parametrize("fid", MROPE_IDS)
def test_qwen_bad_inputs_get_one_line_errors(fid):
    model = family_model(fid)
    inputs = make_inputs(model)
    with adatp.prune(model, "adatp", retention=0.2):
        two = dict(inputs, video_grid_thw=inputs["video_grid_thw"].repeat(2, 1))
        with pytest.raises(InputError, match="one video per prompt"):
            model(**two)
        padded = dict(inputs, attention_mask=inputs["attention_mask"].clone())
        padded["attention_mask"][0, 0] = 0
        with pytest.raises(InputError, match="padding"):
            model(**padded)
        batch = {k: torch.cat([v, v]) if k in ("input_ids", "attention_mask", "mm_token_type_ids") else v for k, v in inputs.items()}
        with pytest.raises(InputError, match="batch size 1"):
            model(**batch)
        short = dict(inputs, video_grid_thw=inputs["video_grid_thw"] * torch.tensor([[2, 1, 1]]))
        with pytest.raises(InputError, match="video tokens") as info:
            model(**short)
        assert "\n" not in str(info.value)
        if fid in ("qwen3-vl", "glm-4.6v"):
            with pytest.raises(InputError, match="images"):
                model(**inputs, pixel_values=torch.zeros(4, 1), image_grid_thw=torch.tensor([[1, 2, 2]]))
    with pytest.raises(adatp.errors.ConfigError, match="compact") as info:
        adatp.prune(model, "uniform-frames")
    assert "\n" not in str(info.value)


def test_scores_reaching_select_equal_the_eager_attention_of_that_layer(family, monkeypatch):
    """In a real pruned forward, the scores each in-LLM stage hands to ``select()`` equal layer k's
    eager attention probabilities (attn_implementation="eager") on the hidden states layer k really
    received, averaged over heads and over the query rows D3 fixes (every token after the last video
    token), at the alive visual tokens' key columns. Independent of the runtime's bookkeeping: the
    alive sets are what ``select()`` itself returned, positions come from the model's own
    ``get_rope_index`` (or ``arange``), and the video's place from the video token id."""
    from adatp.methods.adatp import AdaTPPlan

    from .reference import prompt_features, video_positions

    fid, model, inputs = family
    schedule = HYBRID_SCHEDULE.get(fid, PRUNED_SCHEDULE)
    stage_layers = [k for k, _ in schedule]
    lm = model.model.language_model
    calls = []
    original = AdaTPPlan.select  # AdaTP's per-prompt plan chooses the tokens

    def spy(self, stage, alive, scores, **kw):
        kept = original(self, stage, alive, scores, **kw)
        calls.append((stage.layer, alive.clone(), None if scores is None else scores.clone(), kept.clone()))
        return kept

    monkeypatch.setattr(AdaTPPlan, "select", spy)
    layer_inputs = {}

    def capture(k):
        def hook(module, args, kwargs):
            layer_inputs[k] = (args[0] if args else kwargs["hidden_states"]).detach().clone()
        return hook

    handles = [lm.layers[k].register_forward_pre_hook(capture(k), with_kwargs=True, prepend=True) for k in stage_layers[1:]]
    try:
        with adatp.prune(model, "adatp", schedule=schedule) as handle, torch.no_grad():
            model(**inputs)
    finally:
        for h in handles:
            h.remove()
    assert [c[0] for c in calls] == stage_layers
    kinds = [getattr(model.config.text_config, "layer_types", None) or ["full_attention"] * len(lm.layers)][0]
    assert [(s.scored_layer, s.scored_attention) for s in handle.last_report.stages[1:]] == [
        (k, kinds[k]) for k in stage_layers[1:]
    ]

    ids = inputs["input_ids"]
    _, positions, _, _ = prompt_features(model, inputs)
    vis = video_positions(model, ids)
    is_vis = torch.zeros(ids.shape[1], dtype=torch.bool)
    is_vis[vis] = True
    others = torch.nonzero(~is_vis).flatten()
    last_video = int(torch.nonzero(ids[0] == video_token_id(model)).max())  # LLaVA: its newline (D3)
    previous_kept = calls[0][3]
    for layer_index, alive, scores, kept in calls[1:]:
        assert torch.equal(alive, previous_kept)
        previous_kept = kept
        seq = torch.sort(torch.cat([others, vis[alive]])).values  # original positions of the layer's rows
        hidden = layer_inputs[layer_index]
        assert hidden.shape[1] == seq.numel()
        layer = lm.layers[layer_index]
        n = seq.numel()
        rows = seq > last_video
        cols = torch.searchsorted(seq, vis[alive])
        if kinds[layer_index] == "linear_attention":
            expected = _linear_attention_map(layer, hidden, monkeypatch)[:, rows][:, :, cols].mean(dim=(0, 1))
            assert scores is not None and torch.allclose(scores, expected, atol=1e-6, rtol=1e-4), (scores - expected).abs().max()
            continue
        causal = torch.full((n, n), torch.finfo(hidden.dtype).min).triu(1)[None, None]
        model.set_attn_implementation("eager")
        try:
            with torch.no_grad():
                _, weights = layer.self_attn(
                    hidden_states=layer.input_layernorm(hidden),
                    position_embeddings=lm.rotary_emb(hidden, positions[..., seq]),
                    attention_mask=causal,
                    output_attentions=True,
                )
        finally:
            model.set_attn_implementation("sdpa")
        expected = weights[0][:, rows][:, :, cols].float().mean(dim=(0, 1))
        assert scores is not None and scores.shape == expected.shape
        assert torch.allclose(scores, expected, atol=1e-6, rtol=1e-4), (scores - expected).abs().max()


def _linear_attention_map(layer, hidden, monkeypatch):
    """(H, n, n) softmax(q k^T / sqrt(d_k)), causal, of the queries and keys a Gated DeltaNet layer
    hands its delta-rule kernel: the layer's own forward on ``hidden`` (no cache), with the kernel
    wrapped to catch them; L2-normalised as the kernel does (``use_qk_l2norm_in_kernel``)."""
    import sys

    module = sys.modules[type(layer.linear_attn).__module__]
    caught = {}
    original = module.torch_chunk_gated_delta_rule

    def catch(query, key, *args, **kwargs):
        caught["q"], caught["k"] = query.detach().clone(), key.detach().clone()
        return original(query, key, *args, **kwargs)

    monkeypatch.setattr(module, "torch_chunk_gated_delta_rule", catch)
    with torch.no_grad():
        layer.linear_attn(layer.input_layernorm(hidden))
    monkeypatch.setattr(module, "torch_chunk_gated_delta_rule", original)
    # The kernel's normalisation x / sqrt(|x|^2 + 1e-6) (transformers' l2norm, aligned with FLA's).
    q, k = (caught[x][0].float() / (caught[x][0].float().pow(2).sum(-1, keepdim=True) + 1e-6).sqrt() for x in "qk")
    q, k = q.transpose(0, 1), k.transpose(0, 1)  # (H, n, d_k)
    n = q.shape[1]
    logits = q @ k.transpose(1, 2) / q.shape[-1] ** 0.5
    return logits.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)


def test_eager_attention_is_refused_with_one_line(family):
    fid, _, _ = family
    from adatp.errors import UnsupportedModelError

    from . import fresh_model

    model = fresh_model(fid, text_layers=2)
    model.set_attn_implementation("eager")
    with pytest.raises(UnsupportedModelError, match="sdpa") as info:
        adatp.prune(model, "adatp")
    assert "\n" not in str(info.value)


def test_attention_analysis_reads_every_family(family):
    from adatp.analysis.attention import capture_attention

    _, model, inputs = family
    maps = capture_attention(model, inputs, layers=[0, 2])
    report_grid = make_report_grid(model, inputs)
    assert maps.maps.shape[0] == 2 and tuple(maps.maps.shape[1:]) == report_grid


def make_report_grid(model, inputs):
    with adatp.prune(model, "adatp", retention=1.0) as handle, torch.no_grad():
        model(**inputs)
        r = handle.last_report
    return (r.num_frames, *r.grid)
