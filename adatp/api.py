"""``adatp.prune(model, method=...)``: one call to prune a loaded model, undone by ``remove()``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from torch import nn

from adatp.families import get_adapter
from adatp.errors import ConfigError
from adatp.methods.base import build_method
from adatp.ops.schedule import check_target, validate_schedule
from adatp.relevance import RelevanceScorer, build_scorer
from adatp.runtime.pruner import PruningRuntime
from adatp.runtime.report import PruneReport

_ATTACHED = "_adatp_pruned"


class PrunedModel:
    """The handle ``adatp.prune`` returns: a context manager that keeps the model pruned inside.

    The model itself is pruned in place (its own ``generate()`` and ``forward`` are used);
    ``remove()`` (or leaving the ``with`` block) takes every hook away, after which outputs and
    the state dict are bit-identical to before. ``last_report`` describes the last video prefill.
    """

    def __init__(self, model: nn.Module, runtime: PruningRuntime, method_name: str, options: dict[str, Any]) -> None:
        self.model = model
        self.method = method_name
        self.options = options
        self._runtime = runtime
        self._active = True

    @property
    def last_report(self) -> PruneReport | None:
        """Report of the last pruned prefill (None before the first one)."""
        return self._runtime.last_report

    @property
    def active(self) -> bool:
        return self._active

    def remove(self) -> None:
        """Restore the model exactly (idempotent)."""
        if self._active:
            self._runtime.remove()
            if getattr(self.model, _ATTACHED, None) is self:
                delattr(self.model, _ATTACHED)
            self._active = False

    def __enter__(self) -> PrunedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self._active else "removed"
        return f"PrunedModel(method={self.method!r}, {state}, options={self.options})"


def prune(
    model: nn.Module,
    method: str = "adatp",
    *,
    retention: float | None = None,
    flops_ratio: float | None = None,
    schedule: list[tuple[int, float]] | str | None = None,
    relevance: str | RelevanceScorer | None = None,
    tokenizer: Any = None,
    time_overhead: bool = False,
    **method_options: Any,
) -> PrunedModel:
    """Prune the visual tokens of ``model`` with ``method`` until ``remove()`` is called.

    Args:
        model: a loaded model of a supported family (``LlavaOnevisionForConditionalGeneration``),
            with ``attn_implementation="sdpa"``.
        method: a registered method name (``adatp.available_methods()``).
        retention: final fraction of visual tokens; scales the schedule's shape (D8).
        flops_ratio: visual-only FLOPs target against vanilla; scales the shape per input (D8).
        schedule: explicit (layer, retention) stages, or a string "0:.75,2:.35,14:.2".
        relevance: None (the model's own trained scorer when its directory ships one, else
            uniform with a warning in the report), "uniform", "siglip:DIR", "model[:DIR]", or a
            scorer object.
        tokenizer: reads the question for the relevance scorer; by default loaded from
            ``model.name_or_path`` when a scorer is given.
        time_overhead: measure pruning overhead (synchronises the device; benchmarks only).
        **method_options: the method's own settings (e.g. ``alpha=0`` for AdaTP).
    Returns:
        A :class:`PrunedModel` handle, also usable as a context manager.
    """
    existing = getattr(model, _ATTACHED, None)
    if existing is not None and existing.active:
        raise ConfigError("this model is already pruned; call .remove() on the first handle before pruning again")
    check_target(retention, flops_ratio)
    if method == "none":
        _check_nothing_for_none(retention, flops_ratio, schedule, relevance, method_options)
    adapter = get_adapter(model)
    num_layers = adapter.decoder_dims().num_layers
    if isinstance(schedule, str):
        from adatp.ops.schedule import parse_schedule

        schedule = parse_schedule(schedule)
    if schedule is not None:
        schedule = validate_schedule(schedule, num_layers)
    pruning_method = build_method(method, schedule=schedule, retention=retention, flops_ratio=flops_ratio, **method_options)
    scorer = build_scorer(relevance, getattr(model, "name_or_path", None) or None)
    if scorer is not None and tokenizer is None:
        tokenizer = _tokenizer_for(model)
    runtime = PruningRuntime(model, adapter, pruning_method, scorer=scorer, tokenizer=tokenizer, time_overhead=time_overhead)
    runtime.install()
    options = {"retention": retention, "flops_ratio": flops_ratio, "schedule": schedule, **method_options}
    handle = PrunedModel(model, runtime, method, {k: v for k, v in options.items() if v is not None})
    setattr(model, _ATTACHED, handle)
    return handle


def _check_nothing_for_none(retention, flops_ratio, schedule, relevance, method_options: dict[str, Any]) -> None:
    """``method="none"`` prunes nothing: a target or an option given with it would be silently ignored."""
    given = [name for name, value in (("retention", retention), ("flops_ratio", flops_ratio), ("schedule", schedule),
                                      ("relevance", relevance)) if value is not None] + sorted(method_options)
    if given:
        raise ConfigError(f"method 'none' prunes nothing, so {', '.join(given)} would be ignored: drop it, or pick a method")


def _tokenizer_for(model: nn.Module) -> Any:
    path = getattr(model, "name_or_path", "") or ""
    if path and Path(path).is_dir():
        from adatp.relevance.trained import cached_tokenizer, directory_stamp

        try:
            return cached_tokenizer(str(path), directory_stamp(path))
        except (OSError, ValueError):
            pass
    warnings.warn("no tokenizer found next to the model: pass tokenizer= so the relevance scorer can read the question", stacklevel=3)
    return None
