"""``adatp bench ...`` commands (registered on the main app in :mod:`adatp.cli`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(name="bench", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

ARCH_NOTE = "random weights: speed and memory only, accuracy is NOT measured"


@app.command()
def speed(
    model: Annotated[Path | None, typer.Option(help="model directory (default: the built-in adatp-tiny, else its base)")] = None,
    arch: Annotated[str | None, typer.Option(help="real-size architecture with random weights, e.g. llava-onevision-qwen2-0.5b-ov-hf")] = None,
    methods: Annotated[str, typer.Option(help="comma-separated methods; vanilla (none) always runs")] = "none,adatp,fastv",
    flops_ratios: Annotated[str, typer.Option(help="visual FLOPs targets vs vanilla, each in (0, 1]")] = "0.273,0.10",
    frames: Annotated[int | None, typer.Option(help="video frames (default 16 for adatp-tiny, 32 otherwise)")] = None,
    tokens_per_frame: Annotated[int | None, typer.Option(help="pooled tokens a frame, a square (--arch only; default from the config)")] = None,
    text_tokens: Annotated[int, typer.Option(help="text tokens around the video (--arch only)")] = 64,
    text_layers: Annotated[int | None, typer.Option(help="keep the first N decoder layers, real sizes (--arch only; small machines)")] = None,
    repeats: Annotated[int, typer.Option(help="timed rounds (every method once per round)")] = 3,
    warmup: Annotated[int, typer.Option(help="untimed rounds first")] = 1,
    new_tokens: Annotated[int, typer.Option(help="greedy tokens decoded after each prefill (0: no decode)")] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")] = "auto",
    encode_once: Annotated[bool, typer.Option(help="run the vision tower once and reuse its output (big models on CPU)")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the full results (raw samples too) here")] = None,
    plot: Annotated[Path | None, typer.Option(help="write a PNG bar chart of speed-ups vs FLOPs-ideal here")] = None,
) -> None:
    """Measured prefill, TTFT, decode, overhead and memory of each method vs vanilla, same run."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from adatp.bench.results import results_dict, write_json
    from adatp.bench.speed import BenchConfig, SpeedBench
    from adatp.bench.trials import parse_list, parse_ratios, trial_order

    cfg = BenchConfig(
        methods=parse_list(methods, "--methods"), flops_ratios=parse_ratios(flops_ratios), model_dir=model, arch=arch,
        frames=frames, tokens_per_frame=tokens_per_frame, text_tokens=text_tokens, text_layers=text_layers, device=device, dtype=dtype,
        repeats=repeats, warmup=warmup, new_tokens=new_tokens, encode_once=encode_once,
    )
    bench = SpeedBench(cfg)  # validates everything before any model is loaded
    console = Console(stderr=True)
    if arch is not None:
        console.print(f"[bold yellow]note:[/] {arch}: {ARCH_NOTE}")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    total = len(trial_order(bench.specs, cfg.repeats, cfg.warmup)) + 2 * len(bench.specs)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task("loading", total=None)
            bench.load(step=lambda text: progress.update(task, description=text))
            progress.update(task, total=total, completed=0)
            state = {"first": True}

            def on_trial(text: str) -> None:
                if not state["first"]:
                    progress.advance(task)
                state["first"] = False
                progress.update(task, description=text)

            run = bench.run(on_trial=on_trial)
            progress.advance(task)
        payload = results_dict(bench, run, command=["adatp", *sys.argv[1:]] if sys.argv else None)
    finally:
        bench.close()
    _print_table(payload)
    if json_path is not None:
        console.print(f"json: {write_json(payload, json_path)}", markup=False)
    if plot is not None:
        from adatp.bench.plots import plot_speedups

        console.print(f"plot: {plot_speedups(payload, plot)}", markup=False)


@app.command("scoring-memory")
def scoring_memory(
    arch: Annotated[str, typer.Option(help="architecture whose decoder layer 0 is built")] = "llava-onevision-qwen2-7b-ov-hf",
    frames: Annotated[int, typer.Option(help="video frames")] = 64,
    tokens_per_frame: Annotated[int, typer.Option(help="visual tokens a frame")] = 196,
    text_tokens: Annotated[int, typer.Option(help="text tokens after the video (the query rows)")] = 100,
    forward: Annotated[bool, typer.Option(help="also run the layer's SDPA forward, alone and after scoring")] = True,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the results here")] = None,
) -> None:
    """Peak memory of adatp's attention scoring on ONE decoder layer (fp32, CPU): no N x N matrix."""
    from rich.console import Console

    from adatp.bench.results import write_json
    from adatp.bench.scoring_memory import scoring_memory as measure
    from adatp.errors import ConfigError
    from adatp.models.configs import ARCHITECTURES

    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; valid names: {', '.join(sorted(ARCHITECTURES))}")
    console = Console(stderr=True)
    with console.status("building the layer") as status:
        result = measure(arch, frames, tokens_per_frame, text_tokens, with_forward=forward,
                         step=lambda text: status.update(text))
    _print_scoring(result)
    if json_path is not None:
        console.print(f"json: {write_json(result, json_path)}", markup=False)


# --- tables -----------------------------------------------------------------------------------------
def _fmt_s(stats: dict[str, Any]) -> str:
    if stats["median"] is None:
        return "-"
    spread = (stats["max"] - stats["min"]) / stats["median"] if stats["median"] else 0.0
    return f"{_sec(stats['median'])} ±{50 * spread:.0f}%"


def _sec(x: float) -> str:
    return f"{x * 1000:.1f}ms" if x < 1 else f"{x:.2f}s"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _mb(v: float | None) -> str:
    if v is None:
        return "-"
    mb = v / 2**20
    return f"{mb:.1f}" if abs(mb) < 10 else f"{mb:.0f}"


def _print_table(payload: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    env, model, inputs, settings = payload["environment"], payload["model"], payload["inputs"], payload["settings"]
    where = env.get("gpu") or f"{env['cpu_model']}, {env['cpu_threads']} threads"
    title = (f"{model['name']}: {inputs['frames']} frames x {inputs['tokens_per_frame']} tokens = "
             f"{inputs['visual_tokens']} visual, seq {inputs['seq_len']}; {env['dtype']} on {where}; "
             f"median ±half the min-max range of {settings['repeats']} interleaved repeats")
    table = Table(title=escape(title), title_justify="left")
    columns = ["run", "FLOPs", "ideal", "LLM prefill", "x", "of ideal", "TTFT", "x",
               "vision", "overhead", "decode tok/s", "x", "peak MB", "x", "kept"]
    for col in columns:
        table.add_column(col, justify="left" if col == "run" else "right", no_wrap=col in ("run", "LLM prefill", "TTFT", "vision"))
    for r in payload["runs"]:
        st, vs = r["stats"], r["vs_vanilla"]
        flops = r["flops"] or {}
        overhead = "-" if r["overhead_s"] is None else _sec(r["overhead_s"])
        if r["overhead_share_of_llm_prefill"] is not None and r["method"] != "none":
            overhead += f" {r['overhead_share_of_llm_prefill']:.1%}"
        dec = st["decode_tok_s"]["median"]
        table.add_row(
            r["label"], f"{flops.get('full_ratio', 1.0):.3f}", _x(r["ideal_prefill_speedup"]),
            _fmt_s(st["llm_prefill_s"]), _x(vs["speedup_llm_prefill_s"]),
            "-" if r["prefill_speedup_of_ideal"] is None else f"{r['prefill_speedup_of_ideal']:.0%}",
            _fmt_s(st["ttft_s"]), _x(vs["speedup_ttft_s"]), _fmt_s(st["vision_s"]), overhead,
            "-" if dec is None else f"{dec:.1f}", _x(vs["speedup_decode_tok_s"]),
            _mb(r["peak_memory_bytes"]), _x(r["peak_memory_vs_vanilla"]),
            "-" if r["kept_visual_tokens"] is None else str(r["kept_visual_tokens"]),
        )
    console = Console(width=max(190, Console().width))
    console.print(table)
    notes = [f"model: {model['path']} ({model['note']})" if model.get("note") and model.get("path") else "",f"peak memory: {settings['memory']}", f"overhead: {settings['overhead']}", f"vision: {settings['vision']}",
             "x: speed-up vs vanilla (none) in this run (memory: ratio); FLOPs: full-sequence LLM ratio; "
             "ideal = 1 / FLOPs; overhead: pruning time and its share of the pruned LLM prefill"]
    if model.get("random_weights"):
        notes.insert(0, f"model: {model['name']}: {ARCH_NOTE}")
    for n in filter(None, notes):
        console.print(f"  {escape(n)}", highlight=False)


def _print_scoring(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    inp, layer = r["inputs"], r["layer"]
    console = Console(width=max(120, Console().width))
    table = Table(title=(f"{r['architecture']} decoder layer 0 ({layer['hidden']} hidden, {layer['heads']} heads, "
                         f"{layer['kv_heads']} kv heads), fp32 CPU, {inp['query_rows']} query rows"), title_justify="left")
    for col in ["frames", "tokens", "scoring peak MB", "bytes/token", "N x N fp32 (all heads) MB", "scoring time"]:
        table.add_column(col, justify="right")
    for row in r["scoring_sweep"]:
        table.add_row(str(row["frames"]), str(row["seq_len"]), _mb(row["scoring_peak_bytes"]),
                      f"{row['bytes_per_token']:.0f}", _mb(row["nxn_fp32_bytes_all_heads"]), _sec(row["scoring_s"]))
    console.print(table)
    if "forward_peak_bytes" in r:
        console.print(f"  layer SDPA forward alone: peak +{_mb(r['forward_peak_bytes'])} MB ({_sec(r['forward_s'])}); "
                      f"scoring + forward: peak +{_mb(r['scoring_plus_forward_peak_bytes'])} MB "
                      f"(scoring adds {_mb(max(0, r['scoring_adds_bytes']))} MB to the layer's peak: its temporaries "
                      "are freed before the forward's larger ones)", highlight=False)
    console.print(f"  an N x N fp32 score matrix would need {_mb(r['nxn_fp32_bytes_all_heads'])} MB "
                  f"({_mb(r['nxn_fp32_bytes_one_head'])} MB for one head); memory: {r['memory_method']}", highlight=False)
