"""``adatp analyze ...`` commands (registered on the main app in :mod:`adatp.cli`).

``attention``: per-layer attention from the question to every frame and grid position, the bias
indices, and Figure-1-style pictures of the top-attended tokens. ``kept``: the same pictures for
the tokens each pruning method keeps. Both write PNG + JSON to ``--out``; see docs/analysis.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(name="analysis", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
out = Console()

ModelOpt = Annotated[Path, typer.Option("--model", help="local model directory (config.json, weights, tokenizer)")]
VideoOpt = Annotated[Path, typer.Option("--video", help="video file")]
QuestionOpt = Annotated[str, typer.Option("--question", help="question about the video (the query rows)")]
OutOpt = Annotated[Path, typer.Option("--out", help="directory for the PNG and JSON files (created)")]
FramesOpt = Annotated[int, typer.Option("--frames", help="frames sampled uniformly from the video")]
EndOpt = Annotated[float, typer.Option("--end-fraction", help="fraction of frames at each end counted as 'end'")]
AlphaOpt = Annotated[float, typer.Option("--alpha", help="family-wise level for 'repeated position'")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32, bfloat16 or float16")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the JSON payload instead of a table")]


@app.command()
def attention(
    model: ModelOpt,
    video: VideoOpt,
    question: QuestionOpt,
    out_dir: OutOpt,
    layers: Annotated[str, typer.Option("--layers", help='decoder layers: "all", "0,2,14" or "0-5"')] = "all",
    frames: FramesOpt = 16,
    pre_rope: Annotated[bool, typer.Option("--pre-rope", help="score queries and keys before RoPE")] = False,
    top_fraction: Annotated[float, typer.Option("--top-fraction", help="fraction of tokens drawn as 'top'")] = 0.1,
    end_fraction: EndOpt = 0.1,
    alpha: AlphaOpt = 0.05,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Measure where the question's attention goes, per layer: frames (global bias) and grid positions (local bias)."""
    from adatp.analysis.attention import parse_layers
    from adatp.analysis.run import analyze_attention

    payload = analyze_attention(
        model, video, question, out_dir, parse_layers(layers), frames, pre_rope, top_fraction, end_fraction, alpha,
        dtype=dtype, device=device,
    )
    if as_json:
        out.print_json(json.dumps(payload))
        return
    rope = "pre-RoPE" if pre_rope else "with RoPE"
    table = Table(title=f"attention bias per layer ({rope}; {payload['query_rows']} query rows)")
    for name in ("layer", "visual mass", "end-bias", "top end-bias", "conc.", "repeat", "rep. pos."):
        table.add_column(name, justify="right")
    for r in payload["layers"]:
        top = r["top"]
        table.add_row(
            str(r["layer"]), f"{r['visual_mass']:.3f}", f"{r['end_bias_index']:.2f}", f"{top['end_bias_index']:.2f}",
            f"{top['position_concentration']:.2f}", f"{top['repeat_ratio']:.2f}", str(len(top["repeated_positions"])),
        )
    out.print(table)
    out.print(f"wrote attention.json and {len(payload['files'])} pictures to {out_dir}", markup=False)


@app.command()
def kept(
    model: ModelOpt,
    video: VideoOpt,
    question: QuestionOpt,
    out_dir: OutOpt,
    methods: Annotated[str, typer.Option("--methods", help="comma-separated methods, e.g. adatp,fastv,random")],
    flops_ratio: Annotated[float, typer.Option("--flops-ratio", help="visual-only FLOPs target for every method")] = 0.273,
    relevance: Annotated[str | None, typer.Option("--relevance", help="relevance scorer: uniform or siglip:DIR")] = None,
    frames: FramesOpt = 16,
    end_fraction: EndOpt = 0.1,
    alpha: AlphaOpt = 0.05,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Picture the tokens each pruning method keeps, coloured by end frames and repeated positions."""
    from adatp.analysis.run import analyze_kept, parse_methods

    payload = analyze_kept(
        model, video, question, out_dir, parse_methods(methods), flops_ratio, relevance, frames, end_fraction, alpha,
        dtype=dtype, device=device,
    )
    if as_json:
        out.print_json(json.dumps(payload))
        return
    table = Table(title=f"kept tokens at visual FLOPs ratio {flops_ratio}")
    for name in ("method", "layer", "kept", "end-bias", "conc.", "repeat", "rep. pos."):
        table.add_column(name, justify="right")
    for method, info in payload["methods"].items():
        for s in info["stages"]:
            layer = "-" if s["layer"] is None else str(s["layer"])
            table.add_row(
                escape(method), layer, str(s["count"]), f"{s['end_bias_index']:.2f}", f"{s['position_concentration']:.2f}",
                f"{s['repeat_ratio']:.2f}", str(len(s["repeated_positions"])),
            )
    out.print(table)
    for method, reason in payload["skipped"].items():
        out.print(f"[yellow]skipped {escape(method)}:[/] {escape(str(reason))}")
    out.print(f"wrote kept.json and {len(payload['files'])} pictures to {out_dir}", markup=False)


@app.command()
def segments(
    model: ModelOpt,
    videos: Annotated[list[Path], typer.Option("--video", help="video file; repeat for more (training-split clips)")],
    frames: Annotated[int, typer.Option("--frames", help="frames sampled uniformly from each video")] = 32,
    percentile: Annotated[float, typer.Option("--percentile", help="share of frame pairs that should cut, in %")] = 10.0,
    json_out: Annotated[Path | None, typer.Option("--out", help="also write the JSON payload to this file")] = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Where AdaTP cuts each video into segments, and tau_s (segment_threshold) calibrated for this model."""
    from adatp.analysis.run import analyze_segments

    payload = analyze_segments(model, list(videos), frames, percentile, dtype=dtype, device=device)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(payload, indent=2) + "\n")
    if as_json:
        out.print_json(json.dumps(payload))
        return
    cal = payload["calibration"]
    now = payload["segment_threshold_now"]
    table = Table(title=f"adjacent-frame similarity of {payload['segmentation_feature']} features")
    for name in ("video", "pairs", "min", "median", f"segments (tau_s {now:.4g})", f"segments (tau_s {cal['threshold']:.4g})"):
        table.add_column(name, justify="right")
    for v in payload["videos"]:
        sims = sorted(v["frame_similarity"])
        table.add_row(
            escape(Path(v["video"]).name), str(len(sims)), f"{sims[0]:.4f}", f"{sims[len(sims) // 2]:.4f}",
            str(len(v["segments_now"])), str(len(v["segments_calibrated"])),
        )
    out.print(table)
    out.print(
        f"tau_s = {cal['threshold']:.4f}: the {cal['percentile']:g}th percentile of {cal['pairs']} frame pairs "
        f"(the model's default now: {now:.4g}). Use it with segment_threshold={cal['threshold']:.4f} "
        f"(prune() or --methods adatp:segment_threshold=...), or make it the model's default with "
        f"\"adatp_segment_threshold\": {cal['threshold']:.4f} in its config.json."
    )
