"""What the runtime needs to know about a model family, stated as data and small methods.

The adapter is the one home of model-family knowledge. It answers: where are the video tokens and
what is their (T, h, w) layout, where is the decoder stack, how does a decoder layer build its
queries and keys (that family's RoPE and norms, for importance), what is each frame's global
feature, and what are the sizes for FLOPs. It owns the positions: the ones the language model gets
for the full prompt, the ones gathered for kept tokens (every row of M-RoPE ids), and the one a
decode step gets when the caller passes none (whatever the unpruned model would use). An adapter
keeps no per-call state: what one call finds (the video's place, its patch grid) travels in the
:class:`VideoSpan` it returns. :mod:`adatp.families.registry` maps ``model_type`` to its family.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from adatp.errors import ConfigError, InputError, UnsupportedModelError
from adatp.families.processing import VideoProcessor
from adatp.layout import NEWLINE_MODES, VideoLayout, VideoSpan  # noqa: F401  (re-exported)
from adatp.ops.flops import DecoderDims, VisionDims

#: attention implementations whose decode step works with per-layer cache lengths (docs/method.md).
#: Flash-attention reads non-contiguous position_ids as packed sequences, so it is left out.
SUPPORTED_ATTENTION = ("sdpa",)


def interleaved_span(positions: list[int], num_frames: int, grid_h: int, grid_w: int, seq_len: int,
                     unit: str = "grid") -> VideoSpan:
    """The span of a video whose frames' tokens are runs with text between them (layout ``interleaved``).

    ``positions``: the sequence positions of every video token, in order (``num_frames`` runs of
    ``grid_h * grid_w``). The block runs from the first video token to the last.
    """
    per_frame = grid_h * grid_w
    start = positions[0]
    starts = []
    for f in range(num_frames):
        run = positions[f * per_frame : (f + 1) * per_frame]
        if run[-1] - run[0] + 1 != per_frame:
            raise InputError(f"the video tokens of {unit} {f} are not contiguous: expected {per_frame} in a row")
        starts.append(run[0] - start)
    layout = VideoLayout(num_frames, grid_h, grid_w, "interleaved", frame_starts=tuple(starts),
                         length=positions[-1] - start + 1)
    return VideoSpan(start=start, layout=layout, seq_len=seq_len)


class ModelAdapter(ABC):
    """Base class of one model family. Override what differs; see llava_onevision.py and qwen2_vl.py.

    The defaults describe a decoder with 1-D RoPE whose position ids are ``(1, S)``: the runtime
    gathers ``position_ids[..., keep]`` and ``cos[:, keep]`` through :meth:`gather_positions` and
    :meth:`gather_position_embeddings`, and decode steps continue at the original length.
    """

    #: transformers class names this adapter handles.
    model_classes: ClassVar[tuple[str, ...]] = ()
    #: the config ``model_type`` of each of ``model_classes`` (same order), for loading a directory.
    model_types: ClassVar[tuple[str, ...]] = ()
    #: transformers versions the adapter was tested with.
    tested_transformers: ClassVar[str] = ""
    #: default segmentation threshold tau_s for this family's tower (D6).
    default_segment_threshold: ClassVar[float] = 0.90
    #: whether methods with ``positions = "compact"`` (renumbered positions) can run on this family.
    supports_compact_positions: ClassVar[bool] = True
    #: the family's processor: input keys, token counts, inputs from a model directory.
    processor: ClassVar[type[VideoProcessor]] = VideoProcessor

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.check_model()
        # A checkpoint may carry its own calibrated tau_s (D6; `adatp analyze segments` measures it).
        value = getattr(model.config, "adatp_segment_threshold", None)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= value <= 1.0:
                raise ConfigError(
                    f"the model config's adatp_segment_threshold must be a cosine in [-1, 1], got {value!r}: "
                    "fix or remove it in config.json"
                )
            self.default_segment_threshold = float(value)

    # --- structure -------------------------------------------------------------------------
    @abstractmethod
    def check_model(self) -> None:
        """Raise UnsupportedModelError for configurations the runtime cannot prune correctly."""

    def attention_implementation(self) -> str | None:
        """The language model's attention implementation now (``"sdpa"``, ``"eager"``, ...)."""
        config = getattr(self.language_model(), "config", None)
        return getattr(config, "_attn_implementation", None)

    def language_model(self) -> nn.Module:
        """The decoder stack (receives inputs_embeds, position_ids, attention_mask, cache); where
        transformers' VLMs keep it unless an adapter says otherwise."""
        return self.model.model.language_model

    def decoder_layers(self) -> list[nn.Module]:
        """The decoder layers, in order."""
        lm = self.language_model()
        return list(lm.layers[: lm.config.num_hidden_layers])

    def layer_attention(self, index: int) -> str:
        """The token mixer of decoder layer ``index``: ``full_attention`` (softmax attention) here;
        hybrid stacks also have ``linear_attention`` layers (Qwen3.5), scored by their own q/k."""
        return "full_attention"

    def frame_feature_module(self) -> nn.Module | None:
        """A module whose first positional input is the video's patch features (T, P, d_v), or
        None when the global feature is read from the projected tokens (``token_mean``)."""
        return None

    #: the per-frame global feature g_t (D6, D15): "patch_mean" (mean of the patch features),
    #: "cls" (the tower's class token at the VLM's feature layer, see :meth:`cls_features`) or
    #: "token_mean" (mean of the frame's projected tokens: Qwen-VL's merged tokens of one grid).
    global_feature: ClassVar[str] = "patch_mean"

    def vision_tower(self) -> nn.Module | None:
        """The vision tower (the first of :meth:`vision_modules`), or None when the family names none.

        Its output depends on nothing pruning changes, so every run on one video may share it
        (encode once: :func:`adatp.runtime.encode_cache.reuse_outputs`); the ``cls`` global feature
        is read from it. Qwen-VL's tower holds the merger too.
        """
        try:
            return self.vision_modules()[0]
        except UnsupportedModelError:
            return None

    def cls_features(self, tower_output: Any) -> torch.Tensor | None:
        """(T, d_v) class-token features from one tower call's output, or None."""
        return None

    def vision_modules(self) -> tuple[nn.Module, nn.Module]:
        """(the vision tower, the module whose output is the projected video tokens): where a
        benchmark's timing marks for the vision stage go."""
        raise UnsupportedModelError(f"{type(self).__name__} does not name its vision modules")

    def synthetic_inputs(
        self, frames: int, text_tokens: int, tokens_per_frame: int | None = None, seed: int = 0, text_before: int = 4
    ) -> dict[str, torch.Tensor]:
        """Forward kwargs of a prompt with ``frames`` random frames in this family's layout and
        ``text_tokens`` random text ids (``text_before`` of them before the video): benchmarks only."""
        raise UnsupportedModelError(f"{type(self).__name__} cannot build synthetic inputs")

    def decoder_dims(self) -> DecoderDims:
        """The language model's sizes for FLOPs, from its config (``head_dim`` when it names one)."""
        t = self.text_config()
        head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
        return DecoderDims(t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_key_value_heads, head_dim)

    def check_sdpa_decoder(self, hint: str = "") -> None:
        """What the runtime needs of a decoder: SDPA attention (per-layer cache lengths when decoding), no
        sliding-window layers, and layers whose attention has q/k projections, ``head_dim`` and ``scaling``."""
        text = self.text_config()
        impl = getattr(text, "_attn_implementation", None) or getattr(self.model.config, "_attn_implementation", None)
        if impl not in SUPPORTED_ATTENTION:
            raise UnsupportedModelError(
                f"attention implementation {impl!r} is not supported for pruning: decoding with per-layer "
                f"cache lengths needs one of {SUPPORTED_ATTENTION}; load the model with attn_implementation='sdpa'"
            )
        layer_types = getattr(text, "layer_types", None) or []
        if getattr(text, "use_sliding_window", False) or "sliding_attention" in layer_types:
            raise UnsupportedModelError("sliding-window attention layers are not supported: their cache drops tokens by position")
        for index, layer in enumerate(self.decoder_layers()):
            self.check_decoder_layer(index, layer, hint)

    def check_decoder_layer(self, index: int, layer: nn.Module, hint: str = "") -> None:
        """Raise UnsupportedModelError when decoder layer ``index`` lacks what scoring reads."""
        attn = getattr(layer, "self_attn", None)
        if attn is None or not all(hasattr(attn, n) for n in ("q_proj", "k_proj", "head_dim", "scaling")):
            raise UnsupportedModelError(f"decoder layer {type(layer).__name__} has no q_proj/k_proj/head_dim/scaling{hint}")

    @abstractmethod
    def vision_dims(self, patch_grid: tuple[int, int] | None = None) -> VisionDims:
        """The tower's sizes for FLOPs; ``patch_grid`` is a located video's ``VideoSpan.patch_grid``
        where the inputs decide the patches (Qwen-VL), unused where the config fixes them."""

    def grid_extent(self) -> tuple[float, float]:
        """Fraction of the preprocessed frame's (height, width) the token grid covers: all of it
        here (frames resized to whole patches, as Qwen-VL's processor does)."""
        return 1.0, 1.0

    @classmethod
    def config_tokens_per_frame(cls, config) -> int | None:
        """Video tokens of one frame when the config alone fixes them (LLaVA: the tower's pooled
        grid), or None when the frames' size decides (Qwen-VL): the processor's rule."""
        return cls.processor.tokens_per_frame(config)

    @classmethod
    def resize_config_grid(cls, config, tokens_per_frame: int) -> None:
        """Change ``config`` in place so a frame gives ``tokens_per_frame`` video tokens (benchmarks on
        a real-size architecture). Here nothing: the frames' size sets the grid, and inputs carry it."""

    def text_config(self):
        """The language model's config (``config.text_config`` in transformers' VLMs)."""
        return self.model.config.text_config

    # --- inputs ----------------------------------------------------------------------------
    @abstractmethod
    def video_frames(self, kwargs: dict) -> int | None:
        """Number of frames of the video in a forward call's kwargs, or None if it has no video."""

    @abstractmethod
    def find_video(self, input_ids: torch.Tensor, num_frames: int) -> VideoSpan:
        """Locate the video block in (1, L) input_ids and check its size against the frames."""

    def has_video_pixels(self, kwargs: dict) -> bool:
        """Whether a forward call carries the video's pixels (its tower runs inside the call)."""
        return self.processor.video_pixels(kwargs) is not None

    def locate_video(self, input_ids: torch.Tensor | None, kwargs: dict) -> VideoSpan | None:
        """The video block of one forward call (top-level kwargs), or None when it has no video."""
        frames = self.video_frames(kwargs)
        return None if frames is None else self.find_video(input_ids, frames)

    # --- positions -------------------------------------------------------------------------
    def prefill_positions(self, position_ids: torch.Tensor | None, seq_len: int, device) -> torch.Tensor:
        """The position ids the language model uses for the full prompt: the given ones, else
        ``arange`` (what the decoder would build itself). (1, S) here; (R, 1, S) for M-RoPE."""
        if position_ids is None:
            return torch.arange(seq_len, device=device)[None]
        if position_ids.ndim != 2:
            raise InputError(f"position_ids of shape {tuple(position_ids.shape)} are not supported by this adapter")
        return position_ids

    def gather_positions(self, position_ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Position ids of the kept rows: every row of the ids keeps its original values."""
        return position_ids[..., keep]

    def compact_positions(self, num_kept: int, device) -> torch.Tensor:
        """Renumbered positions 0..n-1 for methods with ``positions = "compact"``."""
        return torch.arange(num_kept, device=device)[None]

    def gather_position_embeddings(
        self, position_embeddings: tuple[torch.Tensor, torch.Tensor], keep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The (cos, sin) a layer gets, each (1, n, d_h), restricted to the kept rows."""
        cos, sin = position_embeddings
        return cos[:, keep], sin[:, keep]

    def decode_positions(self, span: VideoSpan, step: int, device) -> torch.Tensor:
        """Position ids of decode step ``step`` (0 = the first token after the prompt) for a caller
        that passes none: what the unpruned model would use. Here the original length + step."""
        return torch.full((1, 1), span.seq_len + step, dtype=torch.long, device=device)

    # --- per-layer additions (Qwen3-VL deepstack) --------------------------------------------
    def take_layer_extras(self, lm_kwargs: dict, span: VideoSpan) -> Any:
        """Remove from the language model's kwargs what the runtime must apply itself to the alive
        tokens only (Qwen3-VL's deepstack embeddings), and return it; None when there is nothing."""
        return None

    def after_layer(
        self, index: int, hidden: torch.Tensor, extras: Any, visual_rows: torch.Tensor, visual_alive: torch.Tensor
    ) -> torch.Tensor | None:
        """Apply ``extras`` to decoder layer ``index``'s output (1, m, D); ``visual_rows`` are the
        rows of the alive visual tokens ``visual_alive``. Returns the new output, or None."""
        return None

    # --- attention importance ---------------------------------------------------------------
    def position_embeddings(self, hidden: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (cos, sin) the decoder layers will receive for (1, n, D) inputs at ``position_ids``.

        Used to score layer 0's own attention before the pre-LLM stage, where the language model
        has not built them yet (its ``rotary_emb``, exactly as its forward calls it).
        """
        return self.language_model().rotary_emb(hidden, position_ids)

    @abstractmethod
    def query_key_states(
        self,
        layer: nn.Module,
        hidden: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        query_rows: torch.Tensor,
        apply_rope: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Queries of ``query_rows`` and keys of every row, exactly as ``layer`` would build them.

        Args:
            hidden: (1, n, D) the layer's input.
            position_embeddings: the (cos, sin) the layer receives, each (1, n, d_h).
            query_rows: (q,) row indices.
        Returns:
            (H, q, d_h) queries, (H_kv, n, d_h) keys, and the softmax scaling.
        """


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on (1, H, n, d_h) with cos/sin (1, n, d_h), as transformers' ``apply_rotary_pos_emb``.

    Qwen2/Llama apply 1-D RoPE this way; Qwen2-VL / Qwen2.5-VL / Qwen3-VL too, because their rotary
    modules already fold the M-RoPE sections (t, h, w) into one (1, n, d_h) cos/sin.
    """
    return x * cos.unsqueeze(1) + _rotate_half(x) * sin.unsqueeze(1)


def qwen_query_key_states(layer, hidden, position_embeddings, query_rows, apply_rope: bool = True, qk_norm: bool = False):
    """``input_layernorm -> q_proj/k_proj [-> q_norm/k_norm] -> RoPE`` of one decoder layer.

    Returns (H, q, d_h) queries of ``query_rows``, (H_kv, n, d_h) keys of every row and the scaling.
    """
    attn = layer.self_attn
    normed = layer.input_layernorm(hidden)  # (1, n, D)
    head_dim = attn.head_dim
    q = attn.q_proj(normed[:, query_rows]).view(1, query_rows.shape[0], -1, head_dim)  # (1, q, H, d_h)
    k = attn.k_proj(normed).view(1, normed.shape[1], -1, head_dim)  # (1, n, H_kv, d_h)
    if qk_norm:  # Qwen3: RMSNorm over the head dim, before RoPE
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k = q.transpose(1, 2), k.transpose(1, 2)
    if apply_rope:
        cos, sin = position_embeddings
        q = rope_rotate(q, cos[:, query_rows], sin[:, query_rows])
        k = rope_rotate(k, cos, sin)
    return q[0], k[0], float(attn.scaling)
