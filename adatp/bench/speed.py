"""``adatp bench speed``: measured cost of each pruning method against vanilla, in the same run.

What one *trial* measures (one method at one FLOPs target, one prefill and a short decode):

- ``vision_s``: the vision encoding, timestamped by hooks at the tower's entry and at the exit of
  the module that outputs the video tokens (LLaVA: the projector; Qwen-VL: the merger) inside the
  prefill (the same pixels every method sees; pruning never touches it);
- ``llm_prefill_s``: the language model call, timestamped by a pre-hook registered *before*
  adatp's own hooks and a post-hook at its exit, so it holds the decoder layers plus every pruning
  stage on the LLM path (what pruning is meant to make cheaper);
- ``ttft_s``: the whole prefill forward with the video (embeddings, vision, pruning, LLM, lm_head
  on the last position): the time to the first token's logits;
- ``decode_tok_s``: greedy tokens per second over ``new_tokens`` steps on the prefill's cache.

Timestamps come from hooks (:mod:`adatp.bench.timing`). Methods are interleaved round-robin inside
every repeat, with the starting method rotated each repeat (:mod:`adatp.bench.trials`), so drift
hits every method alike.

After every timed trial, a separate *probe* prefill per method runs with ``time_overhead=True`` to
sum adatp's pruning overhead (it synchronises at every stage, so nothing else is timed there), and
one more per method measures peak memory (:mod:`adatp.bench.memory`).

``--encode-once`` (for big models on CPU), every family: the vision tower's output is shared by
every forward of the run (:func:`adatp.runtime.encode_cache.reuse_outputs`; hooks on the tower still
run, so adatp sees the same features as in a normal prefill) and its one real call is timed. Each
trial then runs the rest of the video encoding where the family has one outside the tower (LLaVA:
the projector and pooling); Qwen-VL's tower holds its merger, so there the whole encoding is shared.
``vision_s``, ``ttft_s`` and ``pre_llm_s`` add the tower's one time to the trial's; the JSON says so.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from adatp.bench.load import resolve_device, resolve_dtype
from adatp.bench.memory import PeakMemory, limit_malloc_caching
from adatp.bench.timing import Marks, install_marks
from adatp.bench.trials import BASELINE, DETAIL_METRICS, METRICS, Spec, build_specs, trial_order
from adatp.errors import ConfigError


@dataclass
class BenchConfig:
    methods: list[str]
    flops_ratios: list[float]
    model_dir: Path | None = None
    arch: str | None = None
    frames: int | None = None
    tokens_per_frame: int | None = None
    text_tokens: int = 64
    text_layers: int | None = None
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


class _TowerDone(Exception):
    """Ends the forward that times the tower once (--encode-once): nothing after the tower is needed."""


def _stop_forward(module, args, output) -> None:
    raise _TowerDone


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
            if cfg.text_layers is not None:
                from adatp.bench.arch import arch_config

                arch_config(cfg.arch, text_layers=cfg.text_layers)  # the range check, before any weight exists
        elif cfg.text_layers is not None:
            raise ConfigError("--text-layers cuts a real-size architecture: give it with --arch")
        elif cfg.model_dir is not None and not (Path(cfg.model_dir) / "config.json").is_file():
            raise ConfigError(f"no model found at {cfg.model_dir}: expected a directory with config.json")
        self.model = None
        self.inputs: dict[str, torch.Tensor] = {}
        self.tokenizer = None
        self.model_info: dict[str, Any] = {}
        self._shared = contextlib.ExitStack()  # --encode-once: the tower's memo, undone by close()
        self._tower_s: float | None = None
        self.tower_calls: dict[str, int] | None = None  # --encode-once: {"computed": 1, "reused": n}

    # -- setup
    def load(self, step: Callable[[str], None] = lambda s: None) -> None:
        from adatp.bench.load import load_arch, load_dir

        cfg = self.cfg
        if cfg.arch is not None:
            step(f"building {cfg.arch} (random weights, meta + cheap init)")
            subject = load_arch(cfg.arch, cfg.frames, cfg.tokens_per_frame, cfg.text_tokens, self.device, self.dtype,
                                cfg.text_layers)
        else:
            subject = load_dir(cfg.model_dir, cfg.frames, cfg.tokens_per_frame, self.device, self.dtype, step)
        self.model, self.inputs, self.frames = subject.model, subject.inputs, subject.frames
        self.tokenizer, self.model_info = subject.tokenizer, subject.info
        self.marks = Marks(self.device.type == "cuda")
        self._hooks = install_marks(self.model, self.marks)
        if cfg.encode_once:
            step("encoding the video once (--encode-once)")
            self._encode_once()

    def close(self) -> None:
        for h in getattr(self, "_hooks", []):
            h.remove()
        self._shared.close()  # the tower's own forward is back

    def input_info(self) -> dict[str, Any]:
        from adatp.families import get_adapter

        ids = self.inputs["input_ids"]
        adapter = get_adapter(self.model)
        layout = adapter.locate_video(ids, self.inputs).layout  # the adapter reads the grid
        num_video = int((ids == adapter.processor.video_token_id(self.model.config)).sum())
        return {
            "frames": self.frames, "grids": layout.num_frames, "tokens_per_frame": layout.tokens_per_frame,
            "grid": [layout.grid_h, layout.grid_w], "visual_tokens": layout.num_visual, "video_block_tokens": num_video,
            "seq_len": int(ids.shape[1]), "text_tokens": int(ids.shape[1]) - num_video,
            "pixels": list(adapter.processor.video_pixels(self.inputs).shape),
        }

    # -- encode-once path
    def _encode_once(self) -> None:
        """Share the vision tower's output between every forward of the run and time its one real call.

        The tower's forward is memoised (:func:`adatp.runtime.encode_cache.reuse_outputs`: hooks still
        run, outputs are bit-identical); a first prefill on the run's inputs stops as soon as the tower
        has run, and ``_tower_s`` is that call, from the tower's entry to its exit.
        """
        from adatp.families import get_adapter
        from adatp.runtime.encode_cache import reuse_outputs

        tower = get_adapter(self.model).vision_tower()
        if tower is None:
            raise ConfigError(f"--encode-once: the adapter of {type(self.model).__name__} names no vision tower")
        self.tower_calls = self._shared.enter_context(reuse_outputs(tower))
        stop = tower.register_forward_hook(_stop_forward)  # runs after the tower_end mark
        try:
            with torch.no_grad():
                self.marks.sync()
                self.marks.arm()
                with contextlib.suppress(_TowerDone):
                    self._prefill()  # the very call every trial makes, so the memo matches theirs
                self.marks.disarm()
                self.marks.sync()
        finally:
            stop.remove()
        self._tower_s = self.marks.elapsed("vision_start", "tower_end")

    def vision_note(self) -> str:
        """What ``vision_s`` holds (the JSON's ``settings.vision``)."""
        if not self.cfg.encode_once:
            return "hooks: vision tower entry to the exit of the module that outputs the video tokens, inside the prefill"
        from adatp.families import get_adapter

        tower, projected = get_adapter(self.model).vision_modules()
        if any(m is projected for m in tower.modules()):
            return ("vision tower timed once per run (--encode-once); it holds the module that outputs the video "
                    "tokens (Qwen-VL: the merger), so the whole video encoding is timed once and every trial reuses it")
        return "vision tower timed once per run, the rest of the video encoding (projector + pooling) per trial (--encode-once)"

    # -- one forward
    def _prefill(self) -> tuple[torch.Tensor, Any]:
        out = self.model(**self.inputs, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], out.past_key_values

    @contextlib.contextmanager
    def _pruned(self, spec: Spec, time_overhead: bool = False) -> Iterator[Any]:
        """``spec``'s method installed on the model for the block (None for vanilla), removed after."""
        if spec.method == BASELINE:
            yield None
            return
        from adatp.api import prune

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            handle = prune(self.model, spec.method, tokenizer=self.tokenizer, time_overhead=time_overhead,
                           **spec.prune_options())
        try:
            yield handle
        finally:
            handle.remove()

    def trial(self, spec: Spec) -> dict[str, float | None]:
        """One timed prefill + decode of ``spec``; returns the metrics of this trial."""
        with self._pruned(spec), torch.no_grad():
            self.marks.sync()
            self.marks.arm()
            self.marks.mark("start")
            logits, cache = self._prefill()
            self.marks.mark("end")
            self.marks.disarm()
            self.marks.sync()
            m = self.marks
            # A tower whose output is reused never runs a merger inside it: the stage ends at its exit.
            vision_end = "vision_end" if "vision_end" in m.stamps else "tower_end"
            result: dict[str, float | None] = {
                "vision_s": m.elapsed("vision_start", vision_end),
                "llm_prefill_s": m.elapsed("llm_start", "llm_end"),
                "ttft_s": m.elapsed("start", "end"),
                "pre_llm_s": m.elapsed("start", "llm_start"),
                "post_llm_s": m.elapsed("llm_end", "end"),
            }
            if self._tower_s is not None:
                for k in ("vision_s", "ttft_s", "pre_llm_s"):
                    result[k] = (result[k] or 0.0) + self._tower_s
            decode_s, steps = self._decode(logits, cache)
            result["decode_s"] = decode_s
            result["decode_tok_s"] = steps / decode_s if steps and decode_s else None
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

    def probe_overhead(self, spec: Spec) -> dict[str, Any]:
        """A separate, untimed prefill with ``time_overhead=True``: the summed pruning overhead
        (synchronised at every stage, so nothing else is timed in it) and the prune report."""
        if spec.method == BASELINE:
            return {"overhead_s": 0.0, "report": None}
        with self._pruned(spec, time_overhead=True) as handle, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._prefill()
            report = handle.last_report
        return {"overhead_s": report.overhead_s if report is not None else None, "report": report}

    def probe_memory(self, spec: Spec) -> dict[str, Any]:
        """A separate, untimed prefill measuring peak memory growth."""
        meter = PeakMemory(self.device)
        with self._pruned(spec), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with meter.measure():
                logits, cache = self._prefill()
            del logits, cache
        return {"peak_memory_bytes": meter.peak_bytes, "memory_method": meter.method}

    def vanilla_flops(self):
        """Analytic FLOPs of the unpruned prefill (the runtime's own accounting, no stage)."""
        from adatp.families import get_adapter
        from adatp.runtime.report import FlopsReport

        adapter = get_adapter(self.model)
        info = self.input_info()
        num_visual = info["visual_tokens"]
        patch_grid = adapter.locate_video(self.inputs["input_ids"], self.inputs).patch_grid
        return FlopsReport.compute([], num_visual, info["seq_len"] - num_visual, adapter.decoder_dims(),
                                   adapter.vision_dims(patch_grid), info["grids"])

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
        run.info["malloc_limited"] = self.device.type == "cpu" and limit_malloc_caching()
        for spec in self.specs:
            on_trial(f"memory probe: {spec.label}")
            run.probe[spec.label].update(self.probe_memory(spec))
        run.info["vanilla_flops"] = self.vanilla_flops()
        return run
