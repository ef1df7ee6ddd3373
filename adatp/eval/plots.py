"""Accuracy against FLOPs ratio, one line per method (matplotlib, the ``analysis`` extra)."""

from __future__ import annotations

from pathlib import Path

from adatp.errors import ConfigError


def plot_accuracy_vs_flops(summaries: dict, path: str | Path) -> Path:
    """``summaries``: RunSpec -> summarize() result. Vanilla ("none") is a horizontal reference."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError('plots need matplotlib: pip install "adatp[plots]"') from None
    lines: dict[str, list[tuple[float, float, float, float]]] = {}
    for spec, s in summaries.items():
        acc = s["overall"]
        lines.setdefault(spec.name, []).append((s["flops_visual_ratio"], acc.value, acc.low, acc.high))
    fig, ax = plt.subplots(figsize=(8.5, 4.5), dpi=120)
    # More runs than tab10 has colours would repeat them: tab20 then, and AdaTP drawn thick.
    colours = plt.get_cmap("tab10" if len(lines) <= 11 else "tab20").colors
    for i, (method, points) in enumerate(sorted(lines.items())):
        points.sort()
        x = [p[0] for p in points]
        y = [100 * p[1] for p in points]
        err = [[100 * (p[1] - p[2]) for p in points], [100 * (p[3] - p[1]) for p in points]]
        if method == "none":
            ax.axhline(y[0], color="black", linestyle="--", linewidth=1, label="none (vanilla)")
            continue
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method, color=colours[i % len(colours)],
                    linewidth=2.5 if method == "adatp" else 1.2, zorder=3 if method == "adatp" else 2)
    ax.set_xlabel("visual FLOPs ratio vs vanilla")
    ax.set_ylabel("accuracy (%)")
    ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
