"""The JSONL item format of `adatp eval mcq`: every bad line is a reported BadItem, never a crash."""

import json

import pytest

from adatp.errors import ConfigError
from adatp.tasks.jsonl import load_items
from adatp.tasks.mcq import BadItem, MCQItem, format_prompt


def _write(tmp_path, rows, name="items.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture
def video(tmp_path):
    (tmp_path / "clips").mkdir()
    path = tmp_path / "clips" / "a.mp4"
    path.write_bytes(b"not decoded at load time")
    return path


def test_good_items_letters_indices_metadata_and_paths(tmp_path, video):
    rows = [
        {"id": "q1", "video": "clips/a.mp4", "question": "Q?", "options": ["x", "y", "z"], "answer": "c",
         "kind": "colour", "event_position": "middle", "score": 3},
        {"id": 7, "video": str(video), "question": "R?", "options": ["x", "y"], "answer": 1, "prompt": "Verbatim",
         "num_frames": 8},
    ]
    items = load_items(_write(tmp_path, rows))
    assert all(isinstance(i, MCQItem) for i in items)
    first, second = items
    assert first.answer == 2 and first.answer_letter == "C" and first.video == video
    assert first.metadata == {"kind": "colour", "event_position": "middle"}  # strings only
    assert first.prompt() == format_prompt("Q?", ["x", "y", "z"]) == "Q?\nA. x\nB. y\nC. z\n" \
        "Answer with the option's letter from the given choices directly."
    assert second.item_id == "7" and second.answer == 1 and second.prompt() == "Verbatim" and second.num_frames == 8


@pytest.mark.parametrize(
    "row, reason",
    [
        ({"video": "clips/a.mp4", "question": "Q", "options": ["a", "b"], "answer": "A"}, "no 'id'"),
        ({"id": "b", "video": "clips/missing.mp4", "question": "Q", "options": ["a", "b"], "answer": "A"}, "video file not found"),
        ({"id": "b", "video": "clips/a.mp4", "question": "Q", "options": ["a", "b"], "answer": "C"}, "not among the 2 options"),
        ({"id": "b", "video": "clips/a.mp4", "question": "Q", "options": ["a", "b"], "answer": 2}, "not among the 2 options"),
        ({"id": "b", "video": "clips/a.mp4", "question": "Q", "options": ["a"], "answer": 0}, "1 options: give 2 to 10"),
        ({"id": "b", "video": "clips/a.mp4", "question": "Q", "options": ["a", 3], "answer": 0}, "list of non-empty strings"),
        ({"id": "b", "video": "clips/a.mp4", "question": "", "options": ["a", "b"], "answer": 0}, "'question'"),
        ({"id": "b", "video": "clips/a.mp4", "question": "Q", "options": ["a", "b"]}, "no 'answer'"),
        ({"id": "b", "video": "clips/a.mp4", "question": "Q", "options": ["a", "b"], "answer": "A", "num_frames": 0}, "num_frames"),
        ("{not json", "not JSON"),
    ],
)
def test_a_bad_line_is_a_bad_item_with_its_reason(tmp_path, video, row, reason):
    good = {"id": "g", "video": "clips/a.mp4", "question": "Q", "options": ["a", "b"], "answer": "A"}
    items = load_items(_write(tmp_path, [good, row, dict(good, id="h")]))
    assert [type(i) for i in items] == [MCQItem, BadItem, MCQItem]  # the rest of the file still counts
    assert reason in items[1].reason, items[1].reason


def test_duplicated_ids_are_all_bad_and_named_with_their_lines(tmp_path, video):
    row = {"id": "d", "video": "clips/a.mp4", "question": "Q", "options": ["a", "b"], "answer": "A"}
    items = load_items(_write(tmp_path, [row, dict(row, id="e"), row]))
    assert [(type(i).__name__, i.item_id) for i in items] == [("BadItem", "d"), ("MCQItem", "e"), ("BadItem", "d")]
    assert "lines 1, 3" in items[0].reason


def test_start_and_count_select_items_and_a_missing_file_is_one_error(tmp_path, video):
    rows = [{"id": f"i{k}", "video": "clips/a.mp4", "question": "Q", "options": ["a", "b"], "answer": "A"} for k in range(5)]
    path = _write(tmp_path, rows)
    assert [i.item_id for i in load_items(path, start=1, count=2)] == ["i1", "i2"]
    with pytest.raises(ConfigError, match="items file not found"):
        load_items(tmp_path / "nope.jsonl")
