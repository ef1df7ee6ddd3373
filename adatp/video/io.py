"""Reading videos with PyAV and sampling their frames as LLaVA-OneVision's evaluation code does.

Every failure (missing file, not a video, no video stream, nothing decodable) is raised as
:class:`adatp.errors.VideoError` naming the path; no raw PyAV exception escapes.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from adatp.errors import ConfigError, VideoError

PathLike = str | os.PathLike[str]

#: What PyAV raises on unreadable input. FFmpegError covers every libav error code
#: (InvalidDataError, EOFError, ...); the builtins cover failures in PyAV's own Python code.
_AV_ERRORS: tuple[type[BaseException], ...] = (av.FFmpegError, OSError, ValueError, RuntimeError, EOFError)


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` finds in a file.

    Attributes:
        frames: frames that actually decode (counted by decoding, not read from the header).
        fps: average frame rate (0.0 when the file does not say).
        duration_s: duration in seconds, from the stream or container header, else ``frames / fps``.
        width: frame width in pixels.
        height: frame height in pixels.
    """

    frames: int
    fps: float
    duration_s: float
    width: int
    height: int


def sample_frame_indices(total_frames: int, num_frames: int) -> np.ndarray:
    """Indices of ``num_frames`` frames spread uniformly over ``total_frames``: (num_frames,) int64.

    Exactly LLaVA-OneVision's evaluation sampling, ``np.linspace(0, total_frames - 1, num_frames,
    dtype=int)``: the first and last frames are always included, and indices repeat when the video
    has fewer frames than asked for (e.g. ``(3, 5) -> [0, 0, 1, 1, 2]``), so the output length is
    always ``num_frames``.

    Raises:
        VideoError: ``total_frames <= 0`` (nothing to sample from).
        ConfigError: ``num_frames <= 0``.
    """
    if not _is_int(total_frames) or total_frames <= 0:
        raise VideoError(f"cannot sample frames from a video with total_frames={total_frames!r} (needs >= 1)")
    if not _is_int(num_frames) or num_frames <= 0:
        raise ConfigError(f"num_frames must be a positive integer, got {num_frames!r}")
    return np.linspace(0, int(total_frames) - 1, int(num_frames), dtype=int).astype(np.int64)


def read_video(path: PathLike, num_frames: int = 32) -> np.ndarray:
    """Decode ``num_frames`` uniformly sampled frames: (num_frames, H, W, 3) uint8 RGB.

    Frames are counted by decoding (header counts can be wrong): the header's count is tried first,
    and the file is decoded a second time only when the real count differs. Only the sampled frames
    are converted to RGB and kept, so memory stays ``num_frames * H * W * 3`` bytes.
    Rotation metadata is not applied. Packets that fail to decode are skipped with a warning, and
    so is a file that decodes fewer frames than its header claims (both counts are named).

    Raises:
        ConfigError: ``num_frames <= 0``.
        VideoError: missing file, a directory, not a video or corrupt, no video stream, no
            decodable frames.
    """
    if not _is_int(num_frames) or num_frames <= 0:
        raise ConfigError(f"num_frames must be a positive integer, got {num_frames!r}")
    path = _check_file(path)
    hint = _header_frame_count(path)
    height, width = video_frame_size(path)
    if height and width:  # before any frame is decoded: a frame count that cannot fit is one line
        from adatp.video.memory import check_decode_memory

        check_decode_memory(num_frames, height, width, repr(str(path)))
    if hint > 0:
        indices = sample_frame_indices(hint, num_frames)
        count, kept = _decode(path, frozenset(indices.tolist()))
        if count == hint:
            return _assemble(kept, indices)
        if count < hint:  # a truncated file: say so, the sampling now spans fewer frames than it looks
            warnings.warn(
                f"{str(path)!r}: the header claims {hint} frames but only {count} decode (truncated or damaged "
                f"file?); sampling {num_frames} frames from the {count} that decode",
                stacklevel=2,
            )
    else:
        count, _ = _decode(path, frozenset())
    # The header was wrong or silent: sample from the real count and decode again.
    indices = sample_frame_indices(count, num_frames)
    count2, kept = _decode(path, frozenset(indices.tolist()))
    if count2 != count:
        raise VideoError(f"video {str(path)!r} decodes to a different number of frames on each pass")
    return _assemble(kept, indices)


def probe_video(path: PathLike) -> VideoInfo:
    """Frame count (by decoding), frame rate, duration and frame size of a video file.

    Raises:
        VideoError: as :func:`read_video`.
    """
    path = _check_file(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        fps = _fps(stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        duration = _header_duration(container, stream)
    frames, _ = _decode(path, frozenset())
    if duration is None:
        duration = frames / fps if fps > 0 else 0.0
    return VideoInfo(frames=frames, fps=fps, duration_s=duration, width=width, height=height)


# --- helpers ---------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_file(path: PathLike) -> Path:
    """The path as a Path, after the checks libav would report less clearly."""
    try:
        path = Path(path).expanduser()
    except TypeError:
        raise VideoError(f"video path must be a str or os.PathLike, got {type(path).__name__}") from None
    if not path.exists():
        raise VideoError(f"video file not found: {str(path)!r}")
    if path.is_dir():
        raise VideoError(f"video path is a directory, not a file: {str(path)!r}")
    if path.stat().st_size == 0:
        raise VideoError(f"video file is empty (0 bytes): {str(path)!r}")
    return path


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except _AV_ERRORS as exc:
        raise VideoError(f"cannot open {str(path)!r} as a video (not a video file, or corrupt): {exc}") from None


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise VideoError(f"{str(path)!r} has no video stream")
    return container.streams.video[0]


def _header_frame_count(path: Path) -> int:
    """The frame count the header claims (0 when unknown); checks the file opens and has video."""
    with _open(path) as container:
        return max(int(_video_stream(container, path).frames or 0), 0)


def video_frame_size(path: PathLike) -> tuple[int, int]:
    """(height, width) of the video's frames from its header, nothing decoded ((0, 0) when the
    header does not say)."""
    path = _check_file(path)
    with _open(path) as container:
        context = _video_stream(container, path).codec_context
        return int(context.height or 0), int(context.width or 0)


def _fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _header_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * Fraction(stream.time_base))
    if container.duration:
        return container.duration / av.time_base
    return None


def _decode(path: Path, keep: frozenset[int]) -> tuple[int, dict[int, np.ndarray]]:
    """Decode the whole first video stream once.

    Returns:
        (number of decoded frames, {index: (H, W, 3) uint8 RGB} for the indices in ``keep``).
        Frames whose size differs from the first kept one are rescaled to it, so they stack.
    """
    kept: dict[int, np.ndarray] = {}
    count = skipped = 0
    last_error: BaseException | None = None
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"  # frame + slice threads: decoding is most of the cost
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except _AV_ERRORS as exc:  # a truncated or damaged container: keep what decoded so far
                last_error = exc
                skipped += 1
                break
            try:
                frames = packet.decode()
            except _AV_ERRORS as exc:  # one bad packet: skip it, as ffmpeg does
                last_error = exc
                skipped += 1
                continue
            for frame in frames:
                if count in keep:
                    kept[count] = _to_rgb(frame, kept)
                count += 1
    if count == 0:
        detail = f" (last error: {last_error})" if last_error is not None else ""
        raise VideoError(f"no decodable video frames in {str(path)!r}{detail}")
    if skipped:
        warnings.warn(
            f"{str(path)!r}: {skipped} packet(s) failed to decode and were skipped ({last_error})", stacklevel=3
        )
    return count, kept


def _to_rgb(frame: av.VideoFrame, kept: dict[int, np.ndarray]) -> np.ndarray:
    """(H, W, 3) uint8 RGB, at the size of the frames already kept (streams may change size)."""
    if kept:
        height, width = next(iter(kept.values())).shape[:2]
        if (frame.height, frame.width) != (height, width):
            return frame.to_ndarray(format="rgb24", width=width, height=height)
    return frame.to_ndarray(format="rgb24")


def _assemble(kept: dict[int, np.ndarray], indices: np.ndarray) -> np.ndarray:
    """Stack kept frames in sampling order (repeated indices repeat the frame): (T, H, W, 3) uint8."""
    return np.stack([kept[int(i)] for i in indices]).astype(np.uint8, copy=False)
