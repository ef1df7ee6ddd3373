"""Results you can trust: a resumed run is the run asked for, one writer per results file, and
every hostile input is one line (exit 2) or a correct, reported result."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from adatp.errors import ConfigError
from adatp.eval.harness import MCQ_ROWS, RunSpec, answer_item, run_items
from adatp.eval.results import RunMismatch
from adatp.models.identity import model_fingerprint, model_identity
from adatp.tasks.jsonl import load_items
from adatp.video.synthetic import write_synthetic_video

ADATP = RunSpec("adatp", (("retention", 0.5),))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trust-clips")
    for k in range(2):
        write_synthetic_video(folder / f"clip{k}.mp4", num_frames=12, size=(96, 96), seed=k)
    return folder


def _write_items(folder, answers=("A", "B", "A"), **extra):
    rows = [{"id": f"q{k}", "video": f"clips/clip{k % 2}.mp4", "question": f"Which colour {k}?",
             "options": ["red", "green", "blue"], "answer": answer, **extra} for k, answer in enumerate(answers)]
    path = folder / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def items(clips, tmp_path):
    (tmp_path / "clips").symlink_to(clips)
    return _write_items(tmp_path)


def _run(model_dir, items_path, out, frames=4, restart=False, specs=(ADATP,)):
    return run_items(model_dir, list(specs), load_items(items_path), task="items", benchmark="mcq", rows=MCQ_ROWS,
                     out_dir=out, num_frames=frames, restart=restart)


def _cli(*args, timeout=600, prefix=()):
    return subprocess.run([*prefix, sys.executable, "-m", "adatp", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


# --- a resumed run is the run asked for ---------------------------------------------------------


def test_other_frames_are_refused_and_restart_redoes_them(tiny_model_dir, items, tmp_path):
    first = _run(tiny_model_dir, items, tmp_path / "out", frames=4)
    assert {r["num_visual"] for r in first.results[ADATP]} == {4 * 16}
    with pytest.raises(RunMismatch, match=r"frames 4, not 8: pass --restart"):
        _run(tiny_model_dir, items, tmp_path / "out", frames=8)
    with pytest.warns(UserWarning, match="set aside as adatp_retention0.5.replaced-"):
        again = _run(tiny_model_dir, items, tmp_path / "out", frames=8, restart=True)
    assert {r["num_visual"] for r in again.results[ADATP]} == {8 * 16}  # a fresh 8-frame run, not the 4-frame rows
    folder = first.path(ADATP).parent
    assert len(list(folder.glob("adatp_retention0.5.replaced-*.jsonl"))) == 1  # the old rows are kept, aside


def test_a_fixed_answer_key_is_refused_then_redone_item_by_item(tiny_model_dir, items, tmp_path):
    first = {r["id"]: r for r in _run(tiny_model_dir, items, tmp_path / "out").results[ADATP]}
    flipped = "B" if first["q0"]["answer"] == "A" else "A"
    _write_items(items.parent, answers=(flipped, "B", "A"))
    with pytest.raises(RunMismatch, match=r"item 'q0' changed .*--restart"):
        _run(tiny_model_dir, items, tmp_path / "out")
    again = {r["id"]: r for r in _run(tiny_model_dir, items, tmp_path / "out", restart=True).results[ADATP]}
    assert again["q0"]["answer"] == flipped and again["q0"]["predicted"] == first["q0"]["predicted"]
    assert again["q0"]["correct"] == (again["q0"]["predicted"] == flipped)  # scored against the fixed key
    assert again["q1"] == first["q1"]  # unchanged items are reused as they are (same timing: not rerun)


def test_a_byte_the_sampled_identity_misses_changes_the_run(tiny_model_dir, items, tmp_path, monkeypatch):
    """A projector-only fine-tune: one byte between the sampled blocks of a large weight file."""
    import adatp.models.identity as identity

    monkeypatch.setattr(identity, "WHOLE_FILE_BYTES", 4096)  # this 1 MB file is sampled, as a 15 GB one is,
    monkeypatch.setattr(identity, "BLOCK_BYTES", 1024)  # with gaps between the blocks as there
    model = shutil.copytree(tiny_model_dir, tmp_path / "models" / tiny_model_dir.name)
    weights = model / "model.safetensors"
    size = weights.stat().st_size
    step = size // identity.SAMPLE_BLOCKS
    assert step > identity.BLOCK_BYTES + 64
    before_id, before_fp = model_identity(model), model_fingerprint(model)
    _run(model, items, tmp_path / "out")
    data = bytearray(weights.read_bytes())
    data[128 * step + identity.BLOCK_BYTES + 500] ^= 0x40
    weights.write_bytes(bytes(data))
    assert model_identity(model) == before_id  # the sampled identity cannot see it
    assert model_fingerprint(model) != before_fp
    with pytest.raises(RunMismatch, match=r"holds results of model .*content .*not of .*content"):
        _run(model, items, tmp_path / "out")


def test_file_digests_are_cached_by_stat_and_redone_when_it_changes(tiny_model_dir, tmp_path):
    cache = tmp_path / "cache"
    real = model_fingerprint(tiny_model_dir, cache=cache)
    entries = sorted(cache.iterdir())
    assert entries and model_fingerprint(tiny_model_dir, cache=None) == real
    for entry in entries:  # a cached digest is what is read back: forge them all
        entry.write_text("0" * 64)
    assert model_fingerprint(tiny_model_dir, cache=cache) != real
    model = shutil.copytree(tiny_model_dir, tmp_path / "copy")  # copy2 keeps times, not the inode: a new key
    assert model_fingerprint(model, cache=cache) == real


def test_old_results_files_still_resume_with_a_warning(tiny_model_dir, items, tmp_path):
    run = _run(tiny_model_dir, items, tmp_path / "out")
    path = run.path(ADATP)
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    del header["identity"]
    path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    with pytest.warns(UserWarning, match="recorded the whole run .*checking the model only"):
        again = _run(tiny_model_dir, items, tmp_path / "out")
    assert again.results[ADATP] == run.results[ADATP]


# --- one writer per results file -----------------------------------------------------------------


def test_a_held_lock_refuses_a_second_writer(tiny_model_dir, items, tmp_path):
    from adatp.eval.lock import exclusive_writer

    run = _run(tiny_model_dir, items, tmp_path / "out", specs=[RunSpec("none")])
    with exclusive_writer(run.path(RunSpec("none"))):
        with pytest.raises(ConfigError, match="another adatp process is writing .*another --out"):
            _run(tiny_model_dir, items, tmp_path / "out", specs=[RunSpec("none")])


def test_two_processes_started_together_write_every_id_once(tiny_model_dir, items, tmp_path):
    args = [sys.executable, "-m", "adatp", "eval", "mcq", str(items), "--model", str(tiny_model_dir), "--methods",
            "none,adatp", "--retention", ".5", "--frames", "4", "--out", str(tmp_path / "out")]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    for code, err in results:
        assert code == 0 or (code == 2 and "another adatp process is writing" in err), err
    folder = tmp_path / "out" / tiny_model_dir.name / "items"
    for name in ("none.jsonl", "adatp_retention0.5.jsonl"):
        ids = [json.loads(line)["id"] for line in (folder / name).read_text().splitlines()[1:]]
        assert sorted(ids) == ["q0", "q1", "q2"]


# --- user text is text ---------------------------------------------------------------------------


def test_ids_and_paths_with_brackets_print_as_written(tiny_model_dir, clips, tmp_path):
    ids = ["weird[/]id", "[bold red]X[/bold red]", "[x]"]
    rows = [{"id": i, "video": "lecture [part 1].mp4", "question": "Q?", "options": ["a", "b"], "answer": "A"} for i in ids]
    rows.append({"id": "ok", "video": str(clips / "clip0.mp4"), "question": "Q?", "options": ["a", "b"], "answer": "A"})
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = _cli("eval", "mcq", path, "--model", tiny_model_dir, "--method", "none", "--frames", "2", "--out",
               tmp_path / "out")
    assert res.returncode == 0, res.stderr
    for i in ids:
        assert f"skipped item {i}: " in res.stderr
    assert "lecture [part 1].mp4" in res.stderr and "Traceback" not in res.stderr
    res = _cli("eval", "mcq", path, "--model", tmp_path / "a[/]b [bold]m", "--method", "none", "--out", tmp_path / "o")
    assert res.returncode == 2 and "a[/]b [bold]m" in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["lecture [part 1].mp4", "x[/]y.mp4", "[bold]b.mp4"])
def test_a_video_path_with_brackets_is_named_as_written(tiny_model_dir, tmp_path, name):
    video = tmp_path / name  # "x[/]y.mp4": a folder "x[" holding "]y.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    video.write_text("not a video")
    res = _cli("generate", "--model", tiny_model_dir, "--video", video, "--question", "What?")
    assert res.returncode == 2 and name in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


# --- validation is total -------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["alpha", "segment_threshold", "dedup_threshold"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_and_infinite_method_options_are_refused_by_name(option, value):
    from adatp.methods.base import parse_method_spec

    with pytest.raises(ConfigError, match=rf"{option} must be a finite number, got {value.lstrip('-')}|{option}.*-inf"):
        parse_method_spec(f"adatp:{option}={value}")


def test_every_float_option_of_every_method_refuses_nan():
    import dataclasses
    import typing

    from adatp.methods.base import _METHODS, available_methods, build_method

    checked = 0
    for name in available_methods():
        cls = _METHODS[name].config_class
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if float in (hints[f.name], *typing.get_args(hints[f.name])) and f.name != "schedule":
                with pytest.raises(ConfigError, match=f.name):
                    build_method(name, **{f.name: float("nan")})
                checked += 1
    assert checked >= 15


def test_nan_on_the_command_line_is_one_line_before_any_work(tiny_model_dir, items, tmp_path):
    for args in (["--method", "adatp:alpha=nan", "--retention", ".5"], ["--method", "adatp", "--flops-ratio", "nan"],
                 ["--method", "adatp", "--retention", "inf"]):
        res = _cli("eval", "mcq", items, "--model", tiny_model_dir, *args, "--out", tmp_path / "out")
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "nan" in res.stderr or "inf" in res.stderr
    assert not (tmp_path / "out").exists()


def test_one_target_check_for_every_caller(tiny_ov_model):
    import adatp
    from adatp.ops.schedule import check_target

    assert check_target(retention=0.5) == {"retention": 0.5}
    for bad in ({"retention": float("nan")}, {"flops_ratio": float("inf")}, {"retention": 0.5, "flops_ratio": 0.5}):
        with pytest.raises(ConfigError):
            check_target(**bad)
        with pytest.raises(ConfigError):
            adatp.prune(tiny_ov_model, "adatp", **bad)
    with pytest.raises(ConfigError, match="'none' prunes nothing, so flops_ratio would be ignored"):
        adatp.prune(tiny_ov_model, method="none", flops_ratio=0.3)
    with adatp.prune(tiny_ov_model, method="none"):
        pass


@pytest.fixture(scope="module")
def tiny_ov_model():
    from tests.runtime.conftest import build_tiny

    return build_tiny(layers=2)


# --- memory is bounded before work starts ---------------------------------------------------------

CAP = ("prlimit", "--as=6000000000")


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit")
def test_a_huge_frame_count_is_refused_before_decoding_under_a_memory_cap(tiny_model_dir, items, tmp_path):
    res = _cli("eval", "mcq", items, "--model", tiny_model_dir, "--method", "none", "--frames", "100000", "--out",
               tmp_path / "out", prefix=CAP)
    assert res.returncode == 2 and "--frames 100000" in res.stderr and "frames or fewer" in res.stderr, res.stderr
    huge = _write_items(items.parent, num_frames=100000)
    res = _cli("eval", "mcq", huge, "--model", tiny_model_dir, "--method", "none", "--out", tmp_path / "out",
               "--json", prefix=CAP)
    assert res.returncode == 0, res.stderr
    bad = json.loads(res.stdout)["bad_items"]
    assert len(bad) == 3 and all("100000 frames" in b["reason"] and "frames or fewer" in b["reason"] for b in bad)


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit")
@pytest.mark.parametrize("family", ["qwen2.5-vl-7b-instruct", "qwen3-vl-8b-instruct"])
def test_qwen_frame_count_is_checked_from_the_header(family, clips, tmp_path):
    from adatp.models.tiny import build_tiny

    model = build_tiny(family, tmp_path / "model")
    res = _cli("generate", "--model", model, "--video", clips / "clip0.mp4", "--question", "What?", "--frames", "100000",
               prefix=CAP)
    assert res.returncode == 2 and "over the model's context" in res.stderr and "frames or fewer" in res.stderr, res.stderr


def test_the_context_check_matches_the_built_inputs_of_qwen(clips, tmp_path):
    """The header-based count is the count prepare_inputs builds (no frame decoded for it)."""
    from adatp.eval.budget import check_video_fits
    from adatp.inputs import prepare_inputs
    from adatp.models.tiny import build_tiny
    from adatp.video import read_video

    for family in ("qwen2.5-vl-7b-instruct", "qwen3-vl-8b-instruct"):
        model = build_tiny(family, tmp_path / family)
        for frames in (4, 6):
            predicted = check_video_fits(model, "What?", frames, video=clips / "clip0.mp4")
            built = prepare_inputs(model, read_video(clips / "clip0.mp4", frames), "What?")["input_ids"].shape[1]
            assert predicted == built


def test_decoding_more_frames_than_memory_holds_is_refused_first(clips, monkeypatch):
    import adatp.video.memory as memory
    from adatp.video import read_video

    assert memory.available_bytes() > 0
    with pytest.raises(ConfigError, match="frames or fewer"):
        memory.check_decode_memory(10**9, 96, 96, "x.mp4")
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 20)  # 1 MiB left: 200 frames of 96x96 do not fit
    with pytest.raises(ConfigError, match=r"decoding 200 frames of 96x96 .* use 18 frames or fewer"):
        read_video(clips / "clip0.mp4", num_frames=200)


# --- the rest --------------------------------------------------------------------------------------


def test_unicode_line_separators_inside_strings_stay_in_their_line(clips, tmp_path):
    rows = [{"id": "a", "video": str(clips / "clip0.mp4"), "question": "one\u2028two\u0085three\u2029?",
             "options": ["x", "y"], "answer": "A"}]
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps(rows[0], ensure_ascii=False) + "\n{broken\n", encoding="utf-8")
    first, second = load_items(path)
    assert first.question == "one\u2028two\u0085three\u2029?"
    assert second.item_id == "line 2"  # later line numbers are not shifted


def test_filesystem_problems_are_one_line_naming_the_path(tiny_model_dir, items, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        (["eval", "mcq", items, "--model", tiny_model_dir, "--method", "none", "--out", a_file], "is a file"),
        (["eval", "mcq", items, "--model", tiny_model_dir, "--method", "none", "--out", a_file / "sub"], "cannot write in"),
        (["eval", "mcq", items, "--model", tiny_model_dir, "--method", "none", "--out", tmp_path / "o", "--markdown",
          a_file / "t.md"], "cannot write --markdown"),
        (["eval", "mcq", items, "--model", tiny_model_dir, "--method", "none", "--out", tmp_path / "o", "--plot",
          tmp_path / "x.mp4"], "must end in .png"),
        (["eval", "export-needle", "--out", a_file, "--count", "1"], "is a file"),
    ]
    for args, words in cases:
        res = _cli(*args)
        assert res.returncode == 2 and words in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.jsonl"))  # refused before the run


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_out_is_one_line(tiny_model_dir, items, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    res = _cli("eval", "mcq", items, "--model", tiny_model_dir, "--method", "none", "--out", ro)
    assert res.returncode == 2 and "cannot write in --out" in res.stderr


def test_any_os_error_left_is_one_line_naming_the_path(monkeypatch, capsys, tmp_path):
    import adatp.cli

    def fail(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/results/[x]/r.jsonl")

    monkeypatch.setattr("adatp.tasks.needle.export_jsonl", fail)
    with pytest.raises(SystemExit) as exit_info:
        adatp.cli.main(["eval", "export-needle", "--out", str(tmp_path / "clips"), "--count", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Permission denied: '/results/[x]/r.jsonl'" in err and "internal error" not in err


def test_a_config_value_of_the_wrong_type_is_one_line(tiny_model_dir, items, tmp_path):
    model = shutil.copytree(tiny_model_dir, tmp_path / "m")
    config = json.loads((model / "config.json").read_text())
    config["text_config"]["max_position_embeddings"] = "lots"
    (model / "config.json").write_text(json.dumps(config))
    for args in (["eval", "mcq", items, "--model", model, "--method", "none", "--out", tmp_path / "out"],
                 ["generate", "--model", model, "--video", items.parent / "clips" / "clip0.mp4", "--question", "What?"]):
        res = _cli(*args)
        assert res.returncode == 2 and "max_position_embeddings" in res.stderr and "config.json" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_an_empty_selection_of_items_is_an_error(tiny_model_dir, items, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for args in ([empty], [items, "--start", "3"]):
        res = _cli("eval", "mcq", *args, "--model", tiny_model_dir, "--method", "none", "--out", tmp_path / "out")
        assert res.returncode == 2 and "no items to evaluate" in res.stderr, res.stderr


@pytest.mark.parametrize("when", ["start-up", "evaluating"])
def test_ctrl_c_at_any_point_is_one_line_and_status_130(tiny_model_dir, items, tmp_path, when):
    from adatp.cli import INTERRUPTED

    proc = subprocess.Popen([sys.executable, "-m", "adatp", "eval", "mcq", str(items), "--model", str(tiny_model_dir),
                             "--methods", "none,adatp,fastv,visionzip,dycoke", "--retention", ".5", "--frames", "8",
                             "--out", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if when == "start-up":
        time.sleep(0.2)
    else:  # once the first result is written
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline and not list(tmp_path.rglob("none.jsonl")):
            time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # finished before the signal: nothing to interrupt on this machine
        pytest.skip("the run ended before Ctrl-C")
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == INTERRUPTED and "Traceback" not in err, err


# --- the answer is the best option letter ---------------------------------------------------------


def test_the_answer_is_the_best_option_letter_not_the_best_token(tiny_model_dir, clips):
    """Against the model's own logits: the highest of the options' letters, which here is not the
    highest token of the vocabulary (an argmax over the vocabulary would pick another token)."""
    import torch
    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

    from adatp.inputs import prepare_inputs
    from adatp.tasks.mcq import letter_token_ids
    from adatp.video import read_video

    model = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    letters = letter_token_ids(AutoTokenizer.from_pretrained(tiny_model_dir))
    inputs = dict(prepare_inputs(tiny_model_dir, read_video(clips / "clip1.mp4", 4), "Which? A. x B. y C. z"))
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    assert int(logits.argmax()) not in letters[:3]  # the test can tell the two rules apart
    row = answer_item(model, inputs, RunSpec("none"), letters, 3)
    assert row["predicted"] == int(logits[letters[:3]].argmax())
    assert row["option_logits"] == pytest.approx(logits[letters[:3]].tolist(), abs=1e-3)


def test_warnings_print_user_text_as_written(capsys):
    from adatp.cli import _show_warning

    _show_warning(UserWarning("out/[bold]m[/bold]/weird[/]id.jsonl: torn last line"), UserWarning, "f.py", 1)
    assert "out/[bold]m[/bold]/weird[/]id.jsonl: torn last line" in capsys.readouterr().err
