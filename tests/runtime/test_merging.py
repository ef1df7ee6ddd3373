"""Merging stages: the weighted-average op, its validation, and generate() against the reference."""

import pytest
import torch

import adatp
from adatp.errors import ConfigError
from adatp.methods import base as methods_base
from adatp.methods.base import PruningMethod, Selection, StagePlan, TargetConfig
from adatp.ops.merging import check_merge, merge_tokens

from .reference import reference_generate
from .test_pruned_generate import _generate


def test_merge_tokens_weighted_average_by_hand():
    values = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 8.0]])
    merge_into = torch.tensor([0, 0, -1, 1])
    weights = torch.tensor([1.0, 3.0, 1.0, 2.0])
    out = merge_tokens(values, merge_into, weights, 2)
    assert torch.equal(out, torch.tensor([[(1 + 9) / 4, 6 / 4], [7.0, 8.0]]))


def test_merge_tokens_accumulates_bf16_in_fp32():
    values = torch.full((300, 1), 1.0, dtype=torch.bfloat16)
    values[0] = 0.0
    out = merge_tokens(values, torch.zeros(300, dtype=torch.long), None, 1)
    assert out.dtype == torch.bfloat16
    assert out.item() == pytest.approx(299 / 300, abs=4e-3)  # a bf16 running sum would stall at 256


@pytest.mark.parametrize(
    "merge_into, weights, message",
    [
        (torch.tensor([0, 1, 5, -1]), None, "kept slot"),
        (torch.tensor([0, 0, 0, -1]), None, "own slot"),
        (torch.tensor([0, 1, 0]), None, "one entry per alive token"),
        (torch.tensor([0, 1, 0, -1]), torch.tensor([1.0, 0.0, 1.0, 1.0]), "positive"),
    ],
)
def test_check_merge_rejects_bad_plans(merge_into, weights, message):
    alive, kept = torch.tensor([2, 5, 7, 9]), torch.tensor([2, 5])
    with pytest.raises(ConfigError, match=message):
        check_merge(alive, kept, merge_into, weights)


class _ToyMerge(PruningMethod):
    """Keeps the tokens with the largest state norm; each dropped token joins the kept token just
    before it (by visual index), every third one is dropped outright; weights are token-specific."""

    name = "_toy-merge"
    config_class = TargetConfig
    seen_hidden: list[torch.Tensor] = []

    def plan(self, ctx):
        self.seen_hidden.clear()
        self.ctx_tokens = ctx.tokens.reshape(-1, ctx.tokens.shape[-1])
        return [StagePlan(p.layer, p.retention, p.budget, None, needs_hidden=True) for p in self.stages_for(ctx, None)]

    def select(self, stage, alive, scores, hidden=None):
        self.seen_hidden.append(hidden)
        order = torch.argsort(hidden.float().norm(dim=-1), descending=True, stable=True)
        kept = torch.sort(alive[order[: stage.budget]]).values
        slot = (torch.searchsorted(kept, alive, right=True) - 1).clamp_min(0)
        merge_into = slot.clone()
        merge_into[torch.arange(len(alive)) % 3 == 2] = -1
        merge_into[torch.searchsorted(alive, kept)] = torch.arange(len(kept))
        weights = 1.0 + (alive % 4).float()
        return Selection(kept, merge_into, weights)


@pytest.fixture
def toy_merge(monkeypatch):
    monkeypatch.setitem(methods_base._METHODS, _ToyMerge.name, _ToyMerge)
    return _ToyMerge.name


@pytest.mark.parametrize("schedule", [[(0, 0.5)], [(0, 0.5), (2, 0.25)], [(1, 0.6), (3, 0.3)]])
def test_merging_generate_matches_reference(tiny_ov, video_inputs, toy_merge, schedule):
    with adatp.prune(tiny_ov, toy_merge, schedule=schedule) as handle:
        tokens, logits = _generate(tiny_ov, video_inputs)
        report = handle.last_report
    stages = [(s.layer, s.kept_indices, s.merge_into, s.merge_weights) for s in report.stages]
    assert all(s.merged > 0 for s in report.stages)
    ref_tokens, ref_logits = reference_generate(tiny_ov, video_inputs, stages, len(tokens))
    assert tokens == ref_tokens
    assert max((a - b).abs().max().item() for a, b in zip(logits, ref_logits)) <= 1e-5
    # Merging really changes the result: the same kept sets without merging give other logits.
    plain, plain_logits = reference_generate(tiny_ov, video_inputs, [s[:2] for s in stages], len(tokens))
    assert max((a - b).abs().max().item() for a, b in zip(logits, plain_logits)) > 1e-3


def test_stage_zero_hidden_is_the_projected_video(tiny_ov, video_inputs, toy_merge):
    with adatp.prune(tiny_ov, toy_merge, schedule=[(0, 0.5)]):
        with torch.no_grad():
            tiny_ov(**video_inputs)
    cfg = tiny_ov.config
    with torch.no_grad():
        video = tiny_ov.model.get_video_features(
            pixel_values_videos=video_inputs["pixel_values_videos"],
            vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        ).pooler_output.flatten(0, 1)
    assert torch.equal(_ToyMerge.seen_hidden[0], video[:-1])  # grid tokens, the newline excluded
