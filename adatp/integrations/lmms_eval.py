"""lmms-eval plug-in: ``python -m lmms_eval --model adatp --model_args pretrained=DIR,method=adatp,...``.

Registered through the entry-point group ``lmms_eval.models`` (pyproject.toml), which lmms-eval
0.6+ reads at start-up (``ModelRegistryV2.load_entrypoint_manifests``): :func:`manifest` returns
the ``ModelManifest`` naming :class:`AdaTPModel` as the simple (``doc_to_visual`` + ``doc_to_text``)
implementation of ``adatp``. Nothing here is imported by adatp's core; it needs
``pip install "adatp[lmms-eval]"``.

Model arguments (``--model_args``, comma separated):
    pretrained: a local checkpoint directory of any family adatp supports.
    method: a pruning method (``adatp.available_methods()``), or ``none`` for the unpruned model.
    flops_ratio / retention / schedule: the target (one is needed unless method=none).
    max_frames_num: frames sampled uniformly from each video (default 32).
    device: ``cuda`` (default when available), ``cuda:N`` or ``cpu``; dtype: ``float32``,
        ``bfloat16`` or ``float16`` (default bfloat16 on CUDA, float32 on CPU).
    relevance: as ``adatp.prune`` (default: the model's own scorer when its directory ships one).
    any other key: the method's own option (e.g. ``alpha=0`` for AdaTP).

Each sample's cost lands in lmms-eval's logged samples (``--log_samples``), under
``token_counts``: ``input_tokens``, ``output_tokens``, and ``adatp_num_visual`` (visual tokens
before pruning), ``adatp_kept_tokens`` (after the last stage), ``adatp_kept_per_stage`` ([layer,
kept] pairs), ``adatp_flops_visual_ratio`` and ``adatp_flops_full_ratio`` (analytic FLOPs against
the unpruned model; 1.0 and all tokens kept for method=none).

Generation is greedy. A task can ask for the multiple-choice rule of ``adatp eval mcq`` with the
generation argument ``adatp_options_field: FIELD`` (the doc field listing the options): one new
token, the option letter with the highest first-token logit among the doc's letters, exactly as
:func:`adatp.eval.harness.answer_item` picks it. The local task ``adatp_mcq`` does so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms

MODEL_ID = "adatp"
#: generation argument naming the doc field that lists a multiple-choice item's options
OPTIONS_FIELD_KEY = "adatp_options_field"
#: keys of lmms-eval's generation kwargs that greedy decoding has no use for
_IGNORED_GEN_KWARGS = ("temperature", "top_p", "top_k", "num_beams", "do_sample", "image_aspect_ratio")


def manifest():
    """The entry point's payload: ``adatp`` -> :class:`AdaTPModel` (a simple model)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=f"{__name__}.AdaTPModel")


@dataclass
class AdaTPTokenCounts(TokenCounts):
    """lmms-eval's per-sample token counts plus what pruning did on the sample."""

    adatp: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), **{f"adatp_{k}": v for k, v in self.adatp.items()}}


def _model_arg(value: Any) -> Any:
    """lmms-eval turns ``1`` into an int and ``none`` stays a string; normalise for adatp.prune."""
    if isinstance(value, str) and value.lower() in ("none", "null"):
        return None
    return value


class AdaTPModel(lmms):
    """A video LLM of any family adatp supports, pruned by ``adatp.prune`` on every prefill."""

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        method: str = "adatp",
        flops_ratio: float | None = None,
        retention: float | None = None,
        schedule: str | None = None,
        relevance: str | None = None,
        max_frames_num: int = 32,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | str = 1,
        max_batch_size: int | None = None,
        **method_options: Any,
    ) -> None:
        super().__init__()
        from transformers import AutoTokenizer

        from adatp.errors import ConfigError
        from adatp.methods.base import available_methods
        from adatp.pipeline import load_model

        if int(batch_size) != 1:
            raise ConfigError(f"the adatp model runs one sample at a time: use --batch_size 1, not {batch_size}")
        method = str(method)
        if method != "none" and method not in available_methods():
            raise ConfigError(f"unknown method {method!r}; methods: none, {', '.join(available_methods())}")
        self.method = method
        options = {"flops_ratio": _model_arg(flops_ratio), "retention": _model_arg(retention),
                   "schedule": _model_arg(schedule), "relevance": _model_arg(relevance),
                   **{k: _model_arg(v) for k, v in method_options.items()}}
        self.prune_options = {k: v for k, v in options.items() if v is not None}
        if method != "none" and not any(k in self.prune_options for k in ("flops_ratio", "retention", "schedule")):
            raise ConfigError(f"method {method!r} needs a target: flops_ratio=, retention= or schedule=")
        if method != "none":  # the method's own checks (NaN included) before the model loads
            from adatp.methods.base import build_method
            from adatp.ops.schedule import parse_schedule

            own = {k: v for k, v in self.prune_options.items() if k != "relevance"}
            if isinstance(own.get("schedule"), str):
                own["schedule"] = parse_schedule(own["schedule"])
            build_method(method, **own)
        self.max_frames_num = int(max_frames_num)
        if self.max_frames_num < 1:
            raise ConfigError(f"max_frames_num must be >= 1, got {max_frames_num}")

        self.accelerator = None
        rank, world, local_rank = 0, 1, 0
        try:
            from accelerate import Accelerator

            accelerator = Accelerator()
            if accelerator.num_processes > 1:
                self.accelerator = accelerator
                rank, world, local_rank = accelerator.process_index, accelerator.num_processes, accelerator.local_process_index
        except ImportError:
            pass
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if world > 1 and str(device) == "cuda":
            device = f"cuda:{local_rank}"  # one GPU per process
        self._device = str(device)
        self._dtype = dtype or ("bfloat16" if self._device.startswith("cuda") else "float32")
        self._rank, self._world_size = rank, world

        self.pretrained = str(Path(pretrained).expanduser())
        self.model = load_model(self.pretrained, dtype=self._dtype, device=self._device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.pretrained)

    # -- lmms-eval's interface -------------------------------------------------------------

    @property
    def device(self) -> str:
        return self._device

    @property
    def batch_size(self) -> int:
        return 1

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        """Greedy answers; with ``adatp_options_field`` in the generation kwargs, the option letter
        with the highest first-token logit among the doc's options (one new token)."""
        from tqdm import tqdm

        results = []
        for request in tqdm(requests, desc="adatp generate_until", disable=self.rank != 0):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id]
            inputs = self._inputs(context, doc_to_visual(doc))
            gen_kwargs = dict(gen_kwargs or {})
            options_field = gen_kwargs.pop(OPTIONS_FIELD_KEY, None)
            if options_field is not None:
                text, new_tokens, report = self._pick_option(inputs, len(doc[options_field]))
            else:
                text, new_tokens, report = self._generate(inputs, gen_kwargs)
            results.append(GenerationResult(text, self._counts(inputs, new_tokens, report)))
        return results

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """(log-probability of the continuation, whether greedy decoding writes it), pruned as in
        ``generate_until``; one prefill per (doc, context) for one-token continuations (option
        letters), a teacher-forced ``generate()`` for longer ones."""
        from tqdm import tqdm

        first_step: dict[tuple, torch.Tensor] = {}  # the first step's logits of the last (doc, context)
        results = []
        for request in tqdm(requests, desc="adatp loglikelihood", disable=self.rank != 0):
            context, continuation, doc_to_visual, doc_id, task, split = request.args
            target = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            if not target:
                results.append((0.0, True))
                continue
            key = (task, split, doc_id, context)
            if len(target) == 1:
                if key not in first_step:
                    inputs = self._inputs(context, doc_to_visual(self.task_dict[task][split][doc_id]))
                    logits, _ = self._run(inputs, max_new_tokens=1)
                    first_step = {key: logits[0]}
                logits = first_step[key]
                logprobs = torch.log_softmax(logits, dim=-1)
                results.append((float(logprobs[target[0]]), int(logits.argmax()) == target[0]))
                continue
            inputs = self._inputs(context, doc_to_visual(self.task_dict[task][split][doc_id]))
            prompt_len = inputs["input_ids"].shape[1]

            def forced(batch_id, ids, _target=target, _start=prompt_len):
                return [_target[min(len(ids) - _start, len(_target) - 1)]]

            steps, _ = self._run(inputs, max_new_tokens=len(target), prefix_allowed_tokens_fn=forced)
            total, greedy = 0.0, True
            for step_logits, token in zip(steps, target):
                total += float(torch.log_softmax(step_logits, dim=-1)[token])
                greedy = greedy and int(step_logits.argmax()) == token
            results.append((total, greedy))
        return results

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("the adatp model does not implement multi-round generation")

    # -- helpers ---------------------------------------------------------------------------

    def _frames(self, visuals: Any, question: str) -> np.ndarray:
        """One video's frames from what ``doc_to_visual`` returned (a path, or decoded frames); a
        video file is checked against the model's context before a frame is decoded."""
        from adatp.errors import InputError
        from adatp.eval.budget import check_video_fits
        from adatp.inputs import NO_VIDEO
        from adatp.video import read_video

        if isinstance(visuals, (list, tuple)):
            if len(visuals) != 1:
                raise InputError(f"adatp prunes one video per prompt; this sample has {len(visuals)} visual inputs"
                                 if visuals else NO_VIDEO)
            visuals = visuals[0]
        if isinstance(visuals, dict):  # e.g. {"video_path": ...} or {"path": ...}
            visuals = visuals.get("video_path") or visuals.get("path") or visuals.get("video")
        if isinstance(visuals, (str, Path)):
            check_video_fits(self.tokenizer, question, self.max_frames_num, video=visuals)
            return read_video(visuals, num_frames=self.max_frames_num)
        if isinstance(visuals, (np.ndarray, torch.Tensor)) and visuals.ndim == 4:
            return np.asarray(visuals)
        raise InputError(f"adatp needs a video (a file path or (T, H, W, 3) frames), got {type(visuals).__name__}: "
                         "image-only samples are not supported")

    def _inputs(self, context: str, visuals: Any) -> dict[str, torch.Tensor]:
        from adatp.families import inputs_to
        from adatp.inputs import PLACEHOLDERS, prepare_inputs

        for placeholder in PLACEHOLDERS:  # simple tasks may mark the media's place; adatp puts the video first
            context = context.replace(placeholder, "")
        batch = prepare_inputs(self.tokenizer, self._frames(visuals, context.strip()), context.strip())
        return inputs_to(batch, self.model, self._device)

    @torch.no_grad()
    def _run(self, inputs: dict, **generate_kwargs: Any) -> tuple[tuple[torch.Tensor, ...], Any]:
        """``generate()`` (pruned unless method=none): raw logits of every step, the prune report."""
        import adatp

        def call():
            out = self.model.generate(**inputs, do_sample=False, output_logits=True, return_dict_in_generate=True,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                                      **generate_kwargs)
            self._last_sequences = out.sequences
            return tuple(step[0].float() for step in out.logits)

        if self.method == "none":
            return call(), None
        with adatp.prune(self.model, self.method, **self.prune_options) as pruned:
            logits = call()
            return logits, pruned.last_report

    def _pick_option(self, inputs: dict, num_options: int) -> tuple[str, int, Any]:
        """``adatp eval mcq``'s rule: the highest first-token logit among the options' letters."""
        from adatp.tasks.mcq import LETTERS, letter_token_ids, picked_option

        letters = letter_token_ids(self.tokenizer, num_options)
        logits, report = self._run(inputs, max_new_tokens=1)
        return LETTERS[picked_option(logits[0], letters, num_options)], 1, report

    def _generate(self, inputs: dict, gen_kwargs: dict) -> tuple[str, int, Any]:
        until = gen_kwargs.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        max_new_tokens = int(gen_kwargs.pop("max_new_tokens", 128))
        if gen_kwargs.get("do_sample") or float(gen_kwargs.get("temperature", 0) or 0) > 0:
            warnings.warn("the adatp model decodes greedily: temperature / do_sample are ignored", stacklevel=3)
        for key in _IGNORED_GEN_KWARGS:
            gen_kwargs.pop(key, None)
        _, report = self._run(inputs, max_new_tokens=max_new_tokens, **gen_kwargs)
        new = self._last_sequences[0, inputs["input_ids"].shape[1]:].tolist()
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        for stop in until:
            if stop and stop in text:
                text = text.split(stop, 1)[0]
        return text, len(new), report

    def _counts(self, inputs: dict, new_tokens: int, report: Any) -> AdaTPTokenCounts:
        extra: dict[str, Any] = {"method": self.method}
        if report is not None:
            extra.update(
                num_visual=report.num_visual,
                kept_tokens=report.stages[-1].kept if report.stages else report.num_visual,
                kept_per_stage=[[s.layer, s.kept] for s in report.stages],
                flops_visual_ratio=round(report.flops.visual_ratio, 5),
                flops_full_ratio=round(report.flops.full_ratio, 5),
            )
        else:
            visual = _num_video_tokens(self.model, inputs)
            extra.update(num_visual=visual, kept_tokens=visual, kept_per_stage=[], flops_visual_ratio=1.0,
                         flops_full_ratio=1.0)
        return AdaTPTokenCounts(input_tokens=int(inputs["input_ids"].shape[1]), output_tokens=new_tokens, adatp=extra)


def _num_video_tokens(model, inputs: dict) -> int:
    config = model.config
    token = getattr(config, "video_token_index", None)
    token = token if token is not None else getattr(config, "video_token_id", None)
    return int((inputs["input_ids"] == token).sum()) if token is not None else 0
