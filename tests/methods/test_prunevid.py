"""PruneVid: worked examples computed by hand from the paper's rules, and option errors."""

import math

import pytest
import torch

import adatp
from adatp.errors import ConfigError
from adatp.methods.base import StagePlan, build_method
from adatp.methods.prunevid import PruneVid, PruneVidConfig, mean_pairwise_frame_cosine, static_mask
from adatp.ops.clustering import dpc_knn
from adatp.ops.merging import check_merge, merge_tokens
from tests.runtime.conftest import build_tiny, make_inputs


def test_dpc_knn_by_hand():
    # 1-D points, D = 1, k = 2 (self + nearest): nearest distances 1, 1, 2, 2, 2, 18
    # rho = e^-.5, e^-.5, e^-2, e^-2, e^-2, e^-162 (ties: the earlier token is denser)
    # delta = 30 (densest: max distance), 1, 2, 7, 2, 18
    # rho * delta = 18.2, .607, .271, .947, .271, ~0 -> centres by score: x=0, x=10, x=1, ...
    x = torch.tensor([[0.0], [1.0], [3.0], [10.0], [12.0], [30.0]])
    assign, centres = dpc_knn(x, 2, k=2)
    assert centres.tolist() == [0, 3]
    assert assign.tolist() == [0, 0, 0, 1, 1, 1]  # x=30 is nearer to 10 than to 0
    assign, centres = dpc_knn(x, 3, k=2)
    assert centres.tolist() == [0, 3, 1]
    assert assign.tolist() == [0, 2, 2, 1, 1, 1]  # x=3: 2 from x=1, 3 from x=0


def test_mean_pairwise_frame_cosine_is_the_mean_over_ordered_pairs():
    # one position, 3 frames a = b = [1, 0], c = [0, 1]: pairs (a,b) = 1, (a,c) = (b,c) = 0 -> 2 / 6
    tokens = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]]])
    assert mean_pairwise_frame_cosine(tokens).tolist() == pytest.approx([1 / 3])
    assert mean_pairwise_frame_cosine(tokens[:1]).tolist() == [float("-inf")]  # one frame: never static


# 2 frames x 4 positions, one scene, v = t * 4 + p. Temporal similarity per position:
#   p0: [1,0] / [1,0] -> 1;  p1: [1,0] / [.9, sqrt(.19)] -> .9;  p2: [0,1] / [1,0] -> 0;  p3: [0,2] / [0,-1] -> -1
# tau = .8: p0, p1 static -> U = 8 - 2 = 6 tokens after merging the static runs.
TOKENS = torch.tensor(
    [
        [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 2.0]],
        [[1.0, 0.0], [0.9, math.sqrt(0.19)], [1.0, 0.0], [0.0, -1.0]],
    ]
)
ALIVE = torch.arange(8)


def _method():
    method = PruneVid(PruneVidConfig())
    method.num_frames, method.tokens_per_frame = 2, 4
    method.frame_segments = torch.tensor([0, 0])
    method.group_of = torch.arange(2).repeat_interleave(4)
    return method


def test_static_mask_by_hand_and_demotion():
    seg = torch.tensor([0, 0])
    assert static_mask(TOKENS, seg, 0.8, 6).tolist() == [[True, True, False, False]]
    # B = 7 > U = 6: the least similar static position (p1, .9) turns dynamic -> U = 7.
    assert static_mask(TOKENS, seg, 0.8, 7).tolist() == [[True, False, False, False]]


def test_merge_to_three_one_cluster_per_group():
    # Groups: static {p0, p1} (features = frame means), frame 0 dynamic {v2, v3}, frame 1 {v6, v7}:
    # B = 3 -> 3 * 2/6 = 1 cluster each. Two points have equal density, the first is the centre.
    method = _method()
    sel = method.select(StagePlan(0, 3 / 8, 3, None, needs_hidden=True), ALIVE, None, hidden=TOKENS.reshape(8, 2))
    assert sel.kept.tolist() == [0, 2, 6]
    assert sel.merge_into.tolist() == [0, 0, 1, 1, 0, 0, 2, 2]
    check_merge(ALIVE, sel.kept, sel.merge_into, sel.weights)
    merged = merge_tokens(TOKENS.reshape(8, 2), sel.merge_into, sel.weights, 3)
    assert merged[0].tolist() == pytest.approx([(3 + 0.9) / 4, math.sqrt(0.19) / 4])  # static runs of p0, p1
    assert merged[1].tolist() == pytest.approx([0.0, 1.5])
    # The in-LLM groups of the representatives: static group of scene 0 (label T + 0), frames 0, 1.
    assert method.group_of[sel.kept].tolist() == [2, 0, 1]


def test_merge_to_six_only_static_runs():
    sel = _method().select(StagePlan(0, 6 / 8, 6, None, needs_hidden=True), ALIVE, None, hidden=TOKENS.reshape(8, 2))
    assert sel.kept.tolist() == [0, 1, 2, 3, 6, 7]
    assert sel.merge_into.tolist() == [0, 1, 2, 3, 0, 1, 4, 5]


def test_merge_to_seven_demotes_a_static_position():
    sel = _method().select(StagePlan(0, 7 / 8, 7, None, needs_hidden=True), ALIVE, None, hidden=TOKENS.reshape(8, 2))
    assert sel.kept.tolist() == [0, 1, 2, 3, 5, 6, 7]
    assert sel.merge_into.tolist() == [0, 1, 2, 3, 0, 4, 5, 6]


def test_full_budget_is_identity():
    hidden = TOKENS.reshape(8, 2)
    assert _method().select(StagePlan(0, 1.0, 8, None, needs_hidden=True), ALIVE, None, hidden=hidden) is ALIVE


def test_in_llm_stage_keeps_the_top_tokens_of_each_group():
    # Groups {v0..v3} (4 tokens) and {v4, v5} (2): B = 3 -> 2 and 1. Top 2 of group 0 by attention:
    # v1 (.5), v2 (.3); top 1 of group 1: v4 (.6). (A global top 3 would be v4, v1, v5.)
    method = _method()
    method.group_of = torch.tensor([0, 0, 0, 0, 1, 1])
    scores = torch.tensor([0.1, 0.5, 0.3, 0.2, 0.6, 0.4])
    kept = method.select(StagePlan(10, 0.5, 3, "query_rows"), torch.arange(6), scores)
    assert kept.tolist() == [1, 2, 4]


def test_default_shape_and_shallow_models():
    method = PruneVid(PruneVidConfig())
    for layers, expected in [(28, [(0, 0.40), (10, 0.16)]), (6, [(0, 0.40), (5, 0.16)]), (1, [(0, 0.16)])]:
        shape = method.default_shape(layers)
        assert [k for k, _ in shape] == [k for k, _ in expected]
        assert [r for _, r in shape] == pytest.approx([r for _, r in expected])


def test_runs_merge_then_attention_on_a_tiny_model():
    model, inputs = build_tiny(layers=6), make_inputs(num_frames=8, seed=3)
    with adatp.prune(model, "prunevid", retention=0.25) as handle:
        with torch.no_grad():
            model(**inputs)
        report = handle.last_report
    assert [s.layer for s in report.stages] == [0, 5]
    assert report.stages[0].merge_into is not None and report.stages[1].merge_into is None
    assert [s.kept for s in report.stages] == [round(0.25 / 0.16 * 0.40 * 128), 32]
    assert sum(report.method_info["clusters_per_group"]) == report.stages[0].kept


@pytest.mark.parametrize(
    "options, message",
    [
        ({"tau": 1.5}, "tau"),
        ({"alpha": 0.0}, "alpha"),
        ({"layer": 0}, "layer"),
        ({"k": 0}, "k must"),
        ({"temporal_segment_ratio": 2.0}, "temporal_segment_ratio"),
        ({"cluster_ratio": 0.5}, "unknown option"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        build_method("prunevid", **options)
