"""The synthetic clip: deterministic per seed, smooth inside scenes, cut between them; real files."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from adatp.errors import ConfigError, VideoError
from adatp.video import make_synthetic_frames, read_video, write_synthetic_video


def test_same_seed_same_frames() -> None:
    a = make_synthetic_frames(12, (64, 96), seed=5, scenes=3)
    b = make_synthetic_frames(12, (64, 96), seed=5, scenes=3)
    assert a.shape == (12, 64, 96, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)


def test_other_seed_other_frames() -> None:
    a = make_synthetic_frames(12, (64, 96), seed=0)
    b = make_synthetic_frames(12, (64, 96), seed=1)
    # Different everywhere, not just in a few pixels.
    assert all(np.abs(a[t].astype(int) - b[t]).mean() > 10 for t in range(12))


def test_smooth_inside_scenes_cut_between() -> None:
    frames = make_synthetic_frames(48, (112, 160), seed=0, scenes=3).astype(np.float32)
    step = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # step[t]: frame t -> t + 1
    cuts = [15, 31]  # last frames of scenes 0 and 1
    inside = np.delete(step, cuts)
    assert inside.max() < 8.0
    assert step[cuts].min() > 5 * inside.max()
    assert inside.min() > 0.0  # shapes do move


def test_every_scene_looks_different() -> None:
    frames = make_synthetic_frames(30, (64, 96), seed=2, scenes=5)
    firsts = frames[::6].astype(np.float32)  # the first frame of each scene
    for i in range(5):
        for j in range(i + 1, 5):
            assert np.abs(firsts[i] - firsts[j]).mean() > 20


def test_write_returns_a_readable_file(tmp_path: Path) -> None:
    path = write_synthetic_video(tmp_path / "sub" / "clip.mp4", num_frames=10, size=(64, 96), fps=5, seed=4)
    assert path == tmp_path / "sub" / "clip.mp4" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["clip.mp4"]  # no partial file left behind
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert float(stream.average_rate) == 5.0
    frames = read_video(path, num_frames=10)
    expected = make_synthetic_frames(10, (64, 96), seed=4)
    assert np.abs(frames.astype(np.float32) - expected).mean() < 5.0


def test_mpeg4_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(av, "codecs_available", set(av.codecs_available) - {"libx264"})
    path = write_synthetic_video(tmp_path / "clip.mp4", num_frames=6, size=(64, 96), seed=4, scenes=2)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
    frames = read_video(path, num_frames=6)
    expected = make_synthetic_frames(6, (64, 96), seed=4, scenes=2)
    assert np.abs(frames.astype(np.float32) - expected).mean() < 8.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_frames": 0},
        {"num_frames": 4, "scenes": 5},
        {"scenes": 0},
        {"size": (4, 64)},
        {"size": (64,)},
    ],
)
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        make_synthetic_frames(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"size": (63, 96)}, {"fps": 0}, {"fps": 2.5}])
def test_bad_writer_arguments(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        write_synthetic_video(tmp_path / "clip.mp4", num_frames=4, scenes=1, **kwargs)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_unknown_container_is_a_video_error(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="clip.notaformat"):
        write_synthetic_video(tmp_path / "clip.notaformat", num_frames=4, size=(32, 32), scenes=1)
    assert not list(tmp_path.iterdir())
