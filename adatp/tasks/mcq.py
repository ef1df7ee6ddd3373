"""Multiple-choice video questions: the item every loader yields, its prompt, its answer letters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adatp.errors import ConfigError

#: Option letters; an item has 2-10 options.
LETTERS = "ABCDEFGHIJ"
MIN_OPTIONS, MAX_OPTIONS = 2, len(LETTERS)
#: The instruction LLaVA-OneVision's evaluation appends to multiple-choice video questions.
PROMPT_TAIL = "Answer with the option's letter from the given choices directly."


def format_prompt(question: str, options: list[str]) -> str:
    """``question``, one ``X. option`` line per option, then :data:`PROMPT_TAIL`."""
    lines = "\n".join(f"{LETTERS[i]}. {option}" for i, option in enumerate(options))
    return f"{question}\n{lines}\n{PROMPT_TAIL}"


@dataclass
class MCQItem:
    """One multiple-choice question about one video.

    Attributes:
        item_id: unique within its task.
        question: the question text; ``options`` the answers, 2-10 strings; ``answer`` the index of
            the right one.
        frames: decoded uint8 frames (T, H, W, 3), or None when ``video`` is to be read.
        video: a video file, read with ``num_frames`` uniformly sampled frames.
        num_frames: frames to sample from ``video`` (None: the evaluation's default).
        prompt_text: the prompt to use verbatim (None: :func:`format_prompt`).
        metadata: free string fields, for breaking results down (``--by``).
    """

    item_id: str
    question: str
    options: list[str]
    answer: int
    frames: np.ndarray | None = field(default=None, repr=False)
    video: Path | None = None
    num_frames: int | None = None
    prompt_text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def prompt(self) -> str:
        return self.prompt_text if self.prompt_text is not None else format_prompt(self.question, self.options)

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]

    def load_frames(self, default_num_frames: int) -> np.ndarray:
        """The item's frames: given, or read from ``video`` (raises VideoError when it cannot be)."""
        if self.frames is not None:
            return self.frames
        from adatp.video import read_video

        return read_video(self.video, num_frames=self.num_frames or default_num_frames)


@dataclass(frozen=True)
class BadItem:
    """An item that cannot be evaluated, and why (it is reported and skipped)."""

    item_id: str
    reason: str


def letter_token_ids(tokenizer, count: int = len(LETTERS)) -> list[int]:
    """The token of each of the first ``count`` option letters as the model writes it first (no space)."""
    ids = []
    for letter in LETTERS[:count]:
        enc = tokenizer(letter, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise ConfigError(f"the tokenizer splits the option letter {letter!r} into {len(enc)} tokens")
        ids.append(enc[0])
    return ids


def picked_option(logits: torch.Tensor, letters: list[int], num_options: int) -> int:
    """The option whose letter has the highest logit among the first ``num_options``; logits: (vocab,)."""
    return int(logits[letters[:num_options]].argmax())
