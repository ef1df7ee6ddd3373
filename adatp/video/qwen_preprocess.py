"""Former home of Qwen-VL's video preprocessing, kept for imports: see :mod:`adatp.families.qwen2_vl.preprocess`."""

from adatp.families.qwen2_vl.preprocess import (
    QwenVideoSettings,
    grid_timestamps,
    load_qwen_settings,
    patchify,
    qwen_video_pixels,
    rescale_and_normalize,
    resize_video,
    smart_resize,
    smart_resize_video,
)

__all__ = [
    "QwenVideoSettings",
    "grid_timestamps",
    "load_qwen_settings",
    "patchify",
    "qwen_video_pixels",
    "rescale_and_normalize",
    "resize_video",
    "smart_resize",
    "smart_resize_video",
]
