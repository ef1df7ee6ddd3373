"""Frame preprocessing that matches a LLaVA-OneVision checkpoint's processor, without torchvision.

``transformers``' video processors need torchvision; this module redoes what the PIL/numpy path
of its image processors does for a video frame: PIL resize to a fixed (height, width), rescale
by ``rescale_factor`` (in float64, then float32, as ``transformers.image_transforms.rescale``),
normalise with ``image_mean`` / ``image_std`` in float32, channels first. The settings are read
from the checkpoint's ``video_preprocessor_config.json`` (or ``preprocessor_config.json``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from adatp.errors import ConfigError, VideoError

#: transformers.image_utils.OPENAI_CLIP_MEAN / OPENAI_CLIP_STD, the defaults of
#: LlavaOnevisionVideoProcessor (the llava-hf checkpoints themselves use 0.5 / 0.5).
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: PIL resampling filters we support, by name; HF configs store PIL's integer codes.
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
_RESAMPLE_CODES = {0: "nearest", 2: "bilinear", 3: "bicubic"}

#: Looked up in this order: the video processor's own file first (newer checkpoints), then the
#: image processor's (older ones share it between images and videos).
CONFIG_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")


@dataclass
class VideoPreprocessConfig:
    """Preprocessing settings; defaults are ``LlavaOnevisionVideoProcessor``'s class defaults.

    Attributes:
        size: output (height, width) of every frame.
        resample: PIL filter: ``"bicubic"``, ``"bilinear"`` or ``"nearest"`` (or PIL's codes 3, 2, 0).
        do_resize / do_rescale / do_normalize: the three steps, applied in this order.
        rescale_factor: multiplier of the 0..255 values (1/255 gives 0..1).
        image_mean / image_std: per-channel (R, G, B) normalisation.
        do_convert_rgb: kept for fidelity to HF configs; frames here are always RGB already.
    """

    size: tuple[int, int] = (384, 384)
    resample: str = "bicubic"
    do_resize: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, float, float] = field(default=OPENAI_CLIP_MEAN)
    image_std: tuple[float, float, float] = field(default=OPENAI_CLIP_STD)
    do_convert_rgb: bool = True

    def __post_init__(self) -> None:
        self.size = _parse_size(self.size)
        self.resample = _parse_resample(self.resample)
        self.image_mean = _parse_triple("image_mean", self.image_mean)
        self.image_std = _parse_triple("image_std", self.image_std)
        if any(s == 0 for s in self.image_std):
            raise ConfigError(f"image_std must not contain 0, got {self.image_std}")
        if not _is_real(self.rescale_factor) or not np.isfinite(self.rescale_factor):
            raise ConfigError(f"rescale_factor must be a number, got {self.rescale_factor!r}")
        self.rescale_factor = float(self.rescale_factor)
        for name in ("do_resize", "do_rescale", "do_normalize", "do_convert_rgb"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
            setattr(self, name, bool(getattr(self, name)))


def load_preprocess_config(model_dir: str | os.PathLike[str]) -> VideoPreprocessConfig:
    """The checkpoint's preprocessing settings.

    Reads ``video_preprocessor_config.json`` if present, else ``preprocessor_config.json``, else
    returns the defaults. Recognised keys: ``size`` (``{"height", "width"}``, ``{"shortest_edge": s}``
    -> ``(s, s)`` as LLaVA-OneVision resizes video frames to squares, ``[h, w]`` or an int),
    ``resample``, ``do_resize``, ``do_rescale``, ``rescale_factor``, ``do_normalize``,
    ``image_mean``, ``image_std``, ``do_convert_rgb``. Other keys (``crop_size``,
    ``image_grid_pinpoints``, ...) are ignored; a ``null`` value keeps the default.

    Raises:
        ConfigError: ``model_dir`` is not a directory, the file is not valid JSON or not an
            object, or a recognised key has an invalid value (the file is named).
    """
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise ConfigError(f"model directory {str(model_dir)!r} does not exist or is not a directory")
    for name in CONFIG_FILES:
        path = model_dir / name
        if path.is_file():
            return config_from_dict(_read_json(path), source=str(path))
    return VideoPreprocessConfig()


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> VideoPreprocessConfig:
    """A config from a HF-style preprocessor dict; ``source`` names it in errors."""
    known = {f.name for f in fields(VideoPreprocessConfig)}
    kwargs = {k: v for k, v in data.items() if k in known and v is not None}
    if "size" in kwargs:
        kwargs["size"] = _hf_size(kwargs["size"], source)
    try:
        return VideoPreprocessConfig(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def preprocess_frames(frames: np.ndarray, cfg: VideoPreprocessConfig) -> torch.Tensor:
    """Frames (T, H, W, 3) uint8 RGB -> pixel values (T, 3, h, w) float32, ``(h, w) = cfg.size``.

    (h, w) is (H, W) when ``cfg.do_resize`` is false.

    Raises:
        VideoError: not a (T, H, W, 3) uint8 numpy array, or T == 0.
    """
    _check_frames(frames)
    images = np.stack([_resize(frame, cfg) for frame in frames]) if cfg.do_resize else frames
    pixels = torch.from_numpy(np.ascontiguousarray(images))
    if cfg.do_rescale:
        # float64 first, as transformers.image_transforms.rescale: 1/255 in float32 is not exact
        pixels = (pixels.to(torch.float64) * cfg.rescale_factor).to(torch.float32)
    else:
        pixels = pixels.to(torch.float32)
    if cfg.do_normalize:
        mean = torch.tensor(cfg.image_mean, dtype=torch.float32)
        std = torch.tensor(cfg.image_std, dtype=torch.float32)
        pixels = (pixels - mean) / std
    return pixels.permute(0, 3, 1, 2).contiguous()


# --- helpers ---------------------------------------------------------------------------------


def _check_frames(frames: Any) -> None:
    if not isinstance(frames, np.ndarray):
        raise VideoError(f"frames must be a numpy array (T, H, W, 3) uint8, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise VideoError(f"frames must have shape (T, H, W, 3), got {tuple(frames.shape)}")
    if frames.shape[0] < 1:
        raise VideoError(f"frames must hold at least one frame, got shape {tuple(frames.shape)}")
    if frames.shape[1] < 1 or frames.shape[2] < 1:
        raise VideoError(f"frames have an empty image size, shape {tuple(frames.shape)}")
    if frames.dtype != np.uint8:
        raise VideoError(f"frames must be uint8 (0..255 RGB), got {frames.dtype} with shape {tuple(frames.shape)}")


def _resize(frame: np.ndarray, cfg: VideoPreprocessConfig) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8 with PIL, as transformers' PIL backend resizes."""
    height, width = cfg.size
    image = Image.fromarray(frame)
    return np.asarray(image.resize((width, height), resample=_RESAMPLE[cfg.resample]))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{str(path)!r} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def _hf_size(size: Any, source: str) -> Any:
    """HF's ``size`` forms -> (height, width) when recognised; other values fail in _parse_size."""
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            return (size["height"], size["width"])
        if "shortest_edge" in size:
            # LLaVA-OneVision resizes video frames to a square of this side.
            return (size["shortest_edge"], size["shortest_edge"])
        raise ConfigError(f"{source}: size must have 'height' and 'width' or 'shortest_edge', got {size!r}")
    return size


def _parse_size(size: Any) -> tuple[int, int]:
    """An int (square) or a (height, width) pair of positive ints."""
    if _is_int(size):
        size = (size, size)
    if not isinstance(size, Sequence) or isinstance(size, str) or len(size) not in (1, 2):
        raise ConfigError(f"size must be an int or (height, width), got {size!r}")
    if len(size) == 1:
        size = (size[0], size[0])
    if not all(_is_int(s) and s > 0 for s in size):
        raise ConfigError(f"size must hold positive integers, got {size!r}")
    return int(size[0]), int(size[1])


def _parse_resample(resample: Any) -> str:
    if _is_int(resample) and int(resample) in _RESAMPLE_CODES:  # also PIL / HF IntEnums
        return _RESAMPLE_CODES[int(resample)]
    if isinstance(resample, str) and resample.lower() in _RESAMPLE:
        return resample.lower()
    raise ConfigError(f"resample must be 'bicubic' (3), 'bilinear' (2) or 'nearest' (0), got {resample!r}")


def _parse_triple(name: str, values: Any) -> tuple[float, float, float]:
    """Three per-channel floats; a single number is repeated, as HF broadcasts it."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if _is_real(values):
        values = (values,) * 3
    if (
        not isinstance(values, Sequence)
        or isinstance(values, str)
        or len(values) != 3
        or not all(map(_is_real, values))
    ):
        raise ConfigError(f"{name} must be 3 numbers (R, G, B), got {values!r}")
    return (float(values[0]), float(values[1]), float(values[2]))


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
