"""What the text query attends to in the video, layer by layer, and what each pruning method keeps.

:func:`capture_attention` measures attention the same side-effect-free way the pruning runtime
scores tokens (docs/method.md, Stage 3, D3): a vanilla forward pass with a forward pre-hook
(``with_kwargs=True``) on each chosen decoder layer reads the layer's input hidden states and
``(cos, sin)``; the adapter rebuilds that layer's queries (query rows only) and keys, and
:func:`adatp.ops.importance.query_row_attention` gives the fp32 softmax probabilities averaged over
heads and query rows. No ``output_attentions``, no eager attention, nothing written into the
model; the hooks are removed even when the pass fails. The pass stops after the deepest chosen
layer. With ``pre_rope=True`` queries and keys are compared before RoPE (is RoPE distance what
draws attention to the ends of the video?).

:func:`kept_tokens` runs ``adatp.prune(model, method, ...)`` and one prefill per method and reads
the stages' kept indices from ``last_report``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from adatp.families import ModelAdapter, VideoLayout, VideoSpan, get_adapter
from adatp.errors import ConfigError, InputError, UnsupportedModelError
from adatp.ops.importance import query_row_attention


class _StopForward(Exception):
    """Raised by the hook of the deepest chosen layer: the rest of the forward is not needed."""


@dataclass
class AttentionMaps:
    """Attention from the text query to the video's visual tokens, per chosen layer.

    Attributes:
        layers: the decoder layers measured (their input, D1 indexing), ascending.
        maps: (len(layers), T, h, w) float32 mean attention probability each visual token receives
            from the query rows (every row after the video block, D3), averaged over heads and rows.
            A row's probabilities over visual tokens sum to at most 1, so each map sums to <= 1.
        layout: the video's frame / grid layout.
        span: where the video block sits in the prompt.
        num_query_rows: how many rows were averaged.
        pre_rope: True when queries and keys were compared without RoPE.
    """

    layers: list[int]
    maps: torch.Tensor
    layout: VideoLayout
    span: VideoSpan
    num_query_rows: int
    pre_rope: bool

    def map(self, layer: int) -> torch.Tensor:
        """(T, h, w) map of one measured layer."""
        if layer not in self.layers:
            raise ConfigError(f"layer {layer} was not measured; measured: {self.layers}")
        return self.maps[self.layers.index(layer)]


def check_layers(layers: list[int] | None, num_layers: int) -> list[int]:
    """Sorted unique layer indices in 0..num_layers-1 (None: all layers); ConfigError otherwise."""
    if layers is None:
        return list(range(num_layers))
    if len(layers) == 0:
        raise ConfigError("no layers given: name at least one decoder layer, or all")
    bad = [layer for layer in layers if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0]
    if bad:
        raise ConfigError(f"layers must be non-negative integers, got {bad}")
    deep = [layer for layer in layers if layer >= num_layers]
    if deep:
        raise ConfigError(
            f"layer {deep[0]} is past the model's depth: it has {num_layers} decoder layers (0..{num_layers - 1})"
        )
    return sorted(set(layers))


def parse_layers(text: str | None) -> list[int] | None:
    """CLI words: "all" (or None) -> None; "0,2,14" -> [0, 2, 14]; "0-3" -> [0, 1, 2, 3]."""
    if text is None or text.strip().lower() == "all":
        return None
    layers: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                layers.extend(range(int(lo), int(hi) + 1))
            else:
                layers.append(int(part))
        except ValueError:
            raise ConfigError(f'--layers must look like "all", "0,2,14" or "0-5", got {text!r}') from None
    return layers


def _video_span(adapter: ModelAdapter, inputs: dict[str, Any]) -> VideoSpan:
    input_ids = inputs.get("input_ids")
    if input_ids is None or input_ids.ndim != 2 or input_ids.shape[0] != 1:
        shape = None if input_ids is None else tuple(input_ids.shape)
        raise InputError(f"attention analysis needs input_ids of one prompt (1, L), got {shape}")
    num_frames = adapter.video_frames(inputs)
    if num_frames is None:
        raise InputError("the inputs hold no video pixels; build them with adatp.prepare_inputs")
    mask = inputs.get("attention_mask")
    if mask is not None and not bool(mask.all()):  # host sync, once
        raise InputError("the attention mask has padding: attention analysis needs one unpadded prompt")
    span = adapter.locate_video(input_ids, inputs)
    if span.end >= span.seq_len:
        raise InputError("no text follows the video: the query rows (the question after the video) are empty")
    return span


def _check_not_pruned(model: nn.Module) -> None:
    handle = getattr(model, "_adatp_pruned", None)
    if handle is not None and handle.active:
        raise ConfigError("this model is pruned: call .remove() on its adatp.prune handle before measuring attention")


def capture_attention(
    model: nn.Module,
    inputs: dict[str, Any],
    layers: list[int] | None = None,
    pre_rope: bool = False,
) -> AttentionMaps:
    """Attention from the question to every visual token at each chosen layer's input.

    Args:
        model: a loaded model of a supported family (``adatp.pipeline.load_model``), not pruned.
        inputs: ``adatp.prepare_inputs`` output on the model's device (one video, one prompt).
        layers: decoder layer indices (D1: the input of layer k, scored with layer k's q/k);
            None for all.
        pre_rope: compare queries and keys before RoPE.
    Returns:
        :class:`AttentionMaps` with (L, T, h, w) maps.
    """
    _check_not_pruned(model)
    adapter = get_adapter(model)
    decoder_layers = adapter.decoder_layers()
    chosen = check_layers(layers, len(decoder_layers))
    span = _video_span(adapter, inputs)
    layout = span.layout
    device = inputs["input_ids"].device
    query_rows = torch.arange(span.end, span.seq_len, device=device)  # D3: every row after the video
    visual_rows = span.start + layout.grid_offsets(device)  # (N,) in (t, y, x) order
    maps: dict[int, torch.Tensor] = {}
    last = chosen[-1]

    def hook_for(index: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]  # (1, L, D)
            position_embeddings = kwargs.get("position_embeddings")
            if position_embeddings is None:
                raise UnsupportedModelError(
                    f"decoder layer {index} received no position_embeddings: this text decoder is not supported"
                )
            if hidden.shape[1] != span.seq_len:
                raise InputError(f"layer {index} received {hidden.shape[1]} rows, expected the prompt's {span.seq_len}")
            with torch.no_grad():
                q, k, scaling = adapter.query_key_states(
                    module, hidden, position_embeddings, query_rows, apply_rope=not pre_rope
                )
                probs = query_row_attention(q, k, query_rows, scaling)  # (L,) fp32
            maps[index] = probs[visual_rows].reshape(layout.num_frames, layout.grid_h, layout.grid_w)
            if index == last:
                raise _StopForward

        return hook

    handles = []
    try:
        for index in chosen:
            handles.append(decoder_layers[index].register_forward_pre_hook(hook_for(index), with_kwargs=True))
        with torch.no_grad():
            model(**inputs, use_cache=False)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [i for i in chosen if i not in maps]
    if missing:
        raise UnsupportedModelError(f"decoder layers {missing} were never called during the forward pass")
    return AttentionMaps(
        layers=chosen,
        maps=torch.stack([maps[i] for i in chosen]).cpu(),  # one copy to the host, after the pass
        layout=layout,
        span=span,
        num_query_rows=int(query_rows.shape[0]),
        pre_rope=pre_rope,
    )


@dataclass
class KeptTokens:
    """What one method kept on one prompt: every stage's kept visual indices, and its report."""

    method: str
    layout: VideoLayout
    stages: list[tuple[int, torch.Tensor]]  # (layer, (kept,) visual indices in (t, y, x) order)
    report: Any  # adatp.runtime.report.PruneReport

    def final_mask(self) -> torch.Tensor:
        """(T, h, w) bool: tokens alive after the last stage (every token when nothing was pruned)."""
        return self.stage_mask(len(self.stages) - 1) if self.stages else self._mask(None)

    def stage_mask(self, stage: int) -> torch.Tensor:
        """(T, h, w) bool: tokens kept by stage ``stage`` (an index into ``stages``)."""
        return self._mask(self.stages[stage][1])

    def _mask(self, kept: torch.Tensor | None) -> torch.Tensor:
        lay = self.layout
        mask = torch.zeros(lay.num_visual, dtype=torch.bool)
        mask[slice(None) if kept is None else kept.cpu()] = True
        return mask.view(lay.num_frames, lay.grid_h, lay.grid_w)


def kept_tokens(
    model: nn.Module,
    inputs: dict[str, Any],
    method: str,
    tokenizer: Any = None,
    **prune_options: Any,
) -> KeptTokens:
    """Prune ``model`` with ``method``, run one prefill on ``inputs``, and read what each stage kept.

    ``prune_options`` go to :func:`adatp.prune` (``flops_ratio=``, ``retention=``, ``relevance=``, ...).
    The pruning handle is removed afterwards, even on error.
    """
    from adatp.api import prune

    with prune(model, method, tokenizer=tokenizer, **prune_options) as handle:
        with torch.no_grad():
            model(**inputs, logits_to_keep=1)
        report = handle.last_report
    if report is None:
        raise InputError(f"method {method!r} produced no report: the inputs hold no video")
    layout = VideoLayout(report.num_frames, report.grid[0], report.grid[1])
    stages = [(s.layer, s.kept_indices.detach().cpu()) for s in report.stages]
    return KeptTokens(method=method, layout=layout, stages=stages, report=report)
