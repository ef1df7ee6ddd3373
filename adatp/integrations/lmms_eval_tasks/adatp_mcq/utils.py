"""The ``adatp_mcq`` lmms-eval task: items of an ``adatp eval mcq`` JSONL file (docs/eval-mcq.md).

The file is named by the environment variable ``ADATP_MCQ_ITEMS`` and read with adatp's own loader
(:func:`adatp.tasks.jsonl.load_items`: same checks; a bad line is reported and skipped). The prompt
is the item's ``prompt`` or :func:`adatp.tasks.mcq.format_prompt` (question, ``A. ...`` lines, the
LLaVA-OneVision instruction), the same text ``adatp eval mcq`` asks; the score is whether the
answer's first option letter is the item's answer.
"""

from __future__ import annotations

import json
import os
import re
import warnings

ITEMS_ENV = "ADATP_MCQ_ITEMS"


def process_docs(dataset):
    """The items of ``$ADATP_MCQ_ITEMS`` as a ``datasets.Dataset`` (the stub ``dataset`` is dropped)."""
    import datasets

    from adatp.tasks.jsonl import load_items
    from adatp.tasks.mcq import BadItem

    path = os.environ.get(ITEMS_ENV, "").strip()
    if not path:
        raise ValueError(f"set {ITEMS_ENV} to an `adatp eval mcq` JSONL file (docs/eval-mcq.md) to run adatp_mcq")
    rows = []
    for item in load_items(path):
        if isinstance(item, BadItem):
            warnings.warn(f"adatp_mcq: skipping item {item.item_id}: {item.reason}", stacklevel=2)
            continue
        rows.append({
            "id": item.item_id,
            "video": str(item.video),
            "question": item.question,
            "options": list(item.options),
            "answer": item.answer_letter,
            "prompt": item.prompt(),
            "num_frames": item.num_frames or 0,
            "metadata": json.dumps(item.metadata),
        })
    if not rows:
        raise ValueError(f"{path}: no usable item")
    return datasets.Dataset.from_list(rows)


def doc_to_visual(doc):
    return [doc["video"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["prompt"]


def doc_to_target(doc):
    return doc["answer"]


def predicted_letter(response: str, num_options: int) -> str | None:
    """The option letter an answer starts with (``B``, ``B.``, ``(B)``, ``B) ...``), None if none."""
    letters = "ABCDEFGHIJ"[:num_options]
    match = re.match(rf"\s*\(?([{letters}])(?![A-Za-z])", response or "")
    return match.group(1) if match else None


def process_results(doc, results):
    picked = predicted_letter(results[0], len(doc["options"]))
    return {"acc": float(picked == doc["answer"])}
