"""Text-frame relevance scorers for AdaTP's global debiasing (docs/method.md, Stage 1, docs/method.md D7).

A scorer embeds the text query and each frame into one space: ``embed_text(str) -> (d,)`` and
``embed_frames(patch_features (T, P, d_v)) -> (T, d)``; r_t = cos(text, frame t). Frames are the
VLM's own tower features (no second vision pass). ``uniform`` means no scorer: relevance is flat,
alpha has no effect, and the report says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from adatp.errors import ConfigError, InputError


@runtime_checkable
class RelevanceScorer(Protocol):
    name: str

    def embed_text(self, text: str) -> torch.Tensor: ...

    def embed_frames(self, patch_features: torch.Tensor) -> torch.Tensor: ...


class SiglipRelevance:
    """The text tower and pooling head of a local SigLIP checkpoint (``siglip:DIR``).

    The head (post-LayerNorm + attention pooling) is applied to the VLM tower's patch features,
    which HF LLaVA-OneVision checkpoints produce without a head (``vision_use_head`` false, D6).
    The text goes through SigLIP's tokenizer with max_length padding, as SigLIP was trained.
    The same pooled head output is the frame's global feature g_t for segmentation (D6):
    :meth:`segmentation_features` tells the runtime to use it instead of the patch mean.
    """

    def __init__(self, path: str | Path, device: torch.device | str | None = None) -> None:
        from transformers import AutoTokenizer, SiglipModel

        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"SigLIP directory not found: {path}")
        try:
            self.model = SiglipModel.from_pretrained(path).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"could not load a SigLIP model and tokenizer from {path}: {exc}") from None
        if not hasattr(self.model.vision_model, "head"):
            raise ConfigError(f"the SigLIP checkpoint in {path} has no vision pooling head (vision_use_head is false)")
        if device is not None:
            self.model.to(device)
        self.name = f"siglip:{path}"
        self.feature_dim = self.model.config.vision_config.hidden_size

    @torch.no_grad()
    def embed_text(self, text: str) -> torch.Tensor:
        enc = self.tokenizer([text], padding="max_length", truncation=True, return_tensors="pt")
        enc = {k: v.to(self.model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        return self.model.get_text_features(**enc).pooler_output[0].float()

    @torch.no_grad()
    def embed_frames(self, patch_features: torch.Tensor) -> torch.Tensor:
        if patch_features.shape[-1] != self.feature_dim:
            raise ConfigError(
                f"SigLIP head expects {self.feature_dim}-d patch features, the VLM tower gives {patch_features.shape[-1]}"
            )
        vm = self.model.vision_model
        x = patch_features.to(vm.post_layernorm.weight.dtype).to(vm.post_layernorm.weight.device)
        return vm.head(vm.post_layernorm(x)).float()

    def segmentation_features(self, patch_features: torch.Tensor) -> torch.Tensor:
        """g_t for segmentation when this scorer is given (D6): the head's pooled feature, (T, d)."""
        return self.embed_frames(patch_features)


def build_scorer(spec: str | RelevanceScorer | None, model_dir: str | Path | None = None) -> RelevanceScorer | None:
    """The scorer named by ``spec``.

    ``None``: the model's own trained scorer when ``model_dir`` ships one, else None (uniform);
    "uniform" -> None; "siglip:DIR" -> SiglipRelevance; "model" -> the scorer in ``model_dir``
    (``model:DIR`` names another directory); a scorer object -> itself.
    """
    from adatp.relevance.trained import has_trained_scorer, load_trained_scorer

    if spec is None:
        if model_dir is not None and Path(model_dir).is_dir() and has_trained_scorer(model_dir):
            return load_trained_scorer(model_dir)
        return None
    if spec == "uniform":
        return None
    if isinstance(spec, str):
        if spec.startswith("siglip:"):
            return SiglipRelevance(spec.split(":", 1)[1])
        if spec == "model" or spec.startswith("model:"):
            directory = spec.split(":", 1)[1] if ":" in spec else model_dir
            if directory is None:
                raise ConfigError("relevance 'model' needs the model's directory (model.name_or_path is empty)")
            return load_trained_scorer(directory)
        raise ConfigError(
            f"unknown relevance scorer {spec!r}; use 'uniform', 'siglip:DIR', 'model[:DIR]' or a scorer object"
        )
    if isinstance(spec, RelevanceScorer):
        return spec
    raise ConfigError(f"a relevance scorer needs embed_text() and embed_frames(); got {type(spec).__name__}")


def frame_relevance(text_embedding: torch.Tensor, frame_embeddings: torch.Tensor) -> torch.Tensor:
    """r_t = cos(text, frame t). (d,) x (T, d) -> (T,) float32."""
    if text_embedding.shape[-1] != frame_embeddings.shape[-1]:
        raise ConfigError(
            f"the scorer's text ({text_embedding.shape[-1]}-d) and frame ({frame_embeddings.shape[-1]}-d) "
            "embeddings are not in one space"
        )
    return F.normalize(frame_embeddings.float(), dim=-1) @ F.normalize(text_embedding.float().to(frame_embeddings.device), dim=0)


def extract_query_text(input_ids: torch.Tensor, start: int, tokenizer) -> str:
    """The user's question: the tokens after the video up to the first special token, decoded.

    Chat templates close the user turn with a special token (``<|im_end|>`` for Qwen2), so this
    drops the template's tail without knowing the template. (L,) ids -> str.
    """
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    ids: list[int] = []
    for tok in input_ids[start:].tolist():
        if tok in special:
            break
        ids.append(tok)
    text = tokenizer.decode(ids, skip_special_tokens=True).strip()
    if not text:
        raise InputError("no question text follows the video in the prompt")
    return text
