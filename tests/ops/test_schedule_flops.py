import pytest

from adatp.errors import ConfigError
from adatp.ops.flops import DecoderDims, decoder_flops, schedule_flops_ratio, tokens_per_layer
from adatp.ops.schedule import (
    REFERENCE_SCHEDULE_28,
    default_schedule,
    parse_schedule,
    scale_to_flops_ratio,
    scale_to_retention,
    validate_schedule,
)

QWEN2_7B = DecoderDims(hidden=3584, intermediate=18944, num_layers=28, num_kv_heads=4, head_dim=128)
N_OV = 32 * 196


def test_flops_reproduce_fastvid_figures():
    assert decoder_flops([N_OV] * 28, QWEN2_7B) / 1e12 == pytest.approx(48.82, abs=0.01)
    assert decoder_flops([0.25 * N_OV] * 28, QWEN2_7B) / 1e12 == pytest.approx(10.73, abs=0.01)
    fastv = tokens_per_layer([(2, round(0.25 * N_OV))], N_OV, 28)
    assert decoder_flops(fastv, QWEN2_7B) / 1e12 == pytest.approx(13.45, abs=0.01)
    assert decoder_flops([64 * 13 * 14] * 28, QWEN2_7B) / 1e12 == pytest.approx(103.2, abs=0.05)


def test_reference_schedule_is_27_3_percent():
    assert schedule_flops_ratio(REFERENCE_SCHEDULE_28, N_OV, QWEN2_7B) == pytest.approx(0.2727, abs=1e-4)
    assert default_schedule(28) == REFERENCE_SCHEDULE_28


def test_scale_to_flops_ratio_hits_target_and_keeps_shape():
    for target in (0.5, 0.273, 0.15, 0.10):
        s = scale_to_flops_ratio(REFERENCE_SCHEDULE_28, target, N_OV, QWEN2_7B)
        assert schedule_flops_ratio(s, N_OV, QWEN2_7B) == pytest.approx(target, abs=1e-3)
        assert [k for k, _ in s] == [0, 2, 14]
        ratios = [r for _, r in s]
        assert ratios == sorted(ratios, reverse=True)
    assert scale_to_flops_ratio(REFERENCE_SCHEDULE_28, 1.0, N_OV, QWEN2_7B) == [(0, 1.0), (2, 1.0), (14, 1.0)]


def test_scale_to_retention_caps_at_one():
    def flat(schedule):
        return [x for stage in schedule for x in stage]

    assert flat(scale_to_retention(REFERENCE_SCHEDULE_28, 0.1)) == pytest.approx([0, 0.375, 2, 0.175, 14, 0.1])
    assert flat(scale_to_retention(REFERENCE_SCHEDULE_28, 0.5)) == pytest.approx([0, 1.0, 2, 0.875, 14, 0.5])


@pytest.mark.parametrize(
    "schedule, match",
    [
        ([(0, 0.5), (0, 0.4)], "increase"),
        ([(2, 0.5), (1, 0.4)], "increase"),
        ([(0, 0.3), (2, 0.4)], "must not increase"),
        ([(0, 0.0)], r"\(0, 1\]"),
        ([(0, 1.5)], r"\(0, 1\]"),
        ([(-1, 0.5)], "layer"),
        ([(28, 0.5)], "past the model's depth"),
        ([], "at least one"),
    ],
)
def test_bad_schedules_are_rejected(schedule, match):
    with pytest.raises(ConfigError, match=match):
        validate_schedule(schedule, num_layers=28)


def test_parse_schedule():
    assert parse_schedule("0:.75, 2:.35,14:.2") == [(0, 0.75), (2, 0.35), (14, 0.2)]
    with pytest.raises(ConfigError, match="LAYER:RETENTION"):
        parse_schedule("0-.75")
    with pytest.raises(ConfigError, match="increase"):
        parse_schedule("2:.5,1:.4")


def test_bad_targets_are_rejected():
    with pytest.raises(ConfigError):
        scale_to_retention(REFERENCE_SCHEDULE_28, 0.0)
    with pytest.raises(ConfigError):
        scale_to_flops_ratio(REFERENCE_SCHEDULE_28, 1.2, N_OV, QWEN2_7B)


def test_default_schedule_for_shallow_models_stays_inside_depth():
    for depth in range(1, 40):
        s = default_schedule(depth)
        validate_schedule(s, depth)
        assert s[-1][1] == 0.20


def test_windowed_vision_attention_by_hand():
    """28x28 patches, merge 2 -> 14x14 units in windows of 4x4 units: unit chunks 4,4,4,2 per axis,
    so sum(w^2) = 16 * (3*16 + 4)^2 = 43,264 patch pairs against 784^2 = 614,656 for the full frame."""
    from adatp.ops.flops import VisionDims, vision_tower_flops, window_patch_counts

    windows = window_patch_counts(28, 28, 2, 4)
    assert len(windows) == 16 and sum(windows) == 784 and sum(w * w for w in windows) == 43_264
    d, inter = 8, 16
    full = VisionDims(d, inter, 4, 784, 3)
    windowed = VisionDims(d, inter, 4, 784, 3, window_patches=windows, full_attention_layers=1)
    linear = 4 * 784 * d * d + 3 * 784 * d * inter
    assert vision_tower_flops(full, 2) == 2 * (4 * linear + 4 * 2 * 784**2 * d)
    assert vision_tower_flops(windowed, 2) == 2 * (4 * linear + 2 * 784**2 * d + 3 * 2 * 43_264 * d)
