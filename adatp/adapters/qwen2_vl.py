"""Qwen2-VL family (HF ``Qwen2VLForConditionalGeneration``); Qwen2.5-VL and Qwen3-VL subclass it.

Video tokens (transformers 5.23, ``Qwen2VLModel.get_video_features``): the tower cuts the video into
patches of ``temporal_patch_size`` (2) frames x ``patch_size``^2 pixels, and the merger turns each
``spatial_merge_size``^2 (2 x 2) patches into one token. ``video_grid_thw = (t, H, W)`` counts
patches, so the language model sees ``t`` grids of ``H/2 x W/2`` tokens, back to back between
``<|vision_start|>`` and ``<|vision_end|>``, in (t, y, x) order. AdaTP's "frames" are these ``t``
token grids (two video frames each, docs/method.md D15): segmentation, cross-frame redundancy and the
FLOPs' T count grids, and the global feature g_t is the mean of a grid's merged tokens.

Positions: M-RoPE. The model computes them once on the full prompt (``get_rope_index``, called by
``generate()`` or by the forward itself) and hands the language model ``(3, 1, S)`` ids, or
``(4, 1, S)`` with a leading text row under ``generate()``. Kept tokens keep every row. Decode steps
continue where the unpruned model would: ``generate()`` passes its own ids (the last prompt column
+ 1 on every row), which the runtime never rewrites; a loop that passes none gets the model's own
``compute_3d_position_ids`` at the unpruned cache length (original length + step + ``rope_deltas``).
Measured on tiny models in 5.23: the two agree unless the video's temporal positions run past the
text (Qwen2.5-VL with ``second_per_grid_ts * tokens_per_second > 1`` and a short question), where
``generate()`` continues at the last prompt position + 1 and a bare loop at ``max position + 1``.
Both are the unpruned model's behaviour, kept as is.

The text decoder is Qwen2 with M-RoPE folded into one (1, n, d_h) cos/sin by the rotary module, so
each layer builds its queries and keys as ``input_layernorm -> q_proj/k_proj -> RoPE``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from adatp.adapters.base import ModelAdapter, VideoLayout, VideoSpan, qwen_query_key_states, register_adapter
from adatp.errors import ConfigError, InputError, UnsupportedModelError
from adatp.ops.flops import DecoderDims, VisionDims

SUPPORTED_ATTENTION = ("sdpa",)


class _CacheLength:
    """Stands for a cache of ``n`` tokens where the model's position code asks for its length."""

    def __init__(self, n: int) -> None:
        self.n = n

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.n


@register_adapter
class Qwen2VLAdapter(ModelAdapter):
    model_classes = ("Qwen2VLForConditionalGeneration",)
    model_types = ("qwen2_vl",)
    tested_transformers = "5.23.0"
    # Not calibrated for this tower (D6 asks for a calibration on a training split): the SigLIP value,
    # unless the config carries adatp_segment_threshold (`adatp analyze segments` measures one).
    default_segment_threshold = 0.90
    global_feature = "token_mean"
    supports_compact_positions = False
    #: how the grids sit in the prompt: back to back ("none") or with text between them ("interleaved").
    newline: ClassVar[str] = "none"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self._patch_grid: tuple[int, int] | None = None  # (H, W) patches of the last video, for vision FLOPs

    def check_model(self) -> None:
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
            self.check_decoder_layer(index, layer)

    def check_decoder_layer(self, index: int, layer: nn.Module) -> None:
        """Raise UnsupportedModelError when decoder layer ``index`` lacks what scoring reads."""
        attn = getattr(layer, "self_attn", None)
        if attn is None or not all(hasattr(attn, n) for n in ("q_proj", "k_proj", "head_dim", "scaling")):
            raise UnsupportedModelError(f"decoder layer {type(layer).__name__} has no q_proj/k_proj/head_dim/scaling")

    # --- structure -------------------------------------------------------------------------

    def vision_modules(self) -> tuple[nn.Module, nn.Module]:
        visual = self.model.model.visual
        return visual, visual.merger

    #: default merged tokens a side of a synthetic grid (14 x 14 = 196 tokens: 392 px frames at 14 px patches)
    synthetic_side: ClassVar[int] = 14

    def synthetic_inputs(self, frames, text_tokens, tokens_per_frame=None, seed=0, text_before=4):
        """``frames`` (even) random frames -> ``frames / 2`` grids of ``tokens_per_frame`` (a square,
        default 196) merged tokens, with ``video_grid_thw``, ``mm_token_type_ids`` and, for
        Qwen2.5-VL, ``second_per_grid_ts`` = 1 s (2 frames at 2 fps)."""
        import math

        cfg = self.model.config
        v = cfg.vision_config
        side = self.synthetic_side if tokens_per_frame is None else math.isqrt(tokens_per_frame)
        if tokens_per_frame is not None and side * side != tokens_per_frame:
            raise ConfigError(f"tokens per frame must be a square (a g x g grid of merged tokens), got {tokens_per_frame}")
        tp, m, p = v.temporal_patch_size, v.spatial_merge_size, v.patch_size
        if frames < tp or frames % tp:
            raise ConfigError(f"{type(self).__name__}: frames must be a multiple of the temporal patch size {tp}, got {frames}")
        grids, patches = frames // tp, side * m
        gen = torch.Generator().manual_seed(seed)
        special = torch.tensor(sorted({cfg.video_token_id, cfg.image_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id}))
        self._text_range = (min(1000, special.min().item() // 2), min(self.text_config().vocab_size, 150000))
        lo, hi = self._text_range
        text = torch.randint(lo, hi, (text_tokens,), generator=gen)
        text = torch.where(torch.isin(text, special), lo, text)  # never a special id
        before = min(text_before, max(0, text_tokens - 1))
        block = self._synthetic_block(grids, side * side, gen)
        ids = torch.cat([text[:before], block, text[before:]])[None]
        pixels = torch.rand(grids * patches * patches, 3 * tp * p * p, generator=gen) * 2 - 1
        inputs = {
            "input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values_videos": pixels,
            "video_grid_thw": torch.tensor([[grids, patches, patches]]),
            "mm_token_type_ids": (ids == cfg.video_token_id).long() * 2,
        }
        if cfg.model_type == "qwen2_5_vl":
            inputs["second_per_grid_ts"] = torch.tensor([1.0])
        return inputs

    def _synthetic_block(self, grids: int, per_grid: int, gen: torch.Generator) -> torch.Tensor:
        cfg = self.model.config
        return torch.cat([torch.tensor([cfg.vision_start_token_id]), torch.full((grids * per_grid,), cfg.video_token_id),
                          torch.tensor([cfg.vision_end_token_id])])

    @property
    def merge_size(self) -> int:
        return int(self.model.config.vision_config.spatial_merge_size)

    @property
    def temporal_patch_size(self) -> int:
        return int(self.model.config.vision_config.temporal_patch_size)

    @property
    def video_token_id(self) -> int:
        return int(self.model.config.video_token_id)

    def decoder_dims(self) -> DecoderDims:
        t = self.text_config()
        head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
        return DecoderDims(t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_key_value_heads, head_dim)

    def _vision_sizes(self) -> tuple[int, int, int, int]:
        """(hidden, MLP width, blocks, MLP matrices) of the tower."""
        v = self.model.config.vision_config
        return v.embed_dim, int(v.embed_dim * v.mlp_ratio), v.depth, 2

    def vision_dims(self, patch_grid: tuple[int, int] | None = None) -> VisionDims:
        """Tower sizes; ``patches_per_frame`` = patches of one temporal grid (two frames) of the last
        video seen, or of ``patch_grid`` (H, W patches)."""
        hidden, inter, depth, mats = self._vision_sizes()
        h, w = patch_grid or self._patch_grid or (0, 0)
        return VisionDims(hidden, inter, depth, h * w, mats)

    # --- inputs ----------------------------------------------------------------------------
    def _grid(self, input_ids: torch.Tensor | None, kwargs: dict) -> tuple[int, int, int] | None:
        """(t, H, W) patches of the call's video: ``video_grid_thw`` when given; under ``generate()``,
        which encodes the video first and drops the grid, read from the model's own M-RoPE ids (the
        h and w rows of the video tokens). None when the call has no video."""
        grid = kwargs.get("video_grid_thw")
        m = self.merge_size
        if grid is not None:
            if grid.ndim != 2 or grid.shape[-1] != 3:
                raise InputError(f"video_grid_thw must be (videos, 3), got {tuple(grid.shape)}")
            if grid.shape[0] != 1:
                raise InputError(f"adatp prunes one video per prompt; got {grid.shape[0]} videos")
            t, h, w = (int(x) for x in grid[0].tolist())  # host sync, once per prefill
            if h % m or w % m:
                raise InputError(f"video_grid_thw {[t, h, w]}: H and W must be multiples of the merge size {m}")
            return t, h, w
        encoded = (kwargs.get("mm_encoder_outputs") or {}).get("video")
        if encoded is None:
            return None
        if len(encoded.pooler_output) != 1:
            raise InputError(f"adatp prunes one video per prompt; got {len(encoded.pooler_output)} videos")
        pos = kwargs.get("position_ids")
        if input_ids is None or pos is None or pos.ndim != 3:
            raise InputError("an encoded video needs input_ids and the model's M-RoPE position_ids to read its grid")
        rows = pos[-2:, 0][:, input_ids[0] == self.video_token_id].tolist()  # (2, N) h and w rows; host sync
        return self._grid_from_rows(rows[0], rows[1], m)

    @staticmethod
    def _grid_from_rows(hrow: list[int], wrow: list[int], m: int) -> tuple[int, int, int]:
        """(t, H, W) patches from the h/w M-RoPE rows of the video tokens, in (t, y, x) order: the
        first grid row is the leading run of equal h, and the grid ends where h stops rising by 1."""
        n = len(hrow)
        if n == 0:
            raise InputError("the prompt has no video tokens")
        w = 1
        while w < n and hrow[w] == hrow[0]:
            w += 1
        h = 1
        while (h + 1) * w <= n and hrow[h * w] == hrow[0] + h and wrow[h * w] == wrow[0]:
            h += 1
        if n % (h * w):
            raise InputError(f"{n} video tokens do not fill whole {h}x{w} grids")
        return n // (h * w), h * m, w * m

    def video_frames(self, kwargs: dict) -> int | None:
        """Token grids (AdaTP frames, two video frames each) of the call's video, or None."""
        grid = self._grid(kwargs.get("input_ids"), kwargs)
        return None if grid is None else grid[0]

    def locate_video(self, input_ids: torch.Tensor | None, kwargs: dict) -> VideoSpan | None:
        grid = self._grid(input_ids, kwargs)
        if grid is None:
            return None
        t, h, w = grid
        self._patch_grid = (h, w)
        m = self.merge_size
        return self.find_video(input_ids, (t, h // m, w // m))

    def _pad_positions(self, input_ids: torch.Tensor | None, expected: int) -> list[int]:
        if input_ids is None:
            raise InputError("pruning needs input_ids to locate the video tokens; inputs_embeds alone are not supported")
        # Host sync: the video's place in the prompt decides every index below; once per prefill.
        positions = torch.nonzero(input_ids[0] == self.video_token_id).flatten().tolist()
        if len(positions) != expected:
            raise InputError(
                f"the prompt has {len(positions)} video tokens but video_grid_thw needs {expected}; "
                "build inputs with adatp.prepare_inputs"
            )
        return positions

    def find_video(self, input_ids: torch.Tensor, grid) -> VideoSpan:
        """``grid`` = (T grids, h, w) in merged tokens."""
        t, h, w = grid
        layout = VideoLayout(t, h, w, "none")
        positions = self._pad_positions(input_ids, layout.num_visual)
        start = positions[0]
        if positions[-1] - start + 1 != len(positions):
            raise InputError("the video tokens are not contiguous: only one video per prompt is supported")
        return VideoSpan(start=start, layout=layout, seq_len=input_ids.shape[1])

    @classmethod
    def build_inputs(cls, model_dir, config, tokenizer, video, question, system_prompt, fps):
        """Qwen2-VL / Qwen2.5-VL / Qwen3-VL inputs, as their transformers 5.23 processors build them.

        The template's ``<|video_pad|>`` becomes ``t * H * W / merge^2`` pads (Qwen2/2.5-VL), or per grid
        ``<{time:.1f} seconds><|vision_start|>`` + ``H * W / merge^2`` pads + ``<|vision_end|>`` (Qwen3-VL,
        inside the template's own start/end markers, as 5.23 replaces the pad token alone).
        """
        from transformers import BatchFeature

        from adatp.inputs import QWEN_VIDEO_PAD, _render, load_chat_template
        from adatp.video.qwen_preprocess import grid_timestamps, load_qwen_settings, qwen_video_pixels

        settings = load_qwen_settings(model_dir, config)
        if fps is not None and (not isinstance(fps, (int, float)) or not fps > 0):
            raise InputError(f"fps must be a positive number, got {fps!r}")
        rate = float(fps) if fps is not None else settings.fps
        pad_id = tokenizer.convert_tokens_to_ids(QWEN_VIDEO_PAD)
        if pad_id != config.video_token_id:
            raise ConfigError(
                f"the tokenizer maps {QWEN_VIDEO_PAD!r} to {pad_id}, but config.video_token_id is {config.video_token_id}: "
                "tokenizer and model do not belong together"
            )
        pixels, grid = qwen_video_pixels(video, settings)
        t, h, w = grid[0].tolist()
        per_grid = h * w // settings.merge_size**2
        times = grid_timestamps(video.shape[0], rate, settings.temporal_patch_size)
        expanded = cls._expand_video(QWEN_VIDEO_PAD, t, per_grid, times)
        prompt = _render(tokenizer, load_chat_template(model_dir, tokenizer), question, system_prompt, QWEN_VIDEO_PAD)
        text = prompt.replace(QWEN_VIDEO_PAD, expanded, 1)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].long()
        found = int((ids == pad_id).sum())
        if found != t * per_grid:
            raise ConfigError(f"tokenised prompt holds {found} video tokens, expected {t * per_grid}")
        data = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "pixel_values_videos": pixels,
            "video_grid_thw": grid,
            "mm_token_type_ids": (ids == pad_id).long() * 2,
        }
        if config.model_type == "qwen2_5_vl":
            data["second_per_grid_ts"] = torch.tensor([settings.temporal_patch_size / rate])
        return BatchFeature(data)

    @staticmethod
    def _expand_video(pad: str, grids: int, per_grid: int, times: list[float]) -> str:
        """What the template's one ``<|video_pad|>`` becomes: Qwen2/2.5-VL, every grid's pads in a row."""
        return pad * (grids * per_grid)

    # --- positions -------------------------------------------------------------------------
    def prefill_positions(self, position_ids: torch.Tensor | None, seq_len: int, device) -> torch.Tensor:
        if position_ids is None or position_ids.ndim != 3 or position_ids.shape[0] not in (3, 4):
            shape = None if position_ids is None else tuple(position_ids.shape)
            raise InputError(
                f"expected the model's M-RoPE position ids (3 or 4, 1, S), got {shape}: pass mm_token_type_ids "
                "and video_grid_thw (adatp.prepare_inputs builds them) so that get_rope_index runs"
            )
        return position_ids

    def compact_positions(self, num_kept: int, device) -> torch.Tensor:
        raise ConfigError(f"{type(self).__name__} keeps original M-RoPE positions; compact positions are not supported")

    def decode_positions(self, span: VideoSpan, step: int, device) -> torch.Tensor:
        """(3, 1, 1): the model's own ``compute_3d_position_ids`` at the unpruned cache length."""
        inner = self.model.model
        if inner.rope_deltas is None:
            raise InputError("the model has no rope_deltas from the pruned prefill: cannot continue decoding")
        embeds = torch.zeros(1, 1, 1, device=device)  # only its shape and device are read
        return inner.compute_3d_position_ids(
            input_ids=None, image_grid_thw=None, video_grid_thw=None, inputs_embeds=embeds, attention_mask=None,
            past_key_values=_CacheLength(span.seq_len + step),
        )

    # --- attention importance ---------------------------------------------------------------
    def query_key_states(self, layer, hidden, position_embeddings, query_rows, apply_rope: bool = True):
        return qwen_query_key_states(layer, hidden, position_embeddings, query_rows, apply_rope)


