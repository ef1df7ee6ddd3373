"""Evaluation tasks: multiple-choice video questions, and the loaders that yield them.

A task item (:class:`adatp.tasks.mcq.MCQItem`) is an id, the video (decoded frames or a path), the
question, its options, the right answer and free metadata. Loaders: the built-in needle-in-video
benchmark (:mod:`adatp.tasks.needle`) and local JSONL files (:mod:`adatp.tasks.jsonl`). This package
sits below both the evaluation harness and the built-in model's training, which share it.
"""

from adatp.tasks.mcq import LETTERS, BadItem, MCQItem, letter_token_ids, picked_option

__all__ = ["LETTERS", "BadItem", "MCQItem", "letter_token_ids", "picked_option"]
