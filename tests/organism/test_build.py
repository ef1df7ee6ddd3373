"""adatp-tiny's shipped segmentation threshold: the calibration rule's value, and caches follow it."""

import json
import shutil

from adatp.organism import build
from adatp.organism.build import BASE_NAME, MARKER, MODEL_NAME, SEGMENT_THRESHOLD, adatp_tiny_dir
from adatp.organism.train import calibrate_segment_threshold


def test_shipped_segment_threshold_is_what_the_calibration_rule_gives():
    """The documented rule (10th percentile of adjacent-frame class-token cosine over train clips)
    on the shipped model, against the constant the build writes into its config. Until 2026-12-03 a
    stale 0.92 shipped while the rule gave 0.995, and AdaTP found no shot cut at all; 10 clips give
    0.994, 30 give 0.9953."""
    model_dir = adatp_tiny_dir()
    measured = calibrate_segment_threshold(model_dir, clips=10)["threshold"]
    assert abs(measured - SEGMENT_THRESHOLD) < 0.005, (measured, SEGMENT_THRESHOLD)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["adatp_segment_threshold"] == SEGMENT_THRESHOLD


def test_a_cache_built_with_another_threshold_is_rebuilt(tmp_path, monkeypatch):
    source = adatp_tiny_dir()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / BASE_NAME).symlink_to(source.parent / BASE_NAME, target_is_directory=True)
    shutil.copytree(source, cache / MODEL_NAME)
    monkeypatch.setattr(build, "SEGMENT_THRESHOLD", 0.5)
    rebuilt = adatp_tiny_dir(cache)
    assert json.loads((rebuilt / "config.json").read_text())["adatp_segment_threshold"] == 0.5
    assert json.loads((rebuilt / MARKER).read_text())["segment_threshold"] == 0.5
