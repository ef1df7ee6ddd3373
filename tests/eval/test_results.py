"""Results files never lose or mix up results: corrupt lines, torn tails, foreign models."""

import json
import shutil

import pytest

from adatp.errors import ConfigError
from adatp.eval.harness import RunSpec, run_needle
from adatp.eval.results import make_header, model_record, open_results, read_results, read_results_file
from adatp.models.identity import model_identity

ROW = {"predicted": 1, "correct": True}


def _row(item_id, **extra):
    return json.dumps({"item_id": item_id, **ROW, **extra})


def test_a_torn_last_line_is_the_only_thing_removed(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(f'{_row("a")}\n{_row("b")}\n{{"item_id": "c", "corr')
    with pytest.warns(UserWarning, match=r"r\.jsonl:3: torn last line"):
        assert [r["item_id"] for r in read_results(path)] == ["a", "b"]
    assert path.read_text() == f'{_row("a")}\n{_row("b")}\n'  # ready for clean appends


def test_a_corrupt_line_in_the_middle_is_reported_and_skipped_never_truncated(tmp_path):
    path = tmp_path / "r.jsonl"
    text = f'{_row("a")}\nGARBAGE\x00{{\n{_row("b")}\n{_row("c")}\n'
    path.write_text(text)
    with pytest.warns(UserWarning, match=r"r\.jsonl:2: not JSON") as caught:
        rows = read_results(path)
    assert [r["item_id"] for r in rows] == ["a", "b", "c"]  # every good row after it survives
    assert path.read_text() == text  # nothing cut away
    assert len(caught) == 1


@pytest.mark.parametrize(
    "line, reason",
    [
        ('{"item_id": "x", "predicted": 1}', "no 'correct'"),
        ('{"predicted": 1, "correct": true}', "no 'item_id'"),
        ('{"item_id": "x", "predicted": "B", "correct": true}', "not an integer"),
        ('{"item_id": "x", "predicted": 1, "correct": "yes"}', "not a bool"),
        ('[1, 2, 3]', "not an object"),
    ],
)
def test_malformed_rows_are_reported_not_keyerrors(tmp_path, line, reason):
    path = tmp_path / "r.jsonl"
    path.write_text(f'{_row("a")}\n{line}\n{_row("b")}\n')
    with pytest.warns(UserWarning, match=rf"r\.jsonl:2: malformed result row \(.*{reason}"):
        assert [r["item_id"] for r in read_results(path)] == ["a", "b"]


def test_model_identity_sees_retrained_weights_not_paths(tiny_model_dir, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "moved")
    assert model_identity(copy) == model_identity(tiny_model_dir)  # moving keeps the identity
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # "retrained": same names, shapes and sizes, other values
    weights.write_bytes(bytes(data))
    assert model_identity(copy) != model_identity(tiny_model_dir)


def test_a_results_file_refuses_another_model(tiny_model_dir, tmp_path):
    other = shutil.copytree(tiny_model_dir, tmp_path / "b" / "model")
    data = bytearray((other / "model.safetensors").read_bytes())
    data[len(data) // 3] ^= 0xFF
    (other / "model.safetensors").write_bytes(bytes(data))
    path = tmp_path / "r.jsonl"
    first = make_header(model_record(tiny_model_dir), {"method": "none"})
    assert open_results(path, first) == []
    path.write_text(path.read_text() + _row("a") + "\n")
    assert [r["item_id"] for r in open_results(path, first)] == ["a"]
    with pytest.raises(ConfigError, match=r"holds results of model .*identity .*not of .*identity"):
        open_results(path, make_header(model_record(other), {"method": "none"}))


def test_results_named_by_the_older_identity_scheme_resume(tiny_model_dir, tmp_path):
    """Scheme 1 also hashed a small safetensors file's header first: the same weights, another
    fingerprint. Its files resume; another model's scheme-1 identity is still refused."""
    from adatp.models.identity import model_identities

    now, older = model_identities(tiny_model_dir)
    assert now == model_identity(tiny_model_dir) and older != now
    path = tmp_path / "r.jsonl"
    header = make_header(model_record(tiny_model_dir), {"method": "none"})
    old = dict(header, model=dict(header["model"], identity=older))
    path.write_text(json.dumps(old) + "\n" + _row("a") + "\n")
    assert [r["item_id"] for r in open_results(path, header)] == ["a"]
    path.write_text(json.dumps(dict(header, model=dict(header["model"], identity="0123456789abcdef"))) + "\n")
    with pytest.raises(ConfigError, match="holds results of model"):
        open_results(path, header)


def test_eval_refuses_to_resume_with_a_different_model_of_the_same_name(tiny_model_dir, tmp_path):
    specs = [RunSpec("none")]
    run_needle(tiny_model_dir, specs, split="validation", count=1, out_dir=tmp_path / "out")
    other = shutil.copytree(tiny_model_dir, tmp_path / "elsewhere" / tiny_model_dir.name)  # same folder name
    data = bytearray((other / "model.safetensors").read_bytes())
    data[-1000] ^= 0xFF
    (other / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="holds results of model"):
        run_needle(other, specs, split="validation", count=2, out_dir=tmp_path / "out")


def test_legacy_files_without_a_header_are_read_with_a_warning(tiny_model_dir, tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(_row("a") + "\n")
    header = make_header(model_record(tiny_model_dir), {"method": "none"})
    with pytest.warns(UserWarning, match="without checking"):
        assert [r["item_id"] for r in open_results(path, header)] == ["a"]
    assert read_results_file(path)[0] is None  # no header is inserted into an existing file
