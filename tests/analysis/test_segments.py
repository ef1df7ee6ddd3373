"""`adatp analyze segments`: the similarities AdaTP segments on, against the towers run directly,
and tau_s by the calibration rule against numpy's percentile."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adatp.cli import main
from adatp.inputs import prepare_inputs
from adatp.pipeline import load_model
from adatp.video import read_video
from adatp.video.synthetic import write_synthetic_video

FRAMES = 6


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return [write_synthetic_video(folder / f"clip{seed}.mp4", num_frames=12, size=(112, 144), seed=seed) for seed in (3, 4)]


def _run(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "segments", *args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _cos(g: torch.Tensor) -> list[float]:
    g = F.normalize(g.double(), dim=-1)
    return (g[:-1] * g[1:]).sum(-1).tolist()


def _llava_reference(model_dir, video) -> list[float]:
    """g_t straight from the tower: its class token, or its patch mean, at the VLM's feature layer."""
    model = load_model(model_dir)
    pixels = prepare_inputs(model_dir, read_video(video, num_frames=FRAMES), "?")["pixel_values_videos"][0]
    with torch.no_grad():
        hidden = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states[model.config.vision_feature_layer]
    cls_token = model.config.vision_feature_select_strategy == "default"
    return _cos(hidden[:, 0] if cls_token else hidden.mean(1))


def _qwen_reference(model_dir, video) -> list[float]:
    """g_t = mean of a grid's merged tokens, from transformers' own get_video_features."""
    model = load_model(model_dir)
    inputs = prepare_inputs(model_dir, read_video(video, num_frames=FRAMES), "?")
    t, _, _ = inputs["video_grid_thw"][0].tolist()
    with torch.no_grad():
        out = model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
    merged = (out.pooler_output if hasattr(out, "pooler_output") else out)[0]
    return _cos(merged.reshape(t, -1, merged.shape[-1]).mean(1))


def _check(payload, clips, reference):
    pooled = []
    for entry, video in zip(payload["videos"], clips, strict=True):
        want = reference(payload["model"], video)
        np.testing.assert_allclose(entry["frame_similarity"], want, atol=1e-5)
        pooled += entry["frame_similarity"]
    cal = payload["calibration"]
    assert cal["pairs"] == len(pooled)
    assert cal["threshold"] == pytest.approx(float(np.percentile(pooled, 10.0)), abs=1e-9)
    for entry in payload["videos"]:  # m = 1: one segment more than the pairs below the threshold
        below = sum(s < cal["threshold"] for s in entry["frame_similarity"])
        assert len(entry["segments_calibrated"]) == below + 1
        below_now = sum(s < payload["segment_threshold_now"] for s in entry["frame_similarity"])
        assert len(entry["segments_now"]) == below_now + 1


def test_llava_similarities_are_the_towers_and_tau_is_the_percentile(tiny_model_dir, clips, tmp_path, capsys):
    args = ["--model", str(tiny_model_dir), "--frames", str(FRAMES), "--out", str(tmp_path / "s.json")]
    code, out, err = _run(capsys, *args, *(a for c in clips for a in ("--video", str(c))), "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload == json.loads((tmp_path / "s.json").read_text())
    assert payload["segment_threshold_now"] == 0.90 and len(payload["videos"]) == 2
    _check(payload, clips, _llava_reference)


def test_qwen_similarities_are_the_grids_token_means(tmp_path, clips, capsys):
    from adatp.models.tiny import build_tiny

    model_dir = build_tiny("qwen2.5-vl-7b-instruct", tmp_path / "qwen")
    config = json.loads((model_dir / "config.json").read_text())
    config["adatp_segment_threshold"] = 0.5  # a calibrated value in the config becomes the default
    (model_dir / "config.json").write_text(json.dumps(config))
    code, out, err = _run(capsys, "--model", str(model_dir), "--frames", str(FRAMES), "--video", str(clips[0]),
                          "--video", str(clips[1]), "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["segmentation_feature"] == "token-mean" and payload["segment_threshold_now"] == 0.5
    assert [len(v["frame_similarity"]) for v in payload["videos"]] == [FRAMES // 2 - 1] * 2  # 2 frames a grid
    _check(payload, clips, _qwen_reference)


def test_the_table_names_the_threshold_and_how_to_use_it(tiny_model_dir, clips, capsys):
    code, out, err = _run(capsys, "--model", str(tiny_model_dir), "--frames", "4", "--video", str(clips[0]))
    assert code == 0, err
    assert "segment_threshold=" in out and "adatp_segment_threshold" in out and "3 frame pairs" in out.replace("\n", " ")


@pytest.mark.parametrize("extra, expected", [(["--percentile", "150"], "percentile must be in [0, 100]"),
                                             (["--frames", "1"], "2 frames")])
def test_bad_input_gives_one_line_and_exit_2(tiny_model_dir, clips, capsys, extra, expected):
    code, _, err = _run(capsys, "--model", str(tiny_model_dir), "--video", str(clips[0]), *extra)
    assert code == 2 and err.count("error:") == 1 and expected in err.replace("\n", " ") and "Traceback" not in err


def test_a_bad_threshold_in_the_config_is_one_line(tmp_path, tiny_model_dir):
    import shutil

    from adatp.adapters.base import get_adapter
    from adatp.errors import ConfigError

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["adatp_segment_threshold"] = 1.5
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"adatp_segment_threshold must be a cosine in \[-1, 1\], got 1.5"):
        get_adapter(load_model(model_dir))
