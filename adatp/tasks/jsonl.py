"""Your own multiple-choice video questions: one JSON object a line (docs/eval-mcq.md).

Fields: ``id`` (string or integer, unique), ``video`` (a path relative to the JSONL file, or
absolute), ``question``, ``options`` (2-10 strings), ``answer`` (a letter ``"A"``... or a 0-based
index into ``options``); optional ``prompt`` (used verbatim) and ``num_frames``. Every other string
field is metadata that can break the results down (``--by``).

A line that cannot be used becomes a :class:`BadItem` with its id (or line number) and the reason:
not JSON, a missing or ill-typed field, an answer not among the options, a missing video file, an
id used twice (every line with that id). The rest of the file is evaluated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adatp.errors import ConfigError
from adatp.tasks.mcq import LETTERS, MAX_OPTIONS, MIN_OPTIONS, BadItem, MCQItem

FIELDS = ("id", "video", "question", "options", "answer", "prompt", "num_frames")


def _answer_index(answer: Any, options: list[str]) -> int:
    if isinstance(answer, bool):
        raise ValueError(f"answer {answer!r} must be a letter or an index into options")
    if isinstance(answer, int):
        index = answer
    elif isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().upper() in LETTERS:
        index = LETTERS.index(answer.strip().upper())
    else:
        raise ValueError(f"answer {answer!r} must be a letter (A, B, ...) or an index into options")
    if not 0 <= index < len(options):
        raise ValueError(f"answer {answer!r} is not among the {len(options)} options "
                         f"({LETTERS[0]}-{LETTERS[len(options) - 1]})")
    return index


def _item(row: Any, folder: Path) -> MCQItem:
    """One line as an item; ValueError naming the first problem."""
    if not isinstance(row, dict):
        raise ValueError(f"a JSON {type(row).__name__}, not an object")
    for name in ("video", "question", "options", "answer"):
        if name not in row:
            raise ValueError(f"no {name!r} field")
    question, options, video = row["question"], row["options"], row["video"]
    if not isinstance(question, str) or not question.strip():
        raise ValueError("'question' must be a non-empty string")
    if not isinstance(options, list) or not all(isinstance(o, str) and o.strip() for o in options):
        raise ValueError("'options' must be a list of non-empty strings")
    if not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
        raise ValueError(f"{len(options)} options: give {MIN_OPTIONS} to {MAX_OPTIONS}")
    if not isinstance(video, str) or not video:
        raise ValueError("'video' must be a path (relative to the JSONL file, or absolute)")
    path = Path(video).expanduser()
    path = path if path.is_absolute() else folder / path
    if not path.is_file():
        raise ValueError(f"video file not found: {str(path)!r}")
    prompt = row.get("prompt")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise ValueError("'prompt' must be a non-empty string when given")
    num_frames = row.get("num_frames")
    if num_frames is not None and (isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1):
        raise ValueError(f"'num_frames' must be a positive integer, got {num_frames!r}")
    metadata = {k: v for k, v in row.items() if k not in FIELDS and isinstance(v, str)}
    return MCQItem(str(row["id"]), question, list(options), _answer_index(row["answer"], options), video=path,
                   num_frames=num_frames, prompt_text=prompt, metadata=metadata)


def load_items(path: str | Path, *, start: int = 0, count: int | None = None) -> list[MCQItem | BadItem]:
    """Items ``start .. start + count - 1`` of a JSONL file (all from ``start`` when ``count`` is None),
    bad ones as :class:`BadItem`.

    Raises:
        ConfigError: the file is missing or unreadable (a bad *line* is a BadItem, not an error).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"items file not found: {str(path)!r} (one JSON object a line, see docs/eval-mcq.md)")
    try:
        # JSONL lines end at "\n" only: str.splitlines would also cut at U+2028, U+0085, ... inside a string
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc}") from None
    if start < 0 or (count is not None and count < 1):
        raise ConfigError(f"--start must be >= 0 and --count >= 1, got {start} and {count}")
    parsed: list[tuple[int, Any, str]] = []  # (line number, row or None, id)
    out: list[MCQItem | BadItem] = []
    lines_of: dict[str, list[int]] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except ValueError as exc:
            parsed.append((number, BadItem(f"line {number}", f"not JSON ({exc})"), ""))
            continue
        raw_id = row.get("id") if isinstance(row, dict) else None
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or str(raw_id) == "":
            parsed.append((number, BadItem(f"line {number}", "no 'id' (a string or an integer)"), ""))
            continue
        item_id = str(raw_id)
        lines_of.setdefault(item_id, []).append(number)
        parsed.append((number, row, item_id))
    for number, row, item_id in parsed[start: None if count is None else start + count]:
        if isinstance(row, BadItem):
            out.append(row)
        elif len(lines_of[item_id]) > 1:
            out.append(BadItem(item_id, f"id used on lines {', '.join(map(str, lines_of[item_id]))}: ids must be unique"))
        else:
            try:
                out.append(_item(row, path.parent))
            except ValueError as exc:
                out.append(BadItem(item_id, f"line {number}: {exc}"))
    return out
