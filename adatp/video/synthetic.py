"""Deterministic synthetic videos for tests and the demo: scenes of moving coloured shapes.

The clip is cut into ``scenes`` equal parts. Each scene has its own background (a two-colour
gradient whose hues are spread around the colour wheel, so scenes always differ) and a few
circles and squares that move smoothly and bounce off the borders. Consecutive frames inside a
scene are therefore similar, and frames across a cut are not: what token-pruning methods that
merge or segment over time need to see. Drawing is plain numpy.
"""

from __future__ import annotations

import colorsys
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from adatp.errors import ConfigError, VideoError

#: Saturated shape colours (RGB) that stand out on any of the pastel-to-mid backgrounds.
_PALETTE = np.array(
    [
        [230, 25, 25],  # red
        [25, 200, 40],  # green
        [30, 60, 230],  # blue
        [250, 220, 20],  # yellow
        [220, 30, 220],  # magenta
        [20, 220, 230],  # cyan
        [255, 255, 255],  # white
        [10, 10, 10],  # black
    ],
    dtype=np.float32,
)
_SHAPES_PER_SCENE = 3


def make_synthetic_frames(
    num_frames: int = 48, size: tuple[int, int] = (224, 320), seed: int = 0, scenes: int = 3
) -> np.ndarray:
    """The synthetic clip's frames: (num_frames, H, W, 3) uint8 RGB, ``size = (H, W)``.

    Deterministic: the same arguments always give the same array; another ``seed`` gives other
    colours, shapes and motion. Frame ``t`` belongs to scene ``t * scenes // num_frames``.

    Raises:
        ConfigError: non-positive sizes, ``num_frames < 1``, ``scenes < 1`` or ``scenes > num_frames``.
    """
    height, width = _check_args(num_frames, size, scenes)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    scene_of = np.arange(num_frames) * scenes // num_frames
    hue_offset = np.random.default_rng([seed, 0]).random()
    for scene in range(scenes):
        rng = np.random.default_rng([seed, scene + 1])
        background = _background(rng, height, width, hue=(hue_offset + scene / scenes) % 1.0)
        shapes = _shapes(rng, height, width)
        for local_t, t in enumerate(np.flatnonzero(scene_of == scene)):
            frames[t] = _draw(background, shapes, local_t)
    return frames


def write_synthetic_video(
    path: str | os.PathLike[str],
    num_frames: int = 48,
    size: tuple[int, int] = (224, 320),
    fps: int = 8,
    seed: int = 0,
    scenes: int = 3,
) -> Path:
    """Encode :func:`make_synthetic_frames` to a real video file and return its path.

    H.264 (libx264, near-lossless CRF 12) when available, else MPEG-4 part 2 at high quality;
    yuv420p, so ``H`` and ``W`` must be even. The container format follows the file extension
    (``.mp4``, ``.mkv``, ``.avi``, ...). The file is written beside ``path`` and renamed at the end,
    so an interrupted write never leaves a half-written file at ``path``.

    Raises:
        ConfigError: bad sizes (see :func:`make_synthetic_frames`), odd ``H``/``W``, ``fps <= 0``.
        VideoError: the encoder or container fails (e.g. an unknown extension).
    """
    height, width = _check_args(num_frames, size, scenes)
    if height % 2 or width % 2:
        raise ConfigError(f"yuv420p needs an even frame size, got (H, W) = {(height, width)}")
    if not isinstance(fps, (int, Fraction)) or isinstance(fps, bool) or fps <= 0:
        raise ConfigError(f"fps must be a positive int or Fraction, got {fps!r}")
    return write_frames(path, make_synthetic_frames(num_frames, (height, width), seed, scenes), fps)


def write_frames(path: str | os.PathLike[str], frames: np.ndarray, fps: int | Fraction = 8) -> Path:
    """Encode (T, H, W, 3) uint8 RGB frames (even H, W) to ``path``, atomically (see above)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        _encode(partial, np.ascontiguousarray(frames), Fraction(fps))
        os.replace(partial, path)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"could not write the video {str(path)!r}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return path


# --- helpers ---------------------------------------------------------------------------------


def _check_args(num_frames: int, size: tuple[int, int], scenes: int) -> tuple[int, int]:
    if not isinstance(num_frames, int) or isinstance(num_frames, bool) or num_frames < 1:
        raise ConfigError(f"num_frames must be a positive integer, got {num_frames!r}")
    if not isinstance(scenes, int) or isinstance(scenes, bool) or not 1 <= scenes <= num_frames:
        raise ConfigError(f"scenes must be an integer in [1, num_frames={num_frames}], got {scenes!r}")
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ConfigError(f"size must be (height, width), got {size!r}") from None
    if height < 8 or width < 8:
        raise ConfigError(f"size must be at least (8, 8), got {(height, width)}")
    return height, width


def _background(rng: np.random.Generator, height: int, width: int, hue: float) -> np.ndarray:
    """A linear two-colour gradient at a random angle: (H, W, 3) float32 in 0..255."""
    start = np.array(colorsys.hsv_to_rgb(hue, 0.55, 0.95), dtype=np.float32) * 255
    end = np.array(colorsys.hsv_to_rgb((hue + 0.08) % 1.0, 0.8, 0.45), dtype=np.float32) * 255
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    proj = xs * np.cos(angle) + ys * np.sin(angle)
    ramp = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    return start + ramp[..., None] * (end - start)


def _shapes(rng: np.random.Generator, height: int, width: int) -> list[dict[str, object]]:
    """Shape parameters: kind, colour, radius, start centre (y, x) and velocity (px / frame)."""
    colours = rng.choice(len(_PALETTE), size=_SHAPES_PER_SCENE, replace=False)
    shapes = []
    for colour in colours:
        radius = float(rng.uniform(0.08, 0.16) * min(height, width))
        speed = rng.uniform(0.01, 0.03) * min(height, width)  # a few pixels a frame: smooth motion
        direction = rng.uniform(0, 2 * np.pi)
        shapes.append(
            {
                "kind": "circle" if rng.random() < 0.5 else "square",
                "colour": _PALETTE[colour],
                "radius": radius,
                "start": np.array([rng.uniform(radius, height - radius), rng.uniform(radius, width - radius)]),
                "velocity": speed * np.array([np.sin(direction), np.cos(direction)]),
            }
        )
    return shapes


def _bounce(position: float, low: float, high: float) -> float:
    """Reflect a free position into [low, high] (a triangle wave): motion that bounces off walls."""
    span = high - low
    if span <= 0:
        return low
    offset = (position - low) % (2 * span)
    return low + (offset if offset <= span else 2 * span - offset)


def _draw(background: np.ndarray, shapes: list[dict[str, object]], t: int) -> np.ndarray:
    """One frame: shapes at their positions at scene-local time ``t`` over the background; uint8."""
    height, width = background.shape[:2]
    image = background.copy()
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    for shape in shapes:
        radius = shape["radius"]
        free = shape["start"] + t * shape["velocity"]
        cy = _bounce(float(free[0]), radius, height - radius)
        cx = _bounce(float(free[1]), radius, width - radius)
        if shape["kind"] == "circle":
            mask = (ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2
        else:
            mask = (np.abs(ys - cy) <= radius) & (np.abs(xs - cx) <= radius)
        image[mask] = shape["colour"]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _encode(path: Path, frames: np.ndarray, fps: Fraction) -> None:
    """Write (T, H, W, 3) uint8 RGB frames to ``path`` with PyAV."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / fps
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "veryfast"}
        else:
            stream.bit_rate = 8_000_000  # mpeg4 has no CRF: a high bit rate keeps colours close
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))  # flush the encoder's delayed frames
