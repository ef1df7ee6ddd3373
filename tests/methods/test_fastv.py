"""FastV's official rule against an independent reference: the eager attention map of layer K-1."""

import pytest
import torch

import adatp
from adatp.ops.budgets import tokens_for_retention
from tests.runtime.conftest import build_tiny, make_inputs

PREFIX, FRAMES, PER_FRAME = 5, 8, 16
N = FRAMES * PER_FRAME


@pytest.fixture(scope="module")
def models():
    sdpa = build_tiny(seed=4, layers=6)
    eager = build_tiny(seed=4, layers=6, attn="eager")
    eager.load_state_dict(sdpa.state_dict())
    return sdpa, eager


@pytest.fixture(scope="module")
def inputs():
    return make_inputs(num_frames=FRAMES, seed=7, prefix=PREFIX)


@pytest.fixture(scope="module")
def eager_maps(models, inputs):
    """(layers, N): eager attention of the last prompt row to each visual token, mean over heads."""
    with torch.no_grad():
        out = models[1](**inputs, output_attentions=True)
    return torch.stack([a[0, :, -1, PREFIX : PREFIX + N].float().mean(0) for a in out.attentions])


def _kept(model, inputs, **options):
    with adatp.prune(model, "fastv", **options) as handle, torch.no_grad():
        model(**inputs)
    (stage,) = handle.last_report.stages
    return set(stage.kept_indices.tolist())


def _top(scores, k):
    return set(torch.topk(scores, k).indices.tolist())


@pytest.mark.parametrize("k", [1, 2, 4])
def test_kept_set_is_the_top_of_layer_k_minus_1s_eager_map(models, inputs, eager_maps, k):
    budget = tokens_for_retention(0.5, N)
    kept = _kept(models[0], inputs, k=k, retention=0.5)
    assert kept == _top(eager_maps[k - 1], budget)


def test_self_variant_is_layer_ks_own_map_and_differs(models, inputs, eager_maps):
    budget = tokens_for_retention(0.5, N)
    official = _kept(models[0], inputs, k=2, retention=0.5)
    variant = _kept(models[0], inputs, k=2, retention=0.5, score_layer="self")
    assert variant == _top(eager_maps[2], budget)
    assert official != variant  # the two rules pick different tokens on this input


def test_multi_stage_schedule_scores_each_stage_at_the_layer_before(models, inputs):
    """Stage 3 is ranked by layer 2's attention on layer 2's (already pruned) input."""
    with adatp.prune(models[0], "fastv", schedule=[(2, 0.5), (3, 0.25)]) as handle, torch.no_grad():
        models[0](**inputs)
    first, second = handle.last_report.stages
    assert set(second.kept_indices.tolist()) <= set(first.kept_indices.tolist())
    assert second.kept == tokens_for_retention(0.25, N)


def test_bad_score_layer_is_one_line_error():
    with pytest.raises(adatp.ConfigError, match="score_layer must be 'previous'.*'lasts'"):
        adatp.methods.build_method("fastv", score_layer="lasts")
