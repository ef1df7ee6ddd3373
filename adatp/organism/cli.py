"""``adatp organism ...``: build adatp-tiny, and reproduce its trained weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(name="organism", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _steps():
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True)
    return console, (lambda text: console.print(f"[dim]·[/] {escape(str(text))}"))


@app.command()
def build(
    cache_dir: Annotated[Path | None, typer.Option(help="cache directory (default $ADATP_CACHE or ~/.cache/adatp)")] = None,
    base: Annotated[bool, typer.Option(help="only the base model (untrained projector)")] = False,
) -> None:
    """Build (or find) adatp-tiny and print its directory."""
    from adatp.organism.build import adatp_tiny_dir, base_model_dir

    _, step = _steps()
    path = base_model_dir(cache_dir, step=step) if base else adatp_tiny_dir(cache_dir, step=step)
    typer.echo(str(path))


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="where the trained weights go (the package ships adatp/organism/weights)")] = Path("adatp/organism/weights"),
    text_steps: Annotated[int, typer.Option(help="stage 1: LoRA on the events described in words")] = 600,
    frame_steps: Annotated[int, typer.Option(help="stage 2b: single event frame, colour and shape")] = 400,
    window_steps: Annotated[int, typer.Option(help="stage 3: steps on 4-, then 8-frame cuts of colour/shape items")] = 200,
    steps: Annotated[int, typer.Option(help="stage 3: full 16-frame items (one per step)")] = 250,
    focus_steps: Annotated[int, typer.Option(help="stage 4: full 16-frame items, half of them colour/shape")] = 300,
    seed: Annotated[int, typer.Option(help="seed of everything random")] = 0,
    threads: Annotated[int, typer.Option(help="torch threads (fixed, for bit-for-bit results)")] = 2,
    log: Annotated[Path | None, typer.Option(help="JSONL log of every step")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="cache directory of the base model")] = None,
    stage_cache: Annotated[Path | None, typer.Option(help="keep (and reuse) the parameters after stages 1-2b and "
                                                          "after stage 3 here, to try later settings without retraining")] = None,
) -> None:
    """Train the projector, a LoRA and the relevance scorer on the needle train split (about 1.5 h on 2 CPU cores)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from adatp.organism.build import base_model_dir
    from adatp.organism.train import TrainConfig, train as run_training

    console, step = _steps()
    model_dir = base_model_dir(cache_dir, seed=0, step=step)
    cfg = TrainConfig(seed=seed, text_steps=text_steps, frame_steps=frame_steps, window_steps=window_steps, steps=steps,
                      focus_steps=focus_steps, threads=threads)
    sink = open(log, "a", encoding="utf-8") if log else None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("training", total=cfg.total_steps)

        last_step: dict[str, int] = {}  # the alignment stage logs every 50th step only

        def on_log(row: dict) -> None:
            if sink:
                sink.write(json.dumps(row) + "\n")
                sink.flush()
            if "step" in row:
                done = row["step"] - last_step.get(row["stage"], -1)
                last_step[row["stage"]] = row["step"]
                progress.update(task, advance=done, description=f"training, stage {row['stage']} (loss {row['loss']:.2f})")

        summary = run_training(model_dir, out, cfg, log=on_log, stage_cache=stage_cache)
    if sink:
        sink.close()
    typer.echo(json.dumps(summary, indent=2))


@app.command("calibrate-tau")
def calibrate_tau(
    clips: Annotated[int, typer.Option(help="train clips to measure")] = 30,
    percentile: Annotated[float, typer.Option(help="percentile of adjacent-frame similarity")] = 10.0,
    cache_dir: Annotated[Path | None, typer.Option(help="cache directory of the base model")] = None,
) -> None:
    """Measure tau_s (segmentation threshold) for adatp-tiny's DINOv2 class token on the train split."""
    from adatp.organism.build import base_model_dir
    from adatp.organism.train import calibrate_segment_threshold

    _, step = _steps()
    typer.echo(json.dumps(calibrate_segment_threshold(base_model_dir(cache_dir, step=step), clips, percentile), indent=2))


@app.command("check-lm")
def check_lm(
    model: Annotated[Path | None, typer.Option(help="model directory (default: adatp-tiny's base, untrained)")] = None,
    count: Annotated[int, typer.Option(help="validation colour/shape items")] = 60,
    cache_dir: Annotated[Path | None, typer.Option(help="cache directory of the base model")] = None,
) -> None:
    """Can the language model alone answer the lettered questions when told the answer in words?
    (Why adatp-tiny trains a LoRA: the base SmolLM2-135M cannot.)"""
    from adatp.organism.build import base_model_dir
    from adatp.organism.train import answer_text_only

    _, step = _steps()
    typer.echo(json.dumps(answer_text_only(model or base_model_dir(cache_dir, step=step), count), indent=2))


@app.command("check-windows")
def check_windows(
    model: Annotated[Path | None, typer.Option(help="model directory (default: adatp-tiny)")] = None,
    count: Annotated[int, typer.Option(help="validation colour/shape items")] = 40,
    lengths: Annotated[str, typer.Option(help="cut lengths in frames, comma-separated (16 = the whole clip)")] = "1,4,8,16",
    cache_dir: Annotated[Path | None, typer.Option(help="cache directory of adatp-tiny")] = None,
) -> None:
    """Colour/shape accuracy on cuts of 1, 4, 8 frames around the event and on the whole clip:
    does the model lose the answer reading the event, or finding it?"""
    from adatp.organism.build import adatp_tiny_dir
    from adatp.organism.train import window_accuracy

    _, step = _steps()
    cuts = tuple(int(n) for n in lengths.split(","))
    typer.echo(json.dumps(window_accuracy(model or adatp_tiny_dir(cache_dir, step=step), count, cuts), indent=2))
