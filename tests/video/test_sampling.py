"""sample_frame_indices: LLaVA-OneVision's uniform sampling, exact values and errors."""

from __future__ import annotations

import numpy as np
import pytest

from adatp.errors import ConfigError, VideoError
from adatp.video import sample_frame_indices


@pytest.mark.parametrize(
    ("total", "num", "expected"),
    [
        (48, 8, [0, 6, 13, 20, 26, 33, 40, 47]),
        (100, 7, [0, 16, 33, 49, 66, 82, 99]),
        (10, 1, [0]),
        (5, 5, [0, 1, 2, 3, 4]),
        # Shorter videos repeat frames: the output always has num_frames entries.
        (3, 5, [0, 0, 1, 1, 2]),
        (2, 3, [0, 0, 1]),
        (1, 4, [0, 0, 0, 0]),
    ],
)
def test_exact_indices(total: int, num: int, expected: list[int]) -> None:
    indices = sample_frame_indices(total, num)
    assert indices.dtype == np.int64
    assert indices.tolist() == expected


def test_matches_llava_onevision_formula() -> None:
    for total in (1, 7, 31, 32, 33, 250):
        for num in (1, 8, 32, 64):
            reference = np.linspace(0, total - 1, num, dtype=int)
            np.testing.assert_array_equal(sample_frame_indices(total, num), reference)


def test_numpy_integers_accepted() -> None:
    assert sample_frame_indices(np.int64(4), np.int32(2)).tolist() == [0, 3]


@pytest.mark.parametrize("total", [0, -3])
def test_empty_video_is_a_video_error(total: int) -> None:
    with pytest.raises(VideoError, match="total_frames"):
        sample_frame_indices(total, 8)


@pytest.mark.parametrize("num", [0, -1, 2.5, True])
def test_bad_num_frames_is_a_config_error(num: object) -> None:
    with pytest.raises(ConfigError, match="num_frames"):
        sample_frame_indices(48, num)  # type: ignore[arg-type]
