"""Synthetic clips shared by the video tests (written once per module: encoding costs ~0.2 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adatp.video.synthetic import write_synthetic_video

#: The clip every read test uses: 48 frames of 224 x 320 at 8 fps, 3 scenes, seed 0.
CLIP = {"num_frames": 48, "size": (224, 320), "fps": 8, "seed": 0, "scenes": 3}


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An H.264 .mp4 of :data:`CLIP` (read-only: copy it to alter it)."""
    return write_synthetic_video(tmp_path_factory.mktemp("clip") / "clip.mp4", **CLIP)
