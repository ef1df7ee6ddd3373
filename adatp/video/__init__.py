"""Video input: decoding and frame sampling, checkpoint-matched preprocessing, synthetic clips.

``read_video`` decodes uniformly sampled RGB frames with PyAV; ``preprocess_frames`` turns them
into pixel values as a LLaVA-OneVision processor would (without torchvision);
``write_synthetic_video`` makes deterministic test clips.
"""

from __future__ import annotations

from adatp.video.io import VideoInfo, probe_video, read_video, sample_frame_indices
from adatp.video.preprocess import VideoPreprocessConfig, load_preprocess_config, preprocess_frames
from adatp.video.synthetic import make_synthetic_frames, write_synthetic_video

__all__ = [
    "VideoInfo",
    "VideoPreprocessConfig",
    "load_preprocess_config",
    "make_synthetic_frames",
    "preprocess_frames",
    "probe_video",
    "read_video",
    "sample_frame_indices",
    "write_synthetic_video",
]
