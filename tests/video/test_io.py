"""read_video / probe_video on real files written by the synthetic writer, and every error path."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import av
import numpy as np
import pytest

from adatp.errors import ConfigError, VideoError
from adatp.video import io as video_io
from adatp.video import make_synthetic_frames, probe_video, read_video, sample_frame_indices, write_synthetic_video
from tests.video.conftest import CLIP

SOURCE = make_synthetic_frames(CLIP["num_frames"], CLIP["size"], CLIP["seed"], CLIP["scenes"])


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


# --- round trip ----------------------------------------------------------------------------


def test_round_trip_shape_dtype_and_content(clip_path: Path) -> None:
    frames = read_video(clip_path, num_frames=8)
    assert frames.shape == (8, 224, 320, 3)
    assert frames.dtype == np.uint8
    expected = SOURCE[sample_frame_indices(48, 8)]
    # H.264 at CRF 12 + yuv420p chroma subsampling: close, not exact.
    assert _mean_abs_diff(frames, expected) < 4.0
    mean_colour = frames.reshape(8, -1, 3).mean(axis=1)
    np.testing.assert_allclose(mean_colour, expected.reshape(8, -1, 3).mean(axis=1), atol=3.0)


def test_frames_come_in_order_and_rgb(clip_path: Path) -> None:
    frames = read_video(clip_path, num_frames=48)
    # Each decoded frame is nearest to its own source frame: no shift, drop or reordering.
    for t, frame in enumerate(frames):
        distances = [_mean_abs_diff(frame, source) for source in SOURCE]
        assert int(np.argmin(distances)) == t
    # Channels are RGB, not BGR: swapping them moves the content far away.
    assert _mean_abs_diff(frames[0], SOURCE[0]) * 5 < _mean_abs_diff(frames[0][..., ::-1], SOURCE[0])


def test_more_frames_than_the_video_repeats_frames(clip_path: Path) -> None:
    frames = read_video(clip_path, num_frames=100)
    indices = sample_frame_indices(48, 100)
    assert frames.shape[0] == 100
    assert indices[0] == indices[1]
    np.testing.assert_array_equal(frames[0], frames[1])
    np.testing.assert_array_equal(frames[-1], read_video(clip_path, num_frames=48)[-1])


@pytest.mark.parametrize("header_count", [0, 10, 60])
def test_wrong_or_missing_header_count_falls_back_to_decoding(
    clip_path: Path, header_count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = read_video(clip_path, num_frames=8)
    monkeypatch.setattr(video_io, "_header_frame_count", lambda path: header_count)
    np.testing.assert_array_equal(read_video(clip_path, num_frames=8), expected)


def test_mkv_without_header_count(tmp_path: Path) -> None:
    # Matroska stores no frame count (stream.frames == 0): the counting pass is used.
    path = write_synthetic_video(tmp_path / "clip.mkv", num_frames=12, size=(64, 96), seed=1, scenes=2)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0
    frames = read_video(path, num_frames=4)
    expected = make_synthetic_frames(12, (64, 96), seed=1, scenes=2)[[0, 3, 7, 11]]
    assert frames.shape == (4, 64, 96, 3)
    assert _mean_abs_diff(frames, expected) < 5.0


def test_probe_video(clip_path: Path) -> None:
    info = probe_video(clip_path)
    assert (info.frames, info.width, info.height) == (48, 320, 224)
    assert info.fps == pytest.approx(8.0)
    assert info.duration_s == pytest.approx(6.0, abs=0.2)


def test_str_path_accepted(clip_path: Path) -> None:
    assert read_video(str(clip_path), num_frames=2).shape == (2, 224, 320, 3)


# --- errors ---------------------------------------------------------------------------------


def _expect_video_error(path: Path, match: str) -> VideoError:
    with pytest.raises(VideoError, match=match) as info:
        read_video(path, num_frames=4)
    assert str(path) in str(info.value)
    assert not isinstance(info.value, av.FFmpegError)
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    _expect_video_error(tmp_path / "nope.mp4", "video file not found")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "folder.mp4"
    folder.mkdir()
    _expect_video_error(folder, "directory")


def test_text_file_renamed_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    _expect_video_error(path, "not a video")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    _expect_video_error(path, "empty")


def test_truncated_file(clip_path: Path, tmp_path: Path) -> None:
    # An .mp4 cut in half loses its index (moov atom at the end): it cannot be opened.
    path = tmp_path / "half.mp4"
    data = clip_path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _expect_video_error(path, "corrupt")


def test_zero_frames(tmp_path: Path) -> None:
    # An AVI with a video stream header and no frames.
    path = tmp_path / "zero.avi"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    with av.open(str(path)) as container:
        assert len(container.streams.video) == 1
    _expect_video_error(path, "no decodable video frames")
    with pytest.raises(VideoError, match="no decodable video frames"):
        probe_video(path)


def test_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "audio.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    _expect_video_error(path, "no video stream")


def test_damaged_packets_are_skipped_with_a_warning(clip_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "damaged.mp4"
    data = bytearray(clip_path.read_bytes())
    for i in range(len(data) // 3, 2 * len(data) // 3, 7):  # the middle of mdat: frame data only
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = read_video(path, num_frames=4)
    assert frames.shape[0] == 4
    assert any("failed to decode" in str(w.message) for w in caught)


@pytest.mark.parametrize("num", [0, -2, 1.5])
def test_bad_num_frames(clip_path: Path, num: object) -> None:
    with pytest.raises(ConfigError, match="num_frames"):
        read_video(clip_path, num_frames=num)  # type: ignore[arg-type]


def test_bad_num_frames_checked_before_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        read_video(tmp_path / "nope.mp4", num_frames=0)


def test_format_comes_from_content_not_extension(clip_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "renamed.video"
    shutil.copy(clip_path, copy)
    assert read_video(copy, num_frames=3).shape == (3, 224, 320, 3)
