"""The needle-in-video generator: deterministic, balanced, and its answers describe what is drawn."""

from collections import Counter

import numpy as np
import pytest

from adatp.errors import ConfigError
from adatp.tasks.needle import (
    CLIPS, COLOURS, KINDS, MIN_SHOT_FRAMES, NUM_FRAMES, SPLIT_RANGES, _decoded_clip, background_dir, item_index, iter_items,
    make_item, shot_count,
)


def test_same_item_twice_is_identical_and_seeds_differ():
    a, b = make_item("train", 7), make_item("train", 7)
    assert np.array_equal(a.frames, b.frames) and a.events == b.events and a.choices == b.choices
    assert not np.array_equal(a.frames, make_item("train", 12).frames)
    assert not np.array_equal(a.frames, make_item("test", 7).frames)
    assert a.frames.shape == (NUM_FRAMES, 224, 224, 3) and a.frames.dtype == np.uint8


def test_splits_use_disjoint_time_ranges():
    ranges = sorted(SPLIT_RANGES.values())
    assert all(ranges[i][1] <= ranges[i + 1][0] for i in range(len(ranges) - 1))
    for clip in CLIPS:  # every split's range holds at least a few frames of every clip
        n = len(_decoded_clip(str(background_dir() / clip)))
        assert all(int(hi * n) - int(lo * n) >= 8 for lo, hi in SPLIT_RANGES.values())


def test_kinds_positions_and_answers_are_balanced():
    items = list(iter_items("validation", 60))
    kinds = Counter(i.kind for i in items)
    assert set(kinds) == set(KINDS) and len(set(kinds.values())) == 1
    single = [i for i in items if i.kind in ("colour", "shape", "when")]
    assert Counter(i.position for i in single) == {"start": 12, "middle": 12, "end": 12}
    letters = Counter(i.answer_letter for i in items if i.kind in ("colour", "shape"))
    assert len(letters) == 4 and max(letters.values()) <= 3 * min(letters.values())


@pytest.mark.parametrize("multi_shot", [False, True], ids=["single", "multi"])
@pytest.mark.parametrize("index", range(25))
def test_the_correct_option_describes_the_drawn_event(index, multi_shot):
    item = make_item("test", index, multi_shot=multi_shot)
    event = item.events[0]
    y0, x0, y1, x1 = event.box
    centre = item.frames[event.start, (y0 + y1) // 2, (x0 + x1) // 2].astype(int)
    if item.kind == "colour":
        assert item.choices[item.answer] == event.colour
    if item.kind in ("colour", "shape", "when"):
        assert np.abs(centre - np.array(COLOURS[event.colour])).max() <= 2  # the shape's fill
        assert len(item.events) == 1
    if item.kind == "when":
        assert item.choices[item.answer].endswith({"start": "beginning", "middle": "middle", "end": "end"}[event.position])
    if item.kind == "count":
        assert int(item.choices[item.answer]) == len(item.events)
        starts = [e.start for e in item.events]
        assert all(a.start + a.length < b.start for a, b in zip(item.events, item.events[1:])), starts
    if item.kind == "order":
        first = min(item.events, key=lambda e: e.start)
        assert item.choices[item.answer] == first.colour
    assert item.prompt().endswith("Answer with the option's letter from the given choices directly.")


def test_event_frames_differ_from_the_plain_background():
    item = make_item("train", 0)
    event = item.events[0]
    y0, x0, y1, x1 = event.box
    inside = item.frames[:, y0:y1, x0:x1].reshape(NUM_FRAMES, -1, 3)
    coloured = (np.abs(inside.astype(int) - COLOURS[event.colour]).max(-1) <= 2).mean(1)
    assert all(coloured[t] > 0.3 for t in event.frames)
    assert all(coloured[t] < 0.1 for t in set(range(NUM_FRAMES)) - set(event.frames))


def test_bad_input():
    with pytest.raises(ConfigError, match="unknown split"):
        make_item("dev", 0)
    with pytest.raises(ConfigError, match="non-negative"):
        make_item("train", -1)
    with pytest.raises(ConfigError, match="unknown question kind"):
        make_item("train", 0, kind="size")


def _fingerprint(item) -> str:
    import hashlib

    h = hashlib.sha256(item.frames.tobytes())
    h.update(repr((item.item_id, item.question, item.choices, item.answer, item.position, item.events)).encode())
    return h.hexdigest()[:16]


# Recorded from the generator before multi-shot items existed (commit f59d25c): an existing item id
# must keep its content, or every stored result would describe another clip.
BEFORE_MULTI_SHOT = {
    ("test", 0): "099266355eb2e91b",
    ("test", 7): "31afd02333d5fd5e",
    ("test", 23): "a2d7f7128161de22",
    ("validation", 3): "f4d65c7b707b0558",
    ("validation", 44): "ce8ece27437e41b8",
    ("train", 11): "e9ebbeb58fc9d967",
}


@pytest.mark.parametrize("split,index", sorted(BEFORE_MULTI_SHOT))
def test_existing_items_keep_their_content(split, index):
    assert _fingerprint(make_item(split, index)) == BEFORE_MULTI_SHOT[(split, index)]


def test_multi_shot_items_have_their_own_ids_seeds_and_balanced_shot_counts():
    a, b = make_item("test", 3, multi_shot=True), make_item("test", 3)
    assert a.item_id == "test-m000003-count" and b.item_id == "test-000003-count"
    assert item_index(a.item_id) == ("test", 3, True) and item_index(b.item_id) == ("test", 3, False)
    assert not np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.frames, make_item("test", 3, multi_shot=True).frames)
    assert a.shot_type == "multi" and b.shot_type == "single" and b.shots == [(0, NUM_FRAMES - 1)]
    # Every (kind, position, shots) triple once in 45 consecutive items.
    triples = {(KINDS[i % 5], (i // 5) % 3, shot_count(i)) for i in range(45)}
    assert len(triples) == 45 and {shot_count(i) for i in range(45)} == {2, 3, 4}


def _background_change(item, t: int) -> float:
    """Mean absolute change from frame t-1 to t outside every event's box."""
    keep = np.ones(item.frames.shape[1:3], bool)
    for e in item.events:
        y0, x0, y1, x1 = e.box
        keep[max(0, y0 - 3) : y1 + 4, max(0, x0 - 3) : x1 + 4] = False
    return float(np.abs(item.frames[t].astype(int) - item.frames[t - 1].astype(int))[keep].mean())


@pytest.mark.parametrize("index", [0, 1, 2, 16, 17, 31, 32, 33, 44])
def test_multi_shot_items_are_hard_cuts_with_events_inside_one_shot(index):
    item = make_item("validation", index, multi_shot=True)
    shots = item.shots
    assert len(shots) == shot_count(index) and shots[0][0] == 0 and shots[-1][1] == NUM_FRAMES - 1
    assert all(b - a + 1 >= MIN_SHOT_FRAMES for a, b in shots)
    assert all(prev[1] + 1 == nxt[0] for prev, nxt in zip(shots, shots[1:]))
    for e in item.events:  # no event crosses a cut
        assert sum(a <= t <= b for a, b in shots for t in (e.start, e.start + e.length - 1)) == 2
        assert len({i for i, (a, b) in enumerate(shots) for t in e.frames if a <= t <= b}) == 1
    assert item.event_shots == [next(i for i, (a, b) in enumerate(shots) if a <= e.start <= b) for e in item.events]
    cuts = [a for a, _ in shots[1:]]
    within = [_background_change(item, t) for t in range(1, NUM_FRAMES) if t not in cuts]
    across = [_background_change(item, t) for t in cuts]
    assert min(across) > max(within), (across, max(within))  # a cut changes the picture more than any shot does


def test_mixed_runs_alternate_single_and_multi_shot_items():
    ids = [i.item_id for i in iter_items("test", 4, shots="mixed")]
    assert ids == ["test-000000-colour", "test-m000000-colour", "test-000001-shape", "test-m000001-shape"]
    assert [i.item_id for i in iter_items("test", 2, start=2, shots="multi")] == ["test-m000002-when", "test-m000003-count"]
    with pytest.raises(ConfigError, match="shots"):
        list(iter_items("test", 1, shots="double"))
