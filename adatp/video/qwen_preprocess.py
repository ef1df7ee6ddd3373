"""Video preprocessing of Qwen2-VL, Qwen2.5-VL and Qwen3-VL checkpoints, without torchvision.

What ``Qwen2VLVideoProcessor`` / ``Qwen3VLVideoProcessor`` (transformers 5.23) do to already
sampled frames: pad T to a multiple of ``temporal_patch_size`` by repeating the last frame,
``smart_resize`` every frame to multiples of ``patch_size * merge_size`` inside the checkpoint's
pixel limits (Qwen2/2.5-VL: per frame; Qwen3-VL: over ``T x h x w``, the whole video), rescale and
normalise, then cut into ``temporal_patch_size x patch_size x patch_size`` patches ordered
``(t, h/merge, w/merge, merge, merge)``: ``pixel_values_videos`` (t*H*W, 3*tp*p*p) and
``video_grid_thw`` [[t, H, W]] in patches.

Pixels follow transformers' torchvision backend step by step, with torch alone: the uint8 frames
(T, 3, H, W) are resized by ``torch.nn.functional.interpolate`` as ``torchvision.transforms.v2.functional.resize``
calls it (bicubic with antialias straight on uint8 on the CPU; skipped when the size is unchanged),
then rescale and normalise are fused as ``(x - mean / rescale_factor) / (std / rescale_factor)`` in
float32. Compared with the processors themselves (tests/fixtures/qwen_processor.json, recorded with
torchvision, docs/families.md) ids, grids and timing are equal and pixels equal to the last bit.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from adatp.errors import ConfigError, VideoError
from adatp.video.preprocess import CONFIG_FILES, VideoPreprocessConfig, _read_json

QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "qwen3_5_moe")
#: families whose video processor sizes the whole video at once (Qwen3VLVideoProcessor; Qwen3.5 uses it too).
WHOLE_VIDEO_RESIZE = ("qwen3_vl", "qwen3_5", "qwen3_5_moe")
#: transformers 5.23 class defaults of the video processors, used for keys a checkpoint omits.
DEFAULTS = {
    "qwen2_vl": dict(min_pixels=128 * 28 * 28, max_pixels=768 * 28 * 28, fps=2.0, mean=(0.48145466, 0.4578275, 0.40821073),
                     std=(0.26862954, 0.26130258, 0.27577711)),
    "qwen3_vl": dict(min_pixels=128 * 32 * 32, max_pixels=768 * 32 * 32, fps=2.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
}
DEFAULTS["qwen2_5_vl"] = DEFAULTS["qwen2_vl"]
DEFAULTS["qwen3_5"] = DEFAULTS["qwen3_5_moe"] = DEFAULTS["qwen3_vl"]


@dataclass(frozen=True)
class QwenVideoSettings:
    """Preprocessing settings of one Qwen-VL checkpoint (its ``video_preprocessor_config.json``)."""

    family: str
    patch_size: int
    temporal_patch_size: int
    merge_size: int
    min_pixels: int
    max_pixels: int
    fps: float
    pixels: VideoPreprocessConfig  # rescale / normalise / resample (its size is unused: smart_resize sizes each video)


def load_qwen_settings(model_dir: str | os.PathLike[str], config: Any) -> QwenVideoSettings:
    """Read the checkpoint's video (else image) preprocessor config; sizes default to ``config``'s tower."""
    family = config.model_type
    if family not in QWEN_FAMILIES:
        raise ConfigError(f"{family!r} is not a Qwen-VL family; valid: {QWEN_FAMILIES}")
    data: dict[str, Any] = {}
    for name in CONFIG_FILES:
        path = Path(model_dir) / name
        if path.is_file():
            data = _read_json(path)
            break
    d = DEFAULTS[family]
    v = config.vision_config
    size = data.get("size") or {}
    min_pixels = size.get("shortest_edge", data.get("min_pixels", d["min_pixels"]))
    max_pixels = size.get("longest_edge", data.get("max_pixels", d["max_pixels"]))
    patch = int(data.get("patch_size") or v.patch_size)
    tp = int(data.get("temporal_patch_size") or v.temporal_patch_size)
    merge = int(data.get("merge_size") or v.spatial_merge_size)
    if (patch, tp, merge) != (v.patch_size, v.temporal_patch_size, v.spatial_merge_size):
        raise ConfigError(
            f"{str(model_dir)!r}: preprocessor patch/temporal/merge sizes {(patch, tp, merge)} do not match the tower's "
            f"{(v.patch_size, v.temporal_patch_size, v.spatial_merge_size)}"
        )
    pixels = VideoPreprocessConfig(
        size=(patch * merge, patch * merge),
        resample=data.get("resample", 3),
        do_rescale=data.get("do_rescale", True),
        rescale_factor=data.get("rescale_factor", 1 / 255),
        do_normalize=data.get("do_normalize", True),
        image_mean=data.get("image_mean") or d["mean"],
        image_std=data.get("image_std") or d["std"],
    )
    return QwenVideoSettings(family, patch, tp, merge, int(min_pixels), int(max_pixels), float(data.get("fps") or d["fps"]), pixels)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's per-frame rule: multiples of ``factor``, ``min_pixels <= h*w <= max_pixels``, aspect kept."""
    if max(height, width) / min(height, width) > 200:
        raise VideoError(f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def smart_resize_video(
    num_frames: int, height: int, width: int, temporal_factor: int, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """Qwen3-VL's rule: the pixel limits bound ``t x h x w`` of the whole video."""
    if num_frames < temporal_factor:
        raise VideoError(f"{num_frames} frames: Qwen3-VL needs at least temporal_patch_size={temporal_factor}")
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > 200:
        raise VideoError(f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt((num_frames * height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def patchify(pixels: torch.Tensor, patch: int, merge: int, temporal: int) -> tuple[torch.Tensor, list[int]]:
    """(T, 3, h, w) -> ((t*H*W, 3*tp*p*p) patches in (t, H/m, W/m, m, m) order, [t, H, W])."""
    if pad := -pixels.shape[0] % temporal:
        pixels = torch.cat([pixels, pixels[-1:].expand(pad, -1, -1, -1)])
    frames, channels, h, w = pixels.shape
    t, gh, gw = frames // temporal, h // patch, w // patch
    x = pixels.view(t, temporal, channels, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (t, H/m, W/m, m, m, C, tp, p, p)
    return x.reshape(t * gh * gw, channels * temporal * patch * patch), [t, gh, gw]


def _native_uint8(resample: str) -> bool:
    """Whether torchvision resizes uint8 CPU frames without a float round trip (``_do_native_uint8_resize_on_cpu``)."""
    if resample == "bilinear":  # torchvision 0.29: its vectorised uint8 kernel only
        return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or platform.machine() in ("aarch64", "arm64")
    return True  # bicubic; nearest is exact on uint8


def resize_video(video: torch.Tensor, size: tuple[int, int], resample: str = "bicubic") -> torch.Tensor:
    """(T, 3, H, W) uint8 -> (T, 3, h, w) uint8, as torchvision's tensor ``resize`` with antialias on the CPU.

    ``resample``: "bicubic" / "bilinear" (antialiased) or "nearest" (torchvision's NEAREST_EXACT, which
    transformers maps PIL's NEAREST to). The frames are returned as they are when (h, w) == (H, W).
    """
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    mode = {"nearest": "nearest-exact"}.get(resample, resample)
    smooth = mode in ("bilinear", "bicubic")
    kwargs = dict(size=list(size), mode=mode, align_corners=False if smooth else None, antialias=smooth)
    if _native_uint8(resample):
        return F.interpolate(video, **kwargs)
    out = F.interpolate(video.to(torch.float32), **kwargs)
    return out.round_().to(torch.uint8)


def rescale_and_normalize(video: torch.Tensor, cfg: VideoPreprocessConfig) -> torch.Tensor:
    """(T, 3, h, w) uint8 -> float32, as transformers' torchvision backend: rescale folded into mean/std."""
    if cfg.do_normalize:
        mean, std = torch.tensor(cfg.image_mean), torch.tensor(cfg.image_std)
        if cfg.do_rescale:
            mean, std = mean * (1.0 / cfg.rescale_factor), std * (1.0 / cfg.rescale_factor)
        return (video.to(torch.float32) - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)
    if cfg.do_rescale:
        return video * cfg.rescale_factor
    return video.to(torch.float32)


def qwen_video_pixels(frames: np.ndarray, settings: QwenVideoSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, H, W, 3) uint8 -> (pixel_values_videos (t*H*W, 3*tp*p*p) float32, video_grid_thw (1, 3))."""
    num_frames, height, width = frames.shape[:3]
    factor = settings.patch_size * settings.merge_size
    if settings.family in WHOLE_VIDEO_RESIZE:
        size = smart_resize_video(num_frames, height, width, settings.temporal_patch_size, factor,
                                  settings.min_pixels, settings.max_pixels)
    else:
        size = smart_resize(height, width, factor, settings.min_pixels, settings.max_pixels)
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()  # (T, 3, H, W)
    cfg = settings.pixels
    if cfg.do_resize:
        video = resize_video(video, size, cfg.resample)
    pixels = rescale_and_normalize(video, cfg)  # (T, 3, h, w)
    patches, grid = patchify(pixels, settings.patch_size, settings.merge_size, settings.temporal_patch_size)
    return patches, torch.tensor([grid])


def grid_timestamps(num_frames: int, fps: float, temporal: int) -> list[float]:
    """Qwen3-VL's timestamp of each token grid: the mean time of its frames (frames i / fps)."""
    indices = list(range(num_frames))
    if pad := -num_frames % temporal:
        indices += [indices[-1]] * pad
    times = [i / fps for i in indices]
    return [(times[i] + times[i + temporal - 1]) / 2 for i in range(0, len(times), temporal)]
