"""One suite over every registered method: counts, exactness at retention 1.0, consistency."""

import pytest
import torch

import adatp
from adatp.methods import FastV, FastVConfig
from adatp.methods.base import available_methods
from adatp.ops.budgets import tokens_for_retention
from tests.runtime.conftest import build_tiny, make_inputs
from tests.runtime.reference import reference_generate

PRUNING = [m for m in available_methods() if m != "none"]


@pytest.fixture(scope="module")
def model():
    return build_tiny(layers=6)


@pytest.fixture(scope="module")
def inputs():
    return make_inputs(num_frames=8, seed=3)


def _run(model, inputs, method, steps=8, **target):
    with adatp.prune(model, method, **target) as handle:
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                                 output_logits=True, return_dict_in_generate=True)
        report = handle.last_report
    return out.sequences[0, inputs["input_ids"].shape[1]:].tolist(), [lg[0] for lg in out.logits], report


@pytest.mark.parametrize("method", PRUNING)
def test_kept_counts_equal_the_target(model, inputs, method):
    _, _, report = _run(model, inputs, method, steps=1, retention=0.25)
    assert report.stages[-1].kept == tokens_for_retention(0.25, 128)
    for stage in report.stages:
        assert stage.kept == stage.budget == stage.kept_indices.numel()
        assert torch.equal(stage.kept_indices, torch.sort(stage.kept_indices).values)
    _, _, report = _run(model, inputs, method, steps=1, flops_ratio=0.5)
    assert report.flops.visual_ratio == pytest.approx(0.5, abs=0.02)  # counts are rounded to tokens


@pytest.mark.parametrize("method", PRUNING)
def test_retention_one_is_exact(model, inputs, method):
    ref_tokens, ref_logits, _ = _run(model, inputs, "none")
    tokens, logits, report = _run(model, inputs, method, retention=1.0)
    assert tokens == ref_tokens
    assert max((a - b).abs().max().item() for a, b in zip(logits, ref_logits)) <= 1e-5
    assert all(s.kept == 128 for s in report.stages)


@pytest.mark.parametrize("method", PRUNING)
def test_generate_is_consistent_with_the_kept_set(model, inputs, method):
    tokens, logits, report = _run(model, inputs, method, retention=0.2)
    kept = [(s.layer, s.kept_indices, s.merge_into, s.merge_weights) for s in report.stages]
    compact = report.positions == "compact"
    ref_tokens, ref_logits = reference_generate(model, inputs, kept, len(tokens), compact=compact)
    assert tokens == ref_tokens
    assert max((a - b).abs().max().item() for a, b in zip(logits, ref_logits)) <= 1e-5


def test_fastv_keeps_the_top_tokens_by_last_row_attention():
    """Worked example from FastV's rule: keep the R tokens the last token attends to most."""
    method = FastV(FastVConfig(retention=0.5))
    stage = type("S", (), {"budget": 3})()
    alive = torch.tensor([0, 2, 3, 5, 7, 8])
    scores = torch.tensor([0.05, 0.30, 0.01, 0.20, 0.20, 0.10])
    assert method.select(stage, alive, scores).tolist() == [2, 5, 7]


def test_fastv_prunes_at_layer_k_only(model, inputs):
    _, _, report = _run(model, inputs, "fastv", steps=1, retention=0.25, k=3)
    assert [s.layer for s in report.stages] == [3]
    assert report.visual_tokens_per_layer == [128, 128, 128, 32, 32, 32]


def test_unreachable_flops_target_names_the_floor(model, inputs):
    with adatp.prune(model, "fastv", flops_ratio=0.2):  # layers 0-1 of 6 stay whole: >= 1/3
        with pytest.raises(adatp.ConfigError, match="out of reach.*0.333"):
            model(**inputs)


def test_random_is_seeded(model, inputs):
    a = _run(model, inputs, "random", steps=1, retention=0.3, seed=1)[2]
    b = _run(model, inputs, "random", steps=1, retention=0.3, seed=1)[2]
    c = _run(model, inputs, "random", steps=1, retention=0.3, seed=2)[2]
    assert torch.equal(a.stages[-1].kept_indices, b.stages[-1].kept_indices)
    assert not torch.equal(a.stages[-1].kept_indices, c.stages[-1].kept_indices)
