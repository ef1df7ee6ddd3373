"""The ``adatp`` command line (also ``python -m adatp``).

Errors that adatp raises on purpose (bad video, bad setting, unsupported model) print one line
and exit with status 2; nothing prints a traceback for bad input.
"""

from __future__ import annotations

import signal
import sys

INTERRUPTED = "interrupted (Ctrl-C): results already written are kept; rerun the command to resume"


def _interrupted_at_startup(signum, frame) -> None:  # noqa: ARG001 - a signal handler's signature
    """Ctrl-C while the command line is still importing its libraries: the same one line, exit 130."""
    sys.stderr.write(INTERRUPTED + "\n")
    sys.exit(130)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where Ctrl-C is ignored on purpose
    signal.signal(signal.SIGINT, _interrupted_at_startup)

import json  # noqa: E402 - after the handler: these imports take a while
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
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
    """The pruning target from the CLI words (docs/method.md D12); at most one of ratio / retention."""
    from adatp.ops.schedule import check_target, parse_schedule

    options: dict[str, Any] = check_target(retention, flops_ratio, flags=True)
    if schedule is not None:
        options["schedule"] = parse_schedule(schedule)
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

    from adatp.families import inputs_to
    from adatp.inputs import prepare_inputs
    from adatp.pipeline import answer_question, load_model
    from adatp.video import read_video

    from transformers.utils import logging as hf_logging

    from adatp.eval.budget import check_video_fits

    # Everything that can be checked without decoding the video or loading the weights is checked first.
    check_video_fits(model_dir, question, frames, video=video, new_tokens=max_new_tokens)
    hf_logging.disable_progress_bar()  # our own progress display covers loading
    with _progress() as progress:
        step = progress.add_task("reading video", total=None)
        clip = read_video(video, num_frames=frames)
        progress.update(step, description="loading model")
        model = load_model(model_dir, dtype=dtype, device=device)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        progress.update(step, description="preprocessing frames")
        inputs = inputs_to(prepare_inputs(model_dir, clip, question), model, device)
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
        table.add_row("none (vanilla)", escape(result.vanilla.text), _fmt(result.vanilla.prefill_s))
    table.add_row(escape(result.pruned.method), escape(result.pruned.text), _fmt(result.pruned.prefill_s))
    out.print(table)
    report = result.pruned.report
    if report is not None:
        out.print(escape(report.summary()))
        info = report.method_info
        if "segments" in info:
            out.print(f"  segments (frames): {info['segments']}", markup=False)
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
    from adatp.pipeline import check_device, check_dtype

    method, method_options = parse_method_spec(method)  # one-line errors for unknown names/options
    if max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    if frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {frames}")
    check_dtype(dtype)
    check_device(device)
    given = [name for name, value in (("--flops-ratio", flops_ratio), ("--retention", retention),
                                      ("--schedule", schedule), ("--relevance", relevance)) if value is not None]
    if method == "none" and given:
        raise ConfigError(f"--method none prunes nothing, so {', '.join(given)} would be ignored: drop it, or pick a method")
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
    picture_dir: Annotated[Path | None, typer.Option("--out", help="where the clip and the kept-token picture go "
                                                            "(default: <cache>/demo, or a temporary folder if the cache is read-only)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """The main job on the built-in default: adatp-tiny answers a question about a real video,
    vanilla and AdaTP-pruned side by side, with kept tokens, FLOPs and measured prefill time."""
    from adatp.models.tiny import default_cache_dir
    from adatp.ops.schedule import check_target

    check_target(flops_ratio=flops_ratio, flags=True)
    if item < 0:
        raise ConfigError(f"--item must be >= 0, got {item}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    out_dir = _demo_out_dir(cache, picture_dir)  # before any compute: say where nothing can be written
    result, info, frames = _demo_run(flops_ratio, item, cache, out_dir)
    picture_path = out_dir / "demo-kept-tokens.png"
    if not as_json:  # the answers first: a picture that cannot be drawn loses nothing
        _print_result(result, as_json, info)
        out.print(f"  correct answer: {info['correct_answer']}", markup=False)
    info["kept_picture"] = _try_picture(frames, result.pruned.report, picture_path)
    if as_json:
        _print_result(result, as_json, info)
    elif info["kept_picture"] is not None:
        out.print(f"  kept tokens drawn on the frames: {info['kept_picture']}", markup=False)


def _writable(folder: Path) -> bool:
    from adatp.outputs import _can_write_in

    return _can_write_in(folder) is None


def _demo_out_dir(cache: Path, chosen: Path | None) -> Path:
    """Where the demo writes its clip and picture: ``--out``, else ``<cache>/demo``, else a fresh
    temporary folder (a read-only cache is fine: the model is only read from it)."""
    import tempfile

    if chosen is not None:
        if not _writable(chosen):
            raise ConfigError(f"cannot write to --out {str(chosen)!r}: choose a writable folder")
        return chosen
    if _writable(cache / "demo"):
        return cache / "demo"
    folder = Path(tempfile.mkdtemp(prefix="adatp-demo-"))
    console.print(f"the cache {cache} is read-only: the demo's clip and picture go to {folder}", highlight=False, markup=False)
    return folder


def _try_picture(frames, report, path: Path) -> str | None:
    try:
        return str(_kept_picture(frames, report, path))
    except ConfigError as exc:  # matplotlib is not installed
        console.print(f"[yellow]warning:[/] no picture: {escape(str(exc))}", highlight=False)
    except OSError as exc:
        console.print(f"[yellow]warning:[/] could not write the picture {escape(str(path))}: {escape(str(exc.strerror or exc))}", highlight=False)
    return None


def _demo_run(flops_ratio: float, index: int, cache: Path, out_dir: Path):
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from adatp.tasks.needle import make_item
    from adatp.inputs import prepare_inputs
    from adatp.organism.build import adatp_tiny_dir
    from adatp.pipeline import answer_question, load_model
    from adatp.video import read_video
    from adatp.video.synthetic import write_frames

    hf_logging.disable_progress_bar()
    with _progress() as progress:
        task = progress.add_task("adatp-tiny (first run: download and convert its parts)", total=None)
        model_dir = adatp_tiny_dir(cache, step=lambda text: progress.update(task, description=text))
        progress.update(task, description="writing the demo clip")
        sample = make_item(DEMO_ITEM[0], index, cache_dir=cache)
        name = f"needle-{sample.item_id}.mp4"
        clip = cache / "demo" / name  # an earlier run's clip, when the cache has it
        if not clip.is_file():
            clip = out_dir / name
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
    info = {
        "model": str(model_dir), "video": str(clip), "question": sample.prompt(),
        "correct_answer": f"{sample.answer_letter}. {sample.choices[sample.answer]}",
    }
    console.print(f"model: {model_dir} (adatp-tiny: DINOv2-S/14 + SmolLM2-135M-Instruct, trained projector)", markup=False)
    console.print(f"video: {clip} (needle-in-video {sample.item_id})\nquestion: {sample.prompt()}", markup=False)
    return result, info, frames


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
if signal.getsignal(signal.SIGINT) is _interrupted_at_startup:  # imported: from here on KeyboardInterrupt, caught in main
    signal.signal(signal.SIGINT, signal.default_int_handler)


@app.command()
def env() -> None:
    """Versions of adatp, Python, torch, transformers and the rest, for bug reports."""
    from adatp.environment import TESTED, accelerator, versions

    info = versions()
    width = max(map(len, info))
    for name, version in info.items():
        tested = TESTED.get(name)
        same = version is not None and version.split("+")[0] == tested  # 2.13.0+cpu is 2.13.0
        note = "" if tested is None or version is None else ("  (tested)" if same else f"  (tested: {tested})")
        out.print(f"{name:<{width}}  {version or 'not installed'}{note}", highlight=False, markup=False)
    out.print(f"{'devices':<{width}}  {accelerator()}", highlight=False, markup=False)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each (no source line), on stderr."""
    console.print(f"[yellow]warning:[/] {escape(str(message))}", soft_wrap=True, markup=True, highlight=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; adatp's own errors become one line and exit status 2.

    Usage errors (missing or malformed options) are typer's: a usage line and status 2. Any other
    exception is a bug: one line saying so (exit 1); ``--debug`` (anywhere on the command line, or
    ``ADATP_DEBUG=1``) shows the traceback instead.
    """
    import os
    import warnings

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("ADATP_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    warnings.showwarning = _show_warning
    try:
        app(args=args)
    except AdaTPError as exc:
        if debug:
            raise
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, markup=True, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        _say_interrupted()
    except SystemExit as exc:
        if exc.code == 130:  # typer turns Ctrl-C inside a command into exit status 130, silently
            _say_interrupted()
        raise
    except OSError as exc:  # a file or folder the system refuses: one line naming it
        if debug:
            raise
        from adatp.outputs import os_error_line

        console.print(f"[bold red]error:[/] {escape(os_error_line(exc))}", soft_wrap=True, markup=True, highlight=False)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a bare traceback
        if debug:
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        console.print(
            f"[bold red]internal error (a bug in adatp, please report it):[/] {type(exc).__name__}: {escape(first)} "
            "- rerun with --debug for the traceback, and attach `adatp env`",
            soft_wrap=True, markup=True, highlight=False,
        )
        sys.exit(1)


def _say_interrupted() -> None:
    console.print(INTERRUPTED, highlight=False, markup=False, soft_wrap=True)
    sys.exit(130)
