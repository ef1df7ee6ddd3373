"""A small trained text scorer that lives inside a model directory (docs/method.md D7).

Models without a SigLIP text tower (adatp-tiny: a DINOv2 tower) ship their own scorer: the
question's tokens are embedded (a learned mean of token embeddings), mapped into the tower's
class-token space, and compared by cosine with each frame's class token after a learned linear map.
Files, beside the model's ``config.json``: ``adatp_relevance.safetensors`` (weights) and
``adatp_relevance.json`` (sizes). It reads global features (``frame_input = "global"``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adatp.errors import ConfigError

WEIGHTS = "adatp_relevance.safetensors"
CONFIG = "adatp_relevance.json"


class TextFrameScorer(nn.Module):
    """text ids -> (d_v,); frame class tokens (T, d_v) -> (T, d_v); relevance = cos of the two.

    Args:
        vocab_size: the VLM tokenizer's vocabulary (the scorer reuses that tokenizer).
        text_dim: size of the learned token embeddings.
        feature_dim: d_v, the tower's class-token size.
    """

    name = "adatp-tiny-relevance"
    frame_input = "global"

    def __init__(self, vocab_size: int, text_dim: int, feature_dim: int) -> None:
        super().__init__()
        self.sizes = {"vocab_size": vocab_size, "text_dim": text_dim, "feature_dim": feature_dim}
        self.token_embedding = nn.EmbeddingBag(vocab_size, text_dim, mode="mean")
        self.text_proj = nn.Linear(text_dim, feature_dim)
        self.frame_norm = nn.LayerNorm(feature_dim)
        self.frame_proj = nn.Linear(feature_dim, feature_dim)
        self.tokenizer: Any = None

    def text_features(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Flat token ids (M,) with bag offsets (B,) -> (B, d_v)."""
        return self.text_proj(self.token_embedding(ids, offsets))

    def frame_features(self, cls: torch.Tensor) -> torch.Tensor:
        """(..., d_v) class tokens -> (..., d_v)."""
        return self.frame_proj(self.frame_norm(cls))

    @torch.no_grad()
    def embed_text(self, text: str) -> torch.Tensor:
        if self.tokenizer is None:
            raise ConfigError("this relevance scorer has no tokenizer; load it with load_trained_scorer(model_dir)")
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ConfigError("the question is empty: nothing to score frames against")
        device = self.text_proj.weight.device
        return self.text_features(torch.tensor(ids, device=device), torch.zeros(1, dtype=torch.long, device=device))[0]

    @torch.no_grad()
    def embed_frames(self, global_features: torch.Tensor) -> torch.Tensor:
        if global_features.ndim != 2 or global_features.shape[-1] != self.sizes["feature_dim"]:
            raise ConfigError(
                f"this scorer reads (T, {self.sizes['feature_dim']}) class tokens, got {tuple(global_features.shape)}"
            )
        weight = self.frame_proj.weight
        return self.frame_features(global_features.to(weight.device, weight.dtype)).float()

    def save(self, model_dir: str | Path) -> None:
        from safetensors.torch import save_file

        model_dir = Path(model_dir)
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, model_dir / WEIGHTS)
        (model_dir / CONFIG).write_text(json.dumps(self.sizes, indent=2) + "\n")


def has_trained_scorer(model_dir: str | Path) -> bool:
    return (Path(model_dir) / WEIGHTS).is_file() and (Path(model_dir) / CONFIG).is_file()


def load_trained_scorer(model_dir: str | Path) -> TextFrameScorer:
    """The scorer shipped in ``model_dir``, with the model's own tokenizer.

    Loaded once per directory state (names, sizes and modification times of its files): an
    evaluation prunes the same model thousands of times. The scorer is only ever read (eval mode,
    no_grad), so one instance serves every pruned run.
    """
    model_dir = Path(model_dir)
    if not has_trained_scorer(model_dir):
        raise ConfigError(f"{model_dir} has no trained relevance scorer ({WEIGHTS} and {CONFIG})")
    return _load_trained_scorer(str(model_dir), directory_stamp(model_dir))


def directory_stamp(model_dir: str | Path) -> tuple:
    """(name, size, mtime_ns) of every file in ``model_dir``: a cache key that changes with them."""
    return tuple(sorted((p.name, st.st_size, st.st_mtime_ns) for p in Path(model_dir).iterdir()
                        if p.is_file() and (st := p.stat())))


@functools.lru_cache(maxsize=4)
def cached_tokenizer(model_dir: str, stamp: tuple) -> Any:
    """``AutoTokenizer.from_pretrained(model_dir)``, once per directory state (``stamp``)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@functools.lru_cache(maxsize=4)
def _load_trained_scorer(model_dir: str, stamp: tuple) -> TextFrameScorer:
    from safetensors.torch import load_file

    scorer = TextFrameScorer(**json.loads((Path(model_dir) / CONFIG).read_text()))
    scorer.load_state_dict(load_file(Path(model_dir) / WEIGHTS))
    scorer.tokenizer = cached_tokenizer(model_dir, stamp)
    scorer.name = f"model:{model_dir}"
    return scorer.eval()
