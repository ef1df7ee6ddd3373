"""What one benchmark run consists of, before anything is measured: the specs (method x FLOPs
target, vanilla first), the order their trials run in, and the statistics of their samples.

Pure functions, no model: ``vs_vanilla`` turns medians into ratios and speed-ups against vanilla.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adatp.errors import ConfigError

#: Metrics measured in every timed trial. ``decode_tok_s`` is a rate (higher is better).
TIME_METRICS = ("vision_s", "llm_prefill_s", "ttft_s")
RATE_METRICS = ("decode_tok_s",)
METRICS = TIME_METRICS + RATE_METRICS
#: Extra per-trial timings kept in the JSON to show where the time goes.
DETAIL_METRICS = ("pre_llm_s", "post_llm_s", "decode_s")
BASELINE = "none"


@dataclass(frozen=True)
class Spec:
    """One configuration: a method and its FLOPs target (None for vanilla)."""

    method: str
    flops_ratio: float | None = None

    @property
    def label(self) -> str:
        return self.method if self.flops_ratio is None else f"{self.method}@{self.flops_ratio:g}"

    def prune_options(self) -> dict[str, Any]:
        return {} if self.flops_ratio is None else {"flops_ratio": self.flops_ratio}


def parse_list(text: str | None, name: str) -> list[str]:
    items = [x.strip() for x in (text or "").split(",") if x.strip()]
    if not items:
        raise ConfigError(f"{name} is empty: give a comma-separated list")
    return items


def parse_ratios(text: str) -> list[float]:
    out = []
    for item in parse_list(text, "--flops-ratios"):
        from adatp.ops.schedule import check_fraction

        try:
            value = float(item)
        except ValueError:
            raise ConfigError(f"--flops-ratios must be comma-separated numbers, got {item!r}") from None
        out.append(check_fraction("--flops-ratios", value))  # the cost target's one check (NaN, inf included)
    return out


def build_specs(methods: Sequence[str], ratios: Sequence[float], available: Sequence[str] | None = None) -> list[Spec]:
    """Vanilla first (always: every ratio is taken against it), then each method x each ratio."""
    if available is not None:
        unknown = [m for m in methods if m not in available]
        if unknown:
            raise ConfigError(f"unknown method {unknown[0]!r}; available: {', '.join(available)}")
    for r in ratios:
        if not (0.0 < r <= 1.0):
            raise ConfigError(f"flops ratio {r:g} is outside (0, 1]")
    specs = [Spec(BASELINE)]
    for m in dict.fromkeys(methods):
        if m != BASELINE:
            specs.extend(Spec(m, r) for r in dict.fromkeys(ratios))
    return specs


def trial_order(specs: Sequence[Spec], repeats: int, warmup: int) -> list[tuple[int, Spec, bool]]:
    """(round, spec, is_warmup) in run order: every round runs every spec once (round-robin),
    starting one further along each round so no spec always runs first (after a cache-cold gap)."""
    order = []
    n = len(specs)
    for r in range(warmup + repeats):
        shift = r % n if n else 0
        for spec in list(specs[shift:]) + list(specs[:shift]):
            order.append((r, spec, r < warmup))
    return order


def summarize(samples: Sequence[float]) -> dict[str, float | int | None]:
    """Median, min, max and interquartile range (inclusive quartiles) of the samples."""
    xs = sorted(float(x) for x in samples if x is not None and not math.isnan(float(x)))
    if not xs:
        return {"n": 0, "median": None, "min": None, "max": None, "q1": None, "q3": None}
    if len(xs) == 1:
        q1 = q3 = xs[0]
    else:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return {"n": len(xs), "median": statistics.median(xs), "min": xs[0], "max": xs[-1], "q1": q1, "q3": q3}


def vs_vanilla(medians: dict[str, dict[str, float | None]], baseline: str = BASELINE) -> dict[str, dict[str, float | None]]:
    """Per label and metric: ``value / vanilla value`` (the ratio), and ``speedup_<metric>``:
    vanilla time / time for time metrics, rate / vanilla rate for rates (> 1 is faster)."""
    if baseline not in medians:
        raise ValueError(f"no {baseline!r} run to compare against")
    base = medians[baseline]
    out: dict[str, dict[str, float | None]] = {}
    for label, values in medians.items():
        row: dict[str, float | None] = {}
        for metric, value in values.items():
            b = base.get(metric)
            ok = value is not None and b is not None and b > 0 and value > 0
            row[f"ratio_{metric}"] = value / b if ok else None
            if metric.endswith("_tok_s"):
                row[f"speedup_{metric}"] = value / b if ok else None
            else:
                row[f"speedup_{metric}"] = b / value if ok else None
        out[label] = row
    return out
