"""Attention masks after a pruning stage: gathered with the tokens, where they carry structure.

Inside adatp's supported inputs (batch 1, no padding: a 2-D mask with a zero is refused) the mask
is causal. transformers usually leaves it to SDPA (``is_causal``, no mask tensor), but it builds
the full 4-D mask when it cannot skip it: under tracing, ``torch.export``, or torch.compile before
torch 2.14. Forcing that path here puts a real (1, 1, L, L) mask into every decoder layer, so an
in-LLM stage must gather its rows and columns with the tokens, or SDPA is handed the wrong mask.
"""

import pytest
import torch
import transformers.masking_utils

import adatp
from adatp.errors import InputError

from .conftest import make_inputs


def _last_logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits[0, -1]


def _layer_masks(model):
    """Record the attention mask each decoder layer receives: (layer, shape or None). Registered
    after adatp's own pre-hooks, so they see the gathered mask."""
    seen, handles = [], []
    for i, layer in enumerate(model.model.language_model.layers):
        def hook(module, args, kwargs, i=i):
            mask = kwargs.get("attention_mask")
            seen.append((i, None if mask is None else tuple(mask.shape)))
        handles.append(layer.register_forward_pre_hook(hook, with_kwargs=True))
    return seen, handles


@pytest.mark.parametrize("method,target", [("fastv", {"retention": 0.3}), ("adatp", {"flops_ratio": 0.273})])
def test_materialised_4d_masks_are_gathered_with_the_tokens(tiny_ov, monkeypatch, method, target):
    inputs = make_inputs(num_frames=6, seed=3)
    with adatp.prune(tiny_ov, method, **target) as handle:
        skipped = _last_logits(tiny_ov, inputs)  # transformers' default: no mask tensor, SDPA is_causal
        kept = [s.kept for s in handle.last_report.stages]
    monkeypatch.setattr(transformers.masking_utils, "_ignore_causal_mask_sdpa", lambda *a, **k: False)
    with adatp.prune(tiny_ov, method, **target) as handle:
        seen, handles = _layer_masks(tiny_ov)  # after adatp's hooks: what the layer itself receives
        try:
            built = _last_logits(tiny_ov, inputs)
        finally:
            for h in handles:
                h.remove()
        assert [s.kept for s in handle.last_report.stages] == kept
    # Every layer got a 4-D mask sized to the rows it holds (the stages shrink it).
    assert all(shape is not None and len(shape) == 4 and shape[-1] == shape[-2] for _, shape in seen)
    assert len({shape for _, shape in seen}) > 1
    assert torch.allclose(built, skipped, atol=1e-5, rtol=0)


def test_the_language_model_gets_a_2d_mask_as_long_as_the_kept_sequence(tiny_ov):
    """After the pre-LLM stage the 2-D mask handed to transformers has one entry per kept row (it is
    all ones: a mask with a zero is refused before the video is located)."""
    inputs = make_inputs(num_frames=6, seed=3)
    got = {}

    def hook(module, args, kwargs):
        got["mask"], got["rows"] = kwargs["attention_mask"], kwargs["inputs_embeds"].shape[1]

    with adatp.prune(tiny_ov, "visionzip", retention=0.25) as handle:
        h = tiny_ov.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)  # after adatp's own
        try:
            _last_logits(tiny_ov, inputs)
        finally:
            h.remove()
        assert handle.last_report.stages[0].layer == 0
    assert got["rows"] < inputs["input_ids"].shape[1]
    assert tuple(got["mask"].shape) == (1, got["rows"]) and bool(got["mask"].all())
    masked = dict(inputs, attention_mask=inputs["attention_mask"].clone())
    masked["attention_mask"][0, 2] = 0  # a masked token would change positions: refused, not pruned wrongly
    with adatp.prune(tiny_ov, "visionzip", retention=0.25), pytest.raises(InputError, match="padding"):
        _last_logits(tiny_ov, masked)
