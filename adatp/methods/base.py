"""The one small interface every pruning method implements, and the method registry.

A method sees the video once before the LLM (:meth:`PruningMethod.plan`), says at which layers it
prunes and how many visual tokens each stage keeps, and then, stage by stage, chooses which alive
tokens survive (:meth:`PruningMethod.select`). The runtime owns everything else: hooks, gathers,
positions, the KV cache, the report. Methods register themselves with :func:`register_method`.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from adatp.layout import VideoSpan
from adatp.errors import ConfigError
from adatp.ops.budgets import tokens_for_retention
from adatp.ops.flops import DecoderDims
from adatp.ops.schedule import Schedule, check_target, scale_to_flops_ratio, scale_to_retention, validate_schedule


@dataclass
class PrefillContext:
    """What a method may read before the LLM, for one video prompt.

    Attributes:
        span: where the video block sits and its (T, h, w) layout.
        tokens: (T, c, D) projected visual tokens at their grid positions (X in the spec).
        frame_features: (T, d_v) per-frame global features g_t, or None if not captured.
        frame_relevance: (T,) r_t = cos(text, frame), or None when relevance is uniform.
        relevance_source: the scorer's name ("uniform", "siglip:...", ...).
        query_text: the user's question as decoded from the prompt, if known.
        dims: the decoder's sizes (for FLOPs-targeted schedules).
        segment_threshold: the adapter's default tau_s for this tower.
        frame_feature_source: what ``frame_features`` hold: "patch-mean", "cls", "siglip-head"
            (the relevance scorer's pooled head, D6) or "missing".
        warnings: the prefill's warning list; a method appends what the report must show.
    """

    span: VideoSpan
    tokens: torch.Tensor
    frame_features: torch.Tensor | None
    frame_relevance: torch.Tensor | None
    relevance_source: str
    query_text: str | None
    dims: DecoderDims
    segment_threshold: float = 0.90
    frame_feature_source: str = "patch-mean"
    warnings: list[str] = field(default_factory=list)

    @property
    def num_visual(self) -> int:
        return self.span.layout.num_visual


@dataclass(frozen=True)
class StagePlan:
    """One resolved pruning stage: before decoder layer ``layer`` keep ``budget`` visual tokens.

    ``scoring`` names the signal the runtime must compute for :meth:`PruningMethod.select`:
    ``"query_rows"`` (AdaTP, D3), ``"last_row"`` (FastV) or ``None`` (no attention needed).
    ``score_layer`` is the decoder layer whose attention gives that signal: None means the stage's
    own layer (D1: layer k's q/k on its input); an earlier layer j < ``layer`` means layer j's
    q/k on layer j's input (after any stage at j), FastV's official "attention map of layer K-1"
    (D11). At ``layer == 0`` the runtime scores layer 0's input before the pre-LLM stage.
    """

    layer: int
    retention: float
    budget: int
    scoring: str | None = "query_rows"
    needs_hidden: bool = False  # pass the alive tokens' (n, D) states to select(hidden=...)
    score_layer: int | None = None  # layer whose attention scores this stage (None: ``layer``)

    def __post_init__(self) -> None:
        if self.score_layer is not None and not 0 <= self.score_layer <= self.layer:
            raise ConfigError(
                f"a stage at layer {self.layer} can be scored by layer {self.layer} or an earlier one, "
                f"got score_layer={self.score_layer}"
            )


@dataclass
class Selection:
    """What a stage keeps, and for merging methods what the dropped tokens are averaged into.

    Attributes:
        kept: (B,) int64 visual indices, ascending, a subset of the alive ones.
        merge_into: (n,) int64 per alive token: the slot 0..B-1 in ``kept`` whose token it is
            averaged into, or -1 when it is simply dropped; None for a plain pruning stage.
        weights: (n,) positive weights of the average (None: equal weights).
    """

    kept: torch.Tensor
    merge_into: torch.Tensor | None = None
    weights: torch.Tensor | None = None


def whole_video_tokens(name: str, alive: torch.Tensor, hidden: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
    """(T, c, D) tokens a pre-LLM merging method works on: the stage's ``hidden`` (n, D) when the
    runtime passed it, else ``tokens`` (the PrefillContext's projected tokens). Checks that every
    visual token is alive."""
    t, c, _ = tokens.shape
    if alive.shape[0] != t * c:
        raise ConfigError(f"{name} runs once, on the whole video ({t * c} tokens), got {alive.shape[0]}")
    return hidden.reshape(t, c, -1) if hidden is not None else tokens


class PromptPlan:
    """One prompt's plan: its stages and the method's per-prompt state (segments, budgets, ...).

    A method whose :meth:`PruningMethod.plan` returns a PromptPlan keeps nothing per prompt on
    itself: the runtime (and the vLLM plug-in) ask the plan, not the method, which tokens each stage
    keeps and what the report shows. Subclasses are dataclasses holding that state and override
    :meth:`select` (same contract as :meth:`PruningMethod.select`), :meth:`describe` and
    :meth:`kept_per_group`. Iterating a plan gives its stages.
    """

    stages: list[StagePlan]

    def __iter__(self):
        return iter(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    def __getitem__(self, index: int) -> StagePlan:
        return self.stages[index]

    def select(
        self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None, hidden: torch.Tensor | None = None
    ) -> torch.Tensor | Selection:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {}

    def kept_per_group(self, kept: torch.Tensor) -> list[int] | None:
        return None


class MethodPlan(PromptPlan):
    """The plan of a method whose ``plan()`` returns its stages as a list (its state on itself)."""

    def __init__(self, method: PruningMethod, stages: list[StagePlan]) -> None:
        self.method = method
        self.stages = stages

    def select(self, stage, alive, scores, hidden=None):
        extra = {} if hidden is None else {"hidden": hidden}
        return self.method.select(stage, alive, scores, **extra)

    def describe(self) -> dict[str, Any]:
        return self.method.describe()

    def kept_per_group(self, kept: torch.Tensor) -> list[int] | None:
        return self.method.kept_per_group(kept)


def check_finite_options(config: Any) -> None:
    """Every float option of a method's config is a finite number: NaN slips through every ``<`` and
    ``>`` check (``alpha=nan``, ``segment_threshold=nan``), so it is refused here, by name, for
    every method and every caller (API, command line, lmms-eval)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name} must be a finite number, got {value!r}")


@dataclass
class TargetConfig:
    """The cost target shared by every method: at most one of retention / flops_ratio.

    Attributes:
        schedule: (layer, retention) stages; None means the method's default shape.
        retention: final fraction of visual tokens kept; scales the schedule (D8).
        flops_ratio: visual-only FLOPs ratio against vanilla; scales the schedule (D8).
    """

    schedule: list[tuple[int, float]] | None = field(default=None, metadata={"help": "(layer, retention) stages"})
    retention: float | None = field(default=None, metadata={"help": "final fraction of visual tokens"})
    flops_ratio: float | None = field(default=None, metadata={"help": "visual-only FLOPs ratio vs vanilla"})

    def __post_init__(self) -> None:
        check_finite_options(self)
        check_target(self.retention, self.flops_ratio)
        if self.schedule is not None:
            self.schedule = validate_schedule([tuple(s) for s in self.schedule])

    def resolve(self, shape: Schedule, num_visual: int, dims: DecoderDims) -> Schedule:
        """The schedule for one input: ``shape`` scaled to the target, validated against depth."""
        base = self.schedule if self.schedule is not None else shape
        if self.retention is not None:
            base = scale_to_retention(base, self.retention)
        elif self.flops_ratio is not None:
            base = scale_to_flops_ratio(base, self.flops_ratio, num_visual, dims)
        return validate_schedule(base, dims.num_layers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class PruningMethod(ABC):
    """Base class of a pruning method. Override :meth:`plan` and :meth:`select`.

    Subclasses set ``name`` and ``config_class`` (a dataclass deriving from TargetConfig) and are
    registered with :func:`register_method`. ``positions`` is "original" (default: kept tokens keep
    their position ids) or "compact" (renumbered; only for schedules that prune before the LLM).
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[TargetConfig]] = TargetConfig
    positions: str = "original"

    def __init__(self, config: TargetConfig) -> None:
        self.config = config

    def default_shape(self, num_layers: int) -> Schedule:
        """The schedule shape used when the user gives none."""
        from adatp.ops.schedule import default_schedule

        return default_schedule(num_layers)

    def stages_for(self, ctx: PrefillContext, scoring: str | None = "query_rows") -> list[StagePlan]:
        """Resolve the target to StagePlans: B_k = floor(r_k N + 0.5) (D4)."""
        schedule = self.config.resolve(self.default_shape(ctx.dims.num_layers), ctx.num_visual, ctx.dims)
        return [
            StagePlan(k, r, tokens_for_retention(r, ctx.num_visual), None if k == 0 else scoring) for k, r in schedule
        ]

    def pre_llm_stage(self, ctx: PrefillContext, needs_hidden: bool = False) -> list[StagePlan]:
        """The single layer-0 stage of a method that compresses only before the LLM.

        Raises ConfigError when the user's schedule puts a stage anywhere else.
        """
        stages = self.stages_for(ctx, scoring=None)
        if len(stages) != 1 or stages[0].layer != 0:
            raise ConfigError(
                f"{self.name} compresses only before the LLM: its schedule must be one stage at layer 0, "
                f"got layers {[s.layer for s in stages]}"
            )
        return [dataclasses.replace(stages[0], needs_hidden=needs_hidden)]

    @staticmethod
    def check_whole_video(name: str, alive: torch.Tensor, num_visual: int) -> None:
        """Pre-LLM methods run once, on every visual token."""
        if alive.shape[0] != num_visual:
            raise ConfigError(f"{name} runs once, on the whole video ({num_visual} tokens), got {alive.shape[0]}")

    def whole_video_tokens(
        self, alive: torch.Tensor, hidden: torch.Tensor | None, tokens: torch.Tensor
    ) -> torch.Tensor:
        """:func:`whole_video_tokens` under this method's name."""
        return whole_video_tokens(self.name, alive, hidden, tokens)

    @abstractmethod
    def plan(self, ctx: PrefillContext) -> list[StagePlan] | PromptPlan:
        """Prepare for one prompt (segments, budgets, ...) and return its stages in layer order,
        or a :class:`PromptPlan` that holds them with the prompt's state."""

    def start(self, ctx: PrefillContext) -> PromptPlan:
        """:meth:`plan` as a :class:`PromptPlan`, whichever form the method returns."""
        plan = self.plan(ctx)
        return plan if isinstance(plan, PromptPlan) else MethodPlan(self, list(plan))

    def select(self, stage: StagePlan, alive: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor | Selection:
        """Choose the visual tokens that survive ``stage``.

        Args:
            alive: (n,) int64 visual token indices (0..N-1, (t, y, x) order) alive now, ascending.
            scores: (n,) the signal named by ``stage.scoring`` for each alive token, or None.
            hidden: (keyword, only when ``stage.needs_hidden``) (n, D) the alive tokens' states at
                this stage's input: projected embeddings at layer 0, hidden states inside the LLM.
        Returns:
            (stage.budget,) int64 visual indices, ascending, a subset of ``alive``; or a
            :class:`Selection` whose ``merge_into`` averages dropped tokens into kept ones.

        Methods whose :meth:`plan` returns a :class:`PromptPlan` implement this on the plan instead.
        """
        raise NotImplementedError(f"{self.name}: select() belongs to the PromptPlan its plan() returns")

    def describe(self) -> dict[str, Any]:
        """Method-specific facts for the report of the last prompt (segments, relevance, ...)."""
        return {}

    def kept_per_group(self, kept: torch.Tensor) -> list[int] | None:
        """Kept tokens per segment (or other group) for the report; None if the method has none.

        Called after the forward (it may read tensors on the host), with any stage's kept set.
        """
        return None


_METHODS: dict[str, type[PruningMethod]] = {}


def register_method(cls: type[PruningMethod]) -> type[PruningMethod]:
    """Class decorator: register a method under ``cls.name``. Rejects duplicate names."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _METHODS and _METHODS[cls.name] is not cls:
        raise ValueError(f"a method named {cls.name!r} is already registered ({_METHODS[cls.name].__name__})")
    _METHODS[cls.name] = cls
    return cls


def available_methods() -> list[str]:
    import adatp.methods  # noqa: F401  (registers the built-in methods)

    return sorted(_METHODS)


def build_method(name: str, **options: Any) -> PruningMethod:
    """Instantiate a registered method from keyword options; unknown names and keys raise ConfigError."""
    import adatp.methods  # noqa: F401

    if name not in _METHODS:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(available_methods())}")
    cls = _METHODS[name]
    known = {f.name for f in dataclasses.fields(cls.config_class)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for method {name!r}; valid: {sorted(known)}")
    return cls(cls.config_class(**options))


_TARGET_KEYS = ("schedule", "retention", "flops_ratio")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _convert_option(spec: str, key: str, text: str, kind: Any) -> Any:
    """One option value from the command line, converted to the config field's declared type."""
    import types
    import typing

    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() == "none":
            return None
        (kind,) = [a for a in args if a is not type(None)] or (str,)
    try:
        if kind is bool:
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError
            return text.lower() in _TRUE
        if kind in (int, float, str):
            return kind(text)
    except ValueError:
        pass
    else:
        raise ConfigError(f"option {key!r} in method spec {spec!r} cannot be given as text; set it in Python")
    raise ConfigError(
        f"option {key}={text!r} in method spec {spec!r} is not a valid {kind.__name__}"
        + (" (use true or false)" if kind is bool else "")
    )


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name:key=value[:key=value]"`` -> (name, options), values typed from the method's config.

    ``"adatp:alpha=0:segmentation=false"`` -> ("adatp", {"alpha": 0.0, "segmentation": False}).
    Bools read true/false (yes/no, on/off, 1/0); ``none`` is None where the field allows it. The
    cost target (schedule, retention, flops_ratio) is not a method option: it comes from its own
    flags. Every error is one line naming the spec, the value and the fix; the options are checked
    by building the method's config, so a bad value (``alpha=-1``) fails here, before any run.
    """
    import typing

    import adatp.methods  # noqa: F401

    name, *parts = spec.strip().split(":")
    if name not in _METHODS:
        raise ConfigError(f"unknown method {name!r} in {spec!r}; available: {', '.join(available_methods())}")
    cls = _METHODS[name]
    hints = typing.get_type_hints(cls.config_class)
    valid = sorted(f.name for f in dataclasses.fields(cls.config_class) if f.name not in _TARGET_KEYS)
    options: dict[str, Any] = {}
    for part in parts:
        key, eq, text = part.partition("=")
        key, text = key.strip(), text.strip()
        if not eq or not key or not text:
            raise ConfigError(f"method spec {spec!r}: expected key=value after ':', got {part!r} (name:key=value[:key=value])")
        if key in _TARGET_KEYS:
            raise ConfigError(f"method spec {spec!r}: {key} is the cost target, give it with --{key.replace('_', '-')}")
        if key not in valid:
            raise ConfigError(f"unknown option {key!r} in method spec {spec!r}; {name}'s options: {', '.join(valid) or 'none'}")
        if key in options:
            raise ConfigError(f"method spec {spec!r} sets {key!r} twice")
        options[key] = _convert_option(spec, key, text, hints[key])
    try:
        cls.config_class(**options)
    except ConfigError as exc:
        raise ConfigError(f"method spec {spec!r}: {exc}") from None
    return name, options


@dataclass
class SegmentPlan(PromptPlan):
    """A plan that keeps ``frame_segments`` (T,), ``token_segments`` (N,) and ``segment_budgets``
    (FastVID, FlashVID): kept tokens per segment, and the segments as inclusive frame ranges."""

    stages: list[StagePlan]
    frame_segments: torch.Tensor
    token_segments: torch.Tensor
    segment_budgets: list[int] = field(default_factory=list)

    @classmethod
    def of_segments(cls, stages: list[StagePlan], frame_segments: torch.Tensor, tokens_per_frame: int, **state: Any):
        """The plan for ``frame_segments`` (T,), each frame's ``tokens_per_frame`` tokens in its segment."""
        token_segments = frame_segments.repeat_interleave(tokens_per_frame)
        return cls(stages=stages, frame_segments=frame_segments, token_segments=token_segments, **state)

    def kept_per_group(self, kept: torch.Tensor) -> list[int]:
        segs = self.token_segments.to(kept.device)
        return torch.bincount(segs[kept], minlength=int(self.frame_segments.max()) + 1).tolist()

    def describe(self) -> dict[str, Any]:
        from adatp.ops.segmentation import segment_ranges

        return {"segments": segment_ranges(self.frame_segments.cpu()), "segment_budgets": list(self.segment_budgets)}
