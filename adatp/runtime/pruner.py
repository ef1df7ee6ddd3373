"""The pruned prefill: per-instance hooks that gather tokens at each stage and keep decoding right.

Nothing is patched on a class and no modeling file is copied. On one loaded model instance the
runtime registers forward hooks (every handle kept, all removed by :meth:`PruningRuntime.remove`):

- on the top-level model: recognise a video prefill (batch 1, no padding, empty cache), locate the
  video (the adapter), refuse what cannot be pruned correctly; on decode steps that continue a
  pruned cache, supply the unpruned model's positions when the caller gave none (the adapter's
  ``decode_positions``; docs/method.md, transformers behaviour, D14);
- on the projector: take the per-frame patch features for g_t and the relevance scorer;
- on the language model: Stage 0..2 (segments, relevance, dedup) and the pre-LLM stage: gather
  ``inputs_embeds``, ``position_ids`` and a 2-D mask (always passed, so non-contiguous positions are
  never read as packed sequences);
- on each decoder layer: at a stage layer k >= 1, score the alive visual tokens with layer k's own
  q/k projections (query rows only, fp32) and gather the hidden states; a stage whose plan names an
  earlier ``score_layer`` j (FastV's official rule, D11) is scored at layer j's input instead and
  the scores wait for layer k (nothing is pruned in between); every later layer receives
  the gathered (cos, sin), position ids and mask. Each layer's ``cache.update`` then stores exactly
  the tokens that layer saw, so the KV cache is consistent by construction and SDPA decodes with
  per-layer cache lengths (mask None for one new token without padding);
- after each decoder layer: what the adapter took out of the language model's kwargs (Qwen3-VL's
  deepstack embeddings) is added back to the alive visual tokens only.

Positions are the adapter's: the runtime never assumes their shape. It gathers rows with
``adapter.gather_positions`` (every row of M-RoPE ids) and ``adapter.gather_position_embeddings``.
"""

from __future__ import annotations

import time
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from adatp.families import ModelAdapter, VideoSpan
from adatp.errors import ConfigError, InputError
from adatp.methods.base import PrefillContext, PromptPlan, PruningMethod, Selection, StagePlan
from adatp.ops.importance import last_row_attention, query_row_attention
from adatp.ops.merging import check_merge, merge_tokens
from adatp.relevance import RelevanceScorer, extract_query_text, frame_relevance
from adatp.runtime.report import FlopsReport, PruneReport, StageReport


@dataclass
class _Prefill:
    """Bookkeeping of one pruned prefill (one call of the model with a video)."""

    span: VideoSpan
    input_ids: torch.Tensor  # (1, L)
    grid_offsets: torch.Tensor  # (N,) offsets of grid tokens inside the video block
    newline_offsets: torch.Tensor  # (M,) offsets of newline tokens inside the block
    patch_features: torch.Tensor | None = None  # (T, P, d_v) captured at the projector
    cls_features: torch.Tensor | None = None  # (T, d_v) class tokens, for towers that have one
    plans: dict[int, StagePlan] = field(default_factory=dict)
    prompt_plan: PromptPlan | None = None  # the method's plan for this prompt (stages and state)
    visual_alive: torch.Tensor | None = None  # (n,) visual indices alive now
    alive_seq: torch.Tensor | None = None  # (m,) original sequence positions alive now
    lm_positions: torch.Tensor | None = None  # (m0,) positions fed to the language model
    layer_inputs: dict[str, Any] | None = None  # gathered cos/sin, position_ids, mask for later layers
    extras: Any = None  # per-layer additions the adapter took from the language model's kwargs
    stages: list[StageReport] = field(default_factory=list)
    query_text: str | None = None
    relevance_source: str = "uniform"
    relevance_uniform: bool = True
    warnings: list[str] = field(default_factory=list)
    pending_scores: dict[int, torch.Tensor] = field(default_factory=dict)  # stage layer -> (n,) scores
    score_at: dict[int, list[StagePlan]] = field(default_factory=dict)  # layer -> stages it scores
    overhead_s: float = 0.0
    lm_started: bool = False


def _kwarg_or_arg(args: tuple, kwargs: dict, name: str, index: int) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else None


class PruningRuntime:
    """Owns the hooks and the per-prefill state for one model instance."""

    def __init__(
        self,
        model: nn.Module,
        adapter: ModelAdapter,
        method: PruningMethod,
        scorer: RelevanceScorer | None = None,
        tokenizer: Any = None,
        time_overhead: bool = False,
    ) -> None:
        self.model = model
        self.adapter = adapter
        self.method = method
        self.scorer = scorer
        self.tokenizer = tokenizer
        self.time_overhead = time_overhead
        self.last_report: PruneReport | None = None
        self._state: _Prefill | None = None
        self._cache_ref: weakref.ref | None = None  # the cache a pruned prefill filled
        self._decode_span: VideoSpan | None = None  # the pruned prefill's span, for decode positions
        self._decode_step = 0  # decode steps since that prefill
        self._position_shift = 0  # original length - kept length (compact positions)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._pending_patches: torch.Tensor | None = None
        self._pending_cls: torch.Tensor | None = None
        self._layers = adapter.decoder_layers()
        self._attention = adapter.attention_implementation()
        if method.positions == "compact" and not adapter.supports_compact_positions:
            raise ConfigError(
                f"method {method.name} renumbers positions (compact), which {type(adapter).__name__} does not "
                "support: M-RoPE positions of a shorter video cannot be rebuilt from the kept tokens"
            )

    # --- install / remove ---------------------------------------------------------------------
    def install(self) -> None:
        m = self.model
        self._handles.append(m.register_forward_pre_hook(self._on_model_call, with_kwargs=True))
        self._handles.append(m.register_forward_hook(self._after_model_call, with_kwargs=True, always_call=True))
        features = self.adapter.frame_feature_module()
        if features is not None:
            self._handles.append(features.register_forward_pre_hook(self._on_patch_features))
        if self.adapter.global_feature == "cls":
            self._handles.append(self.adapter.vision_tower().register_forward_hook(self._on_tower_output))
        lm = self.adapter.language_model()
        self._handles.append(lm.register_forward_pre_hook(self._on_language_model_call, with_kwargs=True))
        for i, layer in enumerate(self._layers):
            self._handles.append(layer.register_forward_pre_hook(self._layer_hook(i), with_kwargs=True))
            self._handles.append(layer.register_forward_hook(self._after_layer_hook(i)))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._state = None
        self._cache_ref = None
        self._decode_span = None
        self._pending_patches = None
        self._pending_cls = None

    # --- top-level model ------------------------------------------------------------------------
    def _on_model_call(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        self._state = None
        now = self.adapter.attention_implementation()
        if now != self._attention:  # the gathered masks and per-layer cache lengths assume the first one
            raise ConfigError(
                f"the attention implementation changed from {self._attention!r} to {now!r} while the model is pruned: "
                "call .remove() on the adatp handle, switch, then prune again"
            )
        input_ids = _kwarg_or_arg(args, kwargs, "input_ids", 0)
        embeds = kwargs.get("inputs_embeds")
        cache = kwargs.get("past_key_values")
        ref = input_ids if input_ids is not None else embeds
        if ref is None:
            return None
        q_len = ref.shape[1]
        if self._cache_ref is not None and cache is not None and cache is self._cache_ref():
            return self._continue_decode(args, kwargs, q_len)
        if ref.shape[0] != 1 and (self.adapter.has_video_pixels(kwargs) or kwargs.get("mm_encoder_outputs")):
            raise InputError(f"adatp prunes batch size 1; got a batch of {ref.shape[0]} (run prompts one at a time)")
        if self.adapter.video_frames(dict(kwargs, input_ids=input_ids)) is None:
            return None  # no video in this call: nothing to prune
        if self.adapter.has_video_pixels(kwargs):
            self._pending_patches = self._pending_cls = None  # the tower runs inside this call
        if ref.shape[0] != 1:
            raise InputError(f"adatp prunes batch size 1; got a batch of {ref.shape[0]} (run prompts one at a time)")
        if cache is not None:
            from transformers import DynamicCache

            if not isinstance(cache, DynamicCache):
                raise InputError(
                    f"{type(cache).__name__} is not supported with pruning: layers keep different numbers of tokens; "
                    "use the default DynamicCache"
                )
            if cache.get_seq_length() > 0:
                raise InputError(
                    "this cache already holds tokens: a pruned prefill must start from an empty cache "
                    "(re-entering generate() with a cache, or chunked prefill, is not supported)"
                )
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.ndim == 2 and not bool(mask.all()):  # host sync, once per prefill
            raise InputError("the attention mask has padding: left/right padding is not supported with pruning")
        span = self.adapter.locate_video(input_ids, kwargs)
        if span is None:
            return None
        layout = span.layout
        device = ref.device
        self._state = _Prefill(
            span=span,
            input_ids=input_ids,
            grid_offsets=layout.grid_offsets(device), newline_offsets=layout.newline_offsets(device)
        )
        self._cache_ref = None
        return None

    def _continue_decode(self, args: tuple, kwargs: dict, q_len: int) -> tuple[tuple, dict] | None:
        """A step on a cache that a pruned prefill filled: one token at a time, original positions."""
        if q_len != 1:
            raise InputError(
                f"a pruned cache can only be extended one token at a time (got {q_len}); assisted decoding, "
                "chunked prefill and re-entering generate() with a pruned cache are not supported"
            )
        if self.adapter.has_video_pixels(kwargs):
            raise InputError("a pruned cache cannot take a second video")
        pos = kwargs.get("position_ids")
        if pos is None:
            # Loops that pass no position ids would fall back to cache length + arange: compact
            # positions, a silent change (docs/method.md, transformers behaviour). Use what the unpruned model would (D14).
            device = (kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"]).device
            pos = self.adapter.decode_positions(self._decode_span, self._decode_step, device)
        kwargs["position_ids"] = pos - self._position_shift
        self._decode_step += 1
        return args, kwargs

    def _after_model_call(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        state, self._state = self._state, None
        if state is None or not state.lm_started or output is None:
            return  # no video prefill, or the forward raised (always_call still clears the state)
        span = state.span
        layout = span.layout
        if self.time_overhead:
            _sync()
        for stage in state.stages:  # deferred from the stages: these read tensors on the host
            stage.kept_per_segment = state.prompt_plan.kept_per_group(stage.kept_indices)
            if stage.merge_into is not None:
                stage.merged = int(stage.merge_into.ge(0).sum()) - stage.kept
        stages = [(s.layer, s.kept) for s in state.stages]
        num_other = span.seq_len - layout.num_visual
        report = PruneReport(
            method=self.method.name,
            num_frames=layout.num_frames,
            grid=(layout.grid_h, layout.grid_w),
            num_visual=layout.num_visual,
            seq_len=span.seq_len,
            num_layers=len(self._layers),
            positions=self.method.positions,
            stages=state.stages,
            flops=FlopsReport.compute(
                stages, layout.num_visual, num_other, self.adapter.decoder_dims(),
                self.adapter.vision_dims(span.patch_grid), layout.num_frames
            ),
            relevance_source=state.relevance_source,
            relevance_uniform=state.relevance_uniform,
            method_info=state.prompt_plan.describe(),
            query_text=state.query_text,
            warnings=state.warnings,
            overhead_s=state.overhead_s if self.time_overhead else None,
        )
        self.last_report = report
        cache = getattr(output, "past_key_values", None)
        if cache is not None:
            self._cache_ref = weakref.ref(cache)
            self._decode_span, self._decode_step = span, 0
            kept_len = span.seq_len - layout.num_visual + (stages[0][1] if stages and stages[0][0] == 0 else layout.num_visual)
            self._position_shift = span.seq_len - kept_len if self.method.positions == "compact" else 0

    # --- vision features --------------------------------------------------------------------------
    def _on_tower_output(self, module: nn.Module, args: tuple, output: Any) -> None:
        cls = self.adapter.cls_features(output)
        if cls is not None:
            self._pending_cls = cls.detach()

    def _on_patch_features(self, module: nn.Module, args: tuple) -> None:
        # generate() encodes the video before the prefill call, a plain forward inside it: keep the
        # latest (T, P, d_v) input and let the prefill that follows take it.
        if args and args[0].ndim == 3:
            self._pending_patches = args[0].detach()

    # --- language model: stages 0..2 and the pre-LLM stage ---------------------------------------
    def _on_language_model_call(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        state = self._state
        if state is None or state.lm_started:
            return None
        state.lm_started = True
        t0 = self._tic(state)
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            raise InputError("the language model was called without inputs_embeds during a video prefill")
        span = state.span
        seq_len = embeds.shape[1]
        if seq_len != span.seq_len:
            raise InputError(f"expected {span.seq_len} embeddings, got {seq_len}")
        device = embeds.device
        position_ids = self.adapter.prefill_positions(kwargs.get("position_ids"), seq_len, device)
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones(1, seq_len, dtype=torch.long, device=device)
        if mask.ndim != 2:
            raise InputError("a 4-D attention mask cannot be pruned; pass a 2-D mask or none")
        if kwargs.get("past_key_values") is None and kwargs.get("use_cache", module.config.use_cache):
            from transformers import DynamicCache

            kwargs["past_key_values"] = DynamicCache(config=module.config)  # tracked for decoding

        state.extras = self.adapter.take_layer_extras(kwargs, span)
        pending, self._pending_patches = self._pending_patches, None
        cls, self._pending_cls = self._pending_cls, None
        # Images (if any) go through the projector first; the video is the call with T rows.
        if pending is not None and pending.shape[0] == span.layout.num_frames:
            state.patch_features = pending
        if cls is not None and cls.shape[0] == span.layout.num_frames:
            state.cls_features = cls
        ctx = self._prefill_context(state, embeds)
        state.prompt_plan = self.method.start(ctx)
        plans = list(state.prompt_plan)
        layers = [p.layer for p in plans]
        if layers != sorted(set(layers)):
            raise ConfigError(f"method {self.method.name} returned stages out of order: {layers}")
        _check_budgets(plans, span.layout.num_visual)
        state.plans = {p.layer: p for p in plans}
        for p in plans:
            if p.scoring is not None and p.score_layer is not None and p.score_layer < p.layer:
                state.score_at.setdefault(p.score_layer, []).append(p)
        num_visual = span.layout.num_visual
        state.visual_alive = torch.arange(num_visual, device=device)
        state.alive_seq = torch.arange(seq_len, device=device)
        if self.method.positions == "compact" and any(p.layer > 0 for p in plans):
            raise ConfigError("compact positions are only supported for methods that prune before the LLM")
        if 0 in state.plans:
            scores = None
            if state.plans[0].scoring is not None:
                # D1 at layer 0: layer 0's own attention on its input, before the pre-LLM stage.
                rope = self.adapter.position_embeddings(embeds, position_ids)
                scores = self._attention_scores(state, state.plans[0], self._layers[0], embeds, rope)
            embeds, keep = self._run_stage(state, state.plans[0], embeds, scores=scores)
            if keep is not None:
                embeds = embeds[:, keep]
                mask = mask[:, keep]
                position_ids = self.adapter.gather_positions(position_ids, keep)
                if self.method.positions == "compact":
                    position_ids = self.adapter.compact_positions(keep.shape[0], device)
        state.lm_positions = state.alive_seq
        kwargs["inputs_embeds"] = embeds
        kwargs["position_ids"] = position_ids
        kwargs["attention_mask"] = mask
        self._toc(state, t0)
        return args, kwargs

    def _prefill_context(self, state: _Prefill, embeds: torch.Tensor) -> PrefillContext:
        span = state.span
        layout = span.layout
        tokens = embeds[0, span.start + state.grid_offsets].reshape(layout.num_frames, layout.tokens_per_frame, -1)
        feats = state.patch_features
        if self.adapter.global_feature == "token_mean":  # Qwen-VL: g_t = mean of a grid's merged tokens (D15)
            feats = tokens
            frame_features = tokens.float().mean(1)
            source = "token-mean"
        elif self.adapter.global_feature == "cls":
            frame_features = state.cls_features.float() if state.cls_features is not None else None
            source = "cls"
        else:
            frame_features = feats.float().mean(1) if feats is not None else None
            source = "patch-mean"
        head = getattr(self.scorer, "segmentation_features", None)
        embedded = None
        if callable(head) and feats is not None and self.adapter.global_feature != "token_mean":
            # D6: with a SigLIP scorer, g_t is its pooling head's output on the VLM's patch features;
            # the same embedding also gives the relevance (the head runs once).
            embedded = head(feats).float()
            frame_features, source = embedded, "siglip-head"
        if frame_features is None:
            source = "missing"
        relevance = None
        if self.scorer is not None:
            # A scorer reads the patch features (SigLIP head) or the global features (frame_input).
            wants_global = getattr(self.scorer, "frame_input", "patches") == "global"
            relevance = self._relevance(state, frame_features if wants_global else feats, embedded)
        return PrefillContext(
            span=span,
            tokens=tokens,
            frame_features=frame_features,
            frame_relevance=relevance,
            relevance_source=state.relevance_source,
            query_text=state.query_text,
            dims=self.adapter.decoder_dims(),
            segment_threshold=self.adapter.default_segment_threshold,
            frame_feature_source=source,
            warnings=state.warnings,
        )

    def _relevance(
        self, state: _Prefill, feats: torch.Tensor | None, frames: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        if feats is None:
            state.warnings.append("no patch features were captured: relevance is uniform")
            return None
        if self.tokenizer is None:
            msg = "no tokenizer to read the question: relevance is uniform (pass tokenizer= to adatp.prune)"
            warnings.warn(msg, stacklevel=2)
            state.warnings.append(msg)
            return None
        state.query_text = extract_query_text(state.input_ids[0], state.span.end, self.tokenizer)
        text = self.scorer.embed_text(state.query_text)
        if frames is None:
            frames = self.scorer.embed_frames(feats)
        state.relevance_source = getattr(self.scorer, "name", type(self.scorer).__name__)
        state.relevance_uniform = False
        return frame_relevance(text, frames)

    # --- decoder layers: in-LLM stages ---------------------------------------------------------
    def _layer_hook(self, index: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            state = self._state
            if state is None or not state.lm_started:
                return None
            plan = state.plans.get(index) if index > 0 else None
            scored_here = state.score_at.get(index, [])
            if plan is None and not scored_here and state.layer_inputs is None:
                return None
            hidden = args[0] if args else kwargs["hidden_states"]
            if state.layer_inputs is not None:
                kwargs.update(state.layer_inputs)
            if plan is not None:
                t0 = self._tic(state)
                hidden = self._in_llm_stage(state, plan, module, hidden, kwargs)
                self._toc(state, t0)
            for later in scored_here:  # a later stage ranked by this layer's attention (FastV, D11)
                t0 = self._tic(state)
                state.pending_scores[later.layer] = self._attention_scores(
                    state, later, module, hidden, kwargs["position_embeddings"]
                )
                self._toc(state, t0)
            if args:
                args = (hidden, *args[1:])
            else:
                kwargs["hidden_states"] = hidden
            return args, kwargs

        return hook

    def _after_layer_hook(self, index: int):
        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            state = self._state
            if state is None or state.extras is None:
                return None
            return self.adapter.after_layer(index, output, state.extras, self._visual_rows(state), state.visual_alive)

        return hook

    def _in_llm_stage(self, state: _Prefill, plan: StagePlan, layer: nn.Module, hidden: torch.Tensor, kwargs: dict):
        scores = None
        if plan.scoring is not None and plan.layer in state.pending_scores:
            scores = state.pending_scores.pop(plan.layer)  # scored at plan.score_layer's input
        elif plan.scoring is not None:
            scores = self._attention_scores(state, plan, layer, hidden, kwargs["position_embeddings"])
        hidden, keep = self._run_stage(state, plan, hidden, scores)
        if keep is None:
            return hidden
        # keep indexes the current rows; map to the rows of the language model's input for cos/sin.
        gathered: dict[str, Any] = {
            "position_embeddings": self.adapter.gather_position_embeddings(kwargs["position_embeddings"], keep)
        }
        if kwargs.get("position_ids") is not None:
            gathered["position_ids"] = self.adapter.gather_positions(kwargs["position_ids"], keep)
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            gathered["attention_mask"] = mask[..., keep, :][..., keep]
        state.layer_inputs = gathered
        kwargs.update(gathered)
        return hidden[:, keep]

    def _visual_rows(self, state: _Prefill) -> torch.Tensor:
        """Rows of the current sequence that hold the alive visual tokens, in visual order."""
        seq_pos = state.span.start + state.grid_offsets[state.visual_alive]
        return torch.searchsorted(state.alive_seq, seq_pos)

    def _attention_scores(self, state, plan, layer, hidden, position_embeddings) -> torch.Tensor:
        n = hidden.shape[1]
        num_query = state.span.seq_len - state.span.end  # rows after the video (D3)
        if num_query <= 0:
            raise InputError("no text follows the video: attention-guided pruning needs the question after it")
        query_rows = torch.arange(n - num_query, n, device=hidden.device)
        with torch.no_grad():
            q, k, scaling = self.adapter.query_key_states(layer, hidden, position_embeddings, query_rows)
            attend = last_row_attention if plan.scoring == "last_row" else query_row_attention
            probs = attend(q, k, query_rows, scaling)  # (n,)
        return probs[self._visual_rows(state)]

    def _run_stage(
        self, state: _Prefill, plan: StagePlan, hidden: torch.Tensor, scores: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Ask the method, merge if it says so, record the stage, update the alive sets.

        ``hidden`` is the stage's (1, m, D) input (embeddings at layer 0). Returns the input with
        merged values written into the kept tokens' rows (or the same tensor), and the row gather
        index (None when nothing is dropped).
        """
        alive = state.visual_alive
        rows = self._visual_rows(state)  # (n,) rows of the alive visual tokens in ``hidden``
        extra = {"hidden": hidden[0, rows]} if plan.needs_hidden else {}
        choice = state.prompt_plan.select(plan, alive, scores, **extra)
        selection = choice if isinstance(choice, Selection) else Selection(choice)
        kept = selection.kept
        if kept.shape[0] != plan.budget:
            raise RuntimeError(f"method {self.method.name} kept {kept.shape[0]} tokens, its budget is {plan.budget}")
        if selection.merge_into is not None:
            check_merge(alive, kept, selection.merge_into, selection.weights)
            values = merge_tokens(hidden[0, rows], selection.merge_into, selection.weights, kept.shape[0])
            hidden = hidden.clone()  # never write into a tensor the caller (or generate) still holds
            hidden[0, rows[torch.searchsorted(alive, kept)]] = values
        # Per-group counts and merge totals need host syncs: the report fills them after the forward.
        scored = None if scores is None else (plan.layer if plan.score_layer is None else plan.score_layer)
        state.stages.append(
            StageReport(
                plan.layer, plan.retention, plan.budget, int(kept.shape[0]), None, kept,
                merge_into=selection.merge_into, merge_weights=selection.weights, scored_layer=scored,
                scored_attention=None if scored is None else self.adapter.layer_attention(scored),
            )
        )
        if kept.shape[0] == alive.shape[0]:
            return hidden, None  # nothing dropped: leave every tensor untouched (bit-exact at retention 1.0)
        span = state.span
        block = torch.sort(torch.cat([state.grid_offsets[kept], state.newline_offsets])).values + span.start
        device = alive.device
        new_seq = torch.cat(
            [torch.arange(span.start, device=device), block, torch.arange(span.end, span.seq_len, device=device)]
        )
        keep_rows = torch.searchsorted(state.alive_seq, new_seq)
        state.visual_alive = kept
        state.alive_seq = new_seq
        return hidden, keep_rows

    # --- timing (benchmarks only) ----------------------------------------------------------------
    def _tic(self, state: _Prefill) -> float | None:
        if not self.time_overhead:
            return None
        _sync()
        return time.perf_counter()

    def _toc(self, state: _Prefill, t0: float | None) -> None:
        if t0 is not None:
            _sync()
            state.overhead_s += time.perf_counter() - t0


def _check_budgets(plans: list[StagePlan], num_visual: int) -> None:
    """A stage that keeps no visual token answers without seeing the video: refuse it."""
    for plan in plans:
        if plan.budget < 1:
            smallest = 0.5 / num_visual
            raise ConfigError(
                f"retention {plan.retention:.3g} keeps 0 of {num_visual} visual tokens at layer {plan.layer}: "
                f"the model would answer without the video; use a larger target (a retention of {smallest:.2g} keeps one token)"
            )


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
