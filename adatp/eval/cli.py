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


@app.command()
def needle(
    model: Annotated[Path | None, typer.Option(help="model directory (default: the built-in adatp-tiny)")] = None,
    method: Annotated[str | None, typer.Option(help="one method")] = None,
    methods: Annotated[str | None, typer.Option(help='comma-separated methods or specs name:key=value[:key=value] '
                                                     '(e.g. "adatp,adatp:alpha=0"), or "all"')] = None,
    flops_ratio: Annotated[str | None, typer.Option(help="visual FLOPs target(s) vs vanilla, in (0, 1]: .273 or .5,.273,.1")] = None,
    flops_ratios: Annotated[str | None, typer.Option(help="alias of --flops-ratio")] = None,
    retention: Annotated[float | None, typer.Option(help="final fraction of visual tokens, in (0, 1]")] = None,
    split: Annotated[str, typer.Option(help="train, validation or test")] = "test",
    count: Annotated[int, typer.Option(help="items to evaluate")] = 100,
    start: Annotated[int, typer.Option(help="first item index")] = 0,
    out: Annotated[Path, typer.Option(help="results directory (JSONL per run, resumable)")] = Path("results/needle"),
    plot: Annotated[Path | None, typer.Option(help="write accuracy vs FLOPs ratio as this PNG")] = None,
    markdown: Annotated[Path | None, typer.Option(help="also write the table as Markdown to this file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    paired: Annotated[str | None, typer.Option(help="also compare this method, item by item, with every other run "
                                                    "at its target (exact McNemar test)")] = None,
) -> None:
    """Needle-in-video accuracy (95% Wilson intervals) per method and target, resumable."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from adatp.eval.harness import build_specs, paired_comparisons, run_needle, summarize, summary_to_dict
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
    model_dir = model if model is not None else default_model_dir()
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"needle {split} x {len(specs)} runs", total=count)
        run = run_needle(model_dir, specs, split=split, count=count, start=start, out_dir=out,
                         on_item=lambda: progress.advance(task))
    summaries = {spec: summarize(rows) for spec, rows in run.results.items()}
    comparisons = paired_comparisons(run.results, paired) if paired is not None else None
    if as_json:
        payload = {"model": str(model_dir), "split": split, "count": count,
                   "runs": [{"method": s.method, "spec": s.name, **s.options, "results_file": str(run.path(s)), **summary_to_dict(v)}
                            for s, v in summaries.items()],
                   "skipped": [{"method": s.method, "spec": s.name, **s.options, "reason": why} for s, why in run.skipped.items()]}
        if comparisons is not None:
            payload["paired"] = comparisons
        typer.echo(json.dumps(payload, indent=2))
    else:
        _print_table(summaries, model_dir, split)
        for spec, why in run.skipped.items():
            console.print(f"[yellow]skipped[/] {spec.label}: {why}")
        if comparisons is not None:
            typer.echo(paired_markdown(comparisons))
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        text = markdown_table(summaries, run.skipped, model_dir, split, count, start)
        markdown.write_text(text + ("\n" + paired_markdown(comparisons) if comparisons is not None else ""))
        console.print(f"markdown: {markdown}")
    if plot is not None:
        from adatp.eval.plots import plot_accuracy_vs_flops

        console.print(f"plot: {plot_accuracy_vs_flops(summaries, plot)}")


def _print_table(summaries, model_dir: Path, split: str) -> None:
    from rich.console import Console
    from rich.table import Table

    kinds = sorted({k for s in summaries.values() for k in s["by_kind"]})
    table = Table(title=f"needle-in-video, {split} split, {model_dir.name} (accuracy %, 95% Wilson interval)")
    for col in ["method", "FLOPs (visual)", "kept", "overall", *POSITION_COLUMNS, *kinds]:
        table.add_column(col, justify="left" if col == "method" else "right")
    for spec, s in summaries.items():
        kept = "-" if s["kept_final"] is None else f"{s['kept_final']:.0f}"
        cells = [spec.label, f"{s['flops_visual_ratio']:.3f}", kept, _acc(s["overall"])]
        cells += [_acc(s["by_position"].get(p)) for p in POSITION_COLUMNS]
        cells += [_acc(s["by_kind"].get(k)) for k in kinds]
        table.add_row(*cells)
    Console().print(table)


def markdown_table(summaries, skipped, model_dir: Path, split: str, count: int, start: int) -> str:
    """The same table as the terminal's, as Markdown (for results files)."""
    kinds = sorted({k for s in summaries.values() for k in s["by_kind"]})
    cols = ["method", "FLOPs (visual)", "kept", "overall", *POSITION_COLUMNS, *kinds]
    lines = [f"needle-in-video, {split} split, items {start}-{start + count - 1}, {model_dir.name}: "
             "accuracy % [95% Wilson interval]", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for spec, s in summaries.items():
        kept = "-" if s["kept_final"] is None else f"{s['kept_final']:.0f}"
        cells = [spec.label, f"{s['flops_visual_ratio']:.3f}", kept, _acc(s["overall"])]
        cells += [_acc(s["by_position"].get(p)) for p in POSITION_COLUMNS]
        cells += [_acc(s["by_kind"].get(k)) for k in kinds]
        lines.append("| " + " | ".join(cells) + " |")
    for spec, why in skipped.items():
        lines.append(f"\nskipped {spec.label}: {why}")
    return "\n".join(lines) + "\n"


def paired_markdown(comparisons: list[dict]) -> str:
    """The paired comparisons as a Markdown table (p-values uncorrected for the number of tests)."""
    lines = ["Paired, item by item (exact McNemar test, two-sided, uncorrected for the number of tests):", "",
             "| method | against | items | right only with method | right only with the other | p |",
             "|---|---|---|---|---|---|"]
    for c in comparisons:
        lines.append(f"| {c['method']} | {c['against']} | {c['items']} | {c['only_method']} | {c['only_other']} "
                     f"| {c['p_mcnemar']:.2g} |")
    return "\n".join(lines) + "\n"


def _acc(a) -> str:
    if a is None or not a.total:
        return "-"
    return f"{100 * a.value:.1f} [{100 * a.low:.0f}-{100 * a.high:.0f}]"
