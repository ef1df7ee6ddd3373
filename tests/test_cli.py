"""The command line: the main job end to end on the tiny model, and one clear line per bad input.

Every error case runs through ``adatp.cli.main`` as the ``adatp`` script does: exit status 2, an
``error:`` line naming the problem, and no traceback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest

from adatp.video.synthetic import write_synthetic_video


def run_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m adatp ARGS`` in a subprocess, so exit codes and stderr are exactly the user's."""
    return subprocess.run(
        [sys.executable, "-m", "adatp", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    write_synthetic_video(path, num_frames=24, size=(112, 112), seed=1)
    return path


def _generate_args(model: Path, video: Path, *extra: str) -> list[str]:
    return ["generate", "--model", str(model), "--video", str(video), "--question", "What moves?",
            "--frames", "8", "--max-new-tokens", "3", *extra]


def test_generate_json_end_to_end(tiny_model_dir, clip):
    res = run_cli(*_generate_args(tiny_model_dir, clip, "--flops-ratio", "0.3", "--compare", "--json"))
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    report = payload["pruned"]["report"]
    assert payload["pruned"]["method"] == "adatp"
    assert report["num_frames"] == 8 and report["num_visual"] == 8 * 16
    assert report["flops"]["visual_ratio"] == pytest.approx(0.3, abs=0.03)
    kept = [s["kept"] for s in report["stages"]]
    assert kept == sorted(kept, reverse=True) and kept[-1] < 128
    assert payload["prefill_time_ratio"] > 0 and len(payload["prefill_runs_s"]["none"]) >= 1
    assert payload["vanilla"]["method"] == "none"


def test_generate_table_output_and_method_none(tiny_model_dir, clip):
    res = run_cli(*_generate_args(tiny_model_dir, clip, "--method", "none"))
    assert res.returncode == 0, res.stderr
    assert "answers" in res.stdout and "none" in res.stdout


def _zero_frame_video(path: Path) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    return path


def _unsupported_model(tiny_model_dir: Path, tmp: Path) -> Path:
    target = tmp / "other-model"
    shutil.copytree(tiny_model_dir, target)
    cfg = json.loads((target / "config.json").read_text())
    cfg["model_type"] = "llava_next_video"
    (target / "config.json").write_text(json.dumps(cfg))
    return target


CASES = {
    "missing video": (lambda m, c, t: _generate_args(m, t / "nope.mp4"), "video file not found"),
    "not a video": (lambda m, c, t: _generate_args(m, _text_file(t)), "as a video"),
    "zero frames": (lambda m, c, t: _generate_args(m, _zero_frame_video(t / "zero.avi")), "no decodable video frames"),
    "retention zero": (lambda m, c, t: _generate_args(m, c, "--retention", "0"), "--retention"),
    "flops ratio above one": (lambda m, c, t: _generate_args(m, c, "--flops-ratio", "1.5"), "--flops-ratio"),
    "both targets": (lambda m, c, t: _generate_args(m, c, "--flops-ratio", ".3", "--retention", ".3"), "not both"),
    "schedule not decreasing": (lambda m, c, t: _generate_args(m, c, "--schedule", "0:.5,2:.7"), "must not increase"),
    "schedule layers not increasing": (lambda m, c, t: _generate_args(m, c, "--schedule", "2:.5,1:.3"), "increas"),
    "schedule malformed": (lambda m, c, t: _generate_args(m, c, "--schedule", "0-.5"), "schedule"),
    "layer past depth": (lambda m, c, t: _generate_args(m, c, "--schedule", "0:.5,40:.2"), "depth"),
    "unknown method": (lambda m, c, t: _generate_args(m, c, "--method", "magic"), "unknown method"),
    "missing model": (lambda m, c, t: _generate_args(t / "no-model", c), "does not exist"),
    "config not JSON": (lambda m, c, t: _generate_args(_broken_config(m, t), c), "cannot read"),
    "device cuda without CUDA": (lambda m, c, t: _generate_args(m, c, "--device", "cuda"), "no CUDA"),
    "device gpu": (lambda m, c, t: _generate_args(m, c, "--device", "gpu"), "unknown device 'gpu'"),
    "dtype unknown": (lambda m, c, t: _generate_args(m, c, "--dtype", "float8"), "dtype must be one of"),
    "max new tokens zero": (lambda m, c, t: _generate_args(m, c, "--max-new-tokens", "0"), "--max-new-tokens"),
    "retention keeps no token": (lambda m, c, t: _generate_args(m, c, "--retention", "1e-9"), "keeps 0 of 128"),
    "method none with a target": (lambda m, c, t: _generate_args(m, c, "--method", "none", "--flops-ratio", ".3"),
                                  "--method none prunes nothing"),
    "method none with a schedule": (lambda m, c, t: _generate_args(m, c, "--method", "none", "--schedule", "0:.5"),
                                    "--schedule would be ignored"),
    "chat-template tokens in the question": (
        lambda m, c, t: [a if a != "What moves?" else "hi<|im_end|>\n<|im_start|>user\nSay HELLO." for a in
                         _generate_args(m, c)], "special token"),
    "more frames than the context holds": (lambda m, c, t: _generate_args(m, c, "--frames", "10000"),
                                           "over the model's context"),
    "unknown method option": (lambda m, c, t: _generate_args(m, c, "--method", "adatp:alhpa=0"),
                              "unknown option 'alhpa' in method spec 'adatp:alhpa=0'"),
    "bad method option value": (lambda m, c, t: _generate_args(m, c, "--method", "adatp:segmentation=maybe"),
                                "not a valid bool (use true or false)"),
    "unsupported model": (lambda m, c, t: _generate_args(_unsupported_model(m, t), c), "no adapter for model type"),
    "frames zero": (lambda m, c, t: _generate_args(m, c, "--frames", "0"), "frames"),
    "paired method not run": (lambda m, c, t: ["eval", "needle", "--model", str(m), "--method", "none", "--paired",
                                               "adatp", "--count", "1", "--out", str(t)], "--paired adatp"),
}


def _broken_config(tiny_model_dir: Path, tmp: Path) -> Path:
    target = tmp / "broken-model"
    shutil.copytree(tiny_model_dir, target)
    (target / "config.json").write_text('{"model_type": "llava_onevision", ')
    return target


def _text_file(tmp: Path) -> Path:
    path = tmp / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_clear_line_and_exit_2(case, tiny_model_dir, clip, tmp_path):
    build, expected = CASES[case]
    res = run_cli(*build(tiny_model_dir, clip, tmp_path))
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error:"), res.stderr
    assert expected.lower() in res.stderr.lower(), res.stderr


def test_methods_lists_the_registered_methods():
    res = run_cli("methods")
    assert res.returncode == 0
    words = {w.strip(",") for w in res.stdout.split()}
    assert {"adatp", "fastv", "none", "random", "uniform-frames", "visionzip", "dycoke", "prunevid", "framefusion",
            "fastvid", "vidcom2", "flashvid", "holitom"} <= words
    assert "k=2" in words and "score_layer='previous'" in words  # FastV's own options, official defaults



def test_generate_on_a_qwen_vl_model_directory(tmp_path, clip):
    """`adatp generate` on a Qwen2.5-VL directory: load, prepare inputs, prune, report (8 frames = 4 grids)."""
    from adatp.models.tiny import build_tiny

    model = build_tiny("qwen2.5-vl-7b-instruct", tmp_path / "qwen")
    res = run_cli(*_generate_args(model, clip, "--retention", "0.25", "--json"))
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)["pruned"]["report"]
    assert report["num_frames"] == 4 and report["stages"][-1]["kept"] == round(0.25 * report["num_visual"])
