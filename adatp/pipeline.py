"""Load a model directory, answer a question about a video, pruned and (optionally) vanilla.

Shared by ``adatp generate`` and ``adatp demo`` so both print the same figures.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from adatp.api import prune
from adatp.errors import ConfigError, UnsupportedModelError
from adatp.runtime.report import PruneReport

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_device(device: str) -> str:
    """``device`` if torch can use it here; a one-line ConfigError naming what is available if not."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = "has no CUDA support" if not torch.backends.cuda.is_built() else "finds no CUDA device"
            raise ConfigError(f"device {device!r}: this torch ({torch.__version__}) {why}; use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r}: MPS is not available here; use --device cpu")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {device!r} is not supported: use cpu, cuda or cuda:N")
    return device


def check_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def read_model_type(path: Path) -> str | None:
    """``model_type`` from ``config.json``; a one-line ConfigError when the file is unreadable."""
    from adatp.inputs import read_config_json

    return read_config_json(path / "config.json").get("model_type")


def load_model(model_dir: str | Path, dtype: str = "float32", device: str = "cpu"):
    """``from_pretrained(model_dir)`` of a supported family, SDPA attention, eval mode.

    Raises ConfigError for a missing directory, an unreadable config, an unknown dtype or a device
    torch cannot use, and UnsupportedModelError for another family.
    """
    import transformers

    from adatp.families import supported_model_types

    supported = supported_model_types()  # model_type -> class name, from the adapters
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise ConfigError(f"no model found at {path}: expected a directory with config.json")
    check_dtype(dtype)
    check_device(device)
    model_type = read_model_type(path)
    if model_type not in supported:
        raise UnsupportedModelError(f"model type {model_type!r} in {path} is not supported; supported: {sorted(supported)}")
    from huggingface_hub.errors import StrictDataclassError
    from safetensors import SafetensorError

    cls = getattr(transformers, supported[model_type])
    try:
        model = cls.from_pretrained(path, dtype=DTYPES[dtype], attn_implementation="sdpa")
    except (OSError, ValueError, KeyError, TypeError, SafetensorError, StrictDataclassError) as exc:
        # missing or damaged weights, a config transformers refuses (a value of the wrong type, too)
        first = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"cannot load the model in {str(path)!r}: {first}") from None
    return model.to(device).eval()


class _TokenProgress:
    """A ``generate()`` streamer that reports each new token to a callback (progress bars)."""

    def __init__(self, on_token: Callable[[], None]) -> None:
        self.on_token = on_token
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # the first call carries the prompt
            self.prompt_seen = True
            return
        self.on_token()

    def end(self) -> None:
        pass


@dataclass
class Answer:
    """One generation: the text, new token ids, and the prune report (None for vanilla)."""

    method: str
    text: str
    token_ids: list[int]
    report: PruneReport | None
    prefill_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "answer": self.text,
            "token_ids": self.token_ids,
            "prefill_s": self.prefill_s,
            "report": self.report.to_dict() if self.report else None,
        }


@dataclass
class Comparison:
    """Pruned against vanilla on the same inputs; prefill times are medians of interleaved runs."""

    pruned: Answer
    vanilla: Answer | None = None
    prefill_ratio: float | None = None
    prefill_runs: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pruned": self.pruned.to_dict(),
            "vanilla": self.vanilla.to_dict() if self.vanilla else None,
            "prefill_time_ratio": self.prefill_ratio,
            "prefill_runs_s": self.prefill_runs,
        }


def _generate(model, tokenizer, inputs, max_new_tokens: int, on_token) -> tuple[str, list[int]]:
    streamer = _TokenProgress(on_token) if on_token else None
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, streamer=streamer)
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    return tokenizer.decode(new, skip_special_tokens=True).strip(), new


def _time_prefill(model, inputs) -> float:
    """Seconds of one prefill forward (last logit only, cache built), synchronised."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        model(**inputs, use_cache=True, logits_to_keep=1)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def answer_question(
    model,
    tokenizer,
    inputs,
    *,
    method: str = "adatp",
    prune_options: dict[str, Any] | None = None,
    max_new_tokens: int = 64,
    compare: bool = False,
    repeats: int = 3,
    on_token: Callable[[], None] | None = None,
) -> Comparison:
    """Answer with ``method`` (and, with ``compare``, with the unpruned model and timed prefills).

    Prefill timings interleave vanilla and pruned runs after one warm-up each, so that drift on
    shared machines hits both alike; the ratio is pruned / vanilla of the medians.
    """
    options = dict(prune_options or {})
    vanilla = None
    if compare or method == "none":
        text, ids = _generate(model, tokenizer, inputs, max_new_tokens, on_token)
        vanilla = Answer("none", text, ids, None)
    if method == "none":
        return Comparison(pruned=vanilla)
    handle = prune(model, method, tokenizer=tokenizer, **options)
    try:
        text, ids = _generate(model, tokenizer, inputs, max_new_tokens, on_token)
        pruned = Answer(method, text, ids, handle.last_report)
    finally:
        handle.remove()
    result = Comparison(pruned=pruned, vanilla=vanilla)
    if compare:
        runs: dict[str, list[float]] = {"none": [], method: []}
        for i in range(repeats + 1):  # the first round warms up and is dropped
            t_v = _time_prefill(model, inputs)
            with prune(model, method, tokenizer=tokenizer, **options):
                t_p = _time_prefill(model, inputs)
            if i:
                runs["none"].append(t_v)
                runs[method].append(t_p)
        vanilla.prefill_s = statistics.median(runs["none"])
        pruned.prefill_s = statistics.median(runs[method])
        result.prefill_ratio = pruned.prefill_s / vanilla.prefill_s
        result.prefill_runs = runs
    return result
