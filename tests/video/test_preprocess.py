"""preprocess_frames against transformers' own PIL-backend image processing, and input checks."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from adatp.errors import VideoError
from adatp.video import VideoPreprocessConfig, make_synthetic_frames, preprocess_frames
from adatp.video.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


def _frames() -> np.ndarray:
    """Two 60 x 90 frames: synthetic shapes plus noise, so every filter has edges to resample."""
    noise = np.random.default_rng(0).integers(-40, 40, size=(2, 64, 96, 3))
    frames = make_synthetic_frames(2, (64, 96), seed=3, scenes=1).astype(np.int64) + noise
    return np.clip(frames, 0, 255).astype(np.uint8)[:, :60, :90]


def _reference(frames: np.ndarray, cfg: VideoPreprocessConfig) -> np.ndarray:
    """transformers' LlavaOnevisionImageProcessorPil steps (resize, rescale, normalize): (T, 3, h, w)."""
    from transformers.image_utils import PILImageResampling, SizeDict
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    processor = LlavaOnevisionImageProcessorPil()
    resample = {
        "nearest": PILImageResampling.NEAREST,
        "bilinear": PILImageResampling.BILINEAR,
        "bicubic": PILImageResampling.BICUBIC,
    }[cfg.resample]
    out = []
    for frame in frames:
        image = frame.transpose(2, 0, 1)  # the PIL backend works channels first
        if cfg.do_resize:
            image = processor.resize(image, SizeDict(height=cfg.size[0], width=cfg.size[1]), resample=resample)
        if cfg.do_rescale:
            image = processor.rescale(image, scale=cfg.rescale_factor)
        if cfg.do_normalize:
            image = processor.normalize(image, mean=list(cfg.image_mean), std=list(cfg.image_std))
        out.append(np.asarray(image, dtype=np.float32))
    return np.stack(out)


def test_reference_needs_no_torchvision() -> None:
    _reference(_frames(), VideoPreprocessConfig(size=(8, 8)))
    assert "torchvision" not in sys.modules


@pytest.mark.parametrize(
    "cfg",
    [
        VideoPreprocessConfig(),  # LlavaOnevisionVideoProcessor defaults: 384 x 384 bicubic, CLIP mean/std
        VideoPreprocessConfig(size=(112, 112), image_mean=(0.5,) * 3, image_std=(0.5,) * 3),  # llava-hf style
        VideoPreprocessConfig(size=(48, 40), resample="bilinear"),
        VideoPreprocessConfig(size=(70, 130), resample="nearest"),
        VideoPreprocessConfig(do_resize=False, do_normalize=False),
        VideoPreprocessConfig(size=(32, 32), do_rescale=False),
    ],
    ids=["defaults", "llava-hf", "bilinear", "nearest", "no-resize", "no-rescale"],
)
def test_matches_transformers_pil_backend(cfg: VideoPreprocessConfig) -> None:
    frames = _frames()
    ours = preprocess_frames(frames, cfg)
    reference = _reference(frames, cfg)
    assert ours.dtype == torch.float32
    assert tuple(ours.shape) == reference.shape
    assert float(np.abs(ours.numpy() - reference).max()) <= 1e-5


def test_defaults_are_llava_onevision_video_processor_defaults() -> None:
    from transformers.models.llava_onevision.video_processing_llava_onevision import LlavaOnevisionVideoProcessor

    cfg = VideoPreprocessConfig()
    defaults = LlavaOnevisionVideoProcessor
    assert cfg.size == (defaults.size["height"], defaults.size["width"])
    assert cfg.resample == "bicubic" and int(defaults.resample) == 3
    assert cfg.image_mean == pytest.approx(defaults.image_mean) == OPENAI_CLIP_MEAN
    assert cfg.image_std == pytest.approx(defaults.image_std) == OPENAI_CLIP_STD
    assert cfg.rescale_factor == defaults.rescale_factor
    assert (cfg.do_resize, cfg.do_rescale, cfg.do_normalize, cfg.do_convert_rgb) == (
        defaults.do_resize,
        defaults.do_rescale,
        defaults.do_normalize,
        defaults.do_convert_rgb,
    )


def test_output_layout_and_range() -> None:
    frames = np.zeros((3, 20, 30, 3), dtype=np.uint8)
    frames[..., 0] = 255  # pure red
    out = preprocess_frames(frames, VideoPreprocessConfig(size=(10, 12), do_normalize=False))
    assert tuple(out.shape) == (3, 3, 10, 12)
    assert out.is_contiguous()
    assert torch.all(out[:, 0] == 1.0) and torch.all(out[:, 1:] == 0.0)


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((20, 30, 3), np.uint8), r"\(T, H, W, 3\), got \(20, 30, 3\)"),
        (np.zeros((2, 3, 20, 30), np.uint8), r"got \(2, 3, 20, 30\)"),
        (np.zeros((2, 20, 30, 3), np.float32), r"uint8.*float32.*\(2, 20, 30, 3\)"),
        (np.zeros((0, 20, 30, 3), np.uint8), r"at least one frame.*\(0, 20, 30, 3\)"),
        (torch.zeros((2, 20, 30, 3), dtype=torch.uint8), "numpy array"),
    ],
    ids=["3d", "channels-first", "float", "no-frames", "tensor"],
)
def test_bad_frames(frames: object, match: str) -> None:
    with pytest.raises(VideoError, match=match):
        preprocess_frames(frames, VideoPreprocessConfig())  # type: ignore[arg-type]


def test_non_contiguous_frames() -> None:
    frames = _frames()
    cfg = VideoPreprocessConfig(size=(30, 30))
    flipped = frames[:, ::-1]
    torch.testing.assert_close(preprocess_frames(flipped, cfg), preprocess_frames(flipped.copy(), cfg))
