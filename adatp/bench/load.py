"""What a benchmark runs on: the device and dtype, the model (a directory, the built-in default or a
real-size architecture) and one fixed prompt with a video in that model's family layout."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from adatp.errors import ConfigError

DEFAULT_QUESTION = "What happens in the video, and which object moves the most?"
ARCH_TEXT_BEFORE = 4  # "<|im_start|>user\n" and friends before the video in the chat template


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    from adatp.pipeline import DTYPES

    names = {**DTYPES, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in names:
        raise ConfigError(f"--dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    return names[dtype]


def to_device(inputs: dict, device: torch.device, dtype: torch.dtype, model_type: str) -> dict:
    """Tensors to ``device``; the family's pixel values also to ``dtype``."""
    from adatp.families import processor_for

    return dict(processor_for(model_type).to(inputs, device, dtype))


def family_inputs(model, frames: int, text_tokens: int, device: torch.device, dtype: torch.dtype,
                  tokens_per_frame: int | None = None) -> dict:
    """Synthetic inputs in ``model``'s family layout (the adapter's ``synthetic_inputs``): random
    pixels, ``text_tokens`` random text ids, ``ARCH_TEXT_BEFORE`` of them before the video."""
    from adatp.families import get_adapter

    inputs = get_adapter(model).synthetic_inputs(frames, text_tokens, tokens_per_frame, text_before=ARCH_TEXT_BEFORE)
    return to_device(inputs, device, dtype, model.config.model_type)


def model_inputs(model_dir: Path, frames: int, device: torch.device, dtype: torch.dtype) -> dict:
    """prepare_inputs on a deterministic synthetic clip and a fixed question."""
    from adatp.inputs import prepare_inputs
    from adatp.video.synthetic import make_synthetic_frames

    clip = make_synthetic_frames(num_frames=frames, size=(224, 224), seed=0, scenes=min(3, frames))
    inputs = prepare_inputs(model_dir, clip, DEFAULT_QUESTION)
    from adatp.inputs import load_model_config

    return to_device(dict(inputs), device, dtype, load_model_config(model_dir).model_type)


def default_model_dir() -> tuple[Path, str]:
    """adatp-tiny (trained) if its weights ship, else its base (same architecture: same timings)."""
    from adatp.organism.build import adatp_tiny_dir, trained_weights_hash

    if trained_weights_hash() is not None:
        return adatp_tiny_dir(), "adatp-tiny"
    return adatp_tiny_dir(require_trained=False), "adatp-tiny-base"


@dataclass
class Subject:
    """The model a run measures, its one prompt, and how both were made (the JSON's ``model``)."""

    model: Any
    inputs: dict[str, torch.Tensor]
    frames: int
    info: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = None


def load_arch(arch: str, frames: int | None, tokens_per_frame: int | None, text_tokens: int,
              device: torch.device, dtype: torch.dtype, text_layers: int | None = None) -> Subject:
    """A real-size ``arch`` with cheap weights and synthetic inputs of ``frames`` frames (default 32)."""
    from adatp.bench.arch import build_arch_model

    t0 = time.perf_counter()
    model = build_arch_model(arch, device, dtype, tokens_per_frame, text_layers)
    frames = frames or 32
    inputs = family_inputs(model, frames, text_tokens, device, dtype, tokens_per_frame)
    info = {
        "source": "arch", "name": arch, "random_weights": True, "build_s": time.perf_counter() - t0,
        "text_layers": model.config.text_config.num_hidden_layers,
        "note": "real-size architecture from the shipped config with cheap deterministic weights: "
                "speed and memory only, accuracy is NOT measured",
    }
    return Subject(model, inputs, frames, info)


def load_dir(model_dir: Path | None, frames: int | None, tokens_per_frame: int | None, device: torch.device,
             dtype: torch.dtype, step: Callable[[str], None] = lambda s: None) -> Subject:
    """A model directory (default: the built-in adatp-tiny, 16 frames; else 32) on a synthetic clip."""
    from transformers import AutoTokenizer

    from adatp.families import get_adapter
    from adatp.pipeline import DTYPES, load_model

    builtin = model_dir is None
    if builtin:
        step("locating the built-in default model")
        model_dir, name = default_model_dir()
    else:
        model_dir = Path(model_dir)
        name = model_dir.name
    dtype_name = {v: k for k, v in DTYPES.items()}[dtype]
    step(f"loading {model_dir}")
    model = load_model(model_dir, dtype=dtype_name, device=str(device))
    fixed = get_adapter(model).config_tokens_per_frame(model.config)
    if tokens_per_frame is not None and tokens_per_frame != fixed:
        if fixed is None:
            raise ConfigError("--tokens-per-frame: a model directory's preprocessing sets the grid; use --arch to change it")
        raise ConfigError(
            f"--tokens-per-frame {tokens_per_frame}: {model_dir} takes {fixed} tokens a frame "
            "(fixed by its vision tower); use --arch to change the grid"
        )
    tokenizer = None
    with contextlib.suppress(OSError, ValueError):
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    frames = frames or (16 if builtin else 32)
    inputs = model_inputs(model_dir, frames, device, dtype)
    info = {"source": "dir", "name": name, "path": str(model_dir)}
    if builtin:
        info["note"] = "built-in default" + ("" if name == "adatp-tiny" else
                                             ": the trained adatp-tiny is missing, its base has the same architecture and timings")
    return Subject(model, inputs, frames, info, tokenizer)
