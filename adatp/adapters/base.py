"""What the runtime needs to know about a model family, stated as data and small methods.

An adapter answers: where are the video tokens and what is their frame/grid layout, where is
the decoder stack, how does a decoder layer build its queries and keys (for importance), which
module's input is the per-frame patch feature, and what are the sizes for FLOPs.
Families register themselves with :func:`register_adapter`; :func:`get_adapter` does one lookup.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from adatp.errors import UnsupportedModelError
from adatp.ops.flops import DecoderDims, VisionDims

NEWLINE_MODES = ("video_end", "row", "frame", "none")


@dataclass(frozen=True)
class VideoLayout:
    """The layout of one video's token block in the prompt.

    Grid tokens come frame by frame, row by row (t, y, x). ``newline`` says where the model puts
    its learned newline embeddings: ``video_end`` (HF LLaVA-OneVision / LLaVA-Video: one after the
    whole video), ``row`` (LLaVA-NeXT's own layout: one after every grid row), ``frame`` (one after
    every frame) or ``none``. Newline tokens are never pruned and belong to no segment (D2).
    """

    num_frames: int
    grid_h: int
    grid_w: int
    newline: str = "video_end"

    def __post_init__(self) -> None:
        if self.newline not in NEWLINE_MODES:
            raise ValueError(f"newline must be one of {NEWLINE_MODES}, got {self.newline!r}")

    @property
    def tokens_per_frame(self) -> int:
        """c = h * w grid tokens per frame (newlines excluded)."""
        return self.grid_h * self.grid_w

    @property
    def num_visual(self) -> int:
        """N = T * c (D2)."""
        return self.num_frames * self.tokens_per_frame

    @property
    def block_length(self) -> int:
        """Tokens of the whole video block, newlines included."""
        extra = {"video_end": 1, "row": self.num_frames * self.grid_h, "frame": self.num_frames, "none": 0}
        return self.num_visual + extra[self.newline]

    def grid_offsets(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(N,) offset inside the block of each grid token, in (t, y, x) order."""
        t = torch.arange(self.num_frames, device=device)[:, None, None]
        y = torch.arange(self.grid_h, device=device)[None, :, None]
        x = torch.arange(self.grid_w, device=device)[None, None, :]
        if self.newline == "row":
            off = t * self.grid_h * (self.grid_w + 1) + y * (self.grid_w + 1) + x
        elif self.newline == "frame":
            off = t * (self.tokens_per_frame + 1) + y * self.grid_w + x
        else:
            off = t * self.tokens_per_frame + y * self.grid_w + x
        return off.reshape(-1)

    def newline_offsets(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(block_length - N,) offsets of the newline tokens inside the block."""
        is_grid = torch.zeros(self.block_length, dtype=torch.bool, device=device)
        is_grid[self.grid_offsets(device)] = True
        return torch.nonzero(~is_grid).flatten()


@dataclass(frozen=True)
class VideoSpan:
    """Where one video's block sits in a prompt of ``seq_len`` tokens."""

    start: int
    layout: VideoLayout
    seq_len: int

    @property
    def end(self) -> int:
        """One past the block's last token; query rows start here (D3)."""
        return self.start + self.layout.block_length


class ModelAdapter(ABC):
    """Base class of one model family. Override what differs; see llava_onevision.py."""

    #: transformers class names this adapter handles.
    model_classes: ClassVar[tuple[str, ...]] = ()
    #: transformers versions the adapter was tested with.
    tested_transformers: ClassVar[str] = ""
    #: default segmentation threshold tau_s for this family's tower (D6).
    default_segment_threshold: ClassVar[float] = 0.90

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.check_model()

    # --- structure -------------------------------------------------------------------------
    @abstractmethod
    def check_model(self) -> None:
        """Raise UnsupportedModelError for configurations the runtime cannot prune correctly."""

    def attention_implementation(self) -> str | None:
        """The language model's attention implementation now (``"sdpa"``, ``"eager"``, ...)."""
        config = getattr(self.language_model(), "config", None)
        return getattr(config, "_attn_implementation", None)

    @abstractmethod
    def language_model(self) -> nn.Module:
        """The decoder stack (receives inputs_embeds, position_ids, attention_mask, cache)."""

    @abstractmethod
    def decoder_layers(self) -> list[nn.Module]:
        """The decoder layers, in order."""

    @abstractmethod
    def frame_feature_module(self) -> nn.Module:
        """A module whose first positional input is the video's patch features (T, P, d_v)."""

    #: the per-frame global feature g_t (D6): "patch_mean" (mean of the patch features) or "cls"
    #: (the tower's class token at the VLM's feature layer, see :meth:`cls_features`).
    global_feature: ClassVar[str] = "patch_mean"

    def vision_tower(self) -> nn.Module | None:
        """The vision tower, for adapters whose global feature is read from its output."""
        return None

    def cls_features(self, tower_output: Any) -> torch.Tensor | None:
        """(T, d_v) class-token features from one tower call's output, or None."""
        return None

    @abstractmethod
    def decoder_dims(self) -> DecoderDims: ...

    @abstractmethod
    def vision_dims(self) -> VisionDims: ...

    @abstractmethod
    def text_config(self): ...

    # --- inputs ----------------------------------------------------------------------------
    @abstractmethod
    def video_frames(self, kwargs: dict) -> int | None:
        """Number of frames of the video in a forward call's kwargs, or None if it has no video."""

    @abstractmethod
    def find_video(self, input_ids: torch.Tensor, num_frames: int) -> VideoSpan:
        """Locate the video block in (1, L) input_ids and check its size against the frames."""

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


_ADAPTERS: dict[str, type[ModelAdapter]] = {}


def register_adapter(cls: type[ModelAdapter]) -> type[ModelAdapter]:
    """Class decorator: make ``cls`` the adapter of its ``model_classes``. Rejects duplicates."""
    for name in cls.model_classes:
        if name in _ADAPTERS and _ADAPTERS[name] is not cls:
            raise ValueError(f"{name} already has adapter {_ADAPTERS[name].__name__}")
        _ADAPTERS[name] = cls
    return cls


def get_adapter(model: nn.Module) -> ModelAdapter:
    """The adapter for ``model``'s class, or UnsupportedModelError listing the supported ones."""
    import adatp.adapters  # noqa: F401  (registers the built-in adapters)

    name = type(model).__name__
    if name not in _ADAPTERS:
        supported = ", ".join(sorted(_ADAPTERS)) or "none"
        raise UnsupportedModelError(
            f"adatp has no adapter for model class {name}; supported classes: {supported}"
        )
    return _ADAPTERS[name](model)
