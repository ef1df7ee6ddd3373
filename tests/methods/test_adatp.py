"""AdaTP's method logic on hand-made contexts, and its relevance path through prune()."""

import pytest
import torch

import adatp
from adatp.adapters.base import VideoLayout, VideoSpan
from adatp.errors import ConfigError
from adatp.methods import AdaTP, AdaTPConfig, PrefillContext
from adatp.ops.flops import DecoderDims
from tests.runtime.conftest import build_tiny, make_inputs

DIMS = DecoderDims(hidden=8, intermediate=16, num_layers=4, num_kv_heads=1, head_dim=8)


def _context(tokens, frame_features, relevance=None):
    t, c, _ = tokens.shape
    span = VideoSpan(start=0, layout=VideoLayout(t, 1, c, "video_end"), seq_len=t * c + 5)
    return PrefillContext(span, tokens, frame_features, relevance, "test" if relevance is not None else "uniform", None, DIMS)


def _two_scene_video():
    """4 frames x 2 tokens: frames 0-1 scene A, 2-3 scene B; frame 1 repeats frame 0 at position 0."""
    tokens = torch.tensor(
        [
            [[1.0, 0, 0, 0], [0, 1.0, 0, 0]],
            [[1.0, 0, 0, 0], [0, 0, 1.0, 0]],
            [[0, 0, 0, 1.0], [0, 1.0, 0, 0]],
            [[0, 1.0, 0, 0], [1.0, 0, 0, 0]],
        ]
    )
    frames = torch.tensor([[1.0, 0.0], [1.0, 0.05], [0.0, 1.0], [0.05, 1.0]])
    return tokens, frames


def test_plan_segments_budgets_and_dedup():
    tokens, frames = _two_scene_video()
    method = AdaTP(AdaTPConfig(schedule=[(0, 0.75), (1, 0.5)]))
    plan = method.plan(_context(tokens, frames))
    assert [(s.layer, s.budget) for s in plan] == [(0, 6), (1, 4)]
    assert plan.frame_segments.tolist() == [0, 0, 1, 1]
    assert plan.duplicates.tolist() == [False, False, True, False, False, False, False, False]
    kept = plan.select(plan[0], torch.arange(8), None)
    # Each segment keeps 3 of 4; segment 0 drops its duplicate (token 2), segment 1 its most redundant.
    assert kept.tolist()[:3] == [0, 1, 3]
    assert plan.kept_per_group(kept) == [3, 3]
    assert not hasattr(method, "frame_segments")  # nothing per prompt on the method itself


def test_in_llm_stage_ranks_duplicates_last_and_stays_in_segments():
    tokens, frames = _two_scene_video()
    method = AdaTP(AdaTPConfig(schedule=[(1, 0.5)]))
    plan = method.plan(_context(tokens, frames))
    alive = torch.arange(8)
    # Segment 0 holds all the attention, token 2 (a duplicate) the most of it.
    scores = torch.tensor([0.2, 0.1, 0.6, 0.05, 0.01, 0.02, 0.0, 0.02])
    kept = plan.select(plan[0], alive, scores)
    assert kept.tolist() == [0, 1, 5, 7]  # 2 per segment; 2 is last in segment 0; 5/7 tie -> earlier first
    assert plan.budgets == [[2, 2]]


def test_relevance_moves_budget_to_the_relevant_segment():
    tokens, frames = _two_scene_video()
    relevance = torch.tensor([0.1, 0.1, 0.9, 0.9])
    method = AdaTP(AdaTPConfig(schedule=[(0, 0.5)], alpha=1.0))
    plan = method.plan(_context(tokens, frames, relevance))
    plan.select(plan[0], torch.arange(8), None)
    assert plan.budgets == [[1, 3]]  # weights 4 * (1 + 0) : 4 * (1 + 1)
    flat = AdaTP(AdaTPConfig(schedule=[(0, 0.5)], alpha=0.0)).plan(_context(tokens, frames, relevance))
    flat.select(flat[0], torch.arange(8), None)
    assert flat.budgets == [[2, 2]]


def test_ablations_switch_modules_off():
    tokens, frames = _two_scene_video()
    one = AdaTP(AdaTPConfig(schedule=[(0, 0.5)], segmentation=False))
    assert one.plan(_context(tokens, frames)).frame_segments.tolist() == [0, 0, 0, 0]
    nodedup = AdaTP(AdaTPConfig(schedule=[(0, 0.5)], dedup_threshold=1.01))
    assert not nodedup.plan(_context(tokens, frames)).duplicates.any()
    rnd = [AdaTP(AdaTPConfig(schedule=[(0, 0.5)], scoring="random", seed=s)) for s in (0, 0, 1)]
    plans = [m.plan(_context(tokens, frames)) for m in rnd]
    kept = [p.select(p[0], torch.arange(8), None).tolist() for p in plans]
    assert kept[0] == kept[1]
    assert all(len(k) == 4 for k in kept)
    with pytest.raises(ConfigError):
        AdaTPConfig(alpha=-1)
    with pytest.raises(ConfigError):
        AdaTPConfig(scoring="oracle")


class _FixedScorer:
    """Text matches the frames whose first pixel-feature is large."""

    name = "fixed"

    def embed_text(self, text):
        self.text = text
        return torch.tensor([1.0, 0.0])

    def embed_frames(self, patch_features):
        first = patch_features[:, :, 0].mean(1)
        return torch.stack([first, torch.ones_like(first)], dim=1)


class _Tok:
    all_special_ids = [0]

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(i) for i in ids)


def test_relevance_scorer_through_prune_is_reported():
    model = build_tiny(layers=4)
    inputs = make_inputs(num_frames=8, seed=2)
    scorer = _FixedScorer()
    with adatp.prune(model, "adatp", retention=0.25, relevance=scorer, tokenizer=_Tok(), segment_threshold=1.5) as h:
        with torch.no_grad():
            model(**inputs)
        report = h.last_report
    assert not report.relevance_uniform and report.relevance_source == "fixed"
    assert report.query_text == scorer.text and report.query_text
    rel = report.method_info["segment_relevance"]
    budgets = report.method_info["segment_budgets"][-1]
    assert len(rel) == 8  # tau_s > 1: one segment per frame
    best, worst = rel.index(max(rel)), rel.index(min(rel))
    assert budgets[best] > budgets[worst]
    with adatp.prune(model, "adatp", retention=0.25) as h:
        with torch.no_grad():
            model(**inputs)
        assert h.last_report.relevance_uniform
        assert "uniform" in h.last_report.summary()


def test_no_local_debiasing_ranks_layer_0_by_its_own_attention():
    """dedup_threshold > 1: the layer-0 stage asks for layer 0's query-row attention and ranks by
    it inside each segment; redundancy plays no part (token 2, a duplicate, is kept)."""
    tokens, frames = _two_scene_video()
    method = AdaTP(AdaTPConfig(schedule=[(0, 0.5), (1, 0.25)], dedup_threshold=2.0))
    stages = method.plan(_context(tokens, frames))
    assert [s.scoring for s in stages] == ["query_rows", "query_rows"]
    scores = torch.tensor([0.1, 0.9, 0.8, 0.3, 0.2, 0.1, 0.5, 0.6])
    # segment 0 = tokens 0-3 keeps 2 (1 and 2), segment 1 = tokens 4-7 keeps 2 (7 and 6)
    assert stages.select(stages[0], torch.arange(8), scores).tolist() == [1, 2, 6, 7]
    default = AdaTP(AdaTPConfig(schedule=[(0, 0.5), (1, 0.25)])).plan(_context(tokens, frames))
    assert default[0].scoring is None  # redundancy needs no attention
    assert 2 not in default.select(default[0], torch.arange(8), None)


def test_no_local_debiasing_matches_eager_layer_0_attention_through_prune():
    """Independent reference: layer 0's eager attention map (query rows after the video, mean over
    heads and rows), top b_j inside each reported segment."""
    model = build_tiny(seed=2, layers=4)
    eager = build_tiny(seed=2, layers=4, attn="eager")
    eager.load_state_dict(model.state_dict())
    inputs = make_inputs(num_frames=8, seed=5)  # prefix 5, 8 x 16 visual + newline, 12 question rows
    with adatp.prune(model, "adatp", schedule=[(0, 0.5)], dedup_threshold=2.0) as h, torch.no_grad():
        model(**inputs)
    report = h.last_report
    with torch.no_grad():
        att = eager(**inputs, output_attentions=True).attentions[0][0]  # (H, L, L)
    scores = att[:, -12:, 5 : 5 + 128].float().mean((0, 1))
    expected = []
    for (f0, f1), b in zip(report.method_info["segments"], report.method_info["segment_budgets"][0]):
        lo, hi = f0 * 16, (f1 + 1) * 16
        expected += (lo + torch.topk(scores[lo:hi], b).indices).tolist()
    assert len(report.method_info["segments"]) > 1
    assert report.stages[0].kept_indices.tolist() == sorted(expected)


def test_missing_frame_features_warn_and_are_reported():
    tokens, _ = _two_scene_video()
    ctx = _context(tokens, None)
    method = AdaTP(AdaTPConfig(schedule=[(0, 0.5)]))
    with pytest.warns(UserWarning, match="no per-frame features.*one segment"):
        plan = method.plan(ctx)
    assert len(ctx.warnings) == 1 and "segmentation=False" in ctx.warnings[0]
    assert plan.describe()["segmentation"] == "off: no frame features"
    quiet = AdaTP(AdaTPConfig(schedule=[(0, 0.5)], segmentation=False))  # asked for: no warning
    ctx = _context(tokens, None)
    plan = quiet.plan(ctx)
    assert ctx.warnings == [] and plan.describe()["segmentation"] == "off (ablation: one segment)"


def test_missing_frame_features_reach_the_report(monkeypatch):
    from adatp.runtime.pruner import PruningRuntime

    monkeypatch.setattr(PruningRuntime, "_on_patch_features", lambda self, module, args: None)
    model = build_tiny(layers=4)
    with adatp.prune(model, "adatp", retention=0.25) as h, torch.no_grad():
        with pytest.warns(UserWarning, match="no per-frame features"):
            model(**make_inputs(num_frames=8, seed=2))
    report = h.last_report
    assert any("no per-frame features" in w for w in report.warnings)
    assert report.method_info["segments"] == [(0, 7)]
    assert report.method_info["segmentation_feature"] == "missing"
