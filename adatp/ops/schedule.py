"""Pruning schedules: (layer, retention) stages, their validation and scaling (docs/method.md, the schedule; D8)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from adatp.errors import ConfigError
from adatp.ops.budgets import tokens_for_retention
from adatp.ops.flops import DecoderDims, schedule_flops_ratio

Schedule = list[tuple[int, float]]

#: The paper's reference schedule for LLaVA-OV-7B (28 layers): 27.3% of vanilla FLOPs.
REFERENCE_SCHEDULE_28: Schedule = [(0, 0.75), (2, 0.35), (14, 0.20)]


def default_schedule(num_layers: int) -> Schedule:
    """[(0, .75), (2, .35), (L/2, .20)] for a decoder of depth L (L/2 floored).

    Decoders too shallow for three distinct layers (tiny test models) keep the shape on the
    layers that exist: L=4,5 -> third stage at layer 3; L=3 -> layers 0,1,2; L=2 -> 0,1; L=1 -> 0.
    """
    if num_layers >= 4:
        return [(0, 0.75), (2, 0.35), (max(3, num_layers // 2), 0.20)]
    return {3: [(0, 0.75), (1, 0.35), (2, 0.20)], 2: [(0, 0.75), (1, 0.20)], 1: [(0, 0.20)]}[num_layers]


def check_fraction(name: str, value: float) -> float:
    """Retentions and FLOPs ratios live in (0, 1] (NaN and infinities are refused, by name)."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number in (0, 1], got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in (0, 1], got {value!r}") from None
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be a finite number in (0, 1], got {value!r}")
    if not 0.0 < v <= 1.0:
        raise ConfigError(f"{name} must be in (0, 1], got {value!r}")
    return v


def check_target(retention: float | None = None, flops_ratio: float | None = None, *,
                 flags: bool = False) -> dict[str, float]:
    """The one check of a cost target, shared by the API, the method configs and every command:
    at most one of ``retention`` / ``flops_ratio``, each a finite number in (0, 1].

    ``flags`` names them as the command line does (``--retention``, ``--flops-ratio``). Returns the
    given ones as floats, e.g. ``{"flops_ratio": 0.273}``.
    """
    names = {"retention": "--retention" if flags else "retention",
             "flops_ratio": "--flops-ratio" if flags else "flops_ratio"}
    if retention is not None and flops_ratio is not None:
        raise ConfigError(f"give {names['retention']} or {names['flops_ratio']}, not both")
    given = {"retention": retention, "flops_ratio": flops_ratio}
    return {key: check_fraction(names[key], value) for key, value in given.items() if value is not None}


def validate_schedule(schedule: Sequence[tuple[int, float]], num_layers: int | None = None) -> Schedule:
    """Check a schedule: layers strictly increasing, retentions in (0, 1] and non-increasing.

    Raises ConfigError naming the offending stage. Returns it as a list of (int, float).
    """
    if not schedule:
        raise ConfigError("a schedule needs at least one (layer, retention) stage")
    out: Schedule = []
    for i, stage in enumerate(schedule):
        try:
            layer, r = stage
        except (TypeError, ValueError):
            raise ConfigError(f"stage {i} must be a (layer, retention) pair, got {stage!r}") from None
        if not isinstance(layer, int) or isinstance(layer, bool) or layer < 0:
            raise ConfigError(f"stage {i}: layer must be an int >= 0, got {layer!r}")
        if num_layers is not None and layer >= num_layers:
            raise ConfigError(
                f"stage {i}: layer {layer} is past the model's depth ({num_layers} decoder layers, 0..{num_layers - 1})"
            )
        r = check_fraction(f"stage {i} retention", r)
        if out and layer <= out[-1][0]:
            raise ConfigError(f"schedule layers must increase: stage {i} has layer {layer} after {out[-1][0]}")
        if out and r > out[-1][1]:
            raise ConfigError(f"schedule retentions must not increase: stage {i} keeps {r} after {out[-1][1]}")
        out.append((layer, r))
    return out


def parse_schedule(text: str) -> Schedule:
    """'0:.75,2:.35,14:.2' -> [(0, .75), (2, .35), (14, .2)] (docs/method.md D12)."""
    stages: Schedule = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part.count(":") != 1:
            raise ConfigError(f"schedule stage {part!r} must look like LAYER:RETENTION, e.g. 2:.35")
        layer_s, r_s = part.split(":")
        try:
            stages.append((int(layer_s), float(r_s)))
        except ValueError:
            raise ConfigError(f"schedule stage {part!r} must look like LAYER:RETENTION, e.g. 2:.35") from None
    return validate_schedule(stages)


def scale_schedule(schedule: Schedule, factor: float) -> Schedule:
    """r_k' = min(1, s * r_k) (D8)."""
    return [(k, min(1.0, factor * r)) for k, r in schedule]


def scale_to_retention(schedule: Schedule, retention: float) -> Schedule:
    """Keep the shape, final retention = ``retention``: s = R / r_last (D8)."""
    retention = check_fraction("retention", retention)
    return scale_schedule(schedule, retention / schedule[-1][1])


def scale_to_flops_ratio(
    schedule: Schedule, flops_ratio: float, num_visual: int, dims: DecoderDims, tol: float = 1e-3
) -> Schedule:
    """Keep the shape; find s by bisection so the visual-only FLOPs ratio equals the target (D8).

    Resolved per input because N enters the FLOPs squared. Precision is far below ``tol``; a target
    of 1.0 returns all-ones.
    """
    flops_ratio = check_fraction("flops_ratio", flops_ratio)
    if flops_ratio >= 1.0:
        return [(k, 1.0) for k, _ in schedule]
    lo, hi = 0.0, 1.0 / min(r for _, r in schedule)  # at hi every stage is 1.0 -> ratio 1
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if schedule_flops_ratio(scale_schedule(schedule, mid), num_visual, dims) < flops_ratio:
            lo = mid
        else:
            hi = mid
    scaled = scale_schedule(schedule, 0.5 * (lo + hi))
    got = schedule_flops_ratio(scaled, num_visual, dims)
    if abs(got - flops_ratio) > tol or tokens_for_retention(scaled[-1][1], num_visual) < 1:
        # Layers before the first stage always run unpruned: that is the floor of this shape.
        floor = schedule_flops_ratio(scale_schedule(schedule, 1e-12), num_visual, dims)
        raise ConfigError(
            f"flops_ratio {flops_ratio} is out of reach for the schedule shape {schedule}: "
            f"the layers before its first stage alone cost {floor:.3f} of vanilla, and a stage must keep at "
            f"least one of the {num_visual} visual tokens"
        )
    return scaled
