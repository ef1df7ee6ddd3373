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
    method: Annotated[str, typer.Option(help="pruning method (adatp, none, ...) or a spec name:key=value[:key=value]")] = "adatp",
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
    from adatp.methods.base import parse_method_spec

    method, method_options = parse_method_spec(method)  # one-line errors for unknown names/options
    options = method_options | _target(flops_ratio, retention, schedule)
    if relevance is not None:
        options["relevance"] = relevance
    result = _run_question(model, video, question, method, options, frames, max_new_tokens, compare, dtype, device)
    _print_result(result, as_json)


# A needle test item: "what colour", the event in the middle of the clip (AdaTP's debiasing is
# about the middle). The first such item, 5, is one vanilla adatp-tiny gets wrong (its colour
# accuracy is 95 % on 200 test items: docs/needle.md); 20 is the next, and vanilla answers it correctly.
DEMO_ITEM = ("test", 20)


@app.command()
def demo(
    flops_ratio: Annotated[float, typer.Option(help="AdaTP's visual FLOPs target vs vanilla")] = 0.273,
    item: Annotated[int, typer.Option(help="needle-in-video test item to ask about")] = DEMO_ITEM[1],
    cache_dir: Annotated[Path | None, typer.Option(help="cache for the model and the clip")] = None,
    picture_dir: Annotated[Path | None, typer.Option("--out", help="where the kept-token picture goes (default: the cache)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """The main job on the built-in default: adatp-tiny answers a question about a real video,
    vanilla and AdaTP-pruned side by side, with kept tokens, FLOPs and measured prefill time."""
    from adatp.ops.schedule import check_fraction

    check_fraction("--flops-ratio", flops_ratio)
    result, info = _demo_run(flops_ratio, item, cache_dir, picture_dir)
    _print_result(result, as_json, info)
    if not as_json:
        out.print(f"  correct answer: {info['correct_answer']}")
        out.print(f"  kept tokens drawn on the frames: {info['kept_picture']}")


def _demo_run(flops_ratio: float, index: int, cache_dir: Path | None, picture_dir: Path | None):
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from adatp.eval.needle import make_item
    from adatp.inputs import prepare_inputs
    from adatp.models.tiny import default_cache_dir
    from adatp.organism.build import adatp_tiny_dir
    from adatp.pipeline import answer_question, load_model
    from adatp.video import read_video
    from adatp.video.synthetic import write_frames

    hf_logging.disable_progress_bar()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    with _progress() as progress:
        task = progress.add_task("adatp-tiny (first run: download and convert its parts)", total=None)
        model_dir = adatp_tiny_dir(cache, step=lambda text: progress.update(task, description=text))
        progress.update(task, description="writing the demo clip")
        sample = make_item(DEMO_ITEM[0], index, cache_dir=cache)
        clip = cache / "demo" / f"needle-{sample.item_id}.mp4"
        if not clip.is_file():
            write_frames(clip, sample.frames, fps=8)
        progress.update(task, description="loading adatp-tiny")
        model = load_model(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        frames = read_video(clip, num_frames=sample.frames.shape[0])
        inputs = prepare_inputs(model_dir, frames, sample.prompt())
        progress.remove_task(task)
        decode = progress.add_task("vanilla and AdaTP: vision + prefill + decode", total=2 * 4)
        result = answer_question(
            model, tokenizer, inputs, method="adatp", prune_options={"flops_ratio": flops_ratio},
            max_new_tokens=4, compare=True, on_token=lambda: progress.advance(decode),
        )
    picture = _kept_picture(frames, result.pruned.report, (picture_dir or cache / "demo") / "demo-kept-tokens.png")
    info = {
        "model": str(model_dir), "video": str(clip), "question": sample.prompt(),
        "correct_answer": f"{sample.answer_letter}. {sample.choices[sample.answer]}", "kept_picture": str(picture),
    }
    console.print(f"model: {model_dir} (adatp-tiny: DINOv2-S/14 + SmolLM2-135M-Instruct, trained projector)")
    console.print(f"video: {clip} (needle-in-video {sample.item_id})\nquestion: {sample.prompt()}")
    return result, info


def _kept_picture(frames, report, path: Path) -> Path:
    """The last stage's kept tokens on the frames, coloured as in the paper's Figure 1."""
    import torch

    from adatp.analysis.bias import classify_tokens
    from adatp.analysis.plots import draw_token_frames

    mask = torch.zeros(report.num_visual, dtype=torch.bool)
    mask[report.stages[-1].kept_indices.cpu()] = True
    labels = classify_tokens(mask.reshape(report.num_frames, *report.grid))
    title = (f"AdaTP keeps {int(mask.sum())} of {report.num_visual} visual tokens "
             f"(visual FLOPs ratio {report.flops.visual_ratio:.3f})")
    path.parent.mkdir(parents=True, exist_ok=True)
    return draw_token_frames(frames, labels, path, title=title)


@app.command()
def methods() -> None:
    """List the registered pruning methods: the paper each follows, and its options."""
    import dataclasses
    import sys

    from adatp.methods.base import TargetConfig, _METHODS, available_methods

    shared = {f.name for f in dataclasses.fields(TargetConfig)}
    table = Table(title="pruning methods (every one takes --flops-ratio, --retention or --schedule)", show_lines=True)
    for col in ("method", "what it is", "own options (defaults)"):
        table.add_column(col)
    for name in available_methods():
        cls = _METHODS[name]
        doc = (sys.modules[cls.__module__].__doc__ or cls.__doc__ or "").strip().split("\n\n")[0]
        opts = [f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.config_class) if f.name not in shared]
        table.add_row(name, " ".join(doc.split()), ", ".join(opts) or "-")
    out.print(table)


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
