"""``adatp bench speed``: measured cost of each pruning method against vanilla, in the same run.

What one *trial* measures (one method at one FLOPs target, one prefill and a short decode):

- ``vision_s``: the vision tower + projector, timestamped by hooks at the tower's entry and the
  projector's exit inside the prefill (the same pixels every method sees; pruning never touches it);
- ``llm_prefill_s``: the language model call, timestamped by a pre-hook registered *before*
  adatp's own hooks and a post-hook at its exit, so it holds the decoder layers plus every pruning
  stage on the LLM path (what pruning is meant to make cheaper);
- ``ttft_s``: the whole prefill forward with the video (embeddings, vision, pruning, LLM, lm_head
  on the last position): the time to the first token's logits;
- ``decode_tok_s``: greedy tokens per second over ``new_tokens`` steps on the prefill's cache.

Timestamps: ``time.perf_counter`` on CPU; CUDA events recorded in the hooks on GPU (no host sync
inside the forward; one synchronize after it). Methods are interleaved round-robin inside every
repeat, with the starting method rotated each repeat, so drift hits every method alike.

After every timed trial, a separate *probe* prefill per method runs with ``time_overhead=True`` to
sum adatp's pruning overhead (it synchronises at every stage, so nothing else is timed there), and
one more per method measures peak memory: ``torch.cuda.max_memory_allocated`` growth on GPU; on CPU the growth of the
process's peak resident set (VmHWM, reset through ``/proc/self/clear_refs`` before the forward;
a 1 ms RSS sampling thread where that reset is not allowed).

``--encode-once`` (for big models on CPU): the vision tower runs once per run and is timed there;
each trial then re-runs only the projector + pooling on the cached tower output (so adatp's hooks see
the patch features exactly as in a normal prefill) and passes the features through
``mm_encoder_outputs``, as ``generate()`` does. ``ttft_s`` is then the tower's time plus the trial's
measured forward; the JSON says so.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adatp.errors import ConfigError

SCHEMA = "adatp.bench.speed/1"
#: Metrics measured in every timed trial. ``decode_tok_s`` is a rate (higher is better).
TIME_METRICS = ("vision_s", "llm_prefill_s", "ttft_s")
RATE_METRICS = ("decode_tok_s",)
METRICS = TIME_METRICS + RATE_METRICS
#: Extra per-trial timings kept in the JSON to show where the time goes.
DETAIL_METRICS = ("pre_llm_s", "post_llm_s", "decode_s")
BASELINE = "none"
DEFAULT_QUESTION = "What happens in the video, and which object moves the most?"
ARCH_TEXT_BEFORE = 4  # "<|im_start|>user\n" and friends before the video in the chat template


# --- specs, order, statistics (pure) ------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """One configuration: a method and its FLOPs target (None for vanilla)."""

    method: str
    flops_ratio: float | None = None

    @property
    def label(self) -> str:
        return self.method if self.flops_ratio is None else f"{self.method}@{self.flops_ratio:g}"

    def prune_options(self) -> dict[str, Any]:
        return {} if self.flops_ratio is None else {"flops_ratio": self.flops_ratio}


def parse_list(text: str | None, name: str) -> list[str]:
    items = [x.strip() for x in (text or "").split(",") if x.strip()]
    if not items:
        raise ConfigError(f"{name} is empty: give a comma-separated list")
    return items


def parse_ratios(text: str) -> list[float]:
    out = []
    for item in parse_list(text, "--flops-ratios"):
        try:
            value = float(item)
        except ValueError:
            raise ConfigError(f"--flops-ratios must be comma-separated numbers, got {item!r}") from None
        if not (0.0 < value <= 1.0) or math.isnan(value):
            raise ConfigError(f"--flops-ratios: {value:g} is outside (0, 1]")
        out.append(value)
    return out


def build_specs(methods: Sequence[str], ratios: Sequence[float], available: Sequence[str] | None = None) -> list[Spec]:
    """Vanilla first (always: every ratio is taken against it), then each method x each ratio."""
    if available is not None:
        unknown = [m for m in methods if m not in available]
        if unknown:
            raise ConfigError(f"unknown method {unknown[0]!r}; available: {', '.join(available)}")
    for r in ratios:
        if not (0.0 < r <= 1.0):
            raise ConfigError(f"flops ratio {r:g} is outside (0, 1]")
    specs = [Spec(BASELINE)]
    for m in dict.fromkeys(methods):
        if m != BASELINE:
            specs.extend(Spec(m, r) for r in dict.fromkeys(ratios))
    return specs


def trial_order(specs: Sequence[Spec], repeats: int, warmup: int) -> list[tuple[int, Spec, bool]]:
    """(round, spec, is_warmup) in run order: every round runs every spec once (round-robin),
    starting one further along each round so no spec always runs first (after a cache-cold gap)."""
    order = []
    n = len(specs)
    for r in range(warmup + repeats):
        shift = r % n if n else 0
        for spec in list(specs[shift:]) + list(specs[:shift]):
            order.append((r, spec, r < warmup))
    return order


def summarize(samples: Sequence[float]) -> dict[str, float | int | None]:
    """Median, min, max and interquartile range (inclusive quartiles) of the samples."""
    xs = sorted(float(x) for x in samples if x is not None and not math.isnan(float(x)))
    if not xs:
        return {"n": 0, "median": None, "min": None, "max": None, "q1": None, "q3": None}
    if len(xs) == 1:
        q1 = q3 = xs[0]
    else:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return {"n": len(xs), "median": statistics.median(xs), "min": xs[0], "max": xs[-1], "q1": q1, "q3": q3}


def vs_vanilla(medians: dict[str, dict[str, float | None]], baseline: str = BASELINE) -> dict[str, dict[str, float | None]]:
    """Per label and metric: ``value / vanilla value`` (the ratio), and ``speedup_<metric>``:
    vanilla time / time for time metrics, rate / vanilla rate for rates (> 1 is faster)."""
    if baseline not in medians:
        raise ValueError(f"no {baseline!r} run to compare against")
    base = medians[baseline]
    out: dict[str, dict[str, float | None]] = {}
    for label, values in medians.items():
        row: dict[str, float | None] = {}
        for metric, value in values.items():
            b = base.get(metric)
            ok = value is not None and b is not None and b > 0 and value > 0
            row[f"ratio_{metric}"] = value / b if ok else None
            if metric.endswith("_tok_s"):
                row[f"speedup_{metric}"] = value / b if ok else None
            else:
                row[f"speedup_{metric}"] = b / value if ok else None
        out[label] = row
    return out


# --- timing -------------------------------------------------------------------------------------
class Marks:
    """Named timestamps taken in hooks, armed for one forward at a time.

    Each name keeps its first timestamp only (the language model runs once per prefill). On CUDA a
    mark is an event recorded on the current stream: no synchronisation inside the forward.
    """

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.armed = False
        self.stamps: dict[str, Any] = {}

    def arm(self) -> None:
        self.stamps = {}
        self.armed = True

    def disarm(self) -> None:
        self.armed = False

    def mark(self, name: str, force: bool = False) -> None:
        if not (self.armed or force) or name in self.stamps:
            return
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.stamps[name] = ev
        else:
            self.stamps[name] = time.perf_counter()

    def elapsed(self, a: str, b: str) -> float | None:
        if a not in self.stamps or b not in self.stamps:
            return None
        if self.cuda:
            return self.stamps[a].elapsed_time(self.stamps[b]) / 1000.0
        return self.stamps[b] - self.stamps[a]

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def install_marks(model: nn.Module, marks: Marks) -> list[torch.utils.hooks.RemovableHandle]:
    """Hooks at the vision tower entry, projector exit and language model boundary.

    The language model pre-hook is prepended, so it runs before adatp's (which prunes there): the
    LLM time includes every pruning stage on the LLM path. Nothing else is touched.
    """
    from adatp.adapters.base import get_adapter

    adapter = get_adapter(model)
    tower, projected = adapter.vision_modules()
    lm = adapter.language_model()
    hooks = [
        tower.register_forward_pre_hook(lambda m, a: marks.mark("vision_start"), prepend=True),
        projected.register_forward_hook(lambda m, a, o: marks.mark("vision_end")),
        lm.register_forward_pre_hook(lambda m, a: marks.mark("llm_start"), prepend=True),
        lm.register_forward_hook(lambda m, a, o: marks.mark("llm_end")),
    ]
    return hooks


# --- memory -------------------------------------------------------------------------------------
def _read_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory growth of a block: CUDA allocator on GPU, resident set on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = ""
        self.peak_bytes: int | None = None

    @contextlib.contextmanager
    def measure(self) -> Iterator[PeakMemory]:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            self.method = "torch.cuda.max_memory_allocated growth over the allocated memory before the forward"
            yield self
            torch.cuda.synchronize()
            self.peak_bytes = int(torch.cuda.max_memory_allocated() - base)
            return
        base_kb = _read_status_kb("VmRSS")
        if base_kb is not None and _reset_hwm() and _read_status_kb("VmHWM") is not None:
            self.method = "CPU: growth of the process's peak RSS (VmHWM, reset via /proc/self/clear_refs) over the RSS before the forward"
            yield self
            self.peak_bytes = max(0, (_read_status_kb("VmHWM") or base_kb) - base_kb) * 1024
            return
        import psutil

        proc = psutil.Process()
        base = proc.memory_info().rss
        peak = [base]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.001)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        self.method = "CPU: growth of the RSS sampled every 1 ms by a background thread (psutil) over the RSS before"
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            peak[0] = max(peak[0], proc.memory_info().rss)
            self.peak_bytes = int(peak[0] - base)


# --- models and inputs ----------------------------------------------------------------------------
@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Create every parameter on the meta device (buffers stay real: rotary tables are computed)."""
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def materialize(module: nn.Module, device: torch.device | str, dtype: torch.dtype, seed: int = 0) -> nn.Module:
    """Give meta parameters real storage with a cheap deterministic init (tied weights stay tied).

    Matrices get a seeded N(0, 0.02^2) block of about a million values repeated over the whole
    tensor (memory-bound: seconds for 7B instead of minutes of random init); norm weights are
    ones and biases zeros. Values matter for nothing but numerical sanity: accuracy is not measured.
    """
    gen = torch.Generator().manual_seed(seed)
    block = (torch.randn(1 << 20 | 7, generator=gen) * 0.02).to(device=device, dtype=dtype)
    done: dict[int, nn.Parameter] = {}
    for mod_name, mod in module.named_modules():
        for name, p in list(mod._parameters.items()):
            if p is None:
                continue
            if id(p) in done:
                mod._parameters[name] = done[id(p)]
                continue
            t = torch.empty(p.shape, device=device, dtype=dtype)
            if name == "bias":
                t.zero_()
            elif p.ndim == 1:  # norm scales, the image newline
                t.fill_(1.0)
            else:
                flat = t.view(-1)
                for start in range(0, flat.numel(), block.numel()):
                    n = min(block.numel(), flat.numel() - start)
                    flat[start : start + n].copy_(block[:n])
            new = nn.Parameter(t, requires_grad=False)
            done[id(p)] = new
            mod._parameters[name] = new
    module.to(device)  # buffers (rotary tables, position ids) follow
    return module


def arch_config(name: str, tokens_per_frame: int | None = None):
    """The shipped config of a real architecture (SDPA), optionally with another frame grid."""
    from adatp.models.configs import load_architecture_config

    config = load_architecture_config(name)
    if tokens_per_frame is not None and config.model_type == "llava_onevision":  # Qwen-VL: the inputs set the grid
        side = math.isqrt(tokens_per_frame)
        if side * side != tokens_per_frame or side < 1:
            raise ConfigError(f"--tokens-per-frame must be a square (the pooled grid is g x g), got {tokens_per_frame}")
        v = config.vision_config
        patches = v.image_size // v.patch_size
        if math.ceil(patches / 2) != side:
            v.image_size = 2 * side * v.patch_size
    config._attn_implementation = "sdpa"
    config.text_config._attn_implementation = "sdpa"
    config.vision_config._attn_implementation = "sdpa"
    return config


def build_arch_model(name: str, device: torch.device, dtype: torch.dtype, tokens_per_frame: int | None = None):
    """A real-size model of a shipped architecture with cheap deterministic weights (parameters built on meta)."""
    import transformers
    from transformers import GenerationConfig

    from adatp.adapters.base import supported_model_types

    config = arch_config(name, tokens_per_frame)
    model_class = getattr(transformers, supported_model_types()[config.model_type])
    with _parameters_on_meta():
        model = model_class(config)
    materialize(model, device, dtype)
    model.generation_config = GenerationConfig(eos_token_id=None, pad_token_id=0)
    return model.eval()


def arch_inputs(config, frames: int, text_tokens: int, device: torch.device, dtype: torch.dtype, seed: int = 0) -> dict:
    """LLaVA-OneVision inputs from a config alone (no model): the adapter's ``synthetic_inputs`` on a
    stand-in that carries only the config. Other families: :func:`family_inputs`."""
    from adatp.adapters.llava_onevision import LlavaOnevisionAdapter

    stand_in = LlavaOnevisionAdapter.__new__(LlavaOnevisionAdapter)
    stand_in.model = type("ConfigOnly", (), {"config": config})()
    inputs = stand_in.synthetic_inputs(frames, text_tokens, seed=seed, text_before=ARCH_TEXT_BEFORE)
    return _to(inputs, device, dtype)


def family_inputs(model, frames: int, text_tokens: int, device: torch.device, dtype: torch.dtype,
                  tokens_per_frame: int | None = None) -> dict:
    """Synthetic inputs of ``model``'s family: :func:`arch_inputs` for LLaVA, else the adapter's."""
    from adatp.adapters.base import get_adapter

    if model.config.model_type == "llava_onevision":
        tokens_per_frame = None  # arch_config already resized the tower to the asked grid
    inputs = get_adapter(model).synthetic_inputs(frames, text_tokens, tokens_per_frame, text_before=ARCH_TEXT_BEFORE)
    return _to(inputs, device, dtype)


def _to(inputs: dict, device: torch.device, dtype: torch.dtype) -> dict:
    """Tensors to ``device``; pixel values also to ``dtype``."""
    return {k: v.to(device=device, dtype=dtype) if k.startswith("pixel_values") else v.to(device) for k, v in inputs.items()}


def model_inputs(model_dir: Path, frames: int, device: torch.device, dtype: torch.dtype) -> dict:
    """prepare_inputs on a deterministic synthetic clip and a fixed question."""
    from adatp.inputs import prepare_inputs
    from adatp.video.synthetic import make_synthetic_frames

    clip = make_synthetic_frames(num_frames=frames, size=(224, 224), seed=0, scenes=min(3, frames))
    inputs = prepare_inputs(model_dir, clip, DEFAULT_QUESTION)
    return _to(dict(inputs), device, dtype)


def default_model_dir() -> tuple[Path, str]:
    """adatp-tiny (trained) if its weights ship, else its base (same architecture: same timings)."""
    from adatp.organism.build import adatp_tiny_dir, trained_weights_hash

    if trained_weights_hash() is not None:
        return adatp_tiny_dir(), "adatp-tiny"
    return adatp_tiny_dir(require_trained=False), "adatp-tiny-base"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in names:
        raise ConfigError(f"--dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    return names[dtype]


# --- the benchmark --------------------------------------------------------------------------------
@dataclass
class BenchConfig:
    methods: list[str]
    flops_ratios: list[float]
    model_dir: Path | None = None
    arch: str | None = None
    frames: int | None = None
    tokens_per_frame: int | None = None
    text_tokens: int = 64
    device: str = "auto"
    dtype: str = "auto"
    repeats: int = 3
    warmup: int = 1
    new_tokens: int = 16
    encode_once: bool = False


@dataclass
class BenchRun:
    """Everything measured: raw samples per spec, the probe's overhead and memory, the reports."""

    specs: list[Spec]
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    probe: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: list[list[str]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class SpeedBench:
    """Loads the model once, then runs the interleaved trials and the probes."""

    def __init__(self, cfg: BenchConfig) -> None:
        from adatp.methods.base import available_methods

        if cfg.repeats < 1:
            raise ConfigError(f"--repeats must be at least 1, got {cfg.repeats}")
        if cfg.warmup < 0:
            raise ConfigError(f"--warmup must be at least 0, got {cfg.warmup}")
        if cfg.new_tokens < 0:
            raise ConfigError(f"--new-tokens must be at least 0, got {cfg.new_tokens}")
        if cfg.frames is not None and cfg.frames < 1:
            raise ConfigError(f"--frames must be at least 1, got {cfg.frames}")
        if cfg.text_tokens < 2:
            raise ConfigError(f"--text-tokens must be at least 2, got {cfg.text_tokens}")
        if cfg.model_dir is not None and cfg.arch is not None:
            raise ConfigError("give --model or --arch, not both")
        self.cfg = cfg
        self.specs = build_specs(cfg.methods, cfg.flops_ratios, available_methods())
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        if cfg.arch is not None:
            from adatp.models.configs import ARCHITECTURES

            if cfg.arch not in ARCHITECTURES:
                raise ConfigError(f"unknown architecture {cfg.arch!r}; valid names: {', '.join(sorted(ARCHITECTURES))}")
        elif cfg.model_dir is not None and not (Path(cfg.model_dir) / "config.json").is_file():
            raise ConfigError(f"no model found at {cfg.model_dir}: expected a directory with config.json")
        self.model = None
        self.inputs: dict[str, torch.Tensor] = {}
        self.tokenizer = None
        self.model_info: dict[str, Any] = {}

    # -- setup
    def load(self, step: Callable[[str], None] = lambda s: None) -> None:
        cfg = self.cfg
        if cfg.arch is not None:
            step(f"building {cfg.arch} (random weights, meta + cheap init)")
            t0 = time.perf_counter()
            self.model = build_arch_model(cfg.arch, self.device, self.dtype, cfg.tokens_per_frame)
            frames = cfg.frames or 32
            self.inputs = family_inputs(self.model, frames, cfg.text_tokens, self.device, self.dtype, cfg.tokens_per_frame)
            self.model_info = {
                "source": "arch", "name": cfg.arch, "random_weights": True, "build_s": time.perf_counter() - t0,
                "note": "real-size architecture from the shipped config with cheap deterministic weights: "
                        "speed and memory only, accuracy is NOT measured",
            }
        else:
            from transformers import AutoTokenizer

            from adatp.pipeline import load_model

            if cfg.model_dir is not None:
                model_dir, name = Path(cfg.model_dir), Path(cfg.model_dir).name
            else:
                step("locating the built-in default model")
                model_dir, name = default_model_dir()
            dtype_name = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[self.dtype]
            step(f"loading {model_dir}")
            self.model = load_model(model_dir, dtype=dtype_name, device=str(self.device))
            if self.model.config.model_type == "llava_onevision":
                from adatp.adapters.base import get_adapter

                tpf = get_adapter(self.model).pooled_grid() ** 2
                if cfg.tokens_per_frame is not None and cfg.tokens_per_frame != tpf:
                    raise ConfigError(
                        f"--tokens-per-frame {cfg.tokens_per_frame}: {model_dir} takes {tpf} tokens a frame "
                        "(fixed by its vision tower); use --arch to change the grid"
                    )
            elif cfg.tokens_per_frame is not None:
                raise ConfigError("--tokens-per-frame: a model directory's preprocessing sets the grid; use --arch to change it")
            with contextlib.suppress(OSError, ValueError):
                self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
            frames = cfg.frames or (16 if cfg.model_dir is None else 32)
            self.inputs = model_inputs(model_dir, frames, self.device, self.dtype)
            self.model_info = {"source": "dir", "name": name, "path": str(model_dir)}
            if cfg.model_dir is None:
                self.model_info["note"] = (
                    "built-in default" + ("" if name == "adatp-tiny" else
                                          ": the trained adatp-tiny is missing, its base has the same architecture and timings"))
        self.frames = frames
        self.marks = Marks(self.device.type == "cuda")
        self._hooks = install_marks(self.model, self.marks)
        self._tower_cache = None
        if cfg.encode_once:
            step("encoding the video once (--encode-once)")
            self._encode_tower()

    def close(self) -> None:
        for h in getattr(self, "_hooks", []):
            h.remove()

    def input_info(self) -> dict[str, Any]:
        from adatp.adapters.base import get_adapter

        ids = self.inputs["input_ids"]
        layout = get_adapter(self.model).locate_video(ids, self.inputs).layout  # the adapter reads the grid
        num_video = int((ids == self.model.config.video_token_id).sum())
        return {
            "frames": self.frames, "grids": layout.num_frames, "tokens_per_frame": layout.tokens_per_frame,
            "grid": [layout.grid_h, layout.grid_w], "visual_tokens": layout.num_visual, "video_block_tokens": num_video,
            "seq_len": int(ids.shape[1]), "text_tokens": int(ids.shape[1]) - num_video,
            "pixels": list(self.inputs["pixel_values_videos"].shape),
        }

    # -- encode-once path
    def _encode_tower(self) -> None:
        from adatp.adapters.base import get_adapter

        self.marks.sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            self._tower_cache = get_adapter(self.model).encode_video_tower(self.inputs)
        self.marks.sync()
        self._tower_s = time.perf_counter() - t0

    def _encode_tail(self) -> dict[str, Any]:
        """The family's encoding tail on the cached tower output (LLaVA: projector, pooling, newline)."""
        from adatp.adapters.base import get_adapter

        return get_adapter(self.model).encode_video_tail(self._tower_cache, self.inputs)

    # -- one forward
    def _prefill(self) -> tuple[torch.Tensor, Any]:
        if self._tower_cache is None:
            out = self.model(**self.inputs, use_cache=True, logits_to_keep=1)
        else:
            self.marks.mark("vision_start")
            encoded = self._encode_tail()
            kwargs = {k: v for k, v in self.inputs.items() if k != "pixel_values_videos"}
            out = self.model(**kwargs, mm_encoder_outputs=encoded, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], out.past_key_values

    def trial(self, spec: Spec) -> dict[str, float | None]:
        """One timed prefill + decode of ``spec``; returns the metrics of this trial."""
        handle = None if spec.method == BASELINE else self._prune(spec, time_overhead=False)
        try:
            with torch.no_grad():
                self.marks.sync()
                self.marks.arm()
                self.marks.mark("start")
                logits, cache = self._prefill()
                self.marks.mark("end")
                self.marks.disarm()
                self.marks.sync()
                m = self.marks
                result: dict[str, float | None] = {
                    "vision_s": m.elapsed("vision_start", "vision_end"),
                    "llm_prefill_s": m.elapsed("llm_start", "llm_end"),
                    "ttft_s": m.elapsed("start", "end"),
                    "pre_llm_s": m.elapsed("start", "llm_start"),
                    "post_llm_s": m.elapsed("llm_end", "end"),
                }
                if self._tower_cache is not None:
                    result["vision_s"] = (result["vision_s"] or 0.0) + self._tower_s
                    result["ttft_s"] = (result["ttft_s"] or 0.0) + self._tower_s
                    result["pre_llm_s"] = (result["pre_llm_s"] or 0.0) + self._tower_s
                decode_s, steps = self._decode(logits, cache)
                result["decode_s"] = decode_s
                result["decode_tok_s"] = steps / decode_s if steps and decode_s else None
        finally:
            if handle is not None:
                handle.remove()
        return result

    def _decode(self, logits: torch.Tensor, cache: Any) -> tuple[float | None, int]:
        steps = self.cfg.new_tokens
        if steps == 0:
            return None, 0
        token = logits.argmax(-1, keepdim=True)
        self.marks.sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            out = self.model(input_ids=token, past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            token = out.logits[:, -1].argmax(-1, keepdim=True)
        self.marks.sync()
        return time.perf_counter() - t0, steps

    def _prune(self, spec: Spec, time_overhead: bool):
        from adatp.api import prune

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return prune(self.model, spec.method, tokenizer=self.tokenizer, time_overhead=time_overhead,
                         **spec.prune_options())

    def probe_overhead(self, spec: Spec) -> dict[str, Any]:
        """A separate, untimed prefill with ``time_overhead=True``: the summed pruning overhead
        (synchronised at every stage, so nothing else is timed in it) and the prune report."""
        if spec.method == BASELINE:
            return {"overhead_s": 0.0, "report": None}
        handle = self._prune(spec, time_overhead=True)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._prefill()
            report = handle.last_report
        finally:
            handle.remove()
        return {"overhead_s": report.overhead_s if report is not None else None, "report": report}

    def probe_memory(self, spec: Spec) -> dict[str, Any]:
        """A separate, untimed prefill measuring peak memory growth."""
        handle = None if spec.method == BASELINE else self._prune(spec, time_overhead=False)
        meter = PeakMemory(self.device)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with meter.measure():
                    logits, cache = self._prefill()
                del logits, cache
        finally:
            if handle is not None:
                handle.remove()
        return {"peak_memory_bytes": meter.peak_bytes, "memory_method": meter.method}

    def vanilla_flops(self):
        """Analytic FLOPs of the unpruned prefill (the runtime's own accounting, no stage)."""
        from adatp.adapters.base import get_adapter
        from adatp.runtime.report import FlopsReport

        adapter = get_adapter(self.model)
        info = self.input_info()
        num_visual = info["visual_tokens"]
        return FlopsReport.compute([], num_visual, info["seq_len"] - num_visual, adapter.decoder_dims(),
                                   adapter.vision_dims(), info["grids"])

    def run(self, on_trial: Callable[[str], None] = lambda s: None) -> BenchRun:
        cfg = self.cfg
        run = BenchRun(self.specs)
        run.samples = {s.label: {k: [] for k in METRICS + DETAIL_METRICS} for s in self.specs}
        current_round, round_labels = -1, []
        for rnd, spec, is_warmup in trial_order(self.specs, cfg.repeats, cfg.warmup):
            if rnd != current_round:
                if round_labels:
                    run.order.append(round_labels)
                current_round, round_labels = rnd, []
            on_trial(f"{'warm-up' if is_warmup else f'repeat {rnd - cfg.warmup + 1}/{cfg.repeats}'}: {spec.label}")
            result = self.trial(spec)
            round_labels.append(spec.label + (" (warm-up)" if is_warmup else ""))
            if not is_warmup:
                for k, v in result.items():
                    run.samples[spec.label][k].append(v)
        if round_labels:
            run.order.append(round_labels)
        for spec in self.specs:
            on_trial(f"overhead probe: {spec.label}")
            run.probe[spec.label] = self.probe_overhead(spec)
        # Every timing is done: from here glibc may return large freed blocks to the OS at once, so
        # the resident-set peak of each memory probe counts its own live tensors, not cached heap.
        run.info["malloc_limited"] = self.device.type == "cpu" and _limit_malloc_caching()
        for spec in self.specs:
            on_trial(f"memory probe: {spec.label}")
            run.probe[spec.label].update(self.probe_memory(spec))
        run.info["vanilla_flops"] = self.vanilla_flops()
        return run



# --- results ----------------------------------------------------------------------------------------
def environment(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    import transformers

    env: dict[str, Any] = {
        "device": device.type,
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "timer": "CUDA events recorded in hooks" if device.type == "cuda" else "time.perf_counter in hooks",
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def results_dict(bench: SpeedBench, run: BenchRun, command: list[str] | None = None) -> dict[str, Any]:
    """The JSON payload (schema ``adatp.bench.speed/1``)."""
    stats = {label: {k: summarize(v) for k, v in metrics.items()} for label, metrics in run.samples.items()}
    medians = {label: {k: stats[label][k]["median"] for k in METRICS} for label in stats}
    ratios = vs_vanilla(medians)
    vanilla_flops = run.info.get("vanilla_flops")
    runs = []
    for spec in run.specs:
        label = spec.label
        probe = run.probe.get(label, {})
        report = probe.get("report")
        flops = report.flops if report is not None else vanilla_flops
        ideal = 1.0 / flops.full_ratio if flops is not None and flops.full_ratio else None
        prefill_speedup = ratios[label]["speedup_llm_prefill_s"]
        llm = medians[label]["llm_prefill_s"]
        overhead = probe.get("overhead_s")
        entry = {
            "label": label,
            "method": spec.method,
            "flops_ratio": spec.flops_ratio,
            "samples": run.samples[label],
            "stats": stats[label],
            "vs_vanilla": ratios[label],
            "flops": flops.to_dict() if flops is not None else None,
            "ideal_prefill_speedup": ideal,
            "prefill_speedup_of_ideal": prefill_speedup / ideal if prefill_speedup and ideal else None,
            "overhead_s": overhead,
            "overhead_share_of_llm_prefill": overhead / llm if overhead is not None and llm else None,
            "peak_memory_bytes": probe.get("peak_memory_bytes"),
            "peak_memory_vs_vanilla": _ratio(probe.get("peak_memory_bytes"), run.probe.get(BASELINE, {}).get("peak_memory_bytes")),
            "kept_visual_tokens": report.stages[-1].kept if report is not None and report.stages else None,
            "visual_tokens_per_layer": report.visual_tokens_per_layer if report is not None else None,
            "stages": [s.to_dict() for s in report.stages] if report is not None else [],
        }
        runs.append(entry)
    memory_method = next((p.get("memory_method") for p in run.probe.values() if p.get("memory_method")), None)
    if memory_method and run.info.get("malloc_limited"):
        memory_method += " (separate untimed prefill per method, after every timing, with glibc returning blocks >128 KiB to the OS)"
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "environment": environment(bench.device, bench.dtype),
        "model": bench.model_info,
        "inputs": bench.input_info(),
        "settings": {
            "methods": list(dict.fromkeys(s.method for s in run.specs)),
            "flops_ratios": bench.cfg.flops_ratios,
            "repeats": bench.cfg.repeats,
            "warmup": bench.cfg.warmup,
            "new_tokens": bench.cfg.new_tokens,
            "encode_once": bench.cfg.encode_once,
            "order": "round-robin within each repeat, start rotated by one each repeat",
            "memory": memory_method,
            "overhead": "report.overhead_s from a separate time_overhead=True prefill (synchronised); not used for any timing",
            "vision": ("vision tower timed once per run, projector + pooling per trial (--encode-once)"
                       if bench.cfg.encode_once else "hooks: vision tower entry to projector exit, inside the prefill"),
        },
        "order": run.order,
        "runs": runs,
    }


def _ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def write_json(payload: dict[str, Any], path: str | Path) -> Path:
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


# --- scoring memory on one decoder layer ---------------------------------------------------------
def _limit_malloc_caching() -> bool:
    """Make glibc hand large freed blocks back to the OS, so RSS peaks measure live tensors only."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 128 * 1024)) and bool(libc.mallopt(m_trim_threshold, 128 * 1024))
    except (OSError, AttributeError):
        return False


def build_decoder_layer(arch: str, dtype: torch.dtype = torch.float32, seed: int = 0):
    """Layer 0 of ``arch``'s text decoder alone (cheap deterministic weights) and its rotary table."""
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RotaryEmbedding

    text = arch_config(arch).text_config
    text._attn_implementation = "sdpa"
    with _parameters_on_meta():
        layer = Qwen2DecoderLayer(text, layer_idx=0)
    materialize(layer, "cpu", dtype, seed)
    return layer.eval(), Qwen2RotaryEmbedding(text), text


def score_query_rows(layer: nn.Module, hidden: torch.Tensor, position_embeddings, num_query: int) -> torch.Tensor:
    """adatp's in-LLM scoring exactly as the runtime runs it at a stage layer: the adapter's q/k
    (input norm, q for the query rows only, k for all, RoPE) then ``query_row_attention``."""
    from adatp.adapters.llava_onevision import LlavaOnevisionAdapter
    from adatp.ops.importance import query_row_attention

    n = hidden.shape[1]
    rows = torch.arange(n - num_query, n)
    # query_key_states reads only the layer it is given; no model is needed for one layer alone.
    q, k, scaling = LlavaOnevisionAdapter.query_key_states(None, layer, hidden, position_embeddings, rows)
    return query_row_attention(q, k, rows, scaling)


def scoring_memory(
    arch: str = "llava-onevision-qwen2-7b-ov-hf",
    frames: int = 64,
    tokens_per_frame: int = 196,
    text_tokens: int = 100,
    with_forward: bool = True,
    sweep: Sequence[float] = (0.25, 0.5, 1.0),
    step: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Peak memory of one decoder layer's SDPA forward, of adatp's attention scoring, and of both.

    Everything fp32 on CPU. The scoring is measured alone at several sequence lengths to show how
    it grows (linearly in N for a fixed number of query rows), against what an N x N attention
    matrix would need.
    """
    if frames < 1 or tokens_per_frame < 1 or text_tokens < 2:
        raise ConfigError("frames and tokens per frame must be >= 1, text tokens >= 2")
    malloc_limited = _limit_malloc_caching()
    step(f"building one decoder layer of {arch}")
    layer, rotary, text = build_decoder_layer(arch)
    heads, kv_heads = text.num_attention_heads, text.num_key_value_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    gen = torch.Generator().manual_seed(0)

    def inputs(n: int):
        hidden = torch.randn(1, n, text.hidden_size, generator=gen)
        cos, sin = rotary(hidden, torch.arange(n)[None])
        return hidden, (cos, sin)

    def measure(fn) -> tuple[int, float, str]:
        meter = PeakMemory(torch.device("cpu"))
        t0 = time.perf_counter()
        with torch.no_grad(), meter.measure():
            result = fn()
        seconds = time.perf_counter() - t0
        del result
        return int(meter.peak_bytes or 0), seconds, meter.method

    full_n = frames * tokens_per_frame + 1 + text_tokens
    rows = []
    for frac in sweep:
        f = max(1, round(frames * frac))
        n = f * tokens_per_frame + 1 + text_tokens
        step(f"scoring alone, {f} frames ({n} tokens)")
        hidden, pe = inputs(n)
        peak, secs, method = measure(lambda: score_query_rows(layer, hidden, pe, text_tokens))
        rows.append({"frames": f, "seq_len": n, "scoring_peak_bytes": peak, "scoring_s": secs,
                     "nxn_fp32_bytes_all_heads": heads * n * n * 4,
                     "bytes_per_token": peak / n})
        del hidden, pe
    out: dict[str, Any] = {
        "schema": "adatp.bench.scoring_memory/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "architecture": arch,
        "layer": {"class": type(layer).__name__, "hidden": text.hidden_size, "heads": heads, "kv_heads": kv_heads,
                  "head_dim": head_dim, "intermediate": text.intermediate_size,
                  "parameters": sum(p.numel() for p in layer.parameters())},
        "inputs": {"frames": frames, "tokens_per_frame": tokens_per_frame, "visual_tokens": frames * tokens_per_frame,
                   "text_tokens": text_tokens, "seq_len": full_n, "query_rows": text_tokens, "dtype": "float32"},
        "environment": environment(torch.device("cpu"), torch.float32),
        "memory_method": method,
        "malloc_large_blocks_returned_to_os": malloc_limited,
        "scoring_sweep": rows,
        "nxn_fp32_bytes_all_heads": heads * full_n * full_n * 4,
        "nxn_fp32_bytes_one_head": full_n * full_n * 4,
        "scoring_bound_bytes": _scoring_bound(full_n, text.hidden_size, kv_heads, head_dim, text_tokens),
    }
    if with_forward:
        hidden, pe = inputs(full_n)
        step(f"vanilla layer forward ({full_n} tokens, SDPA)")
        out["forward_peak_bytes"], out["forward_s"], _ = measure(
            lambda: layer(hidden, attention_mask=None, position_embeddings=pe)
        )

        def both():
            scores = score_query_rows(layer, hidden, pe, text_tokens)
            return scores, layer(hidden, attention_mask=None, position_embeddings=pe)

        step(f"scoring + the same forward ({full_n} tokens)")
        out["scoring_plus_forward_peak_bytes"], out["scoring_plus_forward_s"], _ = measure(both)
        out["scoring_adds_bytes"] = out["scoring_plus_forward_peak_bytes"] - out["forward_peak_bytes"]
    return out


def _scoring_bound(n: int, hidden: int, kv_heads: int, head_dim: int, num_query: int, heads_per_chunk: int = 8) -> int:
    """Order of the scoring's fp32 temporaries: normed input (n x D), keys before/after RoPE, one
    chunk of repeated keys, and a few (chunk x q x n) logits tensors. Linear in n for fixed q."""
    return 4 * (n * hidden + 3 * kv_heads * n * head_dim + heads_per_chunk * n * head_dim
                + 3 * heads_per_chunk * num_query * n)
