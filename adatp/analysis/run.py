"""``adatp analyze attention`` and ``adatp analyze kept`` as functions: load, measure, write PNG + JSON.

Each function returns the JSON payload it wrote (``<out>/attention.json`` or ``<out>/kept.json``);
the payload names every picture it drew under ``files``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adatp.analysis import bias
from adatp.analysis.attention import capture_attention, kept_tokens
from adatp.errors import ConfigError, InputError

DEFINITIONS = {
    "frame_mass": "share of the query's attention to visual tokens that falls on each frame",
    "position_mass": "share of that attention on each grid position, summed over frames",
    "end_frames": "first and last k frames, k = max(1, floor(end_fraction * T + 0.5))",
    "end_bias_index": "share of attention (or of selected tokens) on the end frames / their share of tokens; 1 = no bias",
    "top": "the max(1, floor(top_fraction * N + 0.5)) most attended visual tokens (ties: seeded permutation)",
    "position_concentration": "(S - E[S]) / (S_max - E[S]), S = sum_p n_p^2 / K over grid positions; "
    "1 = positions repeated as much as possible, 0 = uniformly random selection",
    "repeat_ratio": "S / E[S]; 1 = uniformly random selection",
    "repeated position": "grid position selected in >= repeat_threshold frames: P(count >= m) <= alpha / c "
    "under random selection (hypergeometric)",
    "classes": "end = in an end frame (red), repeated = at a repeated position outside the end frames (green), "
    "end_and_repeated = both (red), other",
}


@dataclass
class Prepared:
    """A loaded model with its inputs for one video and question, and the frames it saw."""

    model: Any
    inputs: dict[str, torch.Tensor]
    frames: np.ndarray  # (T, H, W, 3) uint8
    grid_extent: tuple[float, float]


def check_settings(top_fraction: float, end_fraction: float, alpha: float) -> None:
    """Validate the bias settings before anything is loaded (ConfigError naming the bad one)."""
    bias.top_count(1, top_fraction)
    bias.end_frame_count(1, end_fraction)
    bias.repeat_threshold(1, 1, 1, alpha)


def _model_inputs(model_dir: str | Path, model: Any, clip: np.ndarray, question: str, device: str) -> dict[str, torch.Tensor]:
    from adatp.families import inputs_to
    from adatp.inputs import prepare_inputs

    return inputs_to(prepare_inputs(model_dir, clip, question), model, device)


def prepare(model_dir: str | Path, video: str | Path, question: str, frames: int, dtype: str, device: str) -> Prepared:
    """Read the video first (cheap errors first), then load the model and build its inputs."""
    from adatp.families import get_adapter
    from adatp.eval.budget import check_video_fits
    from adatp.pipeline import load_model
    from adatp.video import read_video

    check_video_fits(model_dir, question, frames, video=video)  # before any frame is decoded
    clip = read_video(video, num_frames=frames)
    model = load_model(model_dir, dtype=dtype, device=device)
    return Prepared(model, _model_inputs(model_dir, model, clip, question, device), clip, get_adapter(model).grid_extent())


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")


def _settings(end_fraction: float, alpha: float, num_frames: int, **extra: Any) -> dict[str, Any]:
    return {
        **extra,
        "end_fraction": end_fraction,
        "end_frames_each_side": bias.end_frame_count(num_frames, end_fraction),
        "alpha": alpha,
    }


def analyze_attention(
    model_dir: str | Path,
    video: str | Path,
    question: str,
    out_dir: str | Path,
    layers: list[int] | None = None,
    frames: int = 16,
    pre_rope: bool = False,
    top_fraction: float = bias.DEFAULT_TOP_FRACTION,
    end_fraction: float = bias.DEFAULT_END_FRACTION,
    alpha: float = bias.DEFAULT_ALPHA,
    seed: int = bias.DEFAULT_TIE_SEED,
    dtype: str = "float32",
    device: str = "cpu",
) -> dict[str, Any]:
    """Measure per-layer attention bias and write ``attention.json`` and its pictures to ``out_dir``."""
    from adatp.analysis import plots

    check_settings(top_fraction, end_fraction, alpha)
    prepared = prepare(model_dir, video, question, frames, dtype, device)
    maps = capture_attention(prepared.model, prepared.inputs, layers, pre_rope=pre_rope)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lay = maps.layout
    results = [
        bias.layer_bias(maps.map(k), k, top_fraction, end_fraction, alpha, seed) for k in maps.layers
    ]
    rope = "pre-RoPE" if pre_rope else "with RoPE"
    k_end = bias.end_frame_count(lay.num_frames, end_fraction)
    files = {
        "frames": plots.plot_frame_curves(
            {f"layer {r.layer}": [m * lay.num_frames for m in r.frame_mass] for r in results},
            out / "attention_frames.png",
            f"attention to each frame from the question ({rope}); 1 = uniform, shaded = end frames",
            "frame's attention share x T",
            end_frames=k_end,
        ),
        "positions": plots.plot_position_maps(
            {f"layer {r.layer}": torch.tensor(r.position_mass) * lay.tokens_per_frame for r in results},
            out / "attention_positions.png",
            f"attention to each grid position, summed over frames ({rope}); 1 = uniform",
        ),
        "indices": plots.plot_layer_indices(
            maps.layers,
            {
                "end-bias (mass)": [r.end_bias_index for r in results],
                "end-bias (top)": [r.top.end_bias_index for r in results],
                "concentration (top)": [r.top.position_concentration for r in results],
                "repeat ratio (top)": [r.top.repeat_ratio for r in results],
            },
            out / "bias_by_layer.png",
            f"attention bias per layer ({rope}); no bias: end-bias 1, concentration 0, repeat ratio 1",
        ),
    }
    for r in results:
        top = bias.top_fraction_mask(maps.map(r.layer), top_fraction, seed)
        files[f"top_tokens_layer{r.layer}"] = plots.draw_token_frames(
            prepared.frames,
            bias.classify_tokens(top, end_fraction, alpha),
            out / f"top_tokens_layer{r.layer:02d}.png",
            f"layer {r.layer}: top {top_fraction:.0%} attended tokens ({r.top.count}) ({rope}); "
            f"end-bias {r.top.end_bias_index:.2f}, concentration {r.top.position_concentration:.2f}",
            grid_extent=prepared.grid_extent,
        )
    payload = {
        "command": "attention",
        "model": str(model_dir),
        "video": str(video),
        "question": question,
        "num_frames": lay.num_frames,
        "grid": [lay.grid_h, lay.grid_w],
        "num_visual": lay.num_visual,
        "query_rows": maps.num_query_rows,
        "pre_rope": pre_rope,
        "settings": _settings(end_fraction, alpha, lay.num_frames, top_fraction=top_fraction, tie_seed=seed),
        "definitions": DEFINITIONS,
        "layers": [r.to_dict() for r in results],
        "files": {name: path.name for name, path in files.items()},
    }
    _write_json(out / "attention.json", payload)
    return payload


def parse_methods(text: str) -> list[str]:
    """"adatp,fastv" -> ["adatp", "fastv"]; unknown names raise ConfigError listing the valid ones."""
    from adatp.methods.base import available_methods

    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise ConfigError("--methods names no method; e.g. --methods adatp,fastv")
    unknown = [m for m in names if m not in available_methods()]
    if unknown:
        raise ConfigError(f"unknown method {unknown[0]!r}; available: {', '.join(available_methods())}")
    return list(dict.fromkeys(names))


def analyze_kept(
    model_dir: str | Path,
    video: str | Path,
    question: str,
    out_dir: str | Path,
    methods: list[str],
    flops_ratio: float | None = 0.273,
    relevance: str | None = None,
    frames: int = 16,
    end_fraction: float = bias.DEFAULT_END_FRACTION,
    alpha: float = bias.DEFAULT_ALPHA,
    dtype: str = "float32",
    device: str = "cpu",
) -> dict[str, Any]:
    """Prune with each method, picture every stage's kept tokens, write ``kept.json`` to ``out_dir``.

    A method that cannot run with these settings (a ConfigError, e.g. a FLOPs ratio its schedule
    cannot reach at this depth) is listed under ``skipped`` with the reason; if none can run, the
    error is raised.
    """
    from adatp.analysis import plots
    from adatp.ops.schedule import check_target

    check_settings(bias.DEFAULT_TOP_FRACTION, end_fraction, alpha)
    options: dict[str, Any] = {}
    options.update(check_target(flops_ratio=flops_ratio, flags=True))
    if relevance is not None:
        options["relevance"] = relevance
    prepared = prepare(model_dir, video, question, frames, dtype, device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    per_method: dict[str, Any] = {}
    curves: dict[str, list[float]] = {}
    num_frames = None
    skipped: dict[str, str] = {}
    for method in methods:
        try:
            kept = kept_tokens(prepared.model, prepared.inputs, method, **({} if method == "none" else options))
        except ConfigError as exc:  # e.g. a FLOPs target one method's schedule cannot reach
            skipped[method] = str(exc)
            continue
        lay = kept.layout
        num_frames = lay.num_frames
        stages = []
        if kept.stages:
            masks = [(layer, kept.stage_mask(i)) for i, (layer, _) in enumerate(kept.stages)]
        else:  # nothing pruned ("none"): every token reaches every layer
            masks = [(None, kept.final_mask())]
        for layer, mask in masks:
            stats = bias.selection_bias(mask, end_fraction, alpha)
            suffix = "all" if layer is None else f"layer{layer:02d}"
            name = f"kept_{method}_{suffix}"
            where = "no pruning" if layer is None else f"input of layer {layer}"
            files[name] = plots.draw_token_frames(
                prepared.frames,
                bias.classify_tokens(mask, end_fraction, alpha),
                out / f"{name}.png",
                f"{method}: {stats.count} of {lay.num_visual} tokens kept ({where}); "
                f"end-bias {stats.end_bias_index:.2f}, concentration {stats.position_concentration:.2f}",
                grid_extent=prepared.grid_extent,
            )
            stages.append({"layer": layer, **stats.to_dict()})
        final = stages[-1]
        curves[method] = [n * lay.num_frames / final["count"] for n in final["tokens_per_frame"]]
        per_method[method] = {
            "stages": stages,
            "report": kept.report.to_dict(with_indices=True),
        }
    if not per_method:
        raise ConfigError("no method could run: " + "; ".join(f"{m}: {e}" for m, e in skipped.items()))
    files["frames"] = plots.plot_frame_curves(
        curves,
        out / "kept_frames.png",
        "tokens each method keeps per frame (after its last stage); 1 = uniform, shaded = end frames",
        "frame's share of kept tokens x T",
        end_frames=bias.end_frame_count(num_frames, end_fraction),
    )
    payload = {
        "command": "kept",
        "model": str(model_dir),
        "video": str(video),
        "question": question,
        "num_frames": num_frames,
        "flops_ratio": flops_ratio,
        "relevance": relevance,
        "settings": _settings(end_fraction, alpha, num_frames),
        "definitions": DEFINITIONS,
        "methods": per_method,
        "skipped": skipped,
        "files": {name: path.name for name, path in files.items()},
    }
    _write_json(out / "kept.json", payload)
    return payload


SEGMENTS_QUESTION = "What happens in the video?"  # segmentation does not read the question


def analyze_segments(
    model_dir: str | Path,
    videos: list[str | Path],
    frames: int = 32,
    percentile: float = 10.0,
    dtype: str = "float32",
    device: str = "cpu",
) -> dict[str, Any]:
    """Where AdaTP cuts each video into segments, and tau_s for this model by the calibration rule.

    One pruned prefill per video (``adatp`` at its defaults) reads the runtime's own frame features
    g_t, so the similarities are exactly what AdaTP segments on (class token, patch mean, or a Qwen-VL
    grid's token mean). The calibrated tau_s is the ``percentile``-th percentile of the similarities
    pooled over every video (D6): pass training-split clips, never the clips you evaluate on.
    """
    from adatp.ops.segmentation import calibrate_threshold, check_percentile, segment_ranges, segments_from_similarity
    from adatp.pipeline import load_model
    from adatp.video import read_video

    check_percentile(percentile)
    if not videos:
        raise ConfigError("no video given: pass --video at least once (clips from your training split)")
    clips = [(str(v), read_video(v, num_frames=frames)) for v in videos]  # every video first: cheap errors first
    model = load_model(model_dir, dtype=dtype, device=device)
    per_video, pooled, feature, threshold_now = [], [], None, None
    for path, clip in clips:
        kept = kept_tokens(model, _model_inputs(model_dir, model, clip, SEGMENTS_QUESTION, device), "adatp")
        info = kept.report.method_info
        similarity = [float(x) for x in info.get("frame_similarity", [])]
        feature, threshold_now = info.get("segmentation_feature"), info.get("segment_threshold")
        if not similarity:
            raise InputError(f"{path}: no frame similarities ({info.get('segmentation')}); a clip needs 2 frames or more")
        pooled.extend(similarity)
        per_video.append({"video": path, "frames": len(similarity) + 1, "frame_similarity": similarity,
                          "segments_now": info["segments"]})
    calibration = calibrate_threshold(torch.tensor(pooled, dtype=torch.float64), percentile)
    for entry in per_video:  # the same clips cut at the calibrated threshold (m = 1)
        ids = segments_from_similarity(torch.tensor(entry["frame_similarity"], dtype=torch.float64), calibration["threshold"])
        entry["segments_calibrated"] = segment_ranges(ids)
    return {
        "command": "segments",
        "model": str(model_dir),
        "frames_sampled": frames,
        "segmentation_feature": feature,
        "segment_threshold_now": threshold_now,
        "calibration": calibration,
        "rule": f"the {percentile:g}th percentile of adjacent-frame similarity over the given clips (D6)",
        "videos": per_video,
    }
