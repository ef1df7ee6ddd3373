"""FrameFusion: worked examples computed by hand from the paper's rule, and option errors."""

import math

import pytest
import torch

import adatp
from adatp.errors import ConfigError
from adatp.methods.base import StagePlan, build_method
from adatp.methods.framefusion import (
    FrameFusion,
    FrameFusionConfig,
    previous_frame_similarity,
    temporal_merge_plan,
)
from adatp.ops.merging import check_merge, merge_tokens
from tests.runtime.conftest import build_tiny, make_inputs

# 3 frames x 2 grid positions, v = t * 2 + p. States (2-D):
#   t0: v0 = [1, 0], v1 = [0, 1]
#   t1: v2 = [1, 0], v3 = [1, 0]
#   t2: v4 = [1, 1], v5 = [2, 1]
# Same-position similarity to the previous frame:
#   v2~v0 = 1, v3~v1 = 0, v4~v2 = 1/sqrt(2) = .7071, v5~v3 = 2/sqrt(5) = .8944; v0, v1: none.
ALIVE = torch.arange(6)
HIDDEN = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [2.0, 1.0]])


def test_previous_frame_similarity_by_hand():
    sim = previous_frame_similarity(ALIVE, HIDDEN, 2)
    assert math.isinf(sim[0]) and sim[0] < 0 and math.isinf(sim[1]) and sim[1] < 0
    assert sim[2:].tolist() == pytest.approx([1.0, 0.0, 1 / math.sqrt(2), 2 / math.sqrt(5)], abs=1e-6)


def test_previous_frame_skips_dropped_frames():
    # alive v1 (t0,p1), v4 (t2,p0), v5 (t2,p1): v5's predecessor is v1, v4 has none.
    sim = previous_frame_similarity(torch.tensor([1, 4, 5]), torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 1.0]]), 2)
    assert sim[0] == float("-inf") and sim[1] == float("-inf")
    assert sim[2].item() == pytest.approx(1 / math.sqrt(2), abs=1e-6)


def test_merge_two_most_similar_pairs():
    # Keep 4 of 6: merge the 2 most similar pairs, v2 (1.0) into v0 and v5 (.894) into v3.
    sel = temporal_merge_plan(ALIVE, previous_frame_similarity(ALIVE, HIDDEN, 2), 2, 4)
    assert sel.kept.tolist() == [0, 1, 3, 4]
    assert sel.merge_into.tolist() == [0, 1, 0, 2, 3, 2]
    assert sel.weights is None
    check_merge(ALIVE, sel.kept, sel.merge_into, sel.weights)


def test_a_run_of_merges_joins_its_first_token():
    # Keep 3: v2 (1.0), v5 (.894), v4 (.707) merge; v4 -> v2 -> v0 is one run, averaged equally.
    sel = temporal_merge_plan(ALIVE, previous_frame_similarity(ALIVE, HIDDEN, 2), 2, 3)
    assert sel.kept.tolist() == [0, 1, 3]
    assert sel.merge_into.tolist() == [0, 1, 0, 2, 0, 2]
    merged = merge_tokens(HIDDEN, sel.merge_into, sel.weights, 3)
    assert merged[0].tolist() == pytest.approx([1.0, 1 / 3])  # (v0 + v2 + v4) / 3
    assert merged[2].tolist() == pytest.approx([1.5, 0.5])  # (v3 + v5) / 2
    assert merged[1].tolist() == [0.0, 1.0]


def test_pairs_exhausted_drops_the_latest_groups():
    # Keep 1 of 6: all 4 pairs merge (2 roots: v0, v1), then v1's whole group is dropped.
    sel = temporal_merge_plan(ALIVE, previous_frame_similarity(ALIVE, HIDDEN, 2), 2, 1)
    assert sel.kept.tolist() == [0]
    assert sel.merge_into.tolist() == [0, -1, 0, -1, 0, -1]


def test_select_counts_merges_below_threshold():
    method = FrameFusion(FrameFusionConfig(similarity_threshold=0.6))
    method.tokens_per_frame, method.merges, method.below_threshold = 2, [], []
    stage = StagePlan(0, 2 / 6, 2, None, needs_hidden=True)
    sel = method.select(stage, ALIVE, None, hidden=HIDDEN)
    # 4 merges: 1.0, .894, .707 and v3~v1 = 0 < 0.6 (continued by rank below the threshold).
    assert sel.kept.tolist() == [0, 1]
    assert sel.merge_into.tolist() == [0, 1, 0, 1, 0, 1]
    assert method.describe()["merges_per_stage"] == [4]
    assert method.describe()["merges_below_threshold"] == [1]


def test_pruning_stage_keeps_top_last_row_attention_and_full_budget_is_identity():
    method = FrameFusion(FrameFusionConfig())
    alive = torch.tensor([0, 2, 3, 5, 7])
    scores = torch.tensor([0.1, 0.4, 0.05, 0.3, 0.2])
    assert method.select(StagePlan(2, 0.4, 2, "last_row"), alive, scores).tolist() == [2, 5]
    assert method.select(StagePlan(0, 1.0, 5, None, needs_hidden=True), alive, None, hidden=torch.ones(5, 3)) is alive


def test_default_shape_and_shallow_models():
    method = FrameFusion(FrameFusionConfig())
    assert method.default_shape(28) == [(0, 0.70), (1, 0.60), (2, 0.27)]
    assert method.default_shape(2) == [(0, 0.70), (1, 0.27)]
    assert method.default_shape(1) == [(0, 0.27)]
    # 28 layers: (0.70 + 0.60 + 26 * 0.27) / 28 = 0.297, about the official cost 0.3.
    assert (0.70 + 0.60 + 26 * 0.27) / 28 == pytest.approx(0.30, abs=5e-3)


def test_runs_merge_then_prune_on_a_tiny_model():
    model, inputs = build_tiny(layers=6), make_inputs(num_frames=8, seed=3)
    with adatp.prune(model, "framefusion", retention=0.25) as handle:
        with torch.no_grad():
            model(**inputs)
        report = handle.last_report
    assert [s.layer for s in report.stages] == [0, 1, 2]
    assert report.stages[0].merge_into is not None and report.stages[1].merge_into is not None
    assert report.stages[2].merge_into is None
    assert report.stages[-1].kept == 32


@pytest.mark.parametrize("value", [1.5, -2.0])
def test_bad_similarity_threshold(value):
    with pytest.raises(ConfigError, match="similarity_threshold"):
        build_method("framefusion", similarity_threshold=value)


def test_unknown_option_and_double_target():
    with pytest.raises(ConfigError, match="unknown option"):
        build_method("framefusion", threshold=0.6)
    with pytest.raises(ConfigError, match="not both"):
        build_method("framefusion", retention=0.3, flops_ratio=0.3)
