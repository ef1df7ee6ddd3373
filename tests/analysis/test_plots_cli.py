"""Pictures have their stated pixel size and colours in the right cells; the CLI writes PNG + JSON."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from adatp.analysis import bias, plots
from adatp.cli import main
from adatp.video.synthetic import write_synthetic_video


def _rgb(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_token_frames_have_the_stated_size_and_colour_the_right_cells(tmp_path):
    frames = np.zeros((1, 60, 90, 3), dtype=np.uint8)  # one black frame, not square: shown squashed
    labels = torch.zeros(1, 2, 2, dtype=torch.int8)
    labels[0, 0, 0], labels[0, 1, 1] = bias.END, bias.REPEATED
    path = plots.draw_token_frames(frames, labels, tmp_path / "one.png", "title")
    assert Image.open(path).size == plots.token_frames_size(1) == (640, plots.HEADER_PX + 160)
    img = _rgb(path)
    top, side = plots.HEADER_PX, plots.PANEL_PX
    red = img[top + side // 4, side // 4]
    green = img[top + 3 * side // 4, 3 * side // 4]
    black = img[top + side // 4, 3 * side // 4]
    assert red[0] > 90 and red[1] < 40 and red[2] < 40
    assert green[1] > 90 and green[0] < 40 and green[2] < 40
    assert black.max() < 20

    many = plots.draw_token_frames(np.zeros((20, 32, 32, 3), np.uint8), torch.zeros(20, 3, 3), tmp_path / "m.png")
    assert Image.open(many).size == plots.token_frames_size(20) == (8 * 160, plots.HEADER_PX + 3 * 160)


def test_curves_and_position_maps_have_the_stated_size(tmp_path):
    curves = plots.plot_frame_curves({"a": [1, 2, 1], "b": [0.5, 1, 1.5]}, tmp_path / "c.png", "t", "y", end_frames=1)
    assert Image.open(curves).size == plots.curves_size()
    idx = plots.plot_layer_indices([0, 1], {"end": [1.0, 2.0]}, tmp_path / "i.png", "t")
    assert Image.open(idx).size == plots.curves_size()
    maps = {f"layer {i}": torch.rand(3, 3) for i in range(9)}
    pos = plots.plot_position_maps(maps, tmp_path / "p.png", "t")
    assert Image.open(pos).size == plots.position_maps_size(9) == (7 * 160 + 80, plots.HEADER_PX + 2 * 160)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_synthetic_video(tmp_path_factory.mktemp("clip") / "clip.mp4", num_frames=12, size=(112, 144), seed=3)


def _run(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", *args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _common(model, video, out):
    return ["--model", str(model), "--video", str(video), "--question", "What moves?", "--frames", "4", "--out", str(out)]


def test_attention_command_writes_png_and_json(tiny_model_dir, clip, tmp_path, capsys):
    code, out, err = _run(capsys, "attention", *_common(tiny_model_dir, clip, tmp_path / "att"), "--layers", "0,3")
    assert code == 0, err
    payload = json.loads((tmp_path / "att" / "attention.json").read_text())
    assert [r["layer"] for r in payload["layers"]] == [0, 3]
    assert payload["num_frames"] == 4 and payload["grid"] == [4, 4] and payload["pre_rope"] is False
    for r in payload["layers"]:
        assert 0 < r["visual_mass"] <= 1 and len(r["frame_mass"]) == 4 and r["top"]["count"] == 6
    for name in payload["files"].values():
        assert Image.open(tmp_path / "att" / name).format == "PNG"
    assert Image.open(tmp_path / "att" / "top_tokens_layer03.png").size == plots.token_frames_size(4)
    assert "end-bias" in out


def test_kept_command_writes_png_and_json(tiny_model_dir, clip, tmp_path, capsys):
    args = _common(tiny_model_dir, clip, tmp_path / "kept")
    code, out, err = _run(capsys, "kept", *args, "--methods", "adatp,random,none", "--flops-ratio", "0.4", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload == json.loads((tmp_path / "kept" / "kept.json").read_text())
    assert set(payload["methods"]) == {"adatp", "random", "none"} and payload["skipped"] == {}
    adatp_stages = payload["methods"]["adatp"]["stages"]
    report = payload["methods"]["adatp"]["report"]
    assert [s["count"] for s in adatp_stages] == [s["kept"] for s in report["stages"]]
    assert payload["methods"]["none"]["stages"][0]["count"] == 4 * 16
    for name in payload["files"].values():
        assert Image.open(tmp_path / "kept" / name).format == "PNG"


@pytest.mark.parametrize(
    "command, extra, expected",
    [
        ("attention", ["--layers", "9"], "past the model's depth"),
        ("attention", ["--top-fraction", "0"], "top_fraction"),
        ("kept", ["--methods", "magic"], "unknown method"),
    ],
)
def test_bad_input_gives_one_error_line_and_exit_2(tiny_model_dir, clip, tmp_path, capsys, command, extra, expected):
    code, _, err = _run(capsys, command, *_common(tiny_model_dir, clip, tmp_path / "o"), *extra)
    assert code == 2
    assert err.count("error:") == 1 and expected in err.replace("\n", " ") and "Traceback" not in err


def test_missing_video_gives_exit_2(tiny_model_dir, tmp_path, capsys):
    code, _, err = _run(capsys, "attention", *_common(tiny_model_dir, tmp_path / "nope.mp4", tmp_path / "o"))
    assert code == 2 and err.startswith("error:") and "nope.mp4" in err
    assert not (tmp_path / "o").exists()  # nothing written before the inputs were checked
