"""Pictures of attention bias and kept tokens, drawn with matplotlib (the ``analysis`` extra).

matplotlib is imported inside each function, and only its object API is used (``Figure`` +
Agg canvas, no pyplot state), so importing adatp never needs it and nothing global changes.
Every figure has an exact pixel size, computed by the ``*_size`` functions, so layouts are
reproducible: no ``bbox_inches="tight"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adatp.analysis.bias import END, END_AND_REPEATED, OTHER, REPEATED
from adatp.errors import ConfigError, InputError

DPI = 100
HEADER_PX = 56
PANEL_PX = 160
MIN_WIDTH_PX = 640  # room for the title and the legend above few frames
#: (face, edge) colour of each token class; the paper's Figure 1 draws global bias red, local green.
CLASS_COLOURS = {
    END: ((1.0, 0.0, 0.0), (1.0, 0.0, 0.0)),
    REPEATED: ((0.0, 0.85, 0.0), (0.0, 0.85, 0.0)),
    END_AND_REPEATED: ((1.0, 0.0, 0.0), (0.0, 0.85, 0.0)),
    OTHER: (None, (0.15, 0.45, 1.0)),
}
CLASS_LABELS = {
    END: "end frames (global bias)",
    REPEATED: "repeated position (local bias)",
    END_AND_REPEATED: "both",
    OTHER: "other",
}


def _figure(width_px: int, height_px: int):
    """A matplotlib Figure of exactly width_px x height_px pixels at :data:`DPI`, with an Agg canvas."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(
            'pictures need matplotlib: pip install "adatp[plots]"'
        ) from None
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def token_frames_size(num_frames: int, columns: int = 8, panel_px: int = PANEL_PX) -> tuple[int, int]:
    """(width, height) in pixels of :func:`draw_token_frames`."""
    cols = min(columns, num_frames)
    rows = math.ceil(num_frames / cols)
    return max(cols * panel_px, MIN_WIDTH_PX), HEADER_PX + rows * panel_px


def draw_token_frames(
    frames: np.ndarray,
    labels: torch.Tensor,
    path: str | Path,
    title: str = "",
    grid_extent: tuple[float, float] = (1.0, 1.0),
    columns: int = 8,
    panel_px: int = PANEL_PX,
) -> Path:
    """Figure-1-style frames: the selected tokens' grid cells drawn over the video frames.

    Args:
        frames: (T, H, W, 3) uint8 RGB, the frames the model saw (before resizing).
        labels: (T, h, w) colour classes from :func:`adatp.analysis.bias.classify_tokens`.
        grid_extent: fraction of the frame's (height, width) the token grid covers. The model
            resizes every frame to a square, so each frame is shown squashed to a square panel,
            as the model sees it; a 27 x 27-patch SigLIP grid covers 378 of 384 pixels.
        columns: panels per row.
    """
    frames = np.asarray(frames)
    labels = torch.as_tensor(labels)
    if frames.ndim != 4 or frames.shape[-1] != 3 or labels.ndim != 3 or labels.shape[0] != frames.shape[0]:
        raise InputError(
            f"frames (T, H, W, 3) and labels (T, h, w) must agree, got {frames.shape} and {tuple(labels.shape)}"
        )
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Patch, Rectangle

    num_frames, h, w = labels.shape
    width, height = token_frames_size(num_frames, columns, panel_px)
    cols = min(columns, num_frames)
    fig = _figure(width, height)
    cell_h, cell_w = grid_extent[0] / h, grid_extent[1] / w
    pad = 2 / panel_px
    for t in range(num_frames):
        row, col = divmod(t, cols)
        left = col * panel_px / width
        bottom = (height - HEADER_PX - (row + 1) * panel_px) / height
        ax = fig.add_axes((left + pad * panel_px / width, bottom + pad * panel_px / height,
                           (1 - 2 * pad) * panel_px / width, (1 - 2 * pad) * panel_px / height))
        ax.imshow(_square(frames[t], panel_px), extent=(0, 1, 1, 0), aspect="auto", interpolation="bilinear")
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)
        ax.set_axis_off()
        ax.text(0.03, 0.04, f"t={t}", color="white", fontsize=7, va="top", ha="left",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0})
        for cls, (face, edge) in CLASS_COLOURS.items():
            cells = torch.nonzero(labels[t] == cls).tolist()
            if not cells:
                continue
            rects = [Rectangle((x * cell_w, y * cell_h), cell_w, cell_h) for y, x in cells]
            ax.add_collection(PatchCollection(
                rects, facecolor=face if face is not None else "none", edgecolor=edge,
                alpha=0.45 if face is not None else 0.9, linewidth=1.2,
            ))
    handles = [
        Patch(facecolor=face if face is not None else "none", edgecolor=edge, label=CLASS_LABELS[cls])
        for cls, (face, edge) in CLASS_COLOURS.items()
    ]
    fig.text(0.005, 1 - 6 / height, title, fontsize=9, va="top", ha="left")
    fig.legend(handles=handles, loc="upper left", ncol=4, fontsize=8, frameon=False, bbox_to_anchor=(0.0, 1 - 24 / height))
    return _save(fig, path)


def _square(frame: np.ndarray, side: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (side, side, 3): squashed to a square as the model's resize does; small to draw."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).resize((side, side), Image.BILINEAR))


def curves_size() -> tuple[int, int]:
    """(width, height) in pixels of :func:`plot_frame_curves` and :func:`plot_layer_indices`."""
    return 960, 480


def plot_frame_curves(
    curves: Mapping[str, Sequence[float]],
    path: str | Path,
    title: str,
    ylabel: str,
    end_frames: int | None = None,
) -> Path:
    """One line per entry over frame index; the end frames (global-bias zone) shaded; y = 1 dashed."""
    from matplotlib.ticker import MaxNLocator

    if not curves:
        raise InputError("no curves to plot")
    fig = _figure(*curves_size())
    ax = fig.add_axes((0.09, 0.12, 0.70, 0.78))
    colours = _colours(len(curves))
    num_frames = max(len(v) for v in curves.values())
    for colour, (name, values) in zip(colours, curves.items()):
        ax.plot(range(len(values)), list(values), color=colour, marker="o", markersize=3, linewidth=1.3, label=name)
    if end_frames:
        ax.axvspan(-0.5, end_frames - 0.5, color="red", alpha=0.08, linewidth=0)
        ax.axvspan(num_frames - end_frames - 0.5, num_frames - 0.5, color="red", alpha=0.08, linewidth=0)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlim(-0.5, num_frames - 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("frame")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, ncol=1 if len(curves) <= 16 else 2)
    return _save(fig, path)


def plot_layer_indices(
    layers: Sequence[int], series: Mapping[str, Sequence[float]], path: str | Path, title: str
) -> Path:
    """Bias indices over layers (one line per index), with the no-bias reference lines."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(*curves_size())
    ax = fig.add_axes((0.09, 0.12, 0.70, 0.78))
    for colour, (name, values) in zip(_colours(len(series)), series.items()):
        ax.plot(list(layers), list(values), color=colour, marker="o", markersize=3, linewidth=1.3, label=name)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    ax.axhline(0.0, color="grey", linestyle=":", linewidth=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("decoder layer (input)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _save(fig, path)


def position_maps_size(count: int, columns: int = 7, panel_px: int = PANEL_PX) -> tuple[int, int]:
    """(width, height) in pixels of :func:`plot_position_maps` (a colour bar column at the right)."""
    cols = min(columns, count)
    rows = math.ceil(count / cols)
    return cols * panel_px + 80, HEADER_PX + rows * panel_px


def plot_position_maps(
    maps: Mapping[str, torch.Tensor], path: str | Path, title: str, columns: int = 7, panel_px: int = PANEL_PX
) -> Path:
    """Small multiples of (h, w) heat maps on one shared colour scale (min to max of all maps)."""
    if not maps:
        raise InputError("no maps to plot")
    arrays = {name: torch.as_tensor(m).double().numpy() for name, m in maps.items()}
    width, height = position_maps_size(len(arrays), columns, panel_px)
    cols = min(columns, len(arrays))
    # One shared scale from the smallest to the largest value: near-uniform maps still show contrast.
    vmin = min(float(a.min()) for a in arrays.values())
    vmax = max(float(a.max()) for a in arrays.values())
    if vmax <= vmin:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    fig = _figure(width, height)
    image = None
    for i, (name, array) in enumerate(arrays.items()):
        row, col = divmod(i, cols)
        left = (col * panel_px + 6) / width
        bottom = (height - HEADER_PX - (row + 1) * panel_px + 6) / height
        ax = fig.add_axes((left, bottom, (panel_px - 12) / width, (panel_px - 26) / height))
        image = ax.imshow(array, cmap="magma", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=8, pad=2)
    cax = fig.add_axes(((cols * panel_px + 6) / width, 0.1, 14 / width, 0.75 * (height - HEADER_PX) / height))
    fig.colorbar(image, cax=cax)
    fig.text(0.005, 1 - 8 / height, title, fontsize=9, va="top", ha="left")
    return _save(fig, path)


def _colours(count: int) -> list[Any]:
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    cmap = colormaps["viridis"]
    return [cmap(i / max(1, count - 1)) for i in range(count)]
