"""The ``adatp`` command line (also ``python -m adatp``).

Errors that adatp raises on purpose (bad video, bad setting, unsupported model) print one line
and exit with status 2; nothing prints a traceback for bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from adatp.errors import AdaTPError, ConfigError

app = typer.Typer(
    name="adatp",
    help="Attention-debiased token pruning for video LLMs: prune, generate, compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()


def _target(flops_ratio: float | None, retention: float | None, schedule: str | None) -> dict[str, Any]:
    """The pruning target from the CLI words (DECISIONS D12); at most one of ratio / retention."""
    if flops_ratio is not None and retention is not None:
        raise ConfigError("give --flops-ratio or --retention, not both")
    from adatp.ops.schedule import check_fraction

    options: dict[str, Any] = {}
    if schedule is not None:
        from adatp.ops.schedule import parse_schedule

        options["schedule"] = parse_schedule(schedule)
    if flops_ratio is not None:
        options["flops_ratio"] = check_fraction("--flops-ratio", flops_ratio)
    if retention is not None:
        options["retention"] = check_fraction("--retention", retention)
    return options


def _check_method(method: str) -> None:
    from adatp.methods.base import available_methods

    if method not in available_methods():
        raise ConfigError(f"unknown method {method!r}; available: {', '.join(available_methods())}")


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def _run_question(
    model_dir: Path,
    video: Path,
    question: str,
    method: str,
    options: dict[str, Any],
    frames: int,
    max_new_tokens: int,
    compare: bool,
    dtype: str,
    device: str,
):
    from transformers import AutoTokenizer

    from adatp.inputs import prepare_inputs
    from adatp.pipeline import answer_question, load_model
    from adatp.video import read_video

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress display covers loading
    with _progress() as progress:
        step = progress.add_task("reading video", total=None)
        clip = read_video(video, num_frames=frames)
        progress.update(step, description="loading model")
        model = load_model(model_dir, dtype=dtype, device=device)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        progress.update(step, description="preprocessing frames")
        inputs = prepare_inputs(model_dir, clip, question)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        if dtype != "float32":
            inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(model.dtype)
        progress.remove_task(step)
        runs = 2 if compare and method != "none" else 1
        decode = progress.add_task(f"vision + prefill + decode ({method})", total=runs * max_new_tokens)
        result = answer_question(
            model,
            tokenizer,
            inputs,
            method=method,
            prune_options=options,
            max_new_tokens=max_new_tokens,
            compare=compare,
            on_token=lambda: progress.advance(decode),
        )
    return result


def _print_result(result, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        payload = dict(extra or {}, **result.to_dict())
        out.print_json(json.dumps(payload))
        return
    table = Table(title="answers", show_lines=True)
    table.add_column("method")
    table.add_column("answer")
    table.add_column("prefill (s)", justify="right")
    if result.vanilla is not None and result.vanilla is not result.pruned:
        table.add_row("none (vanilla)", result.vanilla.text, _fmt(result.vanilla.prefill_s))
    table.add_row(result.pruned.method, result.pruned.text, _fmt(result.pruned.prefill_s))
    out.print(table)
    report = result.pruned.report
    if report is not None:
        out.print(report.summary())
        info = report.method_info
        if "segments" in info:
            out.print(f"  segments (frames): {info['segments']}")
    if result.prefill_ratio is not None:
        out.print(
            f"  measured prefill time vs vanilla: {result.prefill_ratio:.3f} "
            f"(median of {len(result.prefill_runs['none'])} interleaved runs; speed-up {1 / result.prefill_ratio:.2f}x)"
        )


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


@app.command()
def generate(
    model: Annotated[Path, typer.Option(help="local model directory (config.json, weights, tokenizer)")],
    video: Annotated[Path, typer.Option(help="video file")],
    question: Annotated[str, typer.Option(help="question about the video")],
    method: Annotated[str, typer.Option(help="pruning method (adatp, none, ...)")] = "adatp",
    flops_ratio: Annotated[float | None, typer.Option(help="visual-only FLOPs target vs vanilla, in (0, 1]")] = None,
    retention: Annotated[float | None, typer.Option(help="final fraction of visual tokens, in (0, 1]")] = None,
    schedule: Annotated[str | None, typer.Option(help='stages "LAYER:RETENTION,...", e.g. "0:.75,2:.35,14:.2"')] = None,
    relevance: Annotated[str | None, typer.Option(help="relevance scorer: uniform or siglip:DIR")] = None,
    frames: Annotated[int, typer.Option(help="frames sampled uniformly from the video")] = 32,
    max_new_tokens: Annotated[int, typer.Option(help="tokens to generate")] = 64,
    compare: Annotated[bool, typer.Option(help="also run vanilla and time both prefills")] = False,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16")] = "float32",
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """Answer a question about a video with a pruned model and print the report."""
    _check_method(method)
    options = _target(flops_ratio, retention, schedule)
    if relevance is not None:
        options["relevance"] = relevance
    result = _run_question(model, video, question, method, options, frames, max_new_tokens, compare, dtype, device)
    _print_result(result, as_json)


@app.command()
def demo(
    frames: Annotated[int, typer.Option(help="frames sampled from the demo clip")] = 16,
    flops_ratio: Annotated[float, typer.Option(help="AdaTP's FLOPs target vs vanilla")] = 0.273,
    max_new_tokens: Annotated[int, typer.Option(help="tokens to generate")] = 16,
    cache_dir: Annotated[Path | None, typer.Option(help="where the demo model and clip are built")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """The main job on the built-in default: prune, answer, compare with vanilla."""
    from adatp.models.tiny import tiny_model_dir
    from adatp.video.synthetic import write_synthetic_video

    note = (
        "built-in default: a TINY LLaVA-OneVision with RANDOM weights, built by adatp itself "
        "(no real checkpoint can be downloaded here); its answers are meaningless. It shows the "
        "pipeline, the kept tokens, FLOPs and measured prefill time, not accuracy."
    )
    console.print(f"[bold yellow]note:[/] {note}")
    with _progress() as progress:
        task = progress.add_task("building the demo model and clip (first run only)", total=None)
        model_dir = tiny_model_dir(cache_dir=cache_dir)
        clip = model_dir.parent / "adatp-demo-clip.mp4"
        if not clip.exists():
            write_synthetic_video(clip, num_frames=48, seed=0)
        progress.remove_task(task)
    question = "What colour is the shape that moves across the screen?"
    console.print(f"model: {model_dir}\nvideo: {clip}\nquestion: {question}")
    result = _run_question(
        model_dir, clip, question, "adatp", {"flops_ratio": flops_ratio}, frames, max_new_tokens, True, "float32", "cpu"
    )
    _print_result(result, as_json, {"note": note, "model": str(model_dir), "video": str(clip), "question": question})


@app.command()
def methods() -> None:
    """List the registered pruning methods."""
    from adatp.methods.base import available_methods

    for name in available_methods():
        out.print(name)


def _register_subcommands() -> None:
    """Command groups live beside their code; each module defines a small typer app."""
    from adatp.analysis.cli import app as analyze_app
    from adatp.bench.cli import app as bench_app
    from adatp.eval.cli import app as eval_app
    from adatp.organism.cli import app as organism_app

    app.add_typer(analyze_app, name="analyze", help="Measure attention bias and picture kept tokens.")
    app.add_typer(bench_app, name="bench", help="Measured cost against vanilla in the same run.")
    app.add_typer(eval_app, name="eval", help="Accuracy on video QA benchmarks.")
    app.add_typer(organism_app, name="organism", help="Build and train adatp-tiny, the built-in default model.")


_register_subcommands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; adatp's own errors become one line and exit status 2.

    Usage errors (missing or malformed options) are typer's: a usage line and status 2.
    """
    try:
        app(args=argv)
    except AdaTPError as exc:
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True, markup=True, highlight=False)
        sys.exit(2)
