"""Resumable multiple-choice evaluation: every (method, target) on the same items, one JSONL each.

For each item the video and prompt are prepared once, then every run answers it: ``generate()``
with one new token (the model's own prefill and KV cache path, pruned inside ``adatp.prune``), and
the answer is the option letter whose token has the highest first-step logit among the item's
options. Each result is appended to its run's JSONL file and fsynced before the next item, so a
killed run loses nothing; a rerun skips the items already there (a torn last line is dropped).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from adatp.errors import ConfigError
from adatp.eval.results import (
    REQUIRED, RESTART_FLAG, RunMismatch, append_line, make_header, model_record, open_results, replace_lines,
)
from adatp.eval.lock import exclusive_writer
from adatp.eval.stats import accuracy, grouped_accuracy
from adatp.tasks.mcq import LETTERS, BadItem, MCQItem, letter_token_ids


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
    from adatp.ops.schedule import check_target

    targets = [tuple(check_target(flops_ratio=f, flags=True).items()) for f in flops_ratios]
    targets += [tuple(check_target(retention=r, flags=True).items()) for r in retentions]
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
        segments = report.method_info.get("segments")  # the method's video segments, where it has them
        if segments is not None:
            row["segments"] = [list(seg) for seg in segments]
    return row


@dataclass(frozen=True)
class RowFormat:
    """How a task's result rows look: the id field, the fields every row must have, and whether
    ``answer`` / ``predicted`` are option letters (``adatp eval mcq``) or indices (needle, kept so)."""

    id_key: str
    required: dict[str, type]
    letters: bool


NEEDLE_ROWS = RowFormat("item_id", dict(REQUIRED, kind=str, position=str), letters=False)
MCQ_ROWS = RowFormat("id", {"id": str, "answer": str, "predicted": str, "correct": bool}, letters=True)


@dataclass
class EvalRun:
    """Where results go and what was asked; ``results`` maps a spec to its rows (done + new).

    ``task`` names the results subfolder (the needle split, or the JSONL file's name); ``bad_items``
    are the items that could not be evaluated (reported, skipped). Under ``torchrun`` or ``accelerate launch`` each
    process appends to its own ``<run>.rank<R>.jsonl``; process 0 merges them into ``<run>.jsonl``.
    """

    model_dir: Path
    task: str
    out_dir: Path
    specs: list[RunSpec]
    results: dict[RunSpec, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: dict[RunSpec, str] = field(default_factory=dict)  # runs whose target is out of reach
    bad_items: list[BadItem] = field(default_factory=list)
    rank: int = 0
    world_size: int = 1
    model_info: dict[str, str] = field(default_factory=dict)  # directory, identity, config hash

    def path(self, spec: RunSpec) -> Path:
        return self.out_dir / self.model_dir.name / self.task / f"{spec.slug}.jsonl"

    def shard_path(self, spec: RunSpec, rank: int) -> Path:
        return self.path(spec).with_name(f"{spec.slug}.rank{rank}.jsonl")

    def shard_paths(self, spec: RunSpec) -> list[Path]:
        """Every process's file of ``spec`` on disk (from this run or a killed earlier one)."""
        folder = self.path(spec).parent
        return sorted(folder.glob(f"{spec.slug}.rank*.jsonl")) if folder.is_dir() else []


def _distributed() -> tuple[int, int]:
    """(rank, world size) under ``accelerate launch`` / ``torchrun`` (their environment), else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return (int(os.environ.get("RANK", "0") or 0), world) if world > 1 else (0, 1)


def _barrier(world_size: int) -> None:
    """Wait until every process gets here. torch.distributed's own group (gloo: CPU or GPU runs,
    from the launcher's environment): accelerate's PartialState under ``torchrun`` on CPU is not
    distributed, and its barrier returns at once."""
    if world_size > 1:
        import datetime

        import torch.distributed as dist

        if not dist.is_initialized():  # a long item on one process must not time the others out
            dist.init_process_group("gloo", timeout=datetime.timedelta(hours=12))
        dist.barrier()


def _merge_shards(run: EvalRun, spec: RunSpec, header: dict[str, Any], rows: RowFormat) -> None:
    """Fold every process's file into the run's file (each item once, the latest row), atomically;
    then drop them."""
    shards = run.shard_paths(spec)
    if not shards:
        return
    merged: dict[str, dict[str, Any]] = {}
    for path in [run.path(spec), *shards]:
        for row in open_results(path, header, rows.required, create=False):
            merged[row[rows.id_key]] = row  # a redone item's row (--restart) comes after its old one
    replace_lines(run.path(spec), [header, *merged.values()])  # the shards go only after it
    for path in shards:
        path.unlink()


def run_items(
    model_dir: str | Path,
    specs: list[RunSpec],
    items: Iterable[MCQItem | BadItem],
    *,
    task: str,
    benchmark: str,
    rows: RowFormat = MCQ_ROWS,
    out_dir: str | Path,
    num_frames: int = 32,
    on_item: Callable[[], None] | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    run_info: dict[str, Any] | None = None,
    restart: bool = False,
) -> EvalRun:
    """Evaluate every spec on every item, resuming from disk; one results file per spec.

    A row on disk is reused only when its run is this one (:func:`run_identity`: model content,
    method, options, target, frames, dtype, device class) and its item is unchanged
    (:func:`item_key`: prompt, options, answer, frame count, video). Otherwise
    :class:`~adatp.eval.results.RunMismatch` says what differs, or, with ``restart``, the old file
    is set aside (renamed, not deleted) and changed items are redone. One process writes a results
    file at a time (:mod:`adatp.eval.lock`).

    Each item is prepared once (video read, prompt built) and its vision tower runs once: every
    run on it reuses the tower's output (:func:`adatp.runtime.encode_cache.reuse_outputs`). Items
    that cannot be evaluated are reported in ``bad_items`` and skipped. Under ``torchrun`` / ``accelerate launch``
    items are dealt by remaining work (:func:`_deal`).
    """
    from transformers.utils import logging as hf_logging

    from adatp.inputs import load_model_config, resolve_model
    from adatp.pipeline import check_device

    hf_logging.disable_progress_bar()
    rank, world = _distributed()
    if world > 1 and device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"  # one GPU per process
    check_device(device)
    run = EvalRun(Path(model_dir), task, Path(out_dir), specs, rank=rank, world_size=world)
    model_dir, tokenizer = resolve_model(model_dir)  # clear errors for a missing or foreign model
    load_model_config(model_dir)
    model_info = model_record(model_dir)
    headers = {spec: make_header(model_info, {"benchmark": benchmark, "task": task, "method": spec.method,
                                              "spec": spec.name, "options": spec.options,
                                              "method_config": method_config(spec), "dtype": dtype,
                                              "device": device, "frames": num_frames, **(run_info or {})},
                                 run_identity(spec, model_info["content"], num_frames, dtype, device, benchmark))
               for spec in specs}
    run.model_info = model_info
    with contextlib.ExitStack() as locks:
        for spec in specs:  # one writer per file: this process's own, and the run's file on process 0
            for path in ([run.path(spec)] if rank == 0 else []) + ([run.shard_path(spec, rank)] if world > 1 else []):
                locks.enter_context(exclusive_writer(path))
        return _run_locked(run, model_dir, tokenizer, headers, specs, items, rows, num_frames, on_item, dtype, device,
                           restart)


def _run_locked(run: EvalRun, model_dir: Path, tokenizer, headers: dict, specs: list[RunSpec], items, rows: RowFormat,
                num_frames: int, on_item, dtype: str, device: str, restart: bool) -> EvalRun:
    """:func:`run_items` once this process holds its results files' locks."""
    from adatp.errors import InputError, VideoError
    from adatp.eval.budget import check_video_fits
    from adatp.families import get_adapter, inputs_to
    from adatp.inputs import prepare_inputs
    from adatp.pipeline import load_model
    from adatp.runtime.encode_cache import reuse_outputs

    rank, world = run.rank, run.world_size
    done: dict[RunSpec, dict[str, dict[str, Any]]] = {}
    if restart and rank != 0:
        _barrier(world)  # process 0 sets aside the files of another run first
    for spec in specs:  # the run's file and every process's file: nothing is redone or counted twice
        done[spec] = {}
        for path in [run.path(spec), *run.shard_paths(spec)]:
            for row in open_results(path, headers[spec], rows.required, create=path == run.path(spec) and rank == 0,
                                    restart=restart and rank == 0):
                done[spec][row[rows.id_key]] = row  # the latest row of an item wins (a redone item)
    if restart and rank == 0:
        _barrier(world)
    if isinstance(items, list):  # every changed item is found before any work starts
        for item in items:
            if isinstance(item, MCQItem):
                _forget_changed(item, done, run, restart)
    _barrier(world)  # every process has read the files before any writes
    write_to = {spec: run.path(spec) if world == 1 else run.shard_path(spec, rank) for spec in specs}
    if world > 1:
        for spec in specs:
            open_results(write_to[spec], headers[spec], rows.required)  # the shard's header
    model = adapter = None
    letters = letter_token_ids(tokenizer)
    wanted: dict[str, dict[str, Any]] = {}  # id -> the item's metadata, in item order
    assigned = [0] * world  # runs dealt to each process so far
    for item in items:
        if isinstance(item, BadItem):
            if rank == 0:
                run.bad_items.append(item)
            if on_item:
                on_item()
            continue
        key = _forget_changed(item, done, run, restart)
        wanted[item.item_id] = item.metadata
        mine = _deal([s for s in specs if item.item_id not in done[s]], assigned) == rank  # the same on every process
        todo = [s for s in specs if item.item_id not in done[s] and s not in run.skipped]
        if todo and mine:
            model = model or load_model(model_dir, dtype=dtype, device=device)
            adapter = adapter or get_adapter(model)
            try:
                count = item.frames.shape[0] if item.frames is not None else item.num_frames or num_frames
                check_video_fits(tokenizer, item.prompt(), count, video=item.video, new_tokens=1,
                                 frame_size=item.frames.shape[1:3] if item.frames is not None else None)
                frames = item.load_frames(num_frames)
                inputs = inputs_to(prepare_inputs(model_dir, frames, item.prompt()), model, device)
            except (VideoError, InputError) as exc:
                run.bad_items.append(BadItem(item.item_id, str(exc)))
                todo = []
            with reuse_outputs(adapter.vision_tower()):
                for spec in todo:
                    try:
                        answer = answer_item(model, inputs, spec, letters, len(item.options))
                    except ConfigError as exc:  # e.g. a target the method cannot reach on this model
                        run.skipped[spec] = str(exc)
                        continue
                    row = _row(item, spec, answer, rows) | {"item_key": key}
                    append_line(write_to[spec], row)
                    done[spec][item.item_id] = row
        if on_item:
            on_item()
    _barrier(world)
    if rank == 0:
        for spec in specs:
            _merge_shards(run, spec, headers[spec], rows)
    _barrier(world)
    for spec in specs:
        if spec in run.skipped:
            continue
        if world > 1:  # every process's rows are in the merged file now
            found = {r[rows.id_key]: r for r in open_results(run.path(spec), headers[spec], rows.required, create=False)}
        else:
            found = done[spec]
        # Rows written before an item field existed (e.g. shot_type) take it from the item.
        run.results[spec] = [{**meta, **found[i]} for i, meta in wanted.items() if i in found]
    return run


def _forget_changed(item: MCQItem, done: dict[RunSpec, dict[str, dict[str, Any]]], run: EvalRun,
                    restart: bool) -> str:
    """The item's :func:`item_key`; a row on disk written for other content of this id is refused
    (:class:`RunMismatch`), or with ``restart`` dropped from ``done`` so the item is redone."""
    key = item_key(item)
    for spec, rows in done.items():
        row = rows.get(item.item_id)
        if row is None or row.get("item_key") in (None, key):  # rows written before item keys: not checkable
            continue
        if not restart:
            raise RunMismatch(
                f"{run.path(spec)}: item {item.item_id!r} changed since its row was written (question, options, answer, "
                f"prompt, frame count or video): pass {RESTART_FLAG} to redo the changed items, or another --out")
        del rows[item.item_id]
    return key


def run_identity(spec: RunSpec, model_content: str, num_frames: int, dtype: str, device: str,
                 benchmark: str) -> dict[str, Any]:
    """Everything of a run that decides its rows, besides each item (:func:`item_key`): the model's
    full content (:func:`adatp.models.identity.model_fingerprint`: weights, config, tokenizer, chat
    template, preprocessing), the method, its every option with the defaults (seeds included), the
    target, the default frame count, dtype, and the device's kind (``cuda:0`` and ``cuda:1`` are
    one kind). The versions of adatp and its libraries are recorded in the header, not compared."""
    import torch as _torch

    return json.loads(json.dumps({
        "model_content": model_content, "benchmark": benchmark, "method": spec.method, "options": spec.options,
        "method_config": method_config(spec), "frames": num_frames, "dtype": dtype,
        "device_class": _torch.device(device).type, "answer_rule": "highest first-token logit among option letters",
    }, sort_keys=True, default=str))


def item_key(item: MCQItem) -> str:
    """16 hex digits of an item's content: its full prompt (question and options as the model reads
    them), options, answer, frame count, and its video: the frames' bytes when given, else the
    file's name, size and modification time (a stat, so a long video is not read to check it)."""
    import hashlib

    if item.frames is not None:
        video: Any = {"frames_sha256": hashlib.sha256(item.frames.tobytes()).hexdigest(),
                      "shape": list(item.frames.shape)}
    else:
        path = Path(item.video)
        try:
            st = path.stat()
            video = {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        except OSError:
            video = {"name": path.name, "missing": True}
    content = {"prompt": item.prompt(), "options": item.options, "answer": item.answer, "num_frames": item.num_frames,
               "video": video}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _deal(remaining: list, assigned: list[int]) -> int:
    """The process that answers an item: the one with the fewest runs dealt so far (ties to the
    lowest rank), counting the item's runs not yet on disk. Every process reads the same files
    before dealing, so every process computes the same deal; items whose runs are all done are
    dealt to nobody. Balances resumed runs and alternating item types (item i to process i mod N
    would give one process every multi-shot item of ``--shots mixed``)."""
    if not remaining:
        return -1
    rank = min(range(len(assigned)), key=lambda r: (assigned[r], r))
    assigned[rank] += len(remaining)
    return rank


def method_config(spec: RunSpec) -> dict[str, Any]:
    """Every option of the run's method as it runs: the defaults with the spec's values (seeds
    included), so a results file says exactly what was run."""
    import dataclasses

    from adatp.methods.base import build_method

    if spec.method == "none":
        return {}
    config = build_method(spec.method, **spec.options).config
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def _row(item: MCQItem, spec: RunSpec, answer: dict[str, Any], rows: RowFormat) -> dict[str, Any]:
    """One result row: the item's id and metadata, the answer and the prediction, cost figures."""
    picked = answer.pop("predicted")
    row: dict[str, Any] = {rows.id_key: item.item_id, "spec": spec.name}
    row.update({k: v for k, v in item.metadata.items() if k not in row})
    if rows.letters:
        row.update(answer=LETTERS[item.answer], predicted=LETTERS[picked])
    else:
        row.update(answer=item.answer, predicted=picked)
    row.update(answer)
    row["correct"] = picked == item.answer
    return row


def run_needle(
    model_dir: str | Path,
    specs: list[RunSpec],
    *,
    split: str = "test",
    count: int = 100,
    start: int = 0,
    kinds: list[str] | None = None,
    shots: str = "single",
    out_dir: str | Path = "results/needle",
    on_item: Callable[[], None] | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    restart: bool = False,
) -> EvalRun:
    """Evaluate every spec on needle items ``start .. start+count-1`` of ``split`` (``shots``: single,
    multi or mixed, :func:`adatp.tasks.needle.iter_items`), resuming from disk."""
    from adatp.tasks.needle import SPLITS, iter_items

    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    if count < 1:
        raise ConfigError(f"--count must be >= 1, got {count}")
    items = (item.as_mcq() for item in iter_items(split, count, start=start, kinds=kinds, shots=shots))
    return run_items(model_dir, specs, items, task=split, benchmark="needle", rows=NEEDLE_ROWS, out_dir=out_dir,
                     on_item=on_item, dtype=dtype, device=device,
                     run_info={"split": split, "start": start, "count": count, "shots": shots}, restart=restart)


def summarize(rows: list[dict[str, Any]], by: tuple[str, ...] = ("kind", "position")) -> dict[str, Any]:
    """Overall accuracy, accuracy per value of each ``by`` field (``by_<field>``; rows without the
    field are left out of that breakdown), mean FLOPs ratio, kept tokens and seconds."""
    def mean(key):
        values = [r[key] for r in rows if key in r]
        return sum(values) / len(values) if values else None

    return {
        "overall": accuracy(r["correct"] for r in rows),
        **{f"by_{key}": grouped_accuracy([r for r in rows if key in r], key) for key in by},
        "cuts": _cuts(rows),
        "flops_visual_ratio": mean("flops_visual_ratio") or 1.0,
        "flops_full_ratio": mean("flops_full_ratio") or 1.0,
        "kept_final": mean("kept_final"),
        "seconds": mean("seconds"),
    }


def _cuts(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]] | None:
    """The method's segments against the shot cuts, per shot type (None: no segments recorded)."""
    from adatp.eval.stats import cut_agreement

    types = sorted({r["shot_type"] for r in rows if "shot_type" in r})
    found = {t: cut_agreement([r for r in rows if r.get("shot_type") == t]) for t in types}
    return {t: v for t, v in found.items() if v is not None} or None


def summary_to_dict(summary: dict[str, Any]) -> dict[str, Any]:
    """:func:`summarize`'s result as plain JSON values."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if key == "overall":
            out[key] = value.to_dict()
        elif key.startswith("by_"):
            out[key] = {k: v.to_dict() for k, v in value.items()}
        else:
            out[key] = value
    return out


def paired_comparisons(results: dict[RunSpec, list[dict[str, Any]]], method: str,
                       by: str | None = None) -> list[dict[str, Any]]:
    """``method`` against every other run at the same target (and against ``none``), on the same
    items: discordant counts, the exact McNemar p-value and its Holm-adjusted value over all the
    comparisons returned. ``by`` a row field: the same comparisons within each of its values
    (``group`` in each row), Holm-adjusted over all of them together."""
    from adatp.eval.stats import holm, mcnemar_exact, paired_discordance

    mine = {spec.target: spec for spec in results if spec.name == method}
    if not mine:
        raise ConfigError(f"--paired {method}: no run of {method!r} among {sorted({s.name for s in results})}")
    groups = sorted({str(r[by]) for rows in results.values() for r in rows if by in r}) if by else [None]
    rows = []
    for group in groups:
        def keep(run_rows, group=group):
            return run_rows if group is None else [r for r in run_rows if str(r.get(by)) == group]

        for spec in results:
            if spec.name == method:
                continue
            ours = [mine[spec.target]] if spec.target in mine else ([*mine.values()] if spec.method == "none" else [])
            for own in ours:
                only_own, only_other, n = paired_discordance(keep(results[own]), keep(results[spec]))
                row = {"method": own.label, "against": spec.label, "items": n, "only_method": only_own,
                       "only_other": only_other, "p_mcnemar": mcnemar_exact(only_own, only_other)}
                rows.append(row if group is None else {"group": f"{by}={group}", **row})
    for row, adjusted in zip(rows, holm([r["p_mcnemar"] for r in rows])):
        row["p_holm"] = adjusted
    return rows
