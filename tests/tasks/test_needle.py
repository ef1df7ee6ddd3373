"""The needle-in-video generator: deterministic, balanced, and its answers describe what is drawn."""

from collections import Counter

import numpy as np
import pytest

from adatp.errors import ConfigError
from adatp.tasks.needle import (
    CLIPS, COLOURS, KINDS, NUM_FRAMES, SPLIT_RANGES, _decoded_clip, background_dir, iter_items, make_item,
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


@pytest.mark.parametrize("index", range(25))
def test_the_correct_option_describes_the_drawn_event(index):
    item = make_item("test", index)
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
