"""Resumable multiple-choice evaluation: every (method, target) on the same items, one JSONL each.

For each item the video and prompt are prepared once, then every run answers it: ``generate()``
with one new token (the model's own prefill and KV cache path, pruned inside ``adatp.prune``), and
the answer is the option letter whose token has the highest first-step logit among the item's
options. Each result is appended to its run's JSONL file and fsynced before the next item, so a
killed run loses nothing; a rerun skips the items already there (a torn last line is dropped).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from adatp.errors import ConfigError
from adatp.eval.results import REQUIRED, append_line, make_header, model_record, open_results
from adatp.eval.stats import accuracy, grouped_accuracy


@dataclass(frozen=True)
class RunSpec:
    """One method (with its own options) at one cost target.

    ``target``: () (none), (("flops_ratio", F),) or (("retention", R),). ``method_options``: the
    method's own options from a spec ``name:key=value[:key=value]`` (an ablation), in the order
    given; ``name`` is that full spec, and labels, slugs and results name the run by it.
    """

    method: str
    target: tuple[tuple[str, float], ...] = ()
    method_options: tuple[tuple[str, Any], ...] = ()

    @property
    def options(self) -> dict[str, Any]:
        """Everything ``adatp.prune`` takes for this run: the method's options and the target."""
        return dict(self.method_options) | dict(self.target)

    @property
    def name(self) -> str:
        """The full method spec, e.g. ``adatp:alpha=0:segmentation=false``."""
        return self.method + "".join(f":{k}={_text(v)}" for k, v in self.method_options)

    @property
    def slug(self) -> str:
        parts = [self.method] + [f"{k}{_text(v)}" for k, v in self.method_options]
        parts += [f"{'flops' if k == 'flops_ratio' else k}{v:g}" for k, v in self.target]
        return "_".join(parts)

    @property
    def label(self) -> str:
        return self.name + "".join(f" @ {k.replace('_', ' ')} {v:g}" for k, v in self.target)


def _text(value: Any) -> str:
    """An option value as the command line writes it (``0``, ``2.5``, ``false``, ``none``)."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def build_specs(methods: Iterable[str], flops_ratios: Iterable[float] = (), retentions: Iterable[float] = ()) -> list[RunSpec]:
    """Every method spec at every target; "none" once (it has no target).

    A method is a name or a spec ``name:key=value[:key=value]``
    (:func:`adatp.methods.base.parse_method_spec`: typed, checked, one-line errors).
    """
    from adatp.methods.base import parse_method_spec
    from adatp.ops.schedule import check_fraction

    targets = [(("flops_ratio", check_fraction("flops ratio", f)),) for f in flops_ratios]
    targets += [(("retention", check_fraction("retention", r)),) for r in retentions]
    specs: list[RunSpec] = []
    for text in methods:
        method, options = parse_method_spec(text)
        own = tuple(options.items())
        if method == "none":
            specs.append(RunSpec("none", (), own))
        else:
            if not targets:
                raise ConfigError(f"method {text!r} needs a target: --flops-ratio(s) or --retention")
            specs.extend(RunSpec(method, t, own) for t in targets)
    return list(dict.fromkeys(specs))


def letter_ids(tokenizer) -> list[int]:
    from adatp.organism.train import letter_token_ids

    return letter_token_ids(tokenizer)


@torch.no_grad()
def answer_item(model, inputs: dict, spec: RunSpec, letters: list[int], num_choices: int) -> dict[str, Any]:
    """One run on one prepared item: the chosen option, its logits, the report's cost figures."""
    import adatp

    def run():
        t0 = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=1, do_sample=False, output_logits=True,
                             return_dict_in_generate=True)
        return out.logits[0][0].float(), time.perf_counter() - t0

    report = None
    if spec.method == "none":
        logits, seconds = run()
    else:
        with adatp.prune(model, spec.method, **spec.options) as pruned:
            logits, seconds = run()
            report = pruned.last_report
    option_logits = logits[letters[:num_choices]]
    row: dict[str, Any] = {
        "predicted": int(option_logits.argmax()),
        "option_logits": [round(float(x), 4) for x in option_logits],
        "seconds": round(seconds, 4),
    }
    if report is not None:
        row["kept_final"] = report.stages[-1].kept if report.stages else report.num_visual
        row["kept_per_stage"] = [[s.layer, s.kept] for s in report.stages]
        row["flops_visual_ratio"] = round(report.flops.visual_ratio, 5)
        row["flops_full_ratio"] = round(report.flops.full_ratio, 5)
        row["num_visual"] = report.num_visual
    return row


@dataclass
class NeedleRun:
    """Where results go and what was asked; ``results`` maps a spec to its rows (done + new)."""

    model_dir: Path
    split: str
    out_dir: Path
    specs: list[RunSpec]
    results: dict[RunSpec, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: dict[RunSpec, str] = field(default_factory=dict)  # runs whose target is out of reach

    def path(self, spec: RunSpec) -> Path:
        return self.out_dir / self.model_dir.name / self.split / f"{spec.slug}.jsonl"


def run_needle(
    model_dir: str | Path,
    specs: list[RunSpec],
    *,
    split: str = "test",
    count: int = 100,
    start: int = 0,
    kinds: list[str] | None = None,
    out_dir: str | Path = "results/needle",
    on_item: Callable[[], None] | None = None,
    dtype: str = "float32",
    device: str = "cpu",
) -> NeedleRun:
    """Evaluate every spec on items ``start .. start+count-1`` of ``split``, resuming from disk."""
    from adatp.eval.needle import SPLITS, iter_items
    from adatp.inputs import prepare_inputs
    from adatp.pipeline import load_model

    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    if count < 1:
        raise ConfigError(f"--count must be >= 1, got {count}")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from adatp.inputs import load_model_config, resolve_model

    run = NeedleRun(Path(model_dir), split, Path(out_dir), specs)
    model_dir, tokenizer = resolve_model(model_dir)  # clear errors for a missing or foreign model
    load_model_config(model_dir)
    model_info = model_record(model_dir)
    headers = {spec: make_header(model_info, {"benchmark": "needle", "split": split, "method": spec.method, "spec": spec.name,
                                              "options": spec.options, "dtype": dtype, "device": device})
               for spec in specs}
    required = dict(REQUIRED, kind=str, position=str)
    done = {spec: {r["item_id"]: r for r in open_results(run.path(spec), headers[spec], required)} for spec in specs}
    model = None
    letters = letter_ids(tokenizer)
    for item in iter_items(split, count, start=start, kinds=kinds):
        todo = [s for s in specs if item.item_id not in done[s]]
        if todo:
            model = model or load_model(model_dir, dtype=dtype, device=device)
            inputs = {k: v.to(device) for k, v in prepare_inputs(model_dir, item.frames, item.prompt()).items()}
            if dtype != "float32":
                inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(model.dtype)
            for spec in todo:
                if spec in run.skipped:
                    continue
                try:
                    answer = answer_item(model, inputs, spec, letters, len(item.choices))
                except ConfigError as exc:  # e.g. a target the method cannot reach on this model
                    run.skipped[spec] = str(exc)
                    continue
                row = {"item_id": item.item_id, "spec": spec.name, "kind": item.kind, "position": item.position,
                       "answer": item.answer, **answer}
                row["correct"] = row["predicted"] == item.answer
                append_line(run.path(spec), row)
                done[spec][item.item_id] = row
        if on_item:
            on_item()
    wanted = {f"{split}-{i:06d}" for i in range(start, start + count)}
    for spec in specs:
        if spec not in run.skipped:
            run.results[spec] = [r for r in done[spec].values() if r["item_id"].rsplit("-", 1)[0] in wanted]
    return run


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall accuracy, per kind and per event position, mean FLOPs ratio and kept tokens."""
    def mean(key):
        values = [r[key] for r in rows if key in r]
        return sum(values) / len(values) if values else None

    return {
        "overall": accuracy(r["correct"] for r in rows),
        "by_kind": grouped_accuracy(rows, "kind"),
        "by_position": grouped_accuracy(rows, "position"),
        "flops_visual_ratio": mean("flops_visual_ratio") or 1.0,
        "flops_full_ratio": mean("flops_full_ratio") or 1.0,
        "kept_final": mean("kept_final"),
        "seconds": mean("seconds"),
    }


def summary_to_dict(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "overall": summary["overall"].to_dict(),
        "by_kind": {k: v.to_dict() for k, v in summary["by_kind"].items()},
        "by_position": {k: v.to_dict() for k, v in summary["by_position"].items()},
        **{k: summary[k] for k in ("flops_visual_ratio", "flops_full_ratio", "kept_final", "seconds")},
    }


def paired_comparisons(results: dict[RunSpec, list[dict[str, Any]]], method: str) -> list[dict[str, Any]]:
    """``method`` against every other run at the same target (and against ``none``), on the same
    items: discordant counts and the exact McNemar p-value (uncorrected for the number of tests)."""
    from adatp.eval.stats import mcnemar_exact, paired_discordance

    mine = {spec.target: spec for spec in results if spec.name == method}
    if not mine:
        raise ConfigError(f"--paired {method}: no run of {method!r} among {sorted({s.name for s in results})}")
    rows = []
    for spec in results:
        if spec.name == method:
            continue
        ours = [mine[spec.target]] if spec.target in mine else ([*mine.values()] if spec.method == "none" else [])
        for own in ours:
            only_own, only_other, n = paired_discordance(results[own], results[spec])
            rows.append({"method": own.label, "against": spec.label, "items": n, "only_method": only_own,
                         "only_other": only_other, "p_mcnemar": mcnemar_exact(only_own, only_other)})
    return rows
