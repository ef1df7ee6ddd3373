"""``adatp eval ...`` commands (registered on the main app in :mod:`adatp.cli`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from adatp.errors import ConfigError

app = typer.Typer(name="eval", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

POSITION_COLUMNS = ("start", "middle", "end")


def _floats(text: str | None, name: str) -> list[float]:
    if text is None:
        return []
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated numbers, got {text!r}") from None


def default_model_dir() -> Path:
    """adatp-tiny, the built-in default (built on first use)."""
    from adatp.organism.build import adatp_tiny_dir

    return adatp_tiny_dir()


def _specs(method: str | None, methods: str | None, flops_ratio: str | None, flops_ratios: str | None,
           retention: float | None, paired: str | None):
    from adatp.eval.harness import build_specs
    from adatp.methods.base import available_methods

    if method and methods:
        raise ConfigError("give --method or --methods, not both")
    names = [method] if method else (available_methods() if methods == "all" else [m.strip() for m in (methods or "").split(",") if m.strip()])
    if not names:
        raise ConfigError("give --method M or --methods a,b,c (or all)")
    ratios = _floats(flops_ratio, "--flops-ratio") + _floats(flops_ratios, "--flops-ratios")
    if ratios and retention is not None:
        raise ConfigError("give flops ratio(s) or --retention, not both")
    specs = build_specs(names, ratios, [retention] if retention is not None else [])
    if paired is not None and paired not in {s.name for s in specs}:
        raise ConfigError(f"--paired {paired}: not among the methods run ({', '.join(names)})")
    return specs


def _evaluate(run_fn, *, total: int, description: str, title: str, by: tuple[str, ...],
              columns: dict[str, tuple[str, ...] | None], header: dict, as_json: bool,
              markdown: Path | None, plot: Path | None, paired: str | None, paired_by: str | None = None) -> None:
    """Run (with a progress bar), then print the table or JSON, the skipped runs and bad items, and
    write the Markdown and the plot. Under ``torchrun`` or ``accelerate launch`` only process 0 prints and writes."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from adatp.environment import run_versions
    from adatp.eval.harness import method_config, paired_comparisons, summarize, summary_to_dict

    console = Console(stderr=True)
    _check_outputs(markdown, plot)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=total)
        run = run_fn(lambda: progress.advance(task))
    for bad in run.bad_items:  # every process reports the items it could not evaluate
        console.print(f"[yellow]skipped item[/] {escape(bad.item_id)}: {escape(bad.reason)}", highlight=False, soft_wrap=True)
    if run.rank != 0:
        return
    summaries = {spec: summarize(rows, by) for spec, rows in run.results.items()}
    comparisons = paired_comparisons(run.results, paired) if paired is not None else None
    by_group = paired_comparisons(run.results, paired, by=paired_by) if paired is not None and paired_by else None
    if as_json:
        payload = {**header, "processes": run.world_size, "model_identity": run.model_info, "versions": run_versions(),
                   "runs": [{"method": s.method, "spec": s.name, **s.options, "results_file": str(run.path(s)),
                             "method_config": method_config(s), **summary_to_dict(v)} for s, v in summaries.items()],
                   "skipped": [{"method": s.method, "spec": s.name, **s.options, "reason": why} for s, why in run.skipped.items()],
                   "bad_items": [{"id": b.item_id, "reason": b.reason} for b in run.bad_items]}
        if comparisons is not None:
            payload["paired"] = comparisons
        if by_group is not None:
            payload["paired_by_group"] = by_group
        typer.echo(json.dumps(payload, indent=2))
    else:
        _print_table(summaries, title, columns)
        for spec, why in run.skipped.items():
            console.print(f"[yellow]skipped[/] {escape(spec.label)}: {escape(why)}", highlight=False)
        for table in (comparisons, by_group):
            if table is not None:
                typer.echo(paired_markdown(table))
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        text = markdown_table(summaries, run.skipped, title, columns)
        markdown.write_text(text + "".join("\n" + paired_markdown(t) for t in (comparisons, by_group) if t is not None))
        console.print(f"markdown: {markdown}", markup=False, highlight=False)
    if plot is not None:
        from adatp.eval.plots import plot_accuracy_vs_flops

        console.print(f"plot: {plot_accuracy_vs_flops(summaries, plot)}", markup=False, highlight=False)


def _check_outputs(markdown: Path | None, plot: Path | None) -> None:
    """--markdown and --plot can be written: checked before the run, so a bad path loses no time."""
    from adatp.outputs import check_output_file

    if markdown is not None:
        check_output_file(markdown, "--markdown")
    if plot is not None:
        check_output_file(plot, "--plot", (".png", ".pdf", ".svg"))


MethodOpt = Annotated[str | None, typer.Option(help="one method")]
MethodsOpt = Annotated[str | None, typer.Option(help='comma-separated methods or specs name:key=value[:key=value] '
                                                     '(e.g. "adatp,adatp:alpha=0"), or "all"')]
FlopsOpt = Annotated[str | None, typer.Option(help="visual FLOPs target(s) vs vanilla, in (0, 1]: .273 or .5,.273,.1")]
FlopsAliasOpt = Annotated[str | None, typer.Option(help="alias of --flops-ratio")]
RetentionOpt = Annotated[float | None, typer.Option(help="final fraction of visual tokens, in (0, 1]")]
PlotOpt = Annotated[Path | None, typer.Option(help="write accuracy vs FLOPs ratio as this PNG")]
MarkdownOpt = Annotated[Path | None, typer.Option(help="also write the table as Markdown to this file")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
PairedOpt = Annotated[str | None, typer.Option(help="also compare this method, item by item, with every other run "
                                                    "at its target (exact McNemar test, Holm-adjusted)")]
PairedByOpt = Annotated[str | None, typer.Option(help="also make the --paired comparisons within each value of this "
                                                      "field (e.g. shot_type), Holm-adjusted together")]
ModelOpt = Annotated[Path | None, typer.Option(help="model directory (default: the built-in adatp-tiny)")]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda or cuda:N (under accelerate launch: cuda = one GPU per process)")]
DtypeOpt = Annotated[str, typer.Option(help="float32, bfloat16 or float16")]
RestartOpt = Annotated[bool, typer.Option(help="when the results in --out are of another run (model content, frames, "
                                               "options, changed items): set them aside and start afresh")]


def _check_paired_by(paired: str | None, paired_by: str | None, fields: set[str]) -> None:
    if paired_by is not None and paired is None:
        raise ConfigError("--paired-by needs --paired METHOD")
    if paired_by is not None and paired_by not in fields:
        raise ConfigError(f"--paired-by {paired_by}: not a field of these items; fields: {', '.join(sorted(fields))}")


def _check_device_dtype(device: str, dtype: str) -> None:
    from adatp.pipeline import check_device, check_dtype

    check_dtype(dtype)
    check_device(device)  # before any item is read: a bad device is one line, not a traceback later


@app.command()
def needle(
    model: ModelOpt = None,
    method: MethodOpt = None,
    methods: MethodsOpt = None,
    flops_ratio: FlopsOpt = None,
    flops_ratios: FlopsAliasOpt = None,
    retention: RetentionOpt = None,
    split: Annotated[str, typer.Option(help="train, validation or test")] = "test",
    count: Annotated[int, typer.Option(help="items to evaluate")] = 100,
    start: Annotated[int, typer.Option(help="first item index")] = 0,
    shots: Annotated[str, typer.Option(help="single (the original items), multi (2-4 shots, hard cuts) or mixed "
                                            "(alternating: item i//2 of each)")] = "single",
    out: Annotated[Path, typer.Option(help="results directory (JSONL per run, resumable)")] = Path("results/needle"),
    plot: PlotOpt = None,
    markdown: MarkdownOpt = None,
    as_json: JsonOpt = False,
    paired: PairedOpt = None,
    paired_by: PairedByOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    restart: RestartOpt = False,
) -> None:
    """Needle-in-video accuracy (95% Wilson intervals) per method and target, resumable."""
    from adatp.eval.harness import run_needle
    from adatp.outputs import check_output_dir
    from adatp.tasks.needle import SHOT_CHOICES, SHOT_TYPES

    specs = _specs(method, methods, flops_ratio, flops_ratios, retention, paired)
    _check_device_dtype(device, dtype)
    if shots not in SHOT_CHOICES:
        raise ConfigError(f"--shots {shots!r}: choose {', '.join(SHOT_CHOICES)}")
    _check_paired_by(paired, paired_by, {"kind", "position", "shot_type"})
    check_output_dir(out, "--out")
    model_dir = model if model is not None else default_model_dir()
    _evaluate(
        lambda on_item: run_needle(model_dir, specs, split=split, count=count, start=start, shots=shots, out_dir=out,
                                   on_item=on_item, dtype=dtype, device=device, restart=restart),
        total=count, description=f"needle {split} x {len(specs)} runs",
        title=f"needle-in-video, {split} split, items {start}-{start + count - 1} ({shots}-shot), {model_dir.name}",
        by=("kind", "position", "shot_type"),
        columns={"position": POSITION_COLUMNS, **({"shot_type": SHOT_TYPES} if shots == "mixed" else {}), "kind": None},
        header={"model": str(model_dir), "split": split, "count": count, "shots": shots},
        as_json=as_json, markdown=markdown, plot=plot, paired=paired, paired_by=paired_by)


@app.command()
def mcq(
    items: Annotated[Path, typer.Argument(help="JSONL file, one question a line (docs/eval-mcq.md)")],
    model: ModelOpt = None,
    method: MethodOpt = None,
    methods: MethodsOpt = None,
    flops_ratio: FlopsOpt = None,
    flops_ratios: FlopsAliasOpt = None,
    retention: RetentionOpt = None,
    frames: Annotated[int, typer.Option(help="frames sampled uniformly from each video (an item's num_frames wins)")] = 32,
    count: Annotated[int | None, typer.Option(help="items to evaluate (default: all from --start)")] = None,
    start: Annotated[int, typer.Option(help="first item (0-based line among the file's items)")] = 0,
    by: Annotated[str | None, typer.Option(help="metadata fields to break results down by, e.g. kind,event_position")] = None,
    out: Annotated[Path, typer.Option(help="results directory (JSONL per run, resumable)")] = Path("results/mcq"),
    plot: PlotOpt = None,
    markdown: MarkdownOpt = None,
    as_json: JsonOpt = False,
    paired: PairedOpt = None,
    paired_by: PairedByOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    restart: RestartOpt = False,
) -> None:
    """Accuracy on your own multiple-choice video questions, per method and target, resumable."""
    from adatp.eval.budget import check_frame_option
    from adatp.eval.harness import MCQ_ROWS, run_items
    from adatp.outputs import check_output_dir
    from adatp.tasks.jsonl import load_items
    from adatp.tasks.mcq import MCQItem

    specs = _specs(method, methods, flops_ratio, flops_ratios, retention, paired)
    _check_device_dtype(device, dtype)
    if frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {frames}")
    fields = tuple(f.strip() for f in (by or "").split(",") if f.strip())
    loaded = load_items(items, start=start, count=count)
    if not loaded:
        raise ConfigError(f"no items to evaluate in {str(items)!r} from --start {start}: the file has no item "
                          "there (one JSON object a line, see docs/eval-mcq.md)")
    known = {k for item in loaded if isinstance(item, MCQItem) for k in item.metadata}
    unknown = [f for f in fields if f not in known]
    if unknown:
        raise ConfigError(f"--by {','.join(unknown)}: no item has that field; fields: {', '.join(sorted(known)) or 'none'}")
    _check_paired_by(paired, paired_by, known)
    check_output_dir(out, "--out")
    model_dir = model if model is not None else default_model_dir()
    check_frame_option(model_dir, frames)  # before any video is read
    task = items.stem
    _evaluate(
        lambda on_item: run_items(model_dir, specs, loaded, task=task, benchmark="mcq", rows=MCQ_ROWS, out_dir=out,
                                  num_frames=frames, on_item=on_item, dtype=dtype, device=device,
                                  run_info={"items_file": str(items.resolve()), "start": start, "count": count},
                                  restart=restart),
        total=len(loaded), description=f"{items.name} x {len(specs)} runs",
        title=f"{items.name}, {len(loaded)} items, {model_dir.name}", by=fields, columns={f: None for f in fields},
        header={"model": str(model_dir), "items_file": str(items), "count": len(loaded)},
        as_json=as_json, markdown=markdown, plot=plot, paired=paired, paired_by=paired_by)


@app.command("export-needle")
def export_needle(
    out: Annotated[Path, typer.Option(help="folder for the clips and the JSONL")],
    split: Annotated[str, typer.Option(help="train, validation or test")] = "test",
    count: Annotated[int, typer.Option(help="items to export")] = 10,
    start: Annotated[int, typer.Option(help="first item index")] = 0,
    shots: Annotated[str, typer.Option(help="single, multi or mixed (as in `adatp eval needle`)")] = "single",
) -> None:
    """Write needle items as mp4 clips and a JSONL for `adatp eval mcq` (or lmms-eval)."""
    from adatp.outputs import check_output_dir
    from adatp.tasks.needle import SPLITS, export_jsonl

    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    if count < 1 or start < 0:
        raise ConfigError(f"--count must be >= 1 and --start >= 0, got {count} and {start}")
    check_output_dir(out, "--out")
    typer.echo(str(export_jsonl(split, count, out, start=start, shots=shots)))


def _columns(summaries, columns: dict[str, tuple[str, ...] | None]) -> list[tuple[str, str]]:
    """(field, value) per breakdown column: the given order, or every value seen, sorted."""
    out = []
    for key, order in columns.items():
        values = order or sorted({v for s in summaries.values() for v in s.get(f"by_{key}", {})})
        out += [(key, v) for v in values]
    return out


def _cells(spec, s, cols) -> list[str]:
    kept = "-" if s["kept_final"] is None else f"{s['kept_final']:.0f}"
    return [spec.label, f"{s['flops_visual_ratio']:.3f}", kept, _acc(s["overall"])] + [
        _acc(s[f"by_{key}"].get(value)) for key, value in cols]


def _print_table(summaries, title: str, columns) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    cols = _columns(summaries, columns)
    table = Table(title=escape(f"{title} (accuracy %, 95% Wilson interval)"))
    for col in ["method", "FLOPs (visual)", "kept", "overall", *(v for _, v in cols)]:
        table.add_column(escape(str(col)), justify="left" if col == "method" else "right")
    for spec, s in summaries.items():
        table.add_row(*map(escape, _cells(spec, s, cols)))
    Console().print(table)


def markdown_table(summaries, skipped, title: str, columns) -> str:
    """The same table as the terminal's, as Markdown (for results files)."""
    cols = _columns(summaries, columns)
    names = ["method", "FLOPs (visual)", "kept", "overall", *(v for _, v in cols)]
    lines = [f"{title}: accuracy % [95% Wilson interval]", "", "| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for spec, s in summaries.items():
        lines.append("| " + " | ".join(_cells(spec, s, cols)) + " |")
    for spec, why in skipped.items():
        lines.append(f"\nskipped {spec.label}: {why}")
    return "\n".join(lines) + "\n" + cuts_markdown(summaries)


def cuts_markdown(summaries) -> str:
    """The segmenting runs' segments against the shot cuts (empty when no run records segments)."""
    runs = [(spec, s["cuts"]) for spec, s in summaries.items() if s.get("cuts")]
    if not runs:
        return ""
    lines = ["", "Segments against the shot cuts (a cut is found when a segment starts at that frame):", "",
             "| method | multi-shot items | shot cuts | found | extra cuts per multi-shot item | extra cuts per single-shot item |",
             "|---|---|---|---|---|---|"]
    for spec, cuts in runs:
        multi, single = cuts.get("multi"), cuts.get("single")
        cells = ["0", "-", "-", "-"]
        if multi:
            share = 100 * multi["found"] / max(1, multi["cuts"])
            cells = [str(multi["items"]), str(multi["cuts"]), f"{multi['found']} ({share:.0f} %)",
                     f"{multi['extra'] / multi['items']:.2f}"]
        cells.append(f"{single['extra'] / single['items']:.2f}" if single else "-")
        lines.append(f"| {spec.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_markdown(comparisons: list[dict]) -> str:
    """The paired comparisons as a Markdown table: exact McNemar p, and Holm-adjusted over every
    comparison in the table."""
    grouped = any("group" in c for c in comparisons)
    lines = [f"Paired, item by item (exact McNemar test, two-sided; Holm: adjusted over the {len(comparisons)} "
             "comparisons of this table):", "",
             "| " + ("group | " if grouped else "") + "method | against | items | right only with method "
             "| right only with the other | p | p (Holm) |",
             "|" + "---|" * (8 if grouped else 7)]
    for c in comparisons:
        lines.append("| " + (f"{c.get('group', 'all')} | " if grouped else "") + f"{c['method']} | {c['against']} "
                     f"| {c['items']} | {c['only_method']} | {c['only_other']} | {c['p_mcnemar']:.2g} | {c['p_holm']:.2g} |")
    return "\n".join(lines) + "\n"


def _acc(a) -> str:
    if a is None or not a.total:
        return "-"
    return f"{100 * a.value:.1f} [{100 * a.low:.0f}-{100 * a.high:.0f}]"
