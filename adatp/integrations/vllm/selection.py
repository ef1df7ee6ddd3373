"""The video-token selection the vLLM plug-in runs: adatp's own methods on one video's embeddings.

Nothing here imports vLLM or transformers (the plug-in's environment has a transformers release
adatp's Hugging Face runtime does not support). The selection is the method's own pre-LLM stage,
:meth:`~adatp.methods.base.PruningMethod.start` then the plan's ``select``
on a :class:`~adatp.methods.base.PrefillContext` built the way adatp's runtime builds it for the
Qwen-VL families (tokens at their grid positions, frame features = mean merged token, D15), so a
video keeps the same tokens in vLLM as under ``adatp.prune`` for the same budget.

Relevance is uniform: vLLM's video hook (``embed_multimodal``) sees the video, not the prompt's
text, so nothing text-conditioned can run there (docs/vllm.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from adatp.families.base import VideoLayout, VideoSpan
from adatp.errors import ConfigError
from adatp.methods.base import PrefillContext, PruningMethod, Selection, build_method, parse_method_spec
from adatp.ops.flops import DecoderDims
from adatp.ops.merging import merge_tokens

#: adatp methods whose whole work happens before the LLM: offered under their own names.
PRE_LLM_METHODS = ("dycoke", "fastvid", "vidcom2", "visionzip")
#: methods offered as their pre-LLM stage only, under an explicit name -> the adatp method.
PRE_LLM_PARTS = {"adatp-prellm": "adatp"}
#: why each method with stages inside the LLM is refused (one line each).
IN_LLM_REASON = "prunes inside the LLM (attention or hidden states of decoder layers), which vLLM has no hook for"
#: methods refused for another reason than stages inside the LLM.
OTHER_REASONS = {
    "uniform-frames": "renumbers the kept frames' positions (a shorter video), which M-RoPE models do not allow",
    "none": "keeps every token; leave video_pruning_rate unset instead",
}

#: What the run reports about relevance (the plug-in's log line and :class:`VideoSelection`).
RELEVANCE_NOTE = "uniform (vLLM's video hook does not see the prompt text)"


def offered_methods() -> list[str]:
    """The names the plug-in accepts, sorted."""
    return sorted([*PRE_LLM_METHODS, *PRE_LLM_PARTS])


@dataclass(frozen=True)
class VllmMethod:
    """A parsed plug-in method: the name the user gave, adatp's method name and its options."""

    name: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)

    def build(self, retention: float) -> PruningMethod:
        """The adatp method with one layer-0 stage keeping ``retention`` of the video."""
        return build_method(self.method, schedule=[(0, retention)], **self.options)


def parse_vllm_method(spec: str) -> VllmMethod:
    """``"name[:key=value...]"`` -> :class:`VllmMethod`; ConfigError (one line) for a refused name.

    Options are the method's own (``fastvid:density_ratio=0.3``); the cost target is vLLM's
    ``video_pruning_rate``, never an option here.
    """
    text = str(spec).strip()
    name, _, rest = text.partition(":")
    name = name.strip()
    if name in PRE_LLM_PARTS:
        inner = PRE_LLM_PARTS[name]
    elif name in PRE_LLM_METHODS:
        inner = name
    else:
        import adatp.methods  # noqa: F401  (registers the built-in methods)
        from adatp.methods.base import available_methods

        offered = ", ".join(offered_methods())
        if name in OTHER_REASONS:
            raise ConfigError(f"adatp method {name!r} {OTHER_REASONS[name]}: not available in vLLM (offered: {offered})")
        if name in available_methods():
            hint = f"; use {name}-prellm for its pre-LLM stage" if f"{name}-prellm" in PRE_LLM_PARTS else ""
            raise ConfigError(f"adatp method {name!r} {IN_LLM_REASON}: not available in vLLM{hint} (offered: {offered})")
        raise ConfigError(f"unknown adatp method {name!r} for vLLM; offered: {offered}")
    _, options = parse_method_spec(inner + (":" + rest if rest else ""))
    if inner == "adatp" and options.get("dedup_threshold", 0.0) > 1 and options.get("scoring") != "random":
        raise ConfigError(
            f"{name} with dedup_threshold > 1 ranks the first stage by layer 0's attention, inside the LLM, which "
            "vLLM has no hook for: keep dedup_threshold <= 1"
        )
    return VllmMethod(name, inner, options)


@dataclass
class VideoSelection:
    """What the plug-in keeps of one video.

    Attributes:
        kept: (B,) int64 visual indices in (t, y, x) order, ascending.
        values: (B, D') the kept tokens' embeddings (merged averages for merging methods).
        info: the method's report (segments, budgets, ...) and the relevance note.
    """

    kept: torch.Tensor
    values: torch.Tensor
    info: dict[str, Any]


def select_video_tokens(
    method: VllmMethod,
    embeddings: torch.Tensor,
    grid: tuple[int, int, int],
    budget: int,
    *,
    dims: DecoderDims | None = None,
    segment_threshold: float = 0.90,
    feature_dim: int | None = None,
) -> VideoSelection:
    """Run ``method``'s pre-LLM stage on one video and keep exactly ``budget`` tokens.

    Args:
        embeddings: (N, D') the video's merged visual tokens in (t, y, x) order, N = T * h * w; the
            first ``feature_dim`` channels (all when None) are the LLM-input embedding the method
            reads (Qwen3-VL appends its deepstack levels after it); merges average every channel.
        grid: (T, h, w) the merged token grid (vLLM's ``video_grid_thw`` with h, w divided by the
            spatial merge size).
        budget: tokens to keep, fixed when the prompt was built (1 <= budget <= N).
        dims: the decoder's sizes (only a FLOPs target needs them; a placeholder otherwise).
    """
    t, h, w = (int(v) for v in grid)
    n = t * h * w
    if embeddings.ndim != 2 or embeddings.shape[0] != n:
        raise ConfigError(f"expected ({n}, D) video embeddings for grid {grid}, got {tuple(embeddings.shape)}")
    if not 1 <= budget <= n:
        raise ConfigError(f"cannot keep {budget} of the video's {n} tokens")
    dim = embeddings.shape[1] if feature_dim is None else feature_dim
    tokens = embeddings[:, :dim].reshape(t, h * w, dim)
    layout = VideoLayout(t, h, w, "none")
    ctx = PrefillContext(
        span=VideoSpan(0, layout, n),
        tokens=tokens,
        frame_features=tokens.float().mean(1),  # Qwen-VL: g_t = mean merged token (D15), as adatp's runtime
        frame_relevance=None,
        relevance_source="uniform",
        query_text=None,
        dims=dims or DecoderDims(hidden=dim, intermediate=dim, num_layers=2, num_kv_heads=1, head_dim=dim),
        segment_threshold=segment_threshold,
        frame_feature_source="token-mean",
    )
    pruner = method.build(budget / n)  # B = floor(rN + 0.5) = budget exactly (D4)
    plan = pruner.start(ctx)
    stages = list(plan)
    if len(stages) != 1 or stages[0].layer != 0 or stages[0].scoring is not None or stages[0].budget != budget:
        raise ConfigError(f"{method.name} did not plan a single attention-free stage of {budget} tokens before the LLM")
    stage = stages[0]
    alive = torch.arange(n, device=embeddings.device)
    extra = {"hidden": tokens.reshape(n, dim)} if stage.needs_hidden else {}
    choice = plan.select(stage, alive, None, **extra)
    selection = choice if isinstance(choice, Selection) else Selection(choice)
    kept = selection.kept
    if kept.shape[0] != budget:
        raise RuntimeError(f"{method.name} kept {kept.shape[0]} tokens, the prompt has room for {budget}")
    if selection.merge_into is None:
        values = embeddings[kept]
    else:
        values = merge_tokens(embeddings, selection.merge_into, selection.weights, budget).to(embeddings.dtype)
    info = dict(plan.describe(), method=method.name, relevance=RELEVANCE_NOTE, warnings=list(ctx.warnings))
    return VideoSelection(kept, values, info)
