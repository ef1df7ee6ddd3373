"""Measured speed-ups against the FLOPs-ideal one, per method (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adatp.errors import ConfigError

FIGSIZE = (9.0, 4.5)
DPI = 100  # 900 x 450 pixels


def plot_speedups(payload: dict[str, Any], path: str | Path) -> Path:
    """Grouped bars per pruned run: LLM prefill, time to first token and decode speed-ups measured
    against vanilla in the same run, beside the FLOPs-ideal prefill speed-up (1 / full FLOPs ratio).
    Error bars: the min-max of the per-repeat times, divided into vanilla's median."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError('plots need matplotlib: pip install "adatp[plots]"') from None
    runs = [r for r in payload["runs"] if r["method"] != "none"]
    base = next(r for r in payload["runs"] if r["method"] == "none")
    bars = [
        ("FLOPs-ideal prefill", lambda r: (r["ideal_prefill_speedup"], None), "#bbbbbb"),
        ("LLM prefill", lambda r: _speedup(r, base, "llm_prefill_s"), "#1f77b4"),
        ("time to first token", lambda r: _speedup(r, base, "ttft_s"), "#ff7f0e"),
        ("decode tok/s", lambda r: (r["vs_vanilla"].get("speedup_decode_tok_s"), None), "#2ca02c"),
    ]
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    width = 0.8 / len(bars)
    for i, (name, get, colour) in enumerate(bars):
        xs, ys, errs = [], [], [[], []]
        for j, r in enumerate(runs):
            value, spread = get(r)
            if value is None:
                continue
            xs.append(j + (i - (len(bars) - 1) / 2) * width)
            ys.append(value)
            lo, hi = spread if spread else (value, value)
            errs[0].append(max(0.0, value - lo))
            errs[1].append(max(0.0, hi - value))
        ax.bar(xs, ys, width, label=name, color=colour, yerr=errs if any(errs[0] + errs[1]) else None, capsize=2)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels([r["label"] for r in runs], fontsize=8)
    ax.set_ylabel("speed-up vs vanilla (x)")
    env, model, inputs = payload["environment"], payload["model"], payload["inputs"]
    where = env.get("gpu") or f"CPU ({env.get('cpu_threads')} threads)"
    ax.set_title(f"{model.get('name')}: {inputs['frames']} frames x {inputs['tokens_per_frame']} tokens, "
                 f"{env['dtype']}, {where}", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _speedup(run: dict[str, Any], base: dict[str, Any], metric: str) -> tuple[float | None, tuple[float, float] | None]:
    b = base["stats"][metric]["median"]
    s = run["stats"][metric]
    if not b or not s["median"]:
        return None, None
    return b / s["median"], (b / s["max"], b / s["min"])
